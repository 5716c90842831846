//! `quiver install`: resolve a reference, download the chosen version's content and
//! verify it against the sha256 resolution gave, refusing a mismatch; and `quiver stats`:
//! an entry's or a namespace's counted downloads with a small terminal chart.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use quiver_model::Kind;
use reqwest::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::client::{print_json, Client};
use crate::resolve_cli::{encode, reference};
use crate::Remote;

#[derive(Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The entry's kind.
    pub kind: Kind,
    /// `namespace/name` with an optional `@range` (`alice/fmt@^1.2`); no range means latest.
    pub reference: String,
    /// Where to put it: `<out>/<namespace>/<name>@<version>`.
    #[arg(long, default_value = "quiver_modules")]
    pub out: PathBuf,
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The bytes, if their sha256 is `expected` (`sha256:<hex>` or bare hex); else an error
/// naming both hashes.
pub(crate) fn verify(expected: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let want = expected
        .strip_prefix("sha256:")
        .unwrap_or(expected)
        .to_ascii_lowercase();
    let got = sha256_hex(bytes);
    if want != got {
        bail!(
            "refusing the download: its sha256 is sha256:{got}, but the registry resolved \
             sha256:{want} (the content changed since it was published, or in transit)"
        );
    }
    Ok(())
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("an install path has a folder")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

pub async fn install(a: InstallArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let (ns, name, range) = reference(&a.reference)?;
    let mut path = format!("/api/v1/resolve/{}/{ns}/{name}", a.kind);
    if let Some(r) = &range {
        path.push_str(&format!("?range={}", encode(r)));
    }
    let Some(r) = client.call_cached(Method::GET, &path, None).await? else {
        bail!("{} {ns}/{name} not found", a.kind);
    };
    let version = r["version"]
        .as_str()
        .context("the resolution names no version")?;
    let Some(hash) = r["content_hash"].as_str() else {
        bail!(
            "{} {ns}/{name}@{version} declares no content hash: nothing to install{}",
            a.kind,
            r["source"]["url"]
                .as_str()
                .map_or(String::new(), |u| format!(" (its source: {u})"))
        );
    };
    for w in r["warnings"].as_array().into_iter().flatten() {
        eprintln!("warning: {}", w.as_str().unwrap_or(""));
    }
    let target = a.out.join(&ns).join(format!("{name}@{version}"));
    // Installed already, unchanged: nothing to fetch (works offline from the cache).
    if let Ok(have) = std::fs::read(&target) {
        if verify(hash, &have).is_ok() {
            if a.remote.json {
                return print_json(&install_report(
                    &a, &ns, &name, version, hash, &target, false,
                ));
            }
            println!(
                "{ns}/{name}@{version} is installed at {} ({hash})",
                target.display()
            );
            return Ok(());
        }
    }
    let download = format!(
        "/api/v1/entries/{}/{ns}/{name}/versions/{version}/content",
        a.kind
    );
    let Some(bytes) = client.get_bytes(&download).await? else {
        bail!(
            "{} {ns}/{name}@{version}: the registry holds no content for it",
            a.kind
        );
    };
    verify(hash, &bytes)?;
    write_atomically(&target, &bytes)?;
    if a.remote.json {
        return print_json(&install_report(
            &a, &ns, &name, version, hash, &target, true,
        ));
    }
    println!(
        "installed {} {ns}/{name}@{version} -> {} ({hash}, {} bytes)",
        a.kind,
        target.display(),
        bytes.len()
    );
    Ok(())
}

fn install_report(
    a: &InstallArgs,
    ns: &str,
    name: &str,
    version: &str,
    hash: &str,
    target: &Path,
    downloaded: bool,
) -> Value {
    serde_json::json!({
        "kind": a.kind, "namespace": ns, "name": name, "version": version,
        "content_hash": hash, "path": target.display().to_string(), "downloaded": downloaded,
    })
}

#[derive(Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// `KIND namespace/name` for an entry (`module alice/fmt`), or a namespace alone.
    #[arg(required = true, num_args = 1..=2)]
    pub target: Vec<String>,
    /// First UTC day of the window (YYYY-MM-DD; default 29 days before --to).
    #[arg(long)]
    pub from: Option<String>,
    /// Last UTC day of the window (default today).
    #[arg(long)]
    pub to: Option<String>,
}

pub async fn stats(a: StatsArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let mut path = match a.target.as_slice() {
        [ns] => format!("/api/v1/namespaces/{ns}/stats"),
        [kind, full] => {
            let kind: Kind = kind.parse()?;
            let (ns, name) = crate::client::split_name(full)?;
            format!("/api/v1/entries/{kind}/{ns}/{name}/stats")
        }
        _ => bail!("give KIND namespace/name, or a namespace"),
    };
    let mut q = Vec::new();
    if let Some(f) = &a.from {
        q.push(format!("from={}", encode(f)));
    }
    if let Some(t) = &a.to {
        q.push(format!("to={}", encode(t)));
    }
    if !q.is_empty() {
        path.push('?');
        path.push_str(&q.join("&"));
    }
    let Some(s) = client.call(Method::GET, &path, None).await? else {
        bail!("{} not found", a.target.join(" "));
    };
    if a.remote.json {
        return print_json(&s);
    }
    print!("{}", render_stats(&s));
    Ok(())
}

/// Eight levels of a bar.
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A day series as one line of bars (days without downloads as a space).
pub(crate) fn sparkline(counts: &[u64]) -> String {
    let max = counts.iter().copied().max().unwrap_or(0);
    counts
        .iter()
        .map(|&c| {
            if c == 0 || max == 0 {
                ' '
            } else {
                BARS[((c * 8).div_ceil(max) as usize).clamp(1, 8) - 1]
            }
        })
        .collect()
}

fn render_stats(s: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let title = match (&s["entry"], s["namespace"].as_str()) {
        (e, _) if e.is_object() => format!(
            "{} {}/{}",
            e["kind"].as_str().unwrap_or("?"),
            e["namespace"].as_str().unwrap_or("?"),
            e["name"].as_str().unwrap_or("?")
        ),
        (_, Some(ns)) => format!("namespace {ns}"),
        _ => "?".into(),
    };
    let daily: Vec<u64> = s["daily"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| n(&d["count"]))
        .collect();
    let mut out = format!(
        "{title}: {} downloads in all, {} in the last 7 days, {} in the last 30\n",
        n(&s["total"]),
        n(&s["last_7_days"]),
        n(&s["last_30_days"])
    );
    out.push_str(&format!(
        "{} |{}| {}  (peak {} a day)\n",
        s["from"].as_str().unwrap_or(""),
        sparkline(&daily),
        s["to"].as_str().unwrap_or(""),
        daily.iter().max().copied().unwrap_or(0)
    ));
    for v in s["versions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<16} {:>10} in all {:>10} in the window\n",
            v["version"].as_str().unwrap_or("?"),
            n(&v["total"]),
            n(&v["in_window"])
        ));
    }
    for e in s["entries"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<40} {:>10} in the window\n",
            format!(
                "{} {}",
                e["entry"]["kind"].as_str().unwrap_or("?"),
                e["entry"]["name"].as_str().unwrap_or("?")
            ),
            n(&e["in_window"])
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_refuses_changed_bytes() {
        let h = sha256_hex(b"hello");
        assert!(verify(&format!("sha256:{h}"), b"hello").is_ok());
        assert!(verify(&h.to_uppercase(), b"hello").is_ok());
        let e = verify(&format!("sha256:{h}"), b"hellO").unwrap_err();
        assert!(e.to_string().contains("refusing"), "{e}");
    }

    #[test]
    fn sparklines_scale_to_the_peak() {
        assert_eq!(sparkline(&[0, 1, 4, 8]), " ▁▄█");
        assert_eq!(sparkline(&[0, 0]), "  ");
        assert_eq!(sparkline(&[]), "");
    }

    #[test]
    fn renders_an_entrys_stats() {
        let s = serde_json::json!({
            "entry": {"kind": "module", "namespace": "alice", "name": "fmt"},
            "total": 12, "last_7_days": 3, "last_30_days": 12,
            "from": "2026-12-01", "to": "2026-12-03",
            "daily": [{"date": "2026-12-01", "count": 0}, {"date": "2026-12-02", "count": 2},
                      {"date": "2026-12-03", "count": 1}],
            "versions": [{"version": "1.0.0", "total": 12, "in_window": 3}]
        });
        let out = render_stats(&s);
        assert!(out.starts_with("module alice/fmt: 12 downloads in all, 3 in the last 7 days"));
        assert!(
            out.contains("2026-12-01 | █▄| 2026-12-03  (peak 2 a day)"),
            "{out}"
        );
        assert!(out.contains("1.0.0"));
    }
}
