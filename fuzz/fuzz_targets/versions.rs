//! Version parsing: semver, and the PEP 440 (and near) mapping to semver. Whatever the
//! mapping answers must itself be valid semver.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_import::dataset::coerce_version;
use quiver_model::validate;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = validate::semver(text);
    if let Some(v) = coerce_version(text) {
        assert!(
            validate::semver(&v).is_ok(),
            "coerce_version({text:?}) = {v:?}, which is not semver"
        );
    }
});
