//! The one cursor codec. Every paged list (entries, documents, jobs, the audit log,
//! search results, versions) hands out cursors made here: `base64url("<list>:<JSON>")`,
//! where `<list>` names the list and the JSON is the position after the page. Callers
//! treat cursors as opaque; a cursor of one list is refused by another; anything that is
//! not a cursor this server made (too long, not base64, another list, a position of the
//! wrong shape) is a 422 on `cursor`.

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::{Error, Result};

/// The longest cursor read; longer ones are refused before decoding.
pub const MAX_LEN: usize = 2048;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The cursor of `list` at `position`.
pub fn encode<T: Serialize + ?Sized>(list: &str, position: &T) -> String {
    let json = serde_json::to_string(position).unwrap_or_default();
    B64.encode(format!("{list}:{json}"))
}

/// The position a cursor of `list` holds.
pub fn decode<T: DeserializeOwned>(list: &str, cursor: &str) -> Result<T> {
    let bad = || Error::invalid("cursor", "is not a cursor this server issued for this list");
    if cursor.len() > MAX_LEN {
        return Err(bad());
    }
    let bytes = B64.decode(cursor).map_err(|_| bad())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let json = text
        .strip_prefix(list)
        .and_then(|rest| rest.strip_prefix(':'))
        .ok_or_else(bad)?;
    serde_json::from_str(json).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip() {
        assert_eq!(decode::<i64>("job", &encode("job", &42i64)).unwrap(), 42);
        let key = "tool/ns/a:b \u{e9}";
        assert_eq!(decode::<String>("key", &encode("key", key)).unwrap(), key);
        let pair = ("1.2.3".to_string(), 7u64);
        assert_eq!(
            decode::<(String, u64)>("version", &encode("version", &pair)).unwrap(),
            pair
        );
    }

    #[test]
    fn foreign_and_broken_cursors_are_refused_naming_the_field() {
        let job = encode("job", &1i64);
        for bad in [job.as_str(), "", "!!!", "am9iOg", &"A".repeat(MAX_LEN + 1)] {
            let e = decode::<i64>("audit", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("cursor"), "{bad}");
        }
        // The right list with a position of the wrong shape.
        assert!(decode::<i64>("key", &encode("key", "x")).is_err());
    }
}
