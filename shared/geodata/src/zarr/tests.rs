use climate_domain::grid::Axis;
use climate_domain::{Period, PeriodType};
use object_store::memory::InMemory;

use super::*;

fn layout() -> StoreLayout {
    let start = Period::parse(PeriodType::Daily, "2024-02-28").expect("period");
    let end = Period::parse(PeriodType::Daily, "2024-03-01").expect("period");
    StoreLayout {
        variable: "v".into(),
        units: "mm".into(),
        long_name: "test".into(),
        period_type: PeriodType::Daily,
        periods: PeriodRange::new(start, end).expect("range"),
        grid: Grid {
            crs: climate_domain::Crs::WGS84,
            x: Axis {
                first: 0.5,
                step: 1.0,
                len: 5,
            },
            y: Axis {
                first: 2.5,
                step: -1.0,
                len: 3,
            },
        },
        // Chunks that do not divide the array: every edge needs padding.
        chunks: ChunkShape { t: 2, y: 2, x: 2 },
        shard: None,
        attributes: Map::new(),
    }
}

/// An `n × n` grid at 0.05° in 256² chunks of 2 days: over a megapixel for `n` > 1024.
fn large_layout(n: usize) -> StoreLayout {
    let mut l = layout();
    l.grid.x = Axis {
        first: 0.025,
        step: 0.05,
        len: n,
    };
    l.grid.y = Axis {
        first: 51.475,
        step: -0.05,
        len: n,
    };
    l.chunks = ChunkShape {
        t: 2,
        y: 256,
        x: 256,
    };
    l
}

#[tokio::test]
async fn edge_chunks_round_trip_and_metadata_is_consolidated() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let l = layout();
    let (nt, ny, nx) = (3usize, 3usize, 5usize);
    let value = |t: usize, y: usize, x: usize| (100 * t + 10 * y + x) as f32;
    let writer = ZarrWriter::create(store.clone(), "ds/a1", l.clone())
        .await
        .expect("create");
    assert_eq!(l.time_chunks(), 2);
    for ci in 0..2 {
        let r = l.time_chunk_range(ci);
        let mut slab = Vec::new();
        for t in r.start as usize..r.end as usize {
            for y in 0..ny {
                for x in 0..nx {
                    // One missing cell, to check NaN survives.
                    slab.push(if (t, y, x) == (2, 2, 4) {
                        f32::NAN
                    } else {
                        value(t, y, x)
                    });
                }
            }
        }
        writer.write_time_chunk(ci, &slab).await.expect("write");
    }
    assert!(
        writer.write_time_chunk(0, &[1.0]).await.is_err(),
        "a wrong slab size is refused"
    );
    writer.finish().await.expect("finish");

    // Read back independently through zarrs.
    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store.clone(), "ds/a1"));
    let storage: Arc<DynStorage> =
        Arc::new(zarrs_object_store::AsyncObjectStore::new(prefixed.clone()));
    let arr = Array::async_open(storage.clone(), "/v")
        .await
        .expect("open");
    let data: Vec<f32> = arr
        .async_retrieve_array_subset::<Vec<f32>>(&arr.subset_all())
        .await
        .expect("read");
    assert_eq!(data.len(), nt * ny * nx);
    for t in 0..nt {
        for y in 0..ny {
            for x in 0..nx {
                let got = data[(t * ny + y) * nx + x];
                if (t, y, x) == (2, 2, 4) {
                    assert!(got.is_nan());
                } else {
                    assert_eq!(got, value(t, y, x), "({t}, {y}, {x})");
                }
            }
        }
    }
    let times = Array::async_open(storage, "/t").await.expect("t");
    let t: Vec<i64> = times
        .async_retrieve_array_subset::<Vec<i64>>(&times.subset_all())
        .await
        .expect("t values");
    // 2024-02-28, 02-29 (leap day), 03-01 in days since 1970-01-01.
    assert_eq!(t, vec![19781, 19782, 19783]);

    let root: Value = serde_json::from_slice(
        &prefixed
            .get(&Path::from("zarr.json"))
            .await
            .expect("root")
            .bytes()
            .await
            .expect("bytes"),
    )
    .expect("json");
    let members = root["consolidated_metadata"]["metadata"]
        .as_object()
        .expect("consolidated");
    let mut names: Vec<&String> = members.keys().collect();
    names.sort();
    assert_eq!(names, ["t", "v", "x", "y"]);
    assert_eq!(members["v"]["shape"], json!([3, 3, 5]));
    assert_eq!(
        root["attributes"]["spatial:bbox"],
        json!([0.0, 0.0, 5.0, 3.0])
    );
    assert_eq!(
        root["attributes"]["spatial:transform"],
        json!([1.0, 0.0, 0.0, 0.0, -1.0, 3.0])
    );
}

#[tokio::test]
async fn large_grids_get_a_mean_pyramid_described_by_multiscales() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // 1030² > 1024²: levels of 515², 258², 129².
    let n = 1030usize;
    let l = large_layout(n);
    let value = |t: usize, y: usize, x: usize| {
        if (y + x).is_multiple_of(7) {
            f32::NAN
        } else {
            (t * 7 + y * 3 + x) as f32
        }
    };
    let writer = ZarrWriter::create(store.clone(), "p", l.clone())
        .await
        .expect("create");
    assert_eq!(writer.pyramid_levels(), 3);
    for ci in 0..l.time_chunks() {
        let r = l.time_chunk_range(ci);
        let mut slab = Vec::new();
        for t in r.start as usize..r.end as usize {
            for y in 0..n {
                for x in 0..n {
                    slab.push(value(t, y, x));
                }
            }
        }
        writer.write_time_chunk(ci, &slab).await.expect("write");
    }
    writer.finish().await.expect("finish");

    let prefixed: Arc<dyn ObjectStore> = Arc::new(PrefixStore::new(store, "p"));
    let storage: Arc<DynStorage> =
        Arc::new(zarrs_object_store::AsyncObjectStore::new(prefixed.clone()));
    let read = |path: &'static str| {
        let storage = storage.clone();
        async move {
            let arr = Array::async_open(storage, path).await.expect("open");
            let shape = arr.shape().to_vec();
            let v: Vec<f32> = arr
                .async_retrieve_array_subset::<Vec<f32>>(&arr.subset_all())
                .await
                .expect("read");
            (shape, v)
        }
    };
    let (s1, l1) = read("/1/v").await;
    assert_eq!(s1, [3, 515, 515]);
    let (s3, l3) = read("/3/v").await;
    assert_eq!(s3, [3, 129, 129]);
    // Level 1 is the NaN-skipping mean of each 2×2 block of level 0.
    for (t, y, x) in [(0, 0, 0), (1, 10, 33), (2, 514, 514), (2, 300, 7)] {
        let block: Vec<f32> = [(0, 0), (0, 1), (1, 0), (1, 1)]
            .iter()
            .map(|(dy, dx)| value(t, 2 * y + dy, 2 * x + dx))
            .filter(|v| !v.is_nan())
            .collect();
        let mean = block.iter().sum::<f32>() / block.len() as f32;
        let got = l1[(t * 515 + y) * 515 + x];
        assert!((got - mean).abs() < 1e-3, "({t},{y},{x}): {got} vs {mean}");
    }
    // The top level is coarse but still values, not fill.
    assert!(l3.iter().all(|v| !v.is_nan()));
    let (_, ys) = {
        let arr = Array::async_open(storage.clone(), "/1/y").await.expect("y");
        let v: Vec<f64> = arr
            .async_retrieve_array_subset::<Vec<f64>>(&arr.subset_all())
            .await
            .expect("read");
        ((), v)
    };
    assert_eq!(ys[0], 51.45, "level-1 centre between the first two rows");

    let json_at = |path: &'static str| {
        let prefixed = prefixed.clone();
        async move {
            let bytes = prefixed
                .get(&Path::from(path))
                .await
                .expect("get")
                .bytes()
                .await
                .expect("bytes");
            serde_json::from_slice::<Value>(&bytes).expect("json")
        }
    };
    let root = json_at("zarr.json").await;
    let layout_attr = &root["attributes"]["multiscales"]["layout"];
    assert_eq!(layout_attr.as_array().map(Vec::len), Some(4));
    assert_eq!(layout_attr[0]["asset"], "v");
    assert_eq!(layout_attr[2]["asset"], "2/v");
    assert_eq!(layout_attr[2]["derived_from"], "1/v");
    assert_eq!(layout_attr[3]["spatial:shape"], json!([129, 129]));
    let names: Vec<&str> = root["attributes"]["zarr_conventions"]
        .as_array()
        .expect("conventions")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(names.contains(&"multiscales"), "{names:?}");
    let members = &root["consolidated_metadata"]["metadata"];
    assert_eq!(members["2/v"]["shape"], json!([3, 258, 258]));
    assert_eq!(members["1"]["node_type"], "group");
    let level = json_at("1/zarr.json").await;
    assert_eq!(
        level["consolidated_metadata"]["metadata"]["v"]["shape"],
        json!([3, 515, 515])
    );
    assert_eq!(level["attributes"]["spatial:shape"], json!([515, 515]));
}

/// Writing a time chunk in bands of rows gives the same objects, byte for byte, as
/// writing it whole, pyramid levels included (whose chunks straddle bands).
#[tokio::test]
async fn banded_writes_store_the_same_bytes_as_whole_time_chunks() {
    let n = 1030usize;
    let l = large_layout(n);
    let value = |t: usize, y: usize, x: usize| {
        if (y * 3 + x).is_multiple_of(11) {
            f32::NAN
        } else {
            (t * 5 + y * 2 + x) as f32 * 0.5
        }
    };
    let slab = |ci: u64, rows: std::ops::Range<usize>| {
        let r = l.time_chunk_range(ci);
        let mut v = Vec::new();
        for t in r.start as usize..r.end as usize {
            for y in rows.clone() {
                for x in 0..n {
                    v.push(value(t, y, x));
                }
            }
        }
        v
    };
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let whole = ZarrWriter::create(store.clone(), "whole", l.clone())
        .await
        .expect("create");
    let banded = ZarrWriter::create(store.clone(), "banded", l.clone())
        .await
        .expect("create");
    // 3 levels and 256-row chunks: bands start at multiples of 256.
    assert_eq!(banded.band_unit(), 256);
    let band = banded.band_rows(1);
    assert_eq!(band, 256, "a tiny budget still gets one chunk row");
    assert_eq!(
        banded.band_rows(u64::MAX),
        n,
        "a large budget gets the grid"
    );
    for ci in 0..l.time_chunks() {
        whole
            .write_time_chunk(ci, &slab(ci, 0..n))
            .await
            .expect("whole");
        for b0 in (0..n).step_by(band) {
            let rows = b0..(b0 + band).min(n);
            banded
                .write_band(ci, rows.clone(), &slab(ci, rows))
                .await
                .expect("band");
        }
    }
    assert!(
        banded
            .write_band(0, 100..356, &slab(0, 100..356))
            .await
            .is_err(),
        "a band off the unit is refused"
    );
    whole.finish().await.expect("finish");
    banded.finish().await.expect("finish");

    let objects = |prefix: &'static str| {
        let store = store.clone();
        async move {
            let listed: Vec<_> = store
                .list(Some(&Path::from(prefix)))
                .try_collect()
                .await
                .expect("list");
            let mut out = std::collections::BTreeMap::new();
            for meta in listed {
                let key = meta.location.as_ref()[prefix.len() + 1..].to_owned();
                let bytes = store
                    .get(&meta.location)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("bytes");
                out.insert(key, bytes);
            }
            out
        }
    };
    let (a, b) = (objects("whole").await, objects("banded").await);
    assert!(a.keys().any(|k| k.starts_with("3/v/c/")), "{:?}", a.keys());
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same objects"
    );
    for (key, bytes) in &a {
        assert!(b[key] == *bytes, "{key} differs");
    }
}
