use super::*;

const MINIMAL: &str = r#"
extents:
  - extent_id: sle
    name: Sierra Leone
    bbox: [-13.5, 6.9, -10.1, 10.0]
"#;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn defaults_are_standalone() {
    let c = Config::from_yaml("t.yaml", MINIMAL, &env(&[])).expect("valid");
    assert_eq!(c.server.bind, "127.0.0.1:8000");
    assert_eq!(c.queue.url, "memory://");
    assert!(c.database_url().starts_with("sqlite://"));
    assert!(c.store_url().starts_with("file://"));
    assert_eq!(c.mode(), "standalone");
    assert_eq!(c.default_extent().extent_id.as_str(), "sle");
}

#[test]
fn substitution_and_overrides_apply() {
    let text = format!("{MINIMAL}\nname: ${{NAME:-fallback}}\nqueue:\n  url: ${{Q}}\n");
    let c = Config::from_yaml(
        "t.yaml",
        &text,
        &env(&[
            ("Q", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("CLIMATE_API__SERVER__BIND", "0.0.0.0:9000"),
            ("CLIMATE_API__WORKER__CONCURRENCY", "4"),
        ]),
    )
    .expect("valid");
    assert_eq!(c.name, "fallback");
    assert_eq!(c.queue.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    assert_eq!(c.server.bind, "0.0.0.0:9000");
    assert_eq!(c.worker.concurrency, 4);
    assert_eq!(c.mode(), "distributed");
}

#[test]
fn missing_variable_is_named() {
    let e = Config::from_yaml("t.yaml", "name: ${NOPE}", &env(&[])).expect_err("unset");
    assert!(e.to_string().contains("NOPE is not set"), "{e}");
}

#[test]
fn unknown_keys_name_file_and_path() {
    let text = format!("{MINIMAL}\nserver:\n  bnd: 1\n");
    let e = Config::from_yaml("conf/x.yaml", &text, &env(&[])).expect_err("unknown");
    let msg = e.to_string();
    assert!(msg.starts_with("conf/x.yaml: key 'server"), "{msg}");
    assert!(msg.contains("bnd"), "{msg}");
}

#[test]
fn bad_values_name_the_key() {
    let text = "extents:\n  - extent_id: sle\n    name: S\n    bbox: [1, 1, 0, 2]\n";
    let e = Config::from_yaml("x.yaml", text, &env(&[])).expect_err("bad bbox");
    assert!(e.to_string().contains("extents[0].bbox"), "{e}");
    let e = Config::from_yaml(
        "x.yaml",
        MINIMAL,
        &env(&[("CLIMATE_API__SERVER__BIND", "nonsense")]),
    )
    .expect_err("bad bind");
    assert!(e.to_string().contains("server.bind"), "{e}");
    let e = Config::from_yaml("x.yaml", "name: x\n", &env(&[])).expect_err("no extents");
    assert!(e.to_string().contains("'extents'"), "{e}");
    for hold in ["0", "99999999"] {
        let e = Config::from_yaml(
            "x.yaml",
            MINIMAL,
            &env(&[("CLIMATE_API__WORKER__MAX_DELIVERY_HOLD_SECONDS", hold)]),
        )
        .expect_err("hold out of range");
        assert!(
            e.to_string().contains("worker.max_delivery_hold_seconds"),
            "{e}"
        );
    }
}

#[test]
fn the_embedded_example_config_is_valid() {
    let c = Config::load(None, &env(&[])).expect("embedded config is valid");
    assert_eq!(c.base_dir, c.data_dir);
    assert!(c.data_dir.is_absolute(), "{}", c.data_dir.display());
}
