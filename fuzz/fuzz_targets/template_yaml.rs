//! Any document to the template loader: no panic, and whatever loads is valid.
#![no_main]

use climate_infra::templates::TemplateCatalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(catalog) = TemplateCatalog::from_yaml("fuzz", text) {
        for t in catalog.iter() {
            assert!(t.template.validate().is_ok(), "{}", t.template.id);
        }
    }
});
