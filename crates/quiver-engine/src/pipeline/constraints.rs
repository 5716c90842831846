//! Platform constraints from a validation matrix: the minimal set of a recipe's metadata
//! fields (`supported_os`, `supported_arch`, `supported_libc`, `unsupported_platforms`)
//! that admits exactly the environments that passed, as the third seed's merge job
//! writes them: none when every environment passed; `supported_libc = ["glibc"]` when only
//! musl failed; `unsupported_platforms = ["linux/arm64"]` when one combination failed.
//!
//! Every combination of the three `supported_*` fields is tried, each completed by
//! `unsupported_platforms` for the failures it leaves when those can be named by
//! `os/arch` without dropping a pass; the cheapest exact one wins (fewer fields, and
//! `supported_*` before a list of platforms). When no combination is exact (a failure
//! shares its `os/arch` and libc with nothing that passed but cannot be singled out), the
//! one that drops the fewest passes while admitting no failure is taken: a recipe must
//! never claim a platform where it failed.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{json, Map, Value};

/// An environment's platform: `linux-glibc-x86_64` → (`linux`, `amd64`, `glibc`);
/// `linux-alpine-musl-arm64` → (`linux`, `arm64`, `musl`); `darwin-arm64` → (`darwin`,
/// `arm64`, none).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub libc: Option<String>,
}

pub fn platform(environment: &str) -> Platform {
    let parts: Vec<&str> = environment.split('-').collect();
    let os = match parts.first().copied().unwrap_or("") {
        "macos" | "osx" => "darwin".to_string(),
        o => o.to_string(),
    };
    let arch = match parts.last().copied().unwrap_or("") {
        "x86_64" | "x64" | "amd64" => "amd64".to_string(),
        "aarch64" | "arm64" => "arm64".to_string(),
        a => a.to_string(),
    };
    let libc = (os == "linux").then(|| {
        if parts.contains(&"musl") {
            "musl".to_string()
        } else {
            "glibc".to_string()
        }
    });
    Platform { os, arch, libc }
}

/// The constraint fields, as a recipe's metadata spells them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Constraints {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_os: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_arch: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supported_libc: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported_platforms: Option<Vec<String>>,
}

impl Constraints {
    pub fn is_empty(&self) -> bool {
        *self == Constraints::default()
    }

    /// Whether a platform is admitted.
    pub fn admits(&self, p: &Platform) -> bool {
        let has =
            |l: &Option<Vec<String>>, v: &str| l.as_ref().is_none_or(|l| l.iter().any(|x| x == v));
        has(&self.supported_os, &p.os)
            && has(&self.supported_arch, &p.arch)
            // libc constrains Linux only.
            && p.libc.as_deref().is_none_or(|l| has(&self.supported_libc, l))
            && !self
                .unsupported_platforms
                .as_ref()
                .is_some_and(|u| u.contains(&format!("{}/{}", p.os, p.arch)))
    }

    /// Write the fields into a recipe manifest's `metadata`, replacing earlier ones.
    pub fn apply(&self, manifest: &mut Value) {
        if !manifest.is_object() {
            return;
        }
        let meta = manifest
            .as_object_mut()
            .expect("an object")
            .entry("metadata")
            .or_insert_with(|| json!({}));
        let Some(meta) = meta.as_object_mut() else {
            return;
        };
        for (k, v) in [
            ("supported_os", &self.supported_os),
            ("supported_arch", &self.supported_arch),
            ("supported_libc", &self.supported_libc),
            ("unsupported_platforms", &self.unsupported_platforms),
        ] {
            match v {
                Some(v) => {
                    meta.insert(k.to_string(), json!(v));
                }
                None => {
                    meta.remove(k);
                }
            }
        }
    }

    pub fn to_json(&self) -> Map<String, Value> {
        match serde_json::to_value(self) {
            Ok(Value::Object(m)) => m,
            _ => Map::new(),
        }
    }
}

/// The constraints of a matrix of (environment, passed). `None` when nothing passed.
pub fn derive(matrix: &[(String, bool)]) -> Option<Constraints> {
    let all: Vec<(Platform, bool)> = matrix.iter().map(|(e, ok)| (platform(e), *ok)).collect();
    let passed: Vec<&Platform> = all.iter().filter(|(_, ok)| *ok).map(|(p, _)| p).collect();
    if passed.is_empty() {
        return None;
    }
    if all.iter().all(|(_, ok)| *ok) {
        return Some(Constraints::default());
    }
    let set = |f: &dyn Fn(&Platform) -> Option<String>| -> Vec<String> {
        passed
            .iter()
            .filter_map(|p| f(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let oses = set(&|p| Some(p.os.clone()));
    let arches = set(&|p| Some(p.arch.clone()));
    let libcs = set(&|p| p.libc.clone());
    // (passes dropped, cost, constraints): the least of these wins.
    let mut best: Option<(usize, u32, Constraints)> = None;
    for mask in 0u8..8 {
        let mut c = Constraints::default();
        let mut cost = 0u32;
        if mask & 1 != 0 {
            c.supported_os = Some(oses.clone());
            cost += 10;
        }
        if mask & 2 != 0 {
            c.supported_arch = Some(arches.clone());
            cost += 10;
        }
        if mask & 4 != 0 {
            if libcs.is_empty() {
                continue;
            }
            c.supported_libc = Some(libcs.clone());
            cost += 10;
        }
        // Failures this admits: name their os/arch unless a pass shares it... in which
        // case naming it would drop that pass too.
        let leaks: BTreeSet<String> = all
            .iter()
            .filter(|(p, ok)| !ok && c.admits(p))
            .map(|(p, _)| format!("{}/{}", p.os, p.arch))
            .collect();
        if !leaks.is_empty() {
            c.unsupported_platforms = Some(leaks.iter().cloned().collect());
            cost += 11 + leaks.len() as u32;
        }
        let dropped = passed.iter().filter(|p| !c.admits(p)).count();
        let better = best
            .as_ref()
            .is_none_or(|(d, k, _)| (dropped, cost) < (*d, *k));
        if better {
            best = Some((dropped, cost, c));
        }
    }
    best.map(|(_, _, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIVE: [&str; 5] = [
        "linux-glibc-x86_64",
        "linux-glibc-arm64",
        "linux-musl-x86_64",
        "darwin-x86_64",
        "darwin-arm64",
    ];

    fn matrix(failed: &[&str]) -> Vec<(String, bool)> {
        FIVE.iter()
            .map(|e| (e.to_string(), !failed.contains(e)))
            .collect()
    }

    fn strs(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn all_pass_is_unconstrained_and_none_pass_is_nothing() {
        assert_eq!(derive(&matrix(&[])), Some(Constraints::default()));
        assert_eq!(derive(&matrix(&FIVE)), None);
    }

    #[test]
    fn only_musl_failed() {
        let c = derive(&matrix(&["linux-musl-x86_64"])).unwrap();
        assert_eq!(
            c,
            Constraints {
                supported_libc: strs(&["glibc"]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn one_combination_failed() {
        let c = derive(&matrix(&["linux-glibc-arm64"])).unwrap();
        assert_eq!(
            c,
            Constraints {
                unsupported_platforms: strs(&["linux/arm64"]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn arm64_failed_everywhere() {
        let c = derive(&matrix(&["linux-glibc-arm64", "darwin-arm64"])).unwrap();
        assert_eq!(
            c,
            Constraints {
                supported_arch: strs(&["amd64"]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn only_macos_passes() {
        let c = derive(&matrix(&[
            "linux-glibc-x86_64",
            "linux-glibc-arm64",
            "linux-musl-x86_64",
        ]))
        .unwrap();
        assert_eq!(
            c,
            Constraints {
                supported_os: strs(&["darwin"]),
                ..Default::default()
            }
        );
    }

    #[test]
    fn musl_and_one_combo() {
        let c = derive(&matrix(&["linux-musl-x86_64", "darwin-x86_64"])).unwrap();
        for (e, ok) in matrix(&["linux-musl-x86_64", "darwin-x86_64"]) {
            assert_eq!(c.admits(&platform(&e)), ok, "{e} under {c:?}");
        }
    }

    #[test]
    fn never_admits_a_failure_even_when_inexact() {
        // musl arm64 failed while glibc arm64 and musl x86_64 passed: no field singles it
        // out without dropping a pass; the failure must still not be admitted.
        let m: Vec<(String, bool)> = [
            ("linux-glibc-x86_64", true),
            ("linux-glibc-arm64", true),
            ("linux-musl-x86_64", true),
            ("linux-musl-arm64", false),
        ]
        .iter()
        .map(|(e, ok)| (e.to_string(), *ok))
        .collect();
        let c = derive(&m).unwrap();
        assert!(!c.admits(&platform("linux-musl-arm64")), "{c:?}");
        let kept = m
            .iter()
            .filter(|(e, ok)| *ok && c.admits(&platform(e)))
            .count();
        assert_eq!(kept, 2, "drops as few passes as it can: {c:?}");
    }

    #[test]
    fn every_matrix_of_five_is_safe_and_keeps_what_it_can() {
        for bits in 1u32..32 {
            let m: Vec<(String, bool)> = FIVE
                .iter()
                .enumerate()
                .map(|(i, e)| (e.to_string(), bits & (1 << i) != 0))
                .collect();
            let c = derive(&m).unwrap();
            for (e, ok) in &m {
                if !ok {
                    assert!(!c.admits(&platform(e)), "{e} failed but {c:?} admits it");
                }
            }
        }
    }

    #[test]
    fn environments_parse() {
        assert_eq!(
            platform("linux-alpine-musl-arm64"),
            Platform {
                os: "linux".into(),
                arch: "arm64".into(),
                libc: Some("musl".into())
            }
        );
        assert_eq!(platform("darwin-x86_64").libc, None);
    }

    #[test]
    fn apply_replaces_fields() {
        let mut m = json!({"metadata": {"name": "x", "supported_os": ["linux"]}});
        Constraints {
            supported_libc: strs(&["glibc"]),
            ..Default::default()
        }
        .apply(&mut m);
        assert_eq!(
            m,
            json!({"metadata": {"name": "x", "supported_libc": ["glibc"]}})
        );
    }
}
