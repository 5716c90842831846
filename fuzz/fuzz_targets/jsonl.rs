//! quiver's JSONL lines (entries and documents) and version manifests: any bytes are a
//! record or an error naming a field; a manifest that validates holds no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_import::jsonl;
use quiver_model::{validate, Kind, NewVersion};

/// Whether a NUL character is in any string of `v`, keys included.
fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

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
                let stored: serde_json::Value =
                    serde_json::from_str(&canonical).expect("canonical JSON parses");
                assert!(!has_nul(&stored), "a NUL passed validation: {canonical}");
            }
        }
    }
});
