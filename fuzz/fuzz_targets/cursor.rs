//! Cursor decoding: any string a client sends is an error or a position, never a panic;
//! what is encoded decodes back to itself, and only for its own list.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_model::cursor;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for list in [
        "entries",
        "documents",
        "jobs",
        "audit",
        "search",
        "versions",
    ] {
        let _ = cursor::decode::<serde_json::Value>(list, text);
        let _ = cursor::decode::<(String, i64)>(list, text);
        let _ = cursor::decode::<i64>(list, text);
    }
    let encoded = cursor::encode("versions", text);
    if encoded.len() <= cursor::MAX_LEN {
        let back: String = cursor::decode("versions", &encoded).expect("a cursor decodes");
        assert_eq!(back, text);
        assert!(cursor::decode::<String>("entries", &encoded).is_err());
    }
});
