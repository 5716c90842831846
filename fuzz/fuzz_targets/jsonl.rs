//! quiver's JSONL lines (entries and documents) and version manifests: any bytes are a
//! record or an error naming a field; a manifest that validates holds no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_import::jsonl;
use quiver_model::{validate, Kind, NewVersion};

fuzz_target!(|data: &[u8]| {
    let _ = jsonl::parse_line(data);
    let _ = jsonl::parse_document_line(data);
    if let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(data) {
        for &kind in Kind::ALL {
            let mut v = NewVersion {
                version: "1.0.0".into(),
                manifest: manifest.clone(),
                changelog: None,
                breaking: false,
            };
            if let Ok((_, canonical)) = validate::new_version(kind, &mut v) {
                assert!(!canonical.contains("\\u0000"), "a NUL passed validation");
            }
        }
    }
});
