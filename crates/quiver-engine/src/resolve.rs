//! Resolution (seed 004): a reference such as `@alice/fmt` with a range (`^1.2`), an
//! exact version or the tag `latest` becomes one pinned version with its hashes and
//! source, for any kind.
//!
//! Rules, as package managers users know apply them:
//! - A range is a semver requirement (`^1.2`, `~1.2.3`, `>=1, <2`, `1.x`, `*`). A bare
//!   full version (`1.2.3`, or `=1.2.3`) is an exact pin, as in npm and mlld lock files.
//!   No range means `latest`.
//! - `latest` is the highest version that is neither a prerelease nor yanked.
//! - Prereleases match only a range that names a prerelease of the same
//!   `major.minor.patch` (the semver crate's rule, and npm's), or an exact pin.
//! - Yanked versions are skipped unless pinned exactly; a pinned yanked version is
//!   answered with a warning (a lock file must still install).
//! - Disabled versions (a maintainer's `POST …/versions/{v}/disable`) likewise: no range,
//!   dist-tag or `latest` answers one; an exact pin does, with a warning.
//! - A deprecated entry resolves, with its deprecation message as a warning.
//!
//! The batch form resolves a whole lock set in one call; each reference answers on its
//! own (one missing entry does not fail the others).

use quiver_model::{Entry, EntryKey, Error, Kind, Result, Status, Version};
use semver::{Version as Semver, VersionReq};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

use serde_json::Value;

use quiver_auth::Action;
use quiver_store::{AuditDiff, DistTag};

use crate::audit::Event;
use crate::{Caller, Registry};

/// Most references in one batch.
pub const MAX_BATCH: usize = 1_000;

/// One reference to resolve.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// A semver range, an exact version or `latest` (default).
    #[serde(default)]
    pub range: Option<String>,
}

/// A reference resolved to one version.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Resolved {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The range as asked (`latest` when none was given).
    pub requested: String,
    /// The version chosen.
    pub version: String,
    /// sha256 of the version's manifest (canonical JSON).
    pub manifest_sha256: String,
    /// The content's sha256 the manifest declares (`source.content_hash`, or the mlld
    /// registry's `contentHash`), as `sha256:<hex>`, if any.
    pub content_hash: Option<String>,
    /// Where the content comes from (the manifest's `source`, without its hash).
    pub source: Option<Value>,
    /// The entry's latest version.
    pub latest: Option<String>,
    pub yanked: bool,
    pub deprecated: bool,
    /// The advisories (not withdrawn) that affect the chosen version.
    pub advisories: Vec<AdvisoryNote>,
    /// The lowest version that fixes every one of them, when there is one.
    pub next_fix: Option<String>,
    /// What the caller should know: advisories, a pinned yanked version, a deprecated
    /// entry, a newer version outside the range.
    pub warnings: Vec<String>,
}

/// An advisory that affects a resolved version.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AdvisoryNote {
    pub id: String,
    pub aliases: Vec<String>,
    pub severity: quiver_store::advisories::Severity,
    pub summary: String,
    /// The versions that fix it.
    pub fixed: Vec<String>,
}

/// One reference's answer in a batch: its resolution, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BatchItem {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub requested: String,
    pub resolved: Option<Resolved>,
    /// `not_found`, `no_match`, `disabled` or `invalid_input`, when nothing resolved.
    pub error: Option<ResolveFailure>,
}

/// Why a reference did not resolve.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ResolveFailure {
    pub code: String,
    pub message: String,
}

/// A whole lock set.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// 1 to 1,000 references.
    pub references: Vec<ResolveRef>,
}

/// The answer to a lock set, in the order asked.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BatchAnswer {
    pub items: Vec<BatchItem>,
    /// How many did not resolve.
    pub failed: usize,
}

/// What a range asks for.
#[derive(Debug, Clone, PartialEq)]
enum Wanted {
    Latest,
    Exact(Semver),
    Range(VersionReq),
    /// A dist-tag the entry's maintainers set (`stable`, `beta`).
    Tag(String),
}

fn wanted(range: Option<&str>) -> Result<Wanted> {
    let r = range.map(str::trim).unwrap_or("");
    if r.is_empty() || r == "latest" {
        return Ok(Wanted::Latest);
    }
    if r.len() > 200 {
        return Err(Error::invalid("range", "at most 200 characters"));
    }
    let pin = r.strip_prefix('=').unwrap_or(r).trim();
    if let Ok(v) = Semver::parse(pin.strip_prefix('v').unwrap_or(pin)) {
        return Ok(Wanted::Exact(v));
    }
    // `1.x`, `1.2.x`: the semver crate reads `*` and `x` wildcards.
    match VersionReq::parse(r) {
        Ok(req) => Ok(Wanted::Range(req)),
        Err(_) if valid_tag(r) => Ok(Wanted::Tag(r.to_string())),
        Err(e) => Err(Error::invalid(
            "range",
            format!("`{r}` is not a semver range, an exact version or a dist-tag ({e})"),
        )),
    }
}

/// A dist-tag's name: a lowercase letter, then up to 49 lowercase letters, digits, `.`,
/// `_` or `-`, and not something that reads as a version range (as npm requires).
pub fn valid_tag(t: &str) -> bool {
    let mut chars = t.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && t.len() <= 50
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
        && VersionReq::parse(t).is_err()
}

/// Whether a range, a tag or `latest` may choose the version: neither yanked nor disabled.
fn usable(v: &Version) -> bool {
    !v.yanked && v.disabled.is_none()
}

/// The version a request chooses among `versions`, with its warnings.
fn choose<'a>(
    versions: &'a [Version],
    want: &Wanted,
) -> std::result::Result<(&'a Version, Vec<String>), String> {
    let parsed: Vec<(&Version, Semver)> = versions
        .iter()
        .filter_map(|v| Semver::parse(&v.version).ok().map(|s| (v, s)))
        .collect();
    let best = |ok: &dyn Fn(&Version, &Semver) -> bool| {
        parsed
            .iter()
            .filter(|(v, s)| ok(v, s))
            .max_by(|a, b| a.1.cmp(&b.1))
            .map(|(v, _)| *v)
    };
    match want {
        Wanted::Exact(pin) => {
            let (v, _) = parsed
                .iter()
                .find(|(_, s)| s == pin)
                .ok_or_else(|| format!("no version {pin}"))?;
            let mut warnings = Vec::new();
            if v.yanked {
                warnings.push(format!(
                    "{} is yanked{}: pinned exactly, so it is still answered",
                    v.version,
                    v.yank_reason
                        .as_deref()
                        .map_or(String::new(), |r| format!(" ({r})"))
                ));
            }
            if let Some(d) = &v.disabled {
                warnings.push(format!(
                    "{} is disabled ({}): pinned exactly, so it is still answered",
                    v.version, d.reason
                ));
            }
            Ok((v, warnings))
        }
        Wanted::Tag(t) => Err(format!("no dist-tag {t}")),
        Wanted::Latest => best(&|v, s| usable(v) && s.pre.is_empty())
            .or_else(|| best(&|v, _| usable(v)))
            .map(|v| (v, vec![]))
            .ok_or_else(|| "every version is yanked or disabled".to_string()),
        Wanted::Range(req) => {
            let v = best(&|v, s| usable(v) && req.matches(s)).ok_or_else(|| {
                let yanked = parsed.iter().any(|(v, s)| !usable(v) && req.matches(s));
                if yanked {
                    format!(
                        "only yanked or disabled versions match {req} (pin one exactly to use it)"
                    )
                } else {
                    format!("no version matches {req}")
                }
            })?;
            Ok((v, vec![]))
        }
    }
}

impl Registry {
    /// Resolve one reference to a version (not found: no such entry the caller may see,
    /// or no version answers the range).
    pub async fn resolve(&self, caller: &Caller, r: &ResolveRef) -> Result<Resolved> {
        let want = wanted(r.range.as_deref())?;
        let mut out = self.resolve_many(caller, &[(r, want)]).await?;
        out.pop()
            .unwrap_or_else(|| {
                Err(ResolveFailure {
                    code: "not_found".into(),
                    message: format!("{} {}/{}", r.kind, r.namespace, r.name),
                })
            })
            .map_err(|f| Error::not_found(f.message))
    }

    /// References resolved together: their entries, versions and tags in one read, the
    /// versions chosen, then the chosen ones' manifests in one read. Each answers on its
    /// own (`Err` of the outer result only for a failure of the registry itself).
    async fn resolve_many(
        &self,
        caller: &Caller,
        refs: &[(&ResolveRef, Wanted)],
    ) -> Result<Vec<std::result::Result<Resolved, ResolveFailure>>> {
        // Each entry once.
        let mut keys: Vec<EntryKey> = Vec::new();
        let mut slot: HashMap<EntryKey, usize> = HashMap::new();
        let mut of_ref = Vec::with_capacity(refs.len());
        for (r, _) in refs {
            let key = EntryKey::new(r.kind, &r.namespace, &r.name);
            let i = *slot.entry(key.clone()).or_insert_with(|| {
                keys.push(key);
                keys.len() - 1
            });
            of_ref.push(i);
        }
        let mut sets = self.db.store.resolution_sets(&keys).await?;
        // What the caller may not see is as missing as what does not exist.
        for set in sets.iter_mut() {
            if let Some(s) = set {
                let allowed = self
                    .decide(caller, Action::Read, &crate::entry_target(&s.entry))
                    .await?
                    .is_allowed();
                if !allowed {
                    *set = None;
                }
            }
        }
        // Choose.
        let mut picks = Vec::with_capacity(refs.len());
        let mut wanted_versions: Vec<(EntryKey, String)> = Vec::new();
        for ((r, want), &i) in refs.iter().zip(&of_ref) {
            let Some(set) = &sets[i] else {
                picks.push(failure(
                    "not_found",
                    format!("{} {}/{} not found", r.kind, r.namespace, r.name),
                ));
                continue;
            };
            let key = set.entry.key();
            // A disabled entry is never chosen by a range (or a tag); an exact pin still
            // answers, with a warning.
            if let Some(d) = &set.entry.disabled {
                if !matches!(want, Wanted::Exact(_)) {
                    picks.push(failure(
                        "disabled",
                        format!(
                            "{key} is disabled ({}): pin an exact version to use it",
                            d.reason
                        ),
                    ));
                    continue;
                }
            }
            // A tag the maintainers set is an exact pin of its version; `latest` may be
            // one.
            let tag = match want {
                Wanted::Tag(t) => Some(t.as_str()),
                Wanted::Latest => Some("latest"),
                _ => None,
            };
            let tagged = tag
                .and_then(|tag| set.tags.iter().find(|d| d.tag == tag))
                .and_then(|d| Semver::parse(&d.version).ok())
                .map(Wanted::Exact);
            match choose(&set.versions, tagged.as_ref().unwrap_or(want)) {
                // A tag is a name, not a pin: it never answers a disabled version.
                Ok((v, _)) if tagged.is_some() && v.disabled.is_some() => {
                    let reason = v.disabled.as_ref().map_or("", |d| d.reason.as_str());
                    picks.push(failure(
                        "disabled",
                        format!(
                            "{key}: the dist-tag's version {} is disabled ({reason}): pin it \
                             exactly to use it",
                            v.version
                        ),
                    ));
                }
                Ok((v, warnings)) => {
                    wanted_versions.push((key, v.version.clone()));
                    picks.push(Ok((i, wanted_versions.len() - 1, warnings)));
                }
                Err(m) => picks.push(failure("no_match", format!("{key}: {m}"))),
            }
        }
        let versions = self.db.store.versions_of(&wanted_versions).await?;
        // Every advisory of the resolved entries, in one read.
        let resolved_keys: Vec<EntryKey> = sets.iter().flatten().map(|s| s.entry.key()).collect();
        let advisories = if resolved_keys.is_empty() {
            Vec::new()
        } else {
            self.db.advisories.advisories_of(&resolved_keys).await?
        };
        let mut out = Vec::with_capacity(refs.len());
        for ((r, want), pick) in refs.iter().zip(picks) {
            let (i, w, mut warnings) = match pick {
                Ok(p) => p,
                Err(f) => {
                    out.push(Err(f));
                    continue;
                }
            };
            let Some(entry) = sets[i].as_ref().map(|s| &s.entry) else {
                continue;
            };
            let Some(version) = versions[w].clone() else {
                let (key, v) = &wanted_versions[w];
                out.push(failure("not_found", format!("{key}@{v}")));
                continue;
            };
            out.push(Ok(finish(
                entry,
                version,
                r,
                want,
                &advisories,
                &mut warnings,
            )));
        }
        Ok(out)
    }

    /// Resolve a lock set: each reference on its own, in the order given. A malformed
    /// range refuses the whole request, naming the reference.
    pub async fn resolve_batch(&self, caller: &Caller, req: BatchRequest) -> Result<BatchAnswer> {
        if req.references.is_empty() || req.references.len() > MAX_BATCH {
            return Err(Error::invalid(
                "references",
                format!("1 to {MAX_BATCH} references"),
            ));
        }
        let mut wants = Vec::with_capacity(req.references.len());
        for (i, r) in req.references.iter().enumerate() {
            wants.push(wanted(r.range.as_deref()).map_err(|e| {
                Error::invalid(format!("references[{i}].range"), e.message.clone())
            })?);
        }
        let refs: Vec<(&ResolveRef, Wanted)> = req.references.iter().zip(wants).collect();
        let answers = self.resolve_many(caller, &refs).await?;
        let mut items = Vec::with_capacity(answers.len());
        let mut failed = 0;
        for (r, answer) in req.references.iter().zip(answers) {
            let (resolved, error) = match answer {
                Ok(v) => (Some(v), None),
                Err(f) => {
                    failed += 1;
                    (None, Some(f))
                }
            };
            items.push(BatchItem {
                kind: r.kind,
                namespace: r.namespace.clone(),
                name: r.name.clone(),
                requested: r.range.clone().unwrap_or_else(|| "latest".into()),
                resolved,
                error,
            });
        }
        Ok(BatchAnswer { items, failed })
    }
}

/// A reference's failure.
fn failure<T>(code: &str, message: String) -> std::result::Result<T, ResolveFailure> {
    Err(ResolveFailure {
        code: code.into(),
        message,
    })
}

/// The answer for a chosen version (with its manifest) of `entry`.
fn finish(
    entry: &Entry,
    version: Version,
    r: &ResolveRef,
    want: &Wanted,
    advisories: &[quiver_store::advisories::Advisory],
    warnings: &mut Vec<String>,
) -> Resolved {
    let key = entry.key();
    let chosen = Semver::parse(&version.version).ok();
    let mut notes = Vec::new();
    let mut fixes: Vec<Option<Semver>> = Vec::new();
    for a in advisories {
        let Some(fixed) = crate::advisories::affects(a, &key, &version.version) else {
            continue;
        };
        // The lowest fix above the chosen version.
        let fix = fixed
            .iter()
            .filter_map(|f| Semver::parse(f).ok())
            .filter(|f| chosen.as_ref().is_none_or(|c| f > c))
            .min();
        warnings.push(format!(
            "{} ({:?}): {}{}",
            a.id,
            a.severity,
            a.summary,
            fix.as_ref()
                .map_or(" (no fix yet)".to_string(), |f| format!("; fixed in {f}"))
        ));
        fixes.push(fix);
        notes.push(AdvisoryNote {
            id: a.id.clone(),
            aliases: a.aliases.clone(),
            severity: a.severity,
            summary: a.summary.clone(),
            fixed: fixed.to_vec(),
        });
    }
    // One version that fixes them all: the highest of their lowest fixes.
    let next_fix = if !fixes.is_empty() && fixes.iter().all(Option::is_some) {
        fixes.into_iter().flatten().max().map(|v| v.to_string())
    } else {
        None
    };
    if let Some(d) = &entry.disabled {
        warnings.push(format!("{key} is disabled: {}", d.reason));
    }
    if let Some(d) = &entry.deprecation {
        warnings.push(format!(
            "{key} is deprecated: {}{}",
            d.message,
            d.replacement
                .as_deref()
                .map_or(String::new(), |r| format!(" (use {r})"))
        ));
    }
    if let (Some(latest), Wanted::Range(_) | Wanted::Exact(_) | Wanted::Tag(_)) =
        (&entry.latest_version, want)
    {
        let newer = match (Semver::parse(latest), Semver::parse(&version.version)) {
            (Ok(l), Ok(c)) => l > c,
            _ => false,
        };
        if newer {
            warnings.push(format!("a newer version is out: {latest}"));
        }
    }
    let source = version.manifest.get("source").cloned();
    let content_hash =
        crate::content::declared_hash(&version.manifest).map(|h| format!("sha256:{h}"));
    let source = source.map(|mut s| {
        if let Some(o) = s.as_object_mut() {
            o.remove("content_hash");
            o.remove("contentHash");
        }
        s
    });
    Resolved {
        kind: entry.kind,
        namespace: entry.namespace.clone(),
        name: entry.name.clone(),
        requested: r.range.clone().unwrap_or_else(|| "latest".into()),
        version: version.version,
        manifest_sha256: version.sha256,
        content_hash,
        source,
        latest: entry.latest_version.clone(),
        yanked: version.yanked,
        deprecated: entry.deprecation.is_some() || entry.status == Status::Deprecated,
        advisories: notes,
        next_fix,
        warnings: std::mem::take(warnings),
    }
}

/// An entry's dist-tags as a client sees them.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DistTags {
    /// Each tag the maintainers set, by tag.
    pub tags: Vec<DistTag>,
    /// What `latest` resolves to: the tag when set, else the highest release.
    pub latest: Option<String>,
}

/// Body of a dist-tag change.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetDistTag {
    /// The version the tag points at (it must exist).
    pub version: String,
}

impl Registry {
    /// An entry's dist-tags, and what `latest` resolves to.
    pub async fn dist_tags(&self, caller: &Caller, key: &EntryKey) -> Result<DistTags> {
        let entry = self.visible_entry(caller, key).await?;
        let Some(set) = self
            .db
            .store
            .resolution_sets(&[entry.key()])
            .await?
            .pop()
            .flatten()
        else {
            return Err(Error::not_found(key));
        };
        let latest = match set.tags.iter().find(|t| t.tag == "latest") {
            Some(t) => Some(t.version.clone()),
            None => choose(&set.versions, &Wanted::Latest)
                .ok()
                .map(|(v, _)| v.version.clone()),
        };
        Ok(DistTags {
            tags: set.tags,
            latest,
        })
    }

    /// Point a dist-tag at a version, or remove it (`None`): the entry's maintainers
    /// (the right to publish it), audited.
    pub async fn set_dist_tag(
        &self,
        caller: &Caller,
        key: &EntryKey,
        tag: &str,
        version: Option<&str>,
    ) -> Result<DistTags> {
        if !valid_tag(tag) {
            return Err(Error::invalid(
                "tag",
                "a lowercase letter, then up to 49 lowercase letters, digits, `.`, `_` or \
                 `-`, and not a version range",
            ));
        }
        if let Some(v) = version {
            if Semver::parse(v).is_err() {
                return Err(Error::invalid("version", format!("`{v}` is not a version")));
            }
        }
        let entry = self.writable_entry(caller, key, Action::Publish).await?;
        let key = entry.key();
        let audit = self
            .draft(
                caller,
                Event {
                    action: if version.is_some() {
                        "entry.dist_tag"
                    } else {
                        "entry.dist_tag_remove"
                    },
                    namespace: Some(&key.namespace),
                    target: format!("{key}#{tag}"),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        self.db
            .store
            .set_dist_tag_audited(&key, tag, version, jiff::Timestamp::now(), audit)
            .await?;
        self.dist_tags(caller, &key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str, yanked: bool) -> Version {
        Version {
            version: s.into(),
            manifest: Value::Null,
            sha256: String::new(),
            changelog: None,
            breaking: false,
            yanked,
            yank_reason: yanked.then(|| "broken".into()),
            disabled: None,
            published_at: jiff::Timestamp::UNIX_EPOCH,
            validation: None,
        }
    }

    fn pick(versions: &[Version], range: &str) -> std::result::Result<String, String> {
        let w = wanted(Some(range)).map_err(|e| e.to_string())?;
        choose(versions, &w).map(|(v, _)| v.version.clone())
    }

    #[test]
    fn ranges_tags_prereleases_and_yanked() {
        let vs = [
            v("1.0.0", false),
            v("1.2.0", false),
            v("1.2.5", true),
            v("1.3.0-beta.1", false),
            v("2.0.0", false),
            v("2.1.0-rc.1", false),
        ];
        assert_eq!(pick(&vs, "^1.2").unwrap(), "1.2.0", "yanked 1.2.5 skipped");
        assert_eq!(pick(&vs, "latest").unwrap(), "2.0.0", "no prerelease");
        assert_eq!(pick(&vs, "").unwrap(), "2.0.0");
        assert_eq!(
            pick(&vs, "1.2.5").unwrap(),
            "1.2.5",
            "an exact pin takes yanked"
        );
        assert_eq!(pick(&vs, "=1.0.0").unwrap(), "1.0.0");
        assert_eq!(pick(&vs, "~1.2.0").unwrap(), "1.2.0");
        assert_eq!(pick(&vs, ">=1.3.0-beta.0, <2").unwrap(), "1.3.0-beta.1");
        assert_eq!(
            pick(&vs, "^1").unwrap(),
            "1.2.0",
            "no prerelease without asking"
        );
        assert_eq!(pick(&vs, "1.x").unwrap(), "1.2.0");
        assert_eq!(pick(&vs, "*").unwrap(), "2.0.0");
        assert!(pick(&vs, "^3").unwrap_err().contains("no version matches"));
        assert!(pick(&vs, "9.9.9").unwrap_err().contains("no version 9.9.9"));
        assert!(pick(&vs, "not a range").unwrap_err().contains("range"));
        assert_eq!(
            wanted(Some("stable")).unwrap(),
            Wanted::Tag("stable".into())
        );
        assert!(valid_tag("next-2") && valid_tag("beta"));
        assert!(!valid_tag("1.x") && !valid_tag("Beta") && !valid_tag("") && !valid_tag("-x"));
        let only_yanked = [v("1.0.0", true)];
        assert!(pick(&only_yanked, "^1")
            .unwrap_err()
            .contains("only yanked"));
        let w = wanted(Some("1.2.5")).unwrap();
        let (_, warnings) = choose(&vs, &w).unwrap();
        assert!(warnings[0].contains("yanked (broken)"), "{warnings:?}");
    }

    #[test]
    fn disabled_versions_answer_only_exact_pins() {
        let mut off = v("1.3.0", false);
        off.disabled = Some(quiver_model::Disabled {
            reason: "crashes".into(),
            since: jiff::Timestamp::UNIX_EPOCH,
        });
        let vs = [v("1.2.0", false), off];
        assert_eq!(pick(&vs, "^1").unwrap(), "1.2.0");
        assert_eq!(pick(&vs, "latest").unwrap(), "1.2.0");
        assert!(pick(&vs, "~1.3")
            .unwrap_err()
            .contains("only yanked or disabled"));
        let (got, warnings) = choose(&vs, &wanted(Some("1.3.0")).unwrap()).unwrap();
        assert_eq!(got.version, "1.3.0");
        assert!(warnings[0].contains("disabled (crashes)"), "{warnings:?}");
    }
}
