//! Conformance of the [`Store`] backends (local directory and S3) through `object_store`.
//!
//! Covers put/get/head, ranged reads (bounded, offset, suffix, several ranges), listing by
//! prefix and by delimiter, deletion, `NotFound` on missing keys and `ping`; then what `Store`
//! itself adds: URL parsing (schemes, options), `version_prefix`, and the isolation given by an
//! S3 key prefix. Each S3 test opens `s3://{bucket}/{uuid}` and deletes its objects when it
//! ends; the local tests use a tempdir.

use std::collections::BTreeMap;

use bytes::Bytes;
use climate_infra::store::{Store, StoreError};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload};

use crate::support::{self, Cleanup};

// ---------------------------------------------------------------------------------------------
// Fixture

/// A store of one backend with an empty root, removed when dropped.
#[derive(Debug)]
pub struct TestStore {
    store: Store,
    dir: Option<tempfile::TempDir>,
    _cleanup: Option<Cleanup>,
}

impl TestStore {
    fn local() -> Self {
        let dir = tempfile::tempdir().expect("create tempdir");
        let store = Store::open(
            &format!("file://{}", dir.path().display()),
            &BTreeMap::new(),
        )
        .expect("open the local store");
        Self {
            store,
            dir: Some(dir),
            _cleanup: None,
        }
    }

    /// An S3 store under a fresh prefix of the test bucket.
    fn s3() -> Self {
        Self::s3_at(&support::unique())
    }

    fn s3_at(prefix: &str) -> Self {
        let url = s3_url(prefix);
        let cleanup = Cleanup::new(format!("objects under {url}"), {
            let url = url.clone();
            move || async move { delete_all(&url).await }
        });
        let store = Store::open(&url, &s3_options()).expect("open the S3 store");
        Self {
            store,
            dir: None,
            _cleanup: Some(cleanup),
        }
    }

    fn os(&self) -> std::sync::Arc<dyn ObjectStore> {
        self.store.object_store()
    }
}

fn s3_url(prefix: &str) -> String {
    let (_, bucket) = support::s3_target();
    if prefix.is_empty() {
        format!("s3://{bucket}")
    } else {
        format!("s3://{bucket}/{prefix}")
    }
}

fn s3_options() -> BTreeMap<String, String> {
    let (endpoint, _) = support::s3_target();
    [
        ("aws_endpoint_url", endpoint.as_str()),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
        ("aws_region", "us-east-1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Deletes every object of the store at `url` (opened afresh: clean-up runs on its own
/// runtime).
async fn delete_all(url: &str) {
    let store = match Store::open(url, &s3_options()) {
        Ok(s) => s.object_store(),
        Err(e) => {
            eprintln!("cleanup of {url}: {e}");
            return;
        }
    };
    let paths: Vec<Path> = match store.list(None).map_ok(|m| m.location).try_collect().await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cleanup of {url}: {e}");
            return;
        }
    };
    for p in paths {
        if let Err(e) = store.delete(&p).await {
            eprintln!("cleanup of {url}/{p}: {e}");
        }
    }
}

// Each conformance test below, on both backends.
conformance!(
    [
        local => { let s = super::TestStore::local(); assert_eq!(s.store.kind(), "file"); s },
        s3 => { let s = super::TestStore::s3(); assert_eq!(s.store.kind(), "s3"); s },
    ],
    [
        put_get_head_round_trip,
        ranged_reads,
        list_by_prefix_and_delimiter,
        delete_removes_the_object,
        missing_keys_are_not_found,
        ping_answers,
    ]
);

// ---------------------------------------------------------------------------------------------
// Helpers

async fn put(s: &TestStore, key: &str, body: &'static [u8]) {
    s.os()
        .put(&Path::from(key), PutPayload::from_static(body))
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn read(s: &TestStore, key: &str) -> Bytes {
    s.os()
        .get(&Path::from(key))
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
        .bytes()
        .await
        .expect("read body")
}

async fn get_with(s: &TestStore, key: &str, range: GetRange) -> (Bytes, std::ops::Range<u64>) {
    let result = s
        .os()
        .get_opts(
            &Path::from(key),
            GetOptions {
                range: Some(range.clone()),
                ..GetOptions::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("get {key} {range:?}: {e}"));
    let range = result.range.clone();
    (result.bytes().await.expect("read body"), range)
}

async fn list(s: &TestStore, prefix: Option<&str>) -> Vec<String> {
    let prefix = prefix.map(Path::from);
    let mut keys: Vec<String> = s
        .os()
        .list(prefix.as_ref())
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list");
    keys.sort();
    keys
}

fn assert_not_found<T: std::fmt::Debug>(result: object_store::Result<T>, what: &str) {
    match result {
        Err(object_store::Error::NotFound { .. }) => {}
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Conformance tests

async fn put_get_head_round_trip(s: &TestStore) {
    let key = "datasets/ds/art-1/zarr.json";
    put(s, key, b"{\"zarr_format\":3}").await;
    assert_eq!(
        read(s, key).await,
        Bytes::from_static(b"{\"zarr_format\":3}")
    );

    let meta = s.os().head(&Path::from(key)).await.expect("head");
    assert_eq!(meta.location, Path::from(key));
    assert_eq!(meta.size, 17);

    let got = s.os().get(&Path::from(key)).await.expect("get");
    assert_eq!(got.meta.size, 17);
    assert_eq!(got.range, 0..17);

    // Overwrite replaces the whole object.
    put(s, key, b"{}").await;
    assert_eq!(read(s, key).await, Bytes::from_static(b"{}"));
    assert_eq!(s.os().head(&Path::from(key)).await.expect("head").size, 2);
}

async fn ranged_reads(s: &TestStore) {
    let key = "blob/digits";
    put(s, key, b"0123456789").await;
    let os = s.os();

    assert_eq!(
        os.get_range(&Path::from(key), 2..5)
            .await
            .expect("get_range"),
        Bytes::from_static(b"234")
    );
    assert_eq!(
        get_with(s, key, GetRange::Bounded(2..5)).await,
        (Bytes::from_static(b"234"), 2..5)
    );
    assert_eq!(
        get_with(s, key, GetRange::Offset(8)).await,
        (Bytes::from_static(b"89"), 8..10)
    );
    assert_eq!(
        get_with(s, key, GetRange::Suffix(3)).await,
        (Bytes::from_static(b"789"), 7..10),
        "a suffix range reads the last bytes"
    );
    assert_eq!(
        get_with(s, key, GetRange::Bounded(8..100)).await.0,
        Bytes::from_static(b"89"),
        "a range past the end is truncated"
    );
    assert_eq!(
        os.get_ranges(&Path::from(key), &[0..2, 5..7, 9..10])
            .await
            .expect("get_ranges"),
        vec![
            Bytes::from_static(b"01"),
            Bytes::from_static(b"56"),
            Bytes::from_static(b"9"),
        ]
    );
}

/// The paths as strings, sorted.
fn sorted<'a>(paths: impl IntoIterator<Item = &'a Path>) -> Vec<String> {
    let mut v: Vec<String> = paths.into_iter().map(ToString::to_string).collect();
    v.sort();
    v
}

async fn list_by_prefix_and_delimiter(s: &TestStore) {
    for key in ["top", "a/1", "a/2", "a/b/3", "ab/4", "c/5"] {
        put(s, key, b"x").await;
    }

    assert_eq!(
        list(s, None).await,
        vec!["a/1", "a/2", "a/b/3", "ab/4", "c/5", "top"]
    );
    assert_eq!(
        list(s, Some("a")).await,
        vec!["a/1", "a/2", "a/b/3"],
        "a prefix matches whole path segments (not ab/)"
    );
    assert_eq!(list(s, Some("a/b")).await, vec!["a/b/3"]);
    assert!(list(s, Some("nothing")).await.is_empty());

    let listing = s
        .os()
        .list_with_delimiter(Some(&Path::from("a")))
        .await
        .expect("list_with_delimiter");
    let objects = sorted(listing.objects.iter().map(|m| &m.location));
    assert_eq!(objects, vec!["a/1", "a/2"]);
    assert_eq!(sorted(&listing.common_prefixes), vec!["a/b"]);
    assert!(listing.objects.iter().all(|m| m.size == 1));

    let root = s
        .os()
        .list_with_delimiter(None)
        .await
        .expect("list_with_delimiter");
    assert_eq!(sorted(&root.common_prefixes), vec!["a", "ab", "c"]);
    assert_eq!(
        root.objects
            .iter()
            .map(|m| m.location.to_string())
            .collect::<Vec<_>>(),
        vec!["top"]
    );
}

async fn delete_removes_the_object(s: &TestStore) {
    put(s, "d/keep", b"k").await;
    put(s, "d/drop", b"d").await;
    s.os().delete(&Path::from("d/drop")).await.expect("delete");
    assert_not_found(
        s.os().head(&Path::from("d/drop")).await,
        "head after delete",
    );
    assert_not_found(
        s.os().get(&Path::from("d/drop")).await.map(|_| ()),
        "get after delete",
    );
    assert_eq!(list(s, Some("d")).await, vec!["d/keep"]);
    assert_eq!(read(s, "d/keep").await, Bytes::from_static(b"k"));
}

async fn missing_keys_are_not_found(s: &TestStore) {
    let missing = Path::from("datasets/none/missing.bin");
    assert_not_found(s.os().head(&missing).await, "head");
    assert_not_found(s.os().get(&missing).await.map(|_| ()), "get");
    assert_not_found(s.os().get_range(&missing, 0..4).await, "get_range");
    assert_not_found(
        s.os()
            .get_opts(
                &missing,
                GetOptions {
                    range: Some(GetRange::Suffix(4)),
                    ..GetOptions::default()
                },
            )
            .await
            .map(|_| ()),
        "suffix get",
    );
}

async fn ping_answers(s: &TestStore) {
    s.store.ping().await.expect("ping of an empty store");
    put(s, "_ready_probe", b"probe").await;
    s.store.ping().await.expect("ping with the probe present");
}

// ---------------------------------------------------------------------------------------------
// Store itself

#[test]
fn version_prefix_layout() {
    assert_eq!(
        Store::version_prefix(
            &climate_domain::DatasetId::new("era5-t2m-europe").expect("valid"),
            "01j0abc"
        ),
        "datasets/era5-t2m-europe/01j0abc"
    );
}

#[test]
fn open_rejects_unsupported_urls() {
    for url in [
        "gs://bucket/prefix",
        "ftp://host/x",
        "/plain/path",
        "s3://",
        "s3:///prefix",
        "",
    ] {
        match Store::open(url, &BTreeMap::new()) {
            Err(StoreError::UnsupportedUrl(u)) => assert_eq!(u, url),
            other => panic!("{url:?}: expected UnsupportedUrl, got {other:?}"),
        }
    }
}

#[test]
fn open_rejects_unknown_options_and_accepts_any_case() {
    let mut options = BTreeMap::new();
    options.insert("aws_region".to_owned(), "us-east-1".to_owned());
    options.insert("aws_no_such_option".to_owned(), "1".to_owned());
    match Store::open("s3://bucket/prefix", &options) {
        Err(StoreError::UnknownOption(k)) => assert_eq!(k, "aws_no_such_option"),
        other => panic!("expected UnknownOption, got {other:?}"),
    }

    let mut options = BTreeMap::new();
    options.insert("AWS_REGION".to_owned(), "eu-west-1".to_owned());
    options.insert("Aws_Allow_Http".to_owned(), "true".to_owned());
    let store = Store::open("s3://bucket/prefix", &options).expect("known keys in any case");
    assert_eq!(store.kind(), "s3");
}

#[tokio::test]
async fn local_store_writes_under_its_directory() {
    let s = TestStore::local();
    put(&s, "datasets/ds/a/zarr.json", b"{}").await;
    let dir = s.dir.as_ref().expect("local store has a dir").path();
    assert_eq!(
        std::fs::read(dir.join("datasets/ds/a/zarr.json")).expect("file on disk"),
        b"{}"
    );

    let nested = dir.join("nested/root");
    let store = Store::open(&format!("file://{}", nested.display()), &BTreeMap::new())
        .expect("open creates the directory");
    assert!(nested.is_dir());
    store.ping().await.expect("ping");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_prefix_isolates_keys() {
    let a_prefix = support::unique();
    let a = TestStore::s3_at(&a_prefix);
    let b = TestStore::s3();
    put(&a, "datasets/ds/art/zarr.json", b"from a").await;

    assert_not_found(
        b.os().head(&Path::from("datasets/ds/art/zarr.json")).await,
        "another prefix does not see the object",
    );
    assert!(
        list(&b, None).await.is_empty(),
        "another prefix lists nothing"
    );
    assert_eq!(list(&a, None).await, vec!["datasets/ds/art/zarr.json"]);

    // The bucket root sees it under the prefix, so the prefix really is applied.
    let root = Store::open(&s3_url(""), &s3_options()).expect("open the bucket root");
    let under = Path::from(format!("{a_prefix}/datasets/ds/art/zarr.json"));
    let body = root
        .object_store()
        .get(&under)
        .await
        .expect("the object is stored under the prefix")
        .bytes()
        .await
        .expect("read body");
    assert_eq!(body, Bytes::from_static(b"from a"));
}
