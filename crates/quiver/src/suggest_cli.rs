//! `quiver suggest`: which skills fit a project. Reads the project's manifest
//! (`package.json`, `requirements.txt`, `pyproject.toml`, `Cargo.toml`; by default the
//! first of them found in the current folder) and/or packages named on the command line,
//! and prints the ranked skills with the packages each matched.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{print_json, Client};
use crate::Remote;

/// The manifests looked for in the current folder, in this order.
const MANIFESTS: &[&str] = &[
    "package.json",
    "pyproject.toml",
    "requirements.txt",
    "Cargo.toml",
];

#[derive(Args)]
pub struct SuggestArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Packages by name or `ecosystem:name` (`react`, `pypi:requests`).
    pub packages: Vec<String>,
    /// The project's manifest (default: the first of package.json, pyproject.toml,
    /// requirements.txt, Cargo.toml in the current folder, when no package is named).
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The ecosystem of package names given without one (default npm).
    #[arg(long)]
    pub ecosystem: Option<String>,
    /// Leave out development-only dependencies.
    #[arg(long)]
    pub no_dev: bool,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

pub async fn run(a: SuggestArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let manifest = match &a.manifest {
        Some(p) => Some(p.clone()),
        None if a.packages.is_empty() => MANIFESTS
            .iter()
            .map(|m| Path::new(m).to_path_buf())
            .find(|p| p.is_file()),
        None => None,
    };
    if manifest.is_none() && a.packages.is_empty() {
        bail!(
            "name packages, or give --manifest (no {} here)",
            MANIFESTS.join(", ")
        );
    }
    let mut body = json!({
        "packages": a.packages,
        "ecosystem": a.ecosystem,
        "include_dev": !a.no_dev,
        "limit": a.limit,
    });
    if let Some(path) = &manifest {
        let content =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let filename = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        body["manifest"] = json!({"filename": filename, "content": content});
    }
    let r = client
        .call_cached(Method::POST, "/api/v1/skills/suggest", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&r);
    }
    print!("{}", render(&r, manifest.as_deref()));
    Ok(())
}

/// The answer as text for a terminal.
fn render(r: &Value, manifest: Option<&Path>) -> String {
    let mut out = String::new();
    let packages = r["packages"].as_array().cloned().unwrap_or_default();
    let known = packages.iter().filter(|p| !p["entry"].is_null()).count();
    out.push_str(&format!(
        "{} package{}{}, {} known to the registry\n",
        packages.len(),
        if packages.len() == 1 { "" } else { "s" },
        manifest.map_or(String::new(), |m| format!(" from {}", m.display())),
        known
    ));
    let skills = r["skills"].as_array().cloned().unwrap_or_default();
    if skills.is_empty() {
        out.push_str("no skill maps to these packages\n");
    }
    for (i, s) in skills.iter().enumerate() {
        let matched: Vec<String> = s["matches"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| {
                format!(
                    "{}{} ({:.0}%{})",
                    m["package"].as_str().unwrap_or(""),
                    if m["dev"].as_bool() == Some(true) {
                        " [dev]"
                    } else {
                        ""
                    },
                    m["confidence"].as_f64().unwrap_or(0.0) * 100.0,
                    m["source"]
                        .as_str()
                        .map_or(String::new(), |s| format!(", {s}"))
                )
            })
            .collect();
        out.push_str(&format!(
            "{:>2}. {}/{}  score {:.2}\n    {}\n    fits: {}\n",
            i + 1,
            s["namespace"].as_str().unwrap_or(""),
            s["name"].as_str().unwrap_or(""),
            s["score"].as_f64().unwrap_or(0.0),
            s["description"].as_str().unwrap_or(""),
            matched.join(", ")
        ));
    }
    let unknown: Vec<&str> = r["unknown"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !unknown.is_empty() {
        out.push_str(&format!("not in the registry: {}\n", unknown.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_skills_with_their_reasons() {
        let r = json!({
            "skills": [{"namespace": "vercel-labs", "name": "react-rules", "score": 2.1,
                "description": "React rules", "matches": [
                    {"package": "react", "dev": false, "confidence": 1.0, "source": "curated"},
                    {"package": "eslint", "dev": true, "confidence": 0.8, "source": null}]}],
            "packages": [{"entry": "react"}, {"entry": "eslint"}, {"entry": null}],
            "unknown": ["npm:left-padded"]
        });
        let text = render(&r, Some(Path::new("package.json")));
        assert!(
            text.starts_with("3 packages from package.json, 2 known"),
            "{text}"
        );
        assert!(
            text.contains(" 1. vercel-labs/react-rules  score 2.10"),
            "{text}"
        );
        assert!(
            text.contains("fits: react (100%, curated), eslint [dev] (80%)"),
            "{text}"
        );
        assert!(
            text.contains("not in the registry: npm:left-padded"),
            "{text}"
        );
    }
}
