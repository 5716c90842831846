//! Skill suggestions (seed 003): which skills fit a project's packages.
//!
//! A skill says which packages it is for with `maps_to` relations to `package` entries
//! (each with a confidence and where the mapping came from: the skills registry, the
//! curated mappings file, a person). A project names its packages, as a list or as its
//! manifest (`manifest.rs`); each package is looked up as its ecosystem spells it (PyPI
//! after PEP 503 normalization, npm case-insensitively with its scope), and the skills
//! that map to it are ranked:
//!
//! ```text
//! score = Σ over the project's matched packages (confidence × weight) + 0.25 × popularity
//! ```
//!
//! where weight is 1 for a dependency and 0.5 for a development-only one, and popularity is
//! the skill's normalized popularity (0..1) — a tie-breaker between skills that fit
//! equally. Every suggestion carries its reasons: the packages it matched with the
//! mapping's confidence and source and the range the project asks for. Packages the
//! registry does not hold are listed as unknown, never an error. Skills the caller may
//! not see are never suggested, and a private package is unknown to them.

pub mod manifest;

use std::collections::HashMap;

use quiver_auth::Action;
use quiver_model::{Entry, EntryKey, Error, Kind, RelationKind, Result, Status};
use quiver_store::{PreferenceAction, SkillPreference};
use serde::{Deserialize, Serialize};

use crate::{Caller, Registry};
pub use manifest::Dependency;

/// Most packages in one request.
pub const MAX_PACKAGES: usize = 2_000;
/// Most skills answered.
pub const MAX_SKILLS: usize = 100;
/// Ecosystems whose packages quiver can hold.
pub const ECOSYSTEMS: &[&str] = &["npm", "pypi", "cargo"];
/// Weight of a development-only dependency's match.
const DEV_WEIGHT: f64 = 0.5;
/// Weight of the skill's popularity in its score.
const POPULARITY_WEIGHT: f64 = 0.25;

/// A manifest uploaded as text.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ManifestUpload {
    /// Its file name: `package.json`, `requirements.txt` (or `requirements-*.txt`),
    /// `pyproject.toml` or `Cargo.toml`.
    pub filename: String,
    /// Its text.
    pub content: String,
}

/// What to suggest skills for.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestRequest {
    /// Packages by name (`react`, `@tanstack/react-query`), or `ecosystem:name`
    /// (`pypi:requests`).
    #[serde(default)]
    pub packages: Vec<String>,
    /// The ecosystem of names given without one (default `npm`).
    #[serde(default)]
    pub ecosystem: Option<String>,
    /// A project manifest; its dependencies are added to `packages`.
    #[serde(default)]
    pub manifest: Option<ManifestUpload>,
    /// Count development-only dependencies (default true).
    #[serde(default)]
    pub include_dev: Option<bool>,
    /// Most skills answered (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Why a skill was suggested: one package it maps to.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SkillMatch {
    pub ecosystem: String,
    /// The package as the registry holds it.
    pub package: String,
    /// The package as the project spelled it.
    pub requested: String,
    /// The version range the project asks for, when it gave one.
    pub range: Option<String>,
    /// A development-only dependency (its match weighs half).
    pub dev: bool,
    /// The mapping's confidence, 0..1.
    pub confidence: f64,
    /// Where the mapping came from (`package-mappings`, `registry`, …).
    pub source: Option<String>,
}

/// One suggested skill.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SkillSuggestion {
    pub namespace: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: String,
    pub latest_version: Option<String>,
    /// The skill's normalized popularity, 0..1.
    pub popularity: f64,
    pub score: f64,
    /// The caller pinned it for one of the packages: it ranks first.
    pub pinned: bool,
    /// The packages it matched, strongest first.
    pub matches: Vec<SkillMatch>,
}

/// One package of the request, and what the registry knows of it.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PackageLookup {
    pub ecosystem: String,
    /// As the project spelled it.
    pub name: String,
    /// As the registry holds it (`null`: unknown).
    pub entry: Option<String>,
    pub range: Option<String>,
    pub dev: bool,
    /// How many skills map to it.
    pub skills: usize,
}

/// The answer of a suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Suggestions {
    /// Ranked, best first.
    pub skills: Vec<SkillSuggestion>,
    /// Every package asked about, in the order given.
    pub packages: Vec<PackageLookup>,
    /// The packages the registry does not hold (`ecosystem:name`).
    pub unknown: Vec<String>,
}

/// Packages to suggest for, grouped by package.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkSuggestRequest {
    /// Packages by name or `ecosystem:name`.
    pub packages: Vec<String>,
    /// The ecosystem of names given without one (default `npm`).
    #[serde(default)]
    pub ecosystem: Option<String>,
    /// Most skills per package (default 10, at most 100).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// A skill that maps to one package.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PackageSkill {
    pub namespace: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: String,
    pub popularity: f64,
    pub confidence: f64,
    pub source: Option<String>,
    /// confidence + 0.25 × popularity.
    pub score: f64,
    /// The caller pinned it for this package: it ranks first.
    pub pinned: bool,
}

/// The skills of one package.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PackageSkills {
    pub ecosystem: String,
    /// As asked.
    pub name: String,
    /// As the registry holds it (`null`: unknown).
    pub entry: Option<String>,
    /// Ranked, best first.
    pub skills: Vec<PackageSkill>,
}

/// The answer of a bulk suggestion.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BulkSuggestions {
    /// One group per distinct package, in the order given.
    pub packages: Vec<PackageSkills>,
    /// The packages the registry does not hold (`ecosystem:name`).
    pub unknown: Vec<String>,
}

/// A package reference (`name` or `ecosystem:name`) read against a default ecosystem.
fn package_ref(field: &str, s: &str, default: &str) -> Result<(String, String)> {
    let s = s.trim();
    let (eco, name) = match s.split_once(':') {
        Some((e, n)) if ECOSYSTEMS.contains(&e) => (e.to_string(), n.trim().to_string()),
        Some((e, _)) => {
            return Err(Error::invalid(
                field,
                format!(
                    "`{e}` is not an ecosystem quiver holds packages of ({})",
                    ECOSYSTEMS.join(", ")
                ),
            ))
        }
        None => (default.to_string(), s.to_string()),
    };
    if name.is_empty() || name.len() > 214 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            field,
            "a package name of 1 to 214 printable characters",
        ));
    }
    Ok((eco, name))
}

fn default_ecosystem(e: &Option<String>) -> Result<String> {
    match e.as_deref() {
        None => Ok("npm".into()),
        Some(e) if ECOSYSTEMS.contains(&e) => Ok(e.to_string()),
        Some(e) => Err(Error::invalid(
            "ecosystem",
            format!("`{e}` is not one of {}", ECOSYSTEMS.join(", ")),
        )),
    }
}

fn limit_of(limit: Option<usize>) -> Result<usize> {
    match limit {
        None => Ok(10),
        Some(n) if (1..=MAX_SKILLS).contains(&n) => Ok(n),
        Some(_) => Err(Error::invalid(
            "limit",
            format!("must be between 1 and {MAX_SKILLS}"),
        )),
    }
}

/// A skill that maps to a package, with the mapping.
struct Mapped {
    skill: Entry,
    confidence: f64,
    source: Option<String>,
    /// The caller pinned it for this package.
    pinned: bool,
}

/// What one lookup found: the package as held, and the skills mapping to it.
struct Found {
    entry: Option<String>,
    skills: Vec<Mapped>,
}

impl Registry {
    /// For each `(ecosystem, name)`: the package as the registry holds it (if the caller
    /// may see it) and the skills that map to it, strongest first. Two reads whatever the
    /// number of packages: the names as spelled, then npm names in lower case for those
    /// not found (new npm names must be lower case; old ones rarely differ only in case).
    async fn lookup(&self, caller: &Caller, refs: &[(String, String)]) -> Result<Vec<Found>> {
        let keys: Vec<EntryKey> = refs
            .iter()
            .map(|(eco, name)| EntryKey::new(Kind::Package, eco, name))
            .collect();
        let mut found = self.db.store.incoming(&keys, RelationKind::MapsTo).await?;
        let retry: Vec<usize> = (0..refs.len())
            .filter(|&i| {
                found[i].is_none()
                    && refs[i].0 == "npm"
                    && refs[i].1.to_ascii_lowercase() != refs[i].1
            })
            .collect();
        if !retry.is_empty() {
            let lower: Vec<EntryKey> = retry
                .iter()
                .map(|&i| EntryKey::new(Kind::Package, "npm", refs[i].1.to_ascii_lowercase()))
                .collect();
            let again = self.db.store.incoming(&lower, RelationKind::MapsTo).await?;
            for (i, f) in retry.into_iter().zip(again) {
                found[i] = f;
            }
        }
        let prefs = self.preferences_of(caller).await?;
        let refs_eco: Vec<String> = refs.iter().map(|(e, _)| e.clone()).collect();
        let mut seen: HashMap<EntryKey, bool> = HashMap::new();
        let mut out = Vec::with_capacity(found.len());
        for (idx, f) in found.into_iter().enumerate() {
            let Some(inc) = f else {
                out.push(Found {
                    entry: None,
                    skills: vec![],
                });
                continue;
            };
            if !self.may_read(caller, &inc.entry, &mut seen).await? {
                out.push(Found {
                    entry: None,
                    skills: vec![],
                });
                continue;
            }
            let package_key = manifest::package_key(&refs_eco[idx], &inc.entry.name);
            let mut skills = Vec::new();
            for (r, skill) in inc.relations {
                // Drafts, skills in review and archived ones are not suggested.
                if skill.kind != Kind::Skill
                    || !matches!(skill.status, Status::Published | Status::Deprecated)
                    || skill.disabled.is_some()
                    || !self.may_read(caller, &skill, &mut seen).await?
                {
                    continue;
                }
                let pref = prefs.of(&refs_eco[idx], &package_key, &skill.key());
                if pref == Some(PreferenceAction::Hide) {
                    continue;
                }
                skills.push(Mapped {
                    skill,
                    confidence: r.confidence.unwrap_or(0.5).clamp(0.0, 1.0),
                    source: r.source,
                    pinned: pref == Some(PreferenceAction::Pin),
                });
            }
            out.push(Found {
                entry: Some(inc.entry.name),
                skills,
            });
        }
        Ok(out)
    }

    /// Whether the caller may read `e` (remembered per entry for one request).
    async fn may_read(
        &self,
        caller: &Caller,
        e: &Entry,
        seen: &mut HashMap<EntryKey, bool>,
    ) -> Result<bool> {
        let key = e.key();
        if let Some(ok) = seen.get(&key) {
            return Ok(*ok);
        }
        let ok = self
            .decide(caller, Action::Read, &crate::entry_target(e))
            .await?
            .is_allowed();
        seen.insert(key, ok);
        Ok(ok)
    }

    /// Skills for a project's packages, ranked with their reasons.
    pub async fn suggest_skills(
        &self,
        caller: &Caller,
        req: SuggestRequest,
    ) -> Result<Suggestions> {
        let default = default_ecosystem(&req.ecosystem)?;
        let limit = limit_of(req.limit)?;
        let include_dev = req.include_dev.unwrap_or(true);
        let mut deps: Vec<Dependency> = Vec::new();
        for (i, p) in req.packages.iter().enumerate() {
            let (ecosystem, name) = package_ref(&format!("packages[{i}]"), p, &default)?;
            deps.push(Dependency {
                ecosystem,
                name,
                range: None,
                dev: false,
            });
        }
        if let Some(m) = &req.manifest {
            deps.extend(manifest::parse(&m.filename, &m.content)?);
        }
        if deps.is_empty() {
            return Err(Error::invalid(
                "packages",
                "name at least one package, or upload a manifest that has dependencies",
            ));
        }
        if deps.len() > MAX_PACKAGES {
            return Err(Error::invalid(
                "packages",
                format!("at most {MAX_PACKAGES} packages"),
            ));
        }
        // Each package once (a dependency wins over a dev-dependency of the same name).
        let mut order: Vec<(String, String)> = Vec::new();
        let mut by_key: HashMap<(String, String), Dependency> = HashMap::new();
        for d in deps {
            let key = (
                d.ecosystem.clone(),
                manifest::package_key(&d.ecosystem, &d.name),
            );
            match by_key.get_mut(&key) {
                Some(seen) => {
                    if seen.dev && !d.dev {
                        *seen = d;
                    }
                }
                None => {
                    order.push(key.clone());
                    by_key.insert(key, d);
                }
            }
        }
        let kept: Vec<&Dependency> = order
            .iter()
            .map(|key| &by_key[key])
            .filter(|d| include_dev || !d.dev)
            .collect();
        let refs: Vec<(String, String)> = kept
            .iter()
            .map(|d| (d.ecosystem.clone(), d.name.clone()))
            .collect();
        let founds = self.lookup(caller, &refs).await?;
        let mut packages = Vec::with_capacity(kept.len());
        let mut unknown = Vec::new();
        let mut ranked: HashMap<EntryKey, SkillSuggestion> = HashMap::new();
        for (d, found) in kept.into_iter().zip(founds) {
            if found.entry.is_none() {
                unknown.push(format!("{}:{}", d.ecosystem, d.name));
            }
            packages.push(PackageLookup {
                ecosystem: d.ecosystem.clone(),
                name: d.name.clone(),
                entry: found.entry.clone(),
                range: d.range.clone(),
                dev: d.dev,
                skills: found.skills.len(),
            });
            let weight = if d.dev { DEV_WEIGHT } else { 1.0 };
            for m in found.skills {
                let s = ranked
                    .entry(m.skill.key())
                    .or_insert_with(|| SkillSuggestion {
                        namespace: m.skill.namespace.clone(),
                        name: m.skill.name.clone(),
                        display_name: m.skill.display_name.clone(),
                        description: m.skill.description.clone(),
                        latest_version: m.skill.latest_version.clone(),
                        popularity: m.skill.popularity.score,
                        score: POPULARITY_WEIGHT * m.skill.popularity.score,
                        pinned: false,
                        matches: vec![],
                    });
                s.score += m.confidence * weight;
                s.pinned |= m.pinned;
                s.matches.push(SkillMatch {
                    ecosystem: d.ecosystem.clone(),
                    package: found.entry.clone().unwrap_or_default(),
                    requested: d.name.clone(),
                    range: d.range.clone(),
                    dev: d.dev,
                    confidence: m.confidence,
                    source: m.source,
                });
            }
        }
        let mut skills: Vec<SkillSuggestion> = ranked.into_values().collect();
        for s in &mut skills {
            s.matches.sort_by(|a, b| {
                b.confidence
                    .total_cmp(&a.confidence)
                    .then(a.dev.cmp(&b.dev))
                    .then(a.package.cmp(&b.package))
            });
        }
        skills.sort_by(|a, b| {
            b.pinned
                .cmp(&a.pinned)
                .then(b.score.total_cmp(&a.score))
                .then_with(|| a.namespace.cmp(&b.namespace))
                .then_with(|| a.name.cmp(&b.name))
        });
        skills.truncate(limit);
        Ok(Suggestions {
            skills,
            packages,
            unknown,
        })
    }

    /// The skills of one package, ranked (not found: the registry does not hold it, or
    /// the caller may not see it).
    pub async fn skills_of_package(
        &self,
        caller: &Caller,
        ecosystem: &str,
        name: &str,
        limit: Option<usize>,
    ) -> Result<PackageSkills> {
        if !ECOSYSTEMS.contains(&ecosystem) {
            return Err(Error::invalid(
                "ecosystem",
                format!("`{ecosystem}` is not one of {}", ECOSYSTEMS.join(", ")),
            ));
        }
        let (eco, name) = package_ref("name", name, ecosystem)?;
        let limit = limit_of(limit)?;
        let found = self
            .lookup(caller, &[(eco.clone(), name.clone())])
            .await?
            .pop()
            .unwrap_or(Found {
                entry: None,
                skills: vec![],
            });
        if found.entry.is_none() {
            return Err(Error::not_found(format!("package {eco}/{name}")));
        }
        Ok(group(eco, name, found, limit))
    }

    /// Skills grouped by package, for many packages at once.
    pub async fn bulk_suggest_skills(
        &self,
        caller: &Caller,
        req: BulkSuggestRequest,
    ) -> Result<BulkSuggestions> {
        let default = default_ecosystem(&req.ecosystem)?;
        let limit = limit_of(req.limit)?;
        if req.packages.is_empty() || req.packages.len() > MAX_PACKAGES {
            return Err(Error::invalid(
                "packages",
                format!("1 to {MAX_PACKAGES} packages"),
            ));
        }
        let mut refs = Vec::with_capacity(req.packages.len());
        for (i, p) in req.packages.iter().enumerate() {
            let (eco, name) = package_ref(&format!("packages[{i}]"), p, &default)?;
            let key = (eco.clone(), manifest::package_key(&eco, &name));
            if !refs.iter().any(|(k, _, _)| *k == key) {
                refs.push((key, eco, name));
            }
        }
        let lookups: Vec<(String, String)> = refs
            .iter()
            .map(|(_, e, n)| (e.clone(), n.clone()))
            .collect();
        let founds = self.lookup(caller, &lookups).await?;
        let mut out = BulkSuggestions {
            packages: Vec::with_capacity(refs.len()),
            unknown: vec![],
        };
        for ((_, eco, name), found) in refs.into_iter().zip(founds) {
            if found.entry.is_none() {
                out.unknown.push(format!("{eco}:{name}"));
            }
            out.packages.push(group(eco, name, found, limit));
        }
        Ok(out)
    }
}

/// A user's preferences, by ecosystem and package (`*`: every package).
#[derive(Default)]
struct Prefs(HashMap<(String, String), Vec<(EntryKey, PreferenceAction)>>);

impl Prefs {
    /// The preference for `skill` on a package: the package's own, else the `*` one.
    fn of(&self, ecosystem: &str, package: &str, skill: &EntryKey) -> Option<PreferenceAction> {
        let find = |p: &str| {
            self.0
                .get(&(ecosystem.to_string(), p.to_string()))
                .and_then(|l| l.iter().find(|(k, _)| k == skill))
                .map(|(_, a)| *a)
        };
        find(package).or_else(|| find("*"))
    }
}

/// A change of one preference.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPreference {
    /// npm, pypi or cargo.
    pub ecosystem: String,
    /// The package (as the ecosystem spells it), or `*` for every package.
    pub package: String,
    /// The skill, `namespace/name`.
    pub skill: String,
    /// `pin` (always first), `hide` (never), or `clear`.
    pub action: String,
}

impl Registry {
    async fn preferences_of(&self, caller: &Caller) -> Result<Prefs> {
        let Some(account) = caller.account() else {
            return Ok(Prefs::default());
        };
        let mut prefs = Prefs::default();
        for p in self.db.store.skill_preferences(account.id).await? {
            prefs
                .0
                .entry((p.ecosystem, p.package))
                .or_default()
                .push((p.skill, p.action));
        }
        Ok(prefs)
    }

    /// The caller's skill preferences (signed-in users and their tokens).
    pub async fn skill_preferences(&self, caller: &Caller) -> Result<Vec<SkillPreference>> {
        let account = caller
            .account()
            .ok_or_else(|| Error::unauthorized("sign in to keep skill preferences"))?;
        self.db.store.skill_preferences(account.id).await
    }

    /// Pin, hide or clear a skill for a package in the caller's suggestions.
    pub async fn set_skill_preference(
        &self,
        caller: &Caller,
        req: SetPreference,
    ) -> Result<Vec<SkillPreference>> {
        let account = caller
            .account()
            .ok_or_else(|| Error::unauthorized("sign in to keep skill preferences"))?;
        let eco = default_ecosystem(&Some(req.ecosystem.clone()))?;
        let package = match req.package.trim() {
            "*" => "*".to_string(),
            p => manifest::package_key(&eco, &package_ref("package", p, &eco)?.1),
        };
        let action = match req.action.as_str() {
            "pin" => Some(PreferenceAction::Pin),
            "hide" => Some(PreferenceAction::Hide),
            "clear" => None,
            other => {
                return Err(Error::invalid(
                    "action",
                    format!("`{other}`: pin, hide or clear"),
                ))
            }
        };
        let (ns, name) = req
            .skill
            .split_once('/')
            .filter(|(n, m)| !n.is_empty() && !m.is_empty())
            .ok_or_else(|| Error::invalid("skill", "write it namespace/name"))?;
        let key = EntryKey::new(Kind::Skill, ns, name);
        // Only a skill the caller may see (a hidden one is as missing as an absent one).
        let skill = match self.visible_entry(caller, &key).await {
            Ok(s) => s,
            Err(e) if e.code == quiver_model::ErrorCode::NotFound => {
                return Err(Error::invalid("skill", format!("no skill {ns}/{name}")))
            }
            Err(e) => return Err(e),
        };
        self.db
            .store
            .set_skill_preference(
                account.id,
                &eco,
                &package,
                &skill.key(),
                action,
                jiff::Timestamp::now(),
            )
            .await?;
        self.db.store.skill_preferences(account.id).await
    }
}

/// One package's skills, ranked and cut to `limit`.
fn group(ecosystem: String, name: String, found: Found, limit: usize) -> PackageSkills {
    let mut skills: Vec<PackageSkill> = found
        .skills
        .into_iter()
        .map(|m| PackageSkill {
            score: m.confidence + POPULARITY_WEIGHT * m.skill.popularity.score,
            namespace: m.skill.namespace,
            name: m.skill.name,
            display_name: m.skill.display_name,
            description: m.skill.description,
            popularity: m.skill.popularity.score,
            confidence: m.confidence,
            source: m.source,
            pinned: m.pinned,
        })
        .collect();
    skills.sort_by(|a, b| {
        b.pinned
            .cmp(&a.pinned)
            .then(b.score.total_cmp(&a.score))
            .then_with(|| a.namespace.cmp(&b.namespace))
            .then_with(|| a.name.cmp(&b.name))
    });
    skills.truncate(limit);
    PackageSkills {
        ecosystem,
        name,
        entry: found.entry,
        skills,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_refs() {
        assert_eq!(
            package_ref("p", "pypi:Requests", "npm").unwrap(),
            ("pypi".into(), "Requests".into())
        );
        assert_eq!(
            package_ref("p", "@types/node", "npm").unwrap(),
            ("npm".into(), "@types/node".into())
        );
        let e = package_ref("packages[2]", "gem:rails", "npm").unwrap_err();
        assert!(e.to_string().contains("packages[2]"), "{e}");
        assert!(package_ref("p", "  ", "npm").is_err());
    }
}
