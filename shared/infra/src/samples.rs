//! Sample files bundled with the binary, installed under `data_dir/samples/` at start-up so the
//! built-in `sample_*` templates can ingest offline.

use std::path::{Path, PathBuf};

const SAMPLES: &[(&str, &[u8])] = &[
    (
        "era5land_t2m_daily_2025-07_sle.nc",
        include_bytes!("../../../config/samples/era5land_t2m_daily_2025-07_sle.nc"),
    ),
    (
        "worldpop_sle_2026_1km.tif",
        include_bytes!("../../../config/samples/worldpop_sle_2026_1km.tif"),
    ),
];

/// Writes the bundled samples into `data_dir/samples` where missing or different, and returns
/// that directory.
///
/// # Errors
/// The I/O error when the directory or a file cannot be written.
pub fn install(data_dir: &Path) -> std::io::Result<PathBuf> {
    let dir = data_dir.join("samples");
    std::fs::create_dir_all(&dir)?;
    for (name, bytes) in SAMPLES {
        let path = dir.join(name);
        let same = std::fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64);
        if !same {
            // Write then rename, so a concurrent reader never sees a half-written sample. The
            // temporary name is unique per process and thread: processes starting together on
            // one data_dir (API and workers) would otherwise rename each other's file away.
            let tmp = dir.join(format!(
                ".{name}.{}.{:?}.tmp",
                std::process::id(),
                std::thread::current().id()
            ));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_installs_on_one_data_dir_all_succeed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let d = dir.path().to_owned();
                std::thread::spawn(move || install(&d))
            })
            .collect();
        for t in threads {
            t.join().expect("thread").expect("install succeeds");
        }
        for (name, bytes) in SAMPLES {
            let got = std::fs::read(dir.path().join("samples").join(name)).expect("installed");
            assert_eq!(got.len(), bytes.len(), "{name}");
        }
        let leftovers = std::fs::read_dir(dir.path().join("samples"))
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count();
        assert_eq!(leftovers, 0);
    }
}
