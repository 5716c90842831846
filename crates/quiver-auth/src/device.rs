//! Secrets of the device authorization grant (RFC 8628): the device code the client polls
//! with (256 random bits, like an API token, but with its own `qvd_` prefix so that it is
//! never mistaken for one) and the short user code a person types (`BCDF-GHJK`).
//!
//! Both are stored only as sha256 digests. The user code has 8 characters from a 20-letter
//! alphabet without vowels (no words, no 0/O or 1/I confusion): 20^8 ≈ 2^34 values, enough
//! for codes that live minutes and can only be approved by a signed-in user.

use quiver_model::{Error, Result};
use sha2::{Digest, Sha256};

/// Every device code starts with this.
pub const DEVICE_CODE_PREFIX: &str = "qvd_";

/// The user code alphabet: consonants only (RFC 8628 §6.1).
pub const USER_CODE_ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";

/// Characters in a user code (shown as two groups of four).
pub const USER_CODE_LEN: usize = 8;

/// A new device code: `qvd_` and 43 base64url characters.
pub fn generate_device_code() -> Result<String> {
    let token = crate::secrets::generate_token()?;
    let rest = token
        .strip_prefix(crate::secrets::TOKEN_PREFIX)
        .ok_or_else(|| Error::internal("making a device code", "unexpected token shape"))?;
    Ok(format!("{DEVICE_CODE_PREFIX}{rest}"))
}

/// A new user code, `XXXX-XXXX`. Uniform over the alphabet: bytes at or above the largest
/// multiple of 20 that fits in a byte are drawn again.
pub fn generate_user_code() -> Result<String> {
    let mut out = String::with_capacity(USER_CODE_LEN + 1);
    let limit = 256 - (256 % USER_CODE_ALPHABET.len());
    while out.len() < USER_CODE_LEN + 1 {
        let mut buf = [0u8; 16];
        getrandom::fill(&mut buf)
            .map_err(|e| Error::internal("reading the OS random source", e))?;
        for b in buf {
            if usize::from(b) >= limit {
                continue;
            }
            if out.len() == 4 {
                out.push('-');
            }
            out.push(USER_CODE_ALPHABET[usize::from(b) % USER_CODE_ALPHABET.len()] as char);
            if out.len() == USER_CODE_LEN + 1 {
                break;
            }
        }
    }
    Ok(out)
}

/// A typed user code in its canonical form (upper case, no dash or spaces), or an
/// invalid-input error naming `field`.
pub fn normalize_user_code(typed: &str, field: &str) -> Result<String> {
    let s: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if s.len() != USER_CODE_LEN || !s.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)) {
        return Err(Error::invalid(
            field,
            "is not a user code (8 letters, like BCDF-GHJK)",
        ));
    }
    Ok(s)
}

/// The stored form of a device code or a normalized user code: sha256, hex.
pub fn code_hash(code: &str) -> String {
    hex::encode(Sha256::digest(code.as_bytes()))
}

/// Whether a string looks like one of our device codes.
pub fn looks_like_device_code(s: &str) -> bool {
    s.strip_prefix(DEVICE_CODE_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_have_the_shape_and_normalize() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let c = generate_user_code().unwrap();
            assert_eq!(c.len(), 9, "{c}");
            assert_eq!(&c[4..5], "-");
            let n = normalize_user_code(&c, "user_code").unwrap();
            assert_eq!(n, c.replace('-', ""));
            assert_eq!(normalize_user_code(&c.to_lowercase(), "f").unwrap(), n);
            seen.insert(c);
        }
        assert!(seen.len() > 190, "codes repeat too often: {}", seen.len());
        assert!(
            normalize_user_code("ABCD-EFGH", "f").is_err(),
            "vowels are not in the alphabet"
        );
        assert!(normalize_user_code("BCDF-GHJ", "f").is_err());
        assert!(normalize_user_code("", "f").is_err());
        assert_eq!(normalize_user_code(" bcdf ghjk ", "f").unwrap(), "BCDFGHJK");
    }

    #[test]
    fn device_codes_are_not_api_tokens() {
        let d = generate_device_code().unwrap();
        assert!(looks_like_device_code(&d), "{d}");
        assert!(!crate::secrets::looks_like_token(&d));
        assert_ne!(d, generate_device_code().unwrap());
        assert_eq!(code_hash(&d).len(), 64);
        assert_ne!(code_hash(&d), code_hash("BCDFGHJK"));
    }
}
