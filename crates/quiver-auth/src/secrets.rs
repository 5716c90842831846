//! Secrets: password hashes (argon2id, PHC strings), API tokens (random, prefixed,
//! stored only as a sha256 hash), comparing a presented secret in constant time, and
//! keeping secrets out of `Debug` output ([`Redacted`], [`redact_url`]).

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use quiver_model::{Error, Result};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// Every API token starts with this, so that secret scanners (and people) recognize one.
pub const TOKEN_PREFIX: &str = "qvr_";

/// Random bytes in a token: 256 bits of entropy.
const TOKEN_BYTES: usize = 32;

/// Passwords shorter than this are refused at registration.
pub const MIN_PASSWORD_LEN: usize = 10;
/// Longer ones too: argon2 hashes any length, but nobody types a kilobyte.
pub const MAX_PASSWORD_LEN: usize = 1024;

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| Error::internal("reading the OS random source", e))?;
    Ok(b)
}

/// Check a password's length (the only rule: length is what makes a password hard to guess).
pub fn check_password(password: &str) -> Result<()> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_LEN || password.len() > MAX_PASSWORD_LEN {
        return Err(Error::invalid(
            "password",
            format!("must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// Hash a password with argon2id (the crate's default parameters: 19 MiB, 2 passes, as
/// OWASP recommends) and a fresh 16-byte salt. The result is a PHC string
/// (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) that carries its own parameters, so
/// stronger parameters later still verify old hashes.
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>()?)
        .map_err(|e| Error::internal("encoding a salt", e))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| Error::internal("hashing a password", e))
}

/// Whether `password` matches a PHC string made by [`hash_password`]. A malformed stored
/// hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A PHC string to verify against when the user does not exist, so that a login for an
/// unknown name costs the same time as one with a wrong password.
pub fn dummy_hash() -> &'static str {
    static H: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    H.get_or_init(|| hash_password("not a real password, only for timing").unwrap_or_default())
}

/// A new API token: `qvr_` and 43 base64url characters of 256 random bits. Shown to its
/// owner once; only [`token_hash`] of it is stored.
pub fn generate_token() -> Result<String> {
    let bytes = random_bytes::<TOKEN_BYTES>()?;
    Ok(format!("{TOKEN_PREFIX}{}", base64url(&bytes)))
}

/// Whether a bearer string looks like one of our API tokens (prefix and length).
pub fn looks_like_token(s: &str) -> bool {
    s.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The stored form of a token: sha256, hex.
///
/// Why a fast hash and not argon2 as for passwords: a token is 256 random bits, so there
/// is nothing to guess by brute force — a slow hash only protects low-entropy secrets.
/// Whoever reads the database gets digests that are useless as bearer credentials, and a
/// plain digest lets every request find its token with one indexed lookup (a salted hash
/// would need a scan).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new salt for [`address_hash`]: 256 random bits, hex.
pub fn generate_salt() -> Result<String> {
    Ok(hex::encode(random_bytes::<32>()?))
}

/// How the audit log keeps a client address: the first 64 bits of sha256 over a salt of
/// the registry and the address, hex. The same client gives the same value (so its writes
/// can be followed); without the salt, the value does not give the address back (a plain
/// hash of an IPv4 address is reversed by trying all 2^32).
pub fn address_hash(salt: &str, address: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(b"|");
    h.update(address.as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// Whether a presented secret (a bearer token, a sign-in state) equals the expected one, in
/// a time that depends on the lengths only, not on where the two first differ (subtle's
/// `ConstantTimeEq`), so that timing answers do not reveal a secret byte by byte.
pub fn constant_time_eq(presented: &str, expected: &str) -> bool {
    presented.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// What `Debug` output shows in place of a secret: `.field("password", &Redacted)` in a
/// hand-written `Debug` of a struct that holds one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redacted;

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A database URL fit for logs and `Debug` output: the password, and any query parameter
/// named like one (`password`, `sslpassword`), replaced by `***`; the rest (user, host,
/// database) kept, since it tells which server is meant. A string that is not a URL (a
/// libpq `key=value` string, which may hold a password anywhere) is replaced whole.
pub fn redact_url(raw: &str) -> String {
    const MASK: &str = "***";
    let Ok(mut url) = url::Url::parse(raw) else {
        return "<redacted: not a URL>".to_string();
    };
    if url.password().is_some() && url.set_password(Some(MASK)).is_err() {
        return "<redacted>".to_string();
    }
    let secret_key = |k: &str| k.to_ascii_lowercase().contains("password");
    if url.query_pairs().any(|(k, _)| secret_key(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_key(&k) {
                    MASK.into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

fn base64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 1);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(!h.contains("correct horse"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password(
            "correct horse battery",
            "not a phc string"
        ));
        // A fresh salt each time.
        assert_ne!(h, hash_password("correct horse battery").unwrap());
        assert!(!verify_password("x", dummy_hash()));
    }

    #[test]
    fn addresses_hash_per_salt() {
        let salt = generate_salt().unwrap();
        assert_eq!(salt.len(), 64);
        let a = address_hash(&salt, "192.0.2.7");
        assert_eq!(a.len(), 16);
        assert!(!a.contains("192.0.2"), "the address is not in its hash");
        assert_eq!(a, address_hash(&salt, "192.0.2.7"), "stable for one salt");
        assert_ne!(a, address_hash(&salt, "192.0.2.8"));
        assert_ne!(a, address_hash(&generate_salt().unwrap(), "192.0.2.7"));
    }

    #[test]
    fn password_length_rule() {
        assert!(check_password("short").is_err());
        assert!(check_password("long enough now").is_ok());
        assert!(check_password(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn tokens_are_prefixed_random_and_hashed() {
        let a = generate_token().unwrap();
        let b = generate_token().unwrap();
        assert_ne!(a, b);
        assert!(looks_like_token(&a), "{a}");
        assert!(!looks_like_token("qvr_short"));
        assert!(!looks_like_token(&a.replace("qvr_", "abc_")));
        let h = token_hash(&a);
        assert_eq!(h.len(), 64);
        assert_eq!(h, token_hash(&a));
        assert_ne!(h, token_hash(&b));
        assert!(!h.contains(&a[4..]));
    }

    #[test]
    fn constant_time_comparison() {
        let t = generate_token().unwrap();
        assert!(constant_time_eq(&t, &t.clone()));
        assert!(!constant_time_eq(&t[..t.len() - 1], &t), "a prefix");
        assert!(!constant_time_eq("", &t));
        let mut other = t.clone().into_bytes();
        other[10] ^= 1;
        assert!(!constant_time_eq(std::str::from_utf8(&other).unwrap(), &t));
    }

    #[test]
    fn urls_lose_their_passwords() {
        let r = redact_url("postgres://quiver:s3cr%21t@db.internal:5432/quiver?sslmode=require");
        assert_eq!(
            r,
            "postgres://quiver:***@db.internal:5432/quiver?sslmode=require"
        );
        let r = redact_url("postgres://quiver@db/q?password=s3cret&application_name=a");
        assert!(!r.contains("s3cret"), "{r}");
        assert!(
            r.contains("password=***") && r.contains("application_name=a"),
            "{r}"
        );
        // Nothing to hide: unchanged.
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        // Not a URL: nothing of it is shown.
        let r = redact_url("host=db user=q password=s3cret");
        assert!(!r.contains("s3cret") && !r.contains("db"), "{r}");
        assert_eq!(format!("{:?}", Redacted), "<redacted>");
    }

    #[test]
    fn base64url_lengths() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(base64url(&[0u8; 32]).len(), 43);
    }
}
