//! The client's cache of what it fetched for reads that a project's tooling repeats
//! (`quiver suggest`, `quiver resolve`, `quiver info`): each answer is kept with its
//! `ETag` and time, revalidated with `If-None-Match` when the server can be reached, and
//! answered from the cache, with a note on standard error saying so and as of when, when
//! it cannot.
//!
//! Where: `QUIVER_CACHE_DIR`, else `$XDG_CACHE_HOME/quiver`, else `~/.cache/quiver`. One
//! file per request (server, method, path and body, by their sha256), written to a
//! temporary file and renamed, so a crash never leaves half an answer.

use std::path::PathBuf;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The cache folder (`None`: no place for one; the client then works without it).
pub fn dir() -> Option<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = non_empty("QUIVER_CACHE_DIR") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = non_empty("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("quiver"));
    }
    non_empty("HOME").map(|h| PathBuf::from(h).join(".cache").join("quiver"))
}

/// A cached answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Cached {
    pub etag: Option<String>,
    /// When it was fetched (RFC 3339).
    pub at: String,
    pub body: Value,
}

fn key(server: &str, method: &str, path: &str, body: Option<&Value>) -> String {
    let mut h = Sha256::new();
    for part in [
        server.trim_end_matches('/'),
        method,
        path,
        &body.map(Value::to_string).unwrap_or_default(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

fn file(server: &str, method: &str, path: &str, body: Option<&Value>) -> Option<PathBuf> {
    dir().map(|d| d.join(format!("{}.json", key(server, method, path, body))))
}

/// The cached answer of a request, if any (an unreadable file is none).
pub fn load(server: &str, method: &str, path: &str, body: Option<&Value>) -> Option<Cached> {
    let text = std::fs::read_to_string(file(server, method, path, body)?).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(Cached {
        etag: v["etag"].as_str().map(str::to_string),
        at: v["at"].as_str()?.to_string(),
        body: v.get("body")?.clone(),
    })
}

/// Keep an answer (best effort: a cache that cannot be written is no cache).
pub fn store(
    server: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    etag: Option<&str>,
    answer: &Value,
) {
    let Some(target) = file(server, method, path, body) else {
        return;
    };
    let Some(parent) = target.parent() else {
        return;
    };
    if std::fs::create_dir_all(parent).is_err() {
        return;
    }
    let text =
        json!({"etag": etag, "at": jiff::Timestamp::now().to_string(), "body": answer}).to_string();
    let tmp = target.with_extension(format!("tmp{}", std::process::id()));
    if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, &target).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_by_every_part() {
        let b = json!({"packages": ["react"]});
        let k = key("http://a", "POST", "/x", Some(&b));
        assert_eq!(k, key("http://a/", "POST", "/x", Some(&b)));
        assert_ne!(k, key("http://b", "POST", "/x", Some(&b)));
        assert_ne!(k, key("http://a", "GET", "/x", Some(&b)));
        assert_ne!(k, key("http://a", "POST", "/y", Some(&b)));
        assert_ne!(k, key("http://a", "POST", "/x", None));
    }
}
