//! Any request path to the Zarr store-key check: an accepted key can never leave the version's
//! prefix (no absolute path, no `..` or `.` segment, no backslash, no control character).
#![no_main]

use climate_domain::ids::is_store_key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|path: &str| {
    if is_store_key(path) {
        assert!(!path.starts_with('/'));
        assert!(!path.contains('\\'));
        assert!(path.chars().all(|c| c.is_ascii_graphic()));
        assert!(
            path.split('/')
                .all(|s| !s.is_empty() && s != "." && s != "..")
        );
        let joined = format!("prefix/{path}");
        let mut depth = 0i32;
        for s in joined.split('/') {
            depth += if s == ".." { -1 } else { 1 };
            assert!(depth > 0, "escapes the prefix");
        }
    }
});
