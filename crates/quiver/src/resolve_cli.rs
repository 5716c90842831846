//! `quiver resolve`: pin references to versions, as a lock file would, with the hashes
//! and source each declares and the warnings (yanked, deprecated, newer versions).
//! One reference asks `GET /api/v1/resolve/...`; several ask the batch form once.

use anyhow::bail;
use clap::Args;
use quiver_model::Kind;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{print_json, split_name, Client};
use crate::Remote;

#[derive(Args)]
pub struct ResolveArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The entries' kind.
    pub kind: Kind,
    /// `namespace/name` with an optional `@range` (`alice/fmt@^1.2`,
    /// `npm/@types/node@20.1.0`); no range means latest.
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// `(namespace, name, range)` of `namespace/name[@range]` (a scoped npm name's own `@`
/// is part of the name).
pub(crate) fn reference(s: &str) -> anyhow::Result<(String, String, Option<String>)> {
    let (ns, rest) = split_name(s)?;
    let (name, range) = match rest.get(1..).and_then(|r| r.find('@')) {
        Some(i) => (&rest[..=i], Some(rest[i + 2..].to_string())),
        None => (rest.as_str(), None),
    };
    if name.is_empty() || range.as_deref() == Some("") {
        bail!("'{s}' must be written namespace/name or namespace/name@range");
    }
    Ok((ns, name.to_string(), range))
}

/// Percent-encode a query value (every byte but unreserved ones).
pub(crate) fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn run(a: ResolveArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let refs = a
        .references
        .iter()
        .map(|r| reference(r))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let answers: Vec<Value> = if let [(ns, name, range)] = refs.as_slice() {
        let mut path = format!("/api/v1/resolve/{}/{ns}/{name}", a.kind);
        if let Some(r) = range {
            path.push_str(&format!("?range={}", encode(r)));
        }
        let v = client
            .call_cached(Method::GET, &path, None)
            .await?
            .unwrap_or(Value::Null);
        vec![json!({"resolved": v})]
    } else {
        let body = json!({"references": refs.iter().map(|(ns, name, range)| json!({
            "kind": a.kind, "namespace": ns, "name": name, "range": range,
        })).collect::<Vec<_>>()});
        let v = client
            .call_cached(Method::POST, "/api/v1/resolve", Some(&body))
            .await?
            .unwrap_or(Value::Null);
        v["items"].as_array().cloned().unwrap_or_default()
    };
    if a.remote.json {
        return print_json(&Value::Array(answers));
    }
    let mut failed = false;
    for (answer, r) in answers.iter().zip(&a.references) {
        print!("{}", render(r, answer));
        failed |= answer["resolved"].is_null();
    }
    if failed {
        bail!("some references did not resolve");
    }
    Ok(())
}

/// One reference's line, and its warnings.
fn render(asked: &str, a: &Value) -> String {
    let r = &a["resolved"];
    if r.is_null() {
        return format!(
            "{asked}: {} ({})\n",
            a["error"]["message"].as_str().unwrap_or("not resolved"),
            a["error"]["code"].as_str().unwrap_or("error")
        );
    }
    let mut out = format!(
        "{asked} -> {}  manifest sha256:{}",
        r["version"].as_str().unwrap_or("?"),
        r["manifest_sha256"].as_str().unwrap_or("?"),
    );
    if let Some(h) = r["content_hash"].as_str() {
        out.push_str(&format!("  content {h}"));
    }
    if let Some(u) = r["source"]["url"].as_str() {
        out.push_str(&format!("  from {u}"));
    }
    out.push('\n');
    for w in r["warnings"].as_array().into_iter().flatten() {
        out.push_str(&format!("  warning: {}\n", w.as_str().unwrap_or("")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_and_ranges() {
        let r = |s| reference(s).unwrap();
        assert_eq!(r("alice/fmt"), ("alice".into(), "fmt".into(), None));
        assert_eq!(
            r("alice/fmt@^1.2"),
            ("alice".into(), "fmt".into(), Some("^1.2".into()))
        );
        assert_eq!(
            r("npm/@types/node@20.1.0"),
            ("npm".into(), "@types/node".into(), Some("20.1.0".into()))
        );
        assert_eq!(
            r("npm/@types/node"),
            ("npm".into(), "@types/node".into(), None)
        );
        assert!(reference("alice/fmt@").is_err());
        assert!(reference("fmt").is_err());
        assert_eq!(encode(">=1, <2"), "%3E%3D1%2C%20%3C2");
    }

    #[test]
    fn renders_resolutions_and_failures() {
        let ok = json!({"resolved": {"version": "1.2.0", "manifest_sha256": "ab",
            "content_hash": "cd", "source": {"url": "https://example.invalid/x"},
            "warnings": ["a newer version is out: 2.0.0"]}});
        assert_eq!(
            render("alice/fmt@^1.2", &ok),
            "alice/fmt@^1.2 -> 1.2.0  manifest sha256:ab  content cd  from \
             https://example.invalid/x\n  warning: a newer version is out: 2.0.0\n"
        );
        let no = json!({"resolved": null, "error": {"code": "no_match", "message": "no version matches ^9"}});
        assert_eq!(
            render("alice/fmt@^9", &no),
            "alice/fmt@^9: no version matches ^9 (no_match)\n"
        );
    }
}
