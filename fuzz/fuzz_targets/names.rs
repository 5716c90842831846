//! Name validation and normalization for every kind: no panic, and what validates
//! normalizes to a key that is stable (normalizing twice changes nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_model::names;
use quiver_model::Kind;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (namespace, name) = text.split_once('/').unwrap_or(("acme", text));
    let _ = names::validate_namespace(namespace);
    let pep = names::pep503(name);
    assert_eq!(names::pep503(&pep), pep, "pep503 is idempotent");
    for &kind in Kind::ALL {
        let ok = names::validate_name(kind, namespace, name).is_ok();
        let _ = names::validate_new_name(kind, namespace, name);
        let _ = names::convention_findings(kind, name);
        let key = names::name_key(kind, namespace, name);
        if ok {
            assert!(!key.is_empty());
        }
    }
});
