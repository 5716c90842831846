//! The ops profiles' expression checker: any text is accepted or a syntax error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_import::formats::ops::expr;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = expr::check(text);
    }
});
