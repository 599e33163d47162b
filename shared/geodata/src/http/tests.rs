use super::*;

#[test]
fn urls_are_redacted_and_keyed() {
    assert_eq!(
        redact_url("https://user:secret@example.org/a/b.tif?token=abc"),
        "https://example.org/a/b.tif?…"
    );
    assert_eq!(
        cache_key("https://data.worldpop.org/GIS/Population/2026/SLE/sle pop.tif").as_deref(),
        Some("cache/http/data.worldpop.org/GIS/Population/2026/SLE/sle_20pop.tif")
    );
    let a = cache_key("http://127.0.0.1:8080/x.nc?a=1");
    let b = cache_key("http://127.0.0.1:8080/x.nc?a=2");
    assert!(a.is_some() && a != b, "{a:?} {b:?}");
    assert!(cache_key("http://h/../../etc/passwd").is_some_and(|k| !k.contains("..")));
}
