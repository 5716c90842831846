//! Agent skills (the upskill/ace project): its skill registry, the package mappings,
//! the scraped skills leaderboard, and the CLI's agent and API configuration.
//!
//! Files claimed (by name, then by their first bytes):
//!
//! | file | shape | becomes |
//! |---|---|---|
//! | `skills-registry.json` | `{"skills": [{id, title, description, repo, tags, targetPackages, installs}]}` | `skill` entries |
//! | `scraped.json` | `[{rank, name, repo, installs, href, rawText}]` | `skill` entries (popularity) |
//! | `package-mappings.json` | `{<skill id>: [npm package, ...]}` | `maps_to` relations, documents `skills.package_mappings` |
//! | `agents.json` | `{agents[], scope, skills{}}` | document `skills.agents` (key: the file's path) |
//! | `ace.config.json` | `{api: {...}}` | document `skills.config` (key: the file's path) |
//!
//! A registry skill maps to a `skill` entry:
//!
//! - namespace = the owner of `repo` (`vercel-labs/agent-skills` → `vercel-labs`), lowercased;
//! - name = `id`; `title` → display name; `description`; `tags`;
//! - `revision` manifest: `{repo, title, target_packages, installs, sources}` where
//!   `sources` lists where the skill was seen (`registry`, `leaderboard`);
//! - `targetPackages` → `maps_to` relations to `package` entries in namespace `npm`, with
//!   source `registry` and confidence 0.8 (the registry derives them from the skill's
//!   description, not from a person's review). Packages are never created here: a relation
//!   to a package the store does not hold is reported by the pipeline.
//!
//! A leaderboard row (`scraped.json`) names its skill by `href` (`/owner/repo/skill`); the
//! row's own `repo` field is text run together by the scraper and is not used for the
//! key. Its `installs` (`"25.5K"` → 25,500) becomes the entry's popularity
//! ([`popularity_score`]) with the row's `rank`; the row itself is kept in the manifest
//! under `leaderboard` (`{rank, installs, href, repo, rawText}`) so the file can be written
//! back. A row whose count is more than the row ranked above it has and starts with the
//! digits that end its repository's name (`vinta/hal-9000` with 14 installs scraped as
//! `"900014"`) is a mis-scrape: it is reported as a warning, flagged in the manifest
//! (`installs_misscrape: {scraped, corrected}`) and ranked by the corrected count (also
//! when the registry repeats the scraped number). When a registry skill and a row name
//! the same skill (owner, repo and name), they
//! are one record. Rows whose skill name breaks the skill name rule (`debug:react`, names
//! in other scripts, `ci/cd-optimization`), rows listed twice, and a second skill of the
//! same owner and name from another repository are rejected with the reason.
//!
//! `package-mappings.json` overrides a skill's packages: a skill with a mapping gets its
//! relations from it (source `package-mappings`, confidence 1.0, a curated list), the
//! others from the registry's `targetPackages`. Each mapping is also kept as a document
//! (key = skill id, body = the package list) so the file can be regenerated.
//!
//! Export writes `.upskill/skills-registry.json`, `.upskill/package-mappings.json`,
//! `scraped.json` and the documents' files back under the output folder.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};

use quiver_model::{
    names, EntryKey, Kind, NewDocument, NewEntry, Popularity, Relation, RelationKind,
};
use quiver_store::{EntryFilter, Store};
use serde_json::{json, Map, Value};

use super::files::{document_bodies, file_kinds, key_lines, latest_versions, load_json, path_key};
use super::{Bundle, BundleDocument, BundleRecord, ExportFilter, ExportSummary, Origin, Reader};
use crate::dataset::popularity_score;
use crate::Format;

/// Collection of the package mappings (key: skill id, body: the npm package names).
pub const MAPPINGS: &str = "skills.package_mappings";
/// Collection of the CLI's agent configuration files (key: the file's path).
pub const AGENTS: &str = "skills.agents";
/// Collection of the CLI's API configuration files (key: the file's path).
pub const CONFIG: &str = "skills.config";

/// Confidence of a `maps_to` relation read from the registry's `targetPackages`.
pub const REGISTRY_CONFIDENCE: f64 = 0.8;
/// Confidence of a `maps_to` relation read from `package-mappings.json` (curated).
pub const MAPPING_CONFIDENCE: f64 = 1.0;

const REGISTRY_FILE: &str = "skills-registry.json";
const MAPPINGS_FILE: &str = "package-mappings.json";
const LEADERBOARD_FILE: &str = "scraped.json";
const AGENTS_FILE: &str = "agents.json";
const CONFIG_FILE: &str = "ace.config.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum FileKind {
    Registry,
    Leaderboard,
    Mappings,
    Agents,
    Config,
}

fn file_kind(rel: &Path, head: &[u8]) -> Option<FileKind> {
    let name = rel.file_name()?.to_str()?;
    let head = String::from_utf8_lossy(head);
    let object = head.trim_start().starts_with('{');
    let array = head.trim_start().starts_with('[');
    match name {
        REGISTRY_FILE if object && head.contains("\"skills\"") => Some(FileKind::Registry),
        MAPPINGS_FILE if object => Some(FileKind::Mappings),
        LEADERBOARD_FILE if array && (head.contains("\"href\"") || head.trim() == "[]") => {
            Some(FileKind::Leaderboard)
        }
        AGENTS_FILE if object && head.contains("\"agents\"") => Some(FileKind::Agents),
        CONFIG_FILE if object => Some(FileKind::Config),
        _ => None,
    }
}

pub struct SkillsReader;

impl Reader for SkillsReader {
    fn format(&self) -> Format {
        Format::Skills
    }

    fn claims(&self, rel: &Path, head: &[u8]) -> bool {
        file_kind(rel, head).is_some()
    }

    fn read(&self, root: &Path, files: &[PathBuf]) -> Bundle {
        let mut bundle = Bundle::default();
        let mut typed = file_kinds(
            root,
            files,
            &mut bundle,
            file_kind,
            "not a file of the skills format (expected skills-registry.json, \
             package-mappings.json, scraped.json, agents.json or ace.config.json)",
        );
        // Registries first (they own the skills' descriptions), then the leaderboard
        // (merged into them), then the mappings (which name skills read before).
        typed.sort_by_key(|(k, _)| *k);
        let mut skills = Skills::default();
        for (kind, rel) in typed {
            let Some((text, value)) = load_json(root, rel, &mut bundle) else {
                continue;
            };
            match kind {
                FileKind::Registry => skills.read_registry(rel, &text, &value, &mut bundle),
                FileKind::Leaderboard => skills.read_leaderboard(rel, &text, &value, &mut bundle),
                FileKind::Mappings => skills.read_mappings(rel, &text, &value, &mut bundle),
                FileKind::Agents | FileKind::Config => {
                    let collection = if kind == FileKind::Agents {
                        AGENTS
                    } else {
                        CONFIG
                    };
                    bundle.count("documents", 1);
                    bundle.documents.push(BundleDocument {
                        origin: Origin::new(rel.clone(), Some(1)),
                        document: NewDocument::new(collection, path_key(rel), value),
                    });
                }
            }
        }
        skills.finish(&mut bundle);
        bundle
    }
}

/// `"25.5K"` → 25,500; `"1.2M"` → 1,200,000; `"734"` → 734.
pub fn parse_installs(s: &str) -> Option<u64> {
    let s = s.trim().replace(',', "");
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1_000.0),
        'M' | 'm' => (&s[..s.len() - 1], 1_000_000.0),
        'B' | 'b' => (&s[..s.len() - 1], 1_000_000_000.0),
        _ => (s.as_str(), 1.0),
    };
    let n: f64 = num.parse().ok()?;
    (n.is_finite() && n >= 0.0).then(|| (n * mult).round() as u64)
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    match v {
        None | Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(|x| x.as_str().map(str::to_string)).collect(),
        Some(_) => None,
    }
}

/// A leaderboard count the scraper glued to the digits that end the repository's name
/// (`vinta/hal-9000` with 14 installs scraped as `"900014"`): it is more than the row
/// ranked above it has, which a leaderboard sorted by installs cannot hold, and without
/// those leading digits it fits. The scraped text and the count it stands for.
fn misscraped(
    installs: Option<&str>,
    repo: Option<&str>,
    above: Option<u64>,
) -> Option<(String, u64)> {
    let (text, repo, above) = (installs?.trim(), repo?, above?);
    if parse_installs(text)? <= above {
        return None;
    }
    let digits = &repo[repo.trim_end_matches(|c: char| c.is_ascii_digit()).len()..];
    if digits.is_empty() {
        return None;
    }
    let corrected = parse_installs(text.strip_prefix(digits)?)?;
    (corrected <= above).then(|| (text.to_string(), corrected))
}

/// A leaderboard row as read.
#[derive(Debug, Clone)]
struct Row {
    origin: Origin,
    rank: Option<u64>,
    installs: Option<u64>,
    /// The scraped installs and the count they stand for, when the scraper glued the
    /// repository name's last digits to the count (`installs` is then the count).
    misscrape: Option<(String, u64)>,
    /// The row itself, minus its name (kept in the manifest under `leaderboard`).
    kept: Map<String, Value>,
}

#[derive(Debug)]
struct Skill {
    origin: Origin,
    namespace: String,
    name: String,
    /// `owner/repo` as the source spells it.
    repo: String,
    title: Option<String>,
    description: String,
    tags: Vec<String>,
    /// `Some` when the skill is in the registry.
    target_packages: Option<Vec<String>>,
    registry_installs: Option<u64>,
    row: Option<Row>,
    /// From package-mappings.json, which overrides `target_packages` for relations.
    mapping: Option<(Origin, Vec<String>)>,
}

#[derive(Default)]
struct Skills {
    list: Vec<Skill>,
    by_key: HashMap<(String, String), usize>,
}

impl Skills {
    fn read_registry(&mut self, rel: &Path, text: &str, value: &Value, bundle: &mut Bundle) {
        let Some(rows) = value.get("skills").and_then(Value::as_array) else {
            bundle.rejected.push(Origin::new(rel, Some(1)).reject(
                None,
                Some("skills"),
                "skills: expected an array of skills at the top level ({\"skills\": [...]})",
            ));
            return;
        };
        let lines = key_lines(text, "id");
        for (i, row) in rows.iter().enumerate() {
            bundle.count("skills", 1);
            let origin = Origin::new(rel, lines.get(i).copied());
            let name = row.get("id").and_then(Value::as_str).map(str::to_string);
            let fail =
                |field: &str, reason: String| origin.reject(name.clone(), Some(field), reason);
            let Some(id) = name.clone() else {
                bundle.rejected.push(fail(
                    "id",
                    format!("skills[{i}].id: missing or not a string"),
                ));
                continue;
            };
            let repo = row.get("repo").and_then(Value::as_str).unwrap_or_default();
            let Some(owner) = repo_owner(repo) else {
                bundle.rejected.push(fail(
                    "repo",
                    format!("repo: expected \"owner/repo\", got {repo:?}"),
                ));
                continue;
            };
            if let Err(e) = names::validate_name(Kind::Skill, &owner, &id) {
                bundle
                    .rejected
                    .push(fail("id", format!("id {id:?}: {}", rule(&e))));
                continue;
            }
            let Some(tags) = strings(row.get("tags")) else {
                bundle
                    .rejected
                    .push(fail("tags", "tags: expected an array of strings".into()));
                continue;
            };
            let Some(targets) = strings(row.get("targetPackages")) else {
                bundle.rejected.push(fail(
                    "targetPackages",
                    "targetPackages: expected an array of npm package names".into(),
                ));
                continue;
            };
            let installs = match row.get("installs") {
                None | Some(Value::Null) => None,
                Some(v) => match v.as_u64() {
                    Some(n) => Some(n),
                    None => {
                        bundle.rejected.push(fail(
                            "installs",
                            format!("installs: expected a whole number, got {v}"),
                        ));
                        continue;
                    }
                },
            };
            let key = (owner.clone(), id.clone());
            if let Some(&at) = self.by_key.get(&key) {
                let first = &self.list[at];
                bundle.rejected.push(fail(
                    "id",
                    format!(
                        "duplicate: skill {owner}/{id} is listed again (first at {}); \
                         the first listing is kept",
                        place(&first.origin)
                    ),
                ));
                continue;
            }
            self.by_key.insert(key, self.list.len());
            self.list.push(Skill {
                origin,
                namespace: owner,
                name: id,
                repo: repo.to_string(),
                title: row.get("title").and_then(Value::as_str).map(str::to_string),
                description: row
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                tags,
                target_packages: Some(targets),
                registry_installs: installs,
                row: None,
                mapping: None,
            });
        }
    }

    fn read_leaderboard(&mut self, rel: &Path, text: &str, value: &Value, bundle: &mut Bundle) {
        let Some(rows) = value.as_array() else {
            bundle.rejected.push(Origin::new(rel, Some(1)).reject(
                None,
                None,
                "expected an array of leaderboard rows",
            ));
            return;
        };
        let lines = key_lines(text, "rank");
        // The installs of the row ranked just above (the leaderboard is sorted by them).
        let mut prev_installs: Option<u64> = None;
        for (i, row) in rows.iter().enumerate() {
            bundle.count("leaderboard rows", 1);
            let above = prev_installs;
            let misscrape = misscraped(
                row.get("installs").and_then(Value::as_str),
                row.get("href")
                    .and_then(Value::as_str)
                    .and_then(|h| h.trim_start_matches('/').split('/').nth(1)),
                above,
            );
            prev_installs = misscrape
                .as_ref()
                .map(|m| m.1)
                .or_else(|| {
                    row.get("installs")
                        .and_then(Value::as_str)
                        .and_then(parse_installs)
                })
                .or(prev_installs);
            let origin = Origin::new(rel, lines.get(i).copied());
            let name = row.get("name").and_then(Value::as_str).map(str::to_string);
            let fail =
                |field: &str, reason: String| origin.reject(name.clone(), Some(field), reason);
            let Some(obj) = row.as_object() else {
                bundle.rejected.push(origin.reject(
                    None,
                    None,
                    format!(
                        "row {i}: expected an object {{rank, name, repo, installs, href, rawText}}"
                    ),
                ));
                continue;
            };
            let Some(row_name) = name.clone() else {
                bundle
                    .rejected
                    .push(fail("name", "name: missing or not a string".into()));
                continue;
            };
            let href = obj.get("href").and_then(Value::as_str).unwrap_or_default();
            let parts: Vec<&str> = href.trim_start_matches('/').splitn(3, '/').collect();
            let [owner, repo_name, skill] = parts[..] else {
                bundle.rejected.push(fail(
                    "href",
                    format!("href: expected \"/owner/repo/skill\", got {href:?}"),
                ));
                continue;
            };
            if skill != row_name {
                bundle.rejected.push(fail(
                    "href",
                    format!(
                        "href {href:?} names the skill {skill:?}, not the row's name \
                         {row_name:?}; skill names cannot contain '/'"
                    ),
                ));
                continue;
            }
            let namespace = owner.to_ascii_lowercase();
            if let Err(e) = names::validate_namespace(&namespace) {
                bundle
                    .rejected
                    .push(fail("href", format!("href: owner {owner:?}: {}", rule(&e))));
                continue;
            }
            if let Err(e) = names::validate_name(Kind::Skill, &namespace, skill) {
                bundle
                    .rejected
                    .push(fail("name", format!("name {skill:?}: {}", rule(&e))));
                continue;
            }
            let installs_text = obj.get("installs").and_then(Value::as_str);
            let installs = match &misscrape {
                Some((raw, corrected)) => {
                    bundle.warnings.push(origin.reject(
                        name.clone(),
                        Some("installs"),
                        format!(
                            "installs: {raw:?} is more than the row ranked above it has \
                             ({}) and starts with the digits that end the repository's \
                             name {repo_name:?}: a mis-scrape of {corrected}; ranked by \
                             {corrected}",
                            above.unwrap_or(0)
                        ),
                    ));
                    Some(*corrected)
                }
                None => installs_text.and_then(parse_installs),
            };
            if installs.is_none() {
                bundle.warnings.push(origin.reject(
                    name.clone(),
                    Some("installs"),
                    format!(
                        "installs: {:?} is not a count like \"734\" or \"25.5K\"; \
                         taken without popularity",
                        obj.get("installs")
                    ),
                ));
            }
            let mut kept = obj.clone();
            kept.remove("name");
            let row = Row {
                origin: origin.clone(),
                rank: obj.get("rank").and_then(Value::as_u64),
                installs,
                misscrape,
                kept,
            };
            let repo = format!("{owner}/{repo_name}");
            let key = (namespace.clone(), skill.to_string());
            match self.by_key.get(&key) {
                Some(&at) => {
                    let s = &mut self.list[at];
                    if !s.repo.eq_ignore_ascii_case(&repo) {
                        bundle.rejected.push(fail(
                            "href",
                            format!(
                                "{namespace} already has a skill named {skill} (from {}, at {}); \
                                 skills are named by owner and name, so this one from {repo} \
                                 cannot be taken as well",
                                s.repo,
                                place(&s.origin)
                            ),
                        ));
                    } else if let Some(first) = &s.row {
                        bundle.rejected.push(fail(
                            "href",
                            format!(
                                "duplicate: {href} is listed again (first at {}); \
                                 the first row is kept",
                                place(&first.origin)
                            ),
                        ));
                    } else {
                        s.row = Some(row);
                    }
                }
                None => {
                    self.by_key.insert(key, self.list.len());
                    self.list.push(Skill {
                        origin,
                        namespace,
                        name: skill.to_string(),
                        repo,
                        title: None,
                        description: String::new(),
                        tags: Vec::new(),
                        target_packages: None,
                        registry_installs: None,
                        row: Some(row),
                        mapping: None,
                    });
                }
            }
        }
    }

    fn read_mappings(&mut self, rel: &Path, text: &str, value: &Value, bundle: &mut Bundle) {
        let Some(map) = value.as_object() else {
            bundle.rejected.push(Origin::new(rel, Some(1)).reject(
                None,
                None,
                "expected an object of skill id → package names",
            ));
            return;
        };
        for (id, packages) in map {
            bundle.count("mappings", 1);
            let origin = Origin::new(rel, key_lines(text, id).first().copied());
            let fail =
                |field: &str, reason: String| origin.reject(Some(id.clone()), Some(field), reason);
            let Some(list) = strings(Some(packages)) else {
                bundle.rejected.push(fail(
                    id,
                    format!("{id}: expected an array of npm package names"),
                ));
                continue;
            };
            if id.is_empty() || id.len() > 512 {
                bundle
                    .rejected
                    .push(fail(id, "the skill id must be 1-512 bytes long".into()));
                continue;
            }
            bundle.documents.push(BundleDocument {
                origin: origin.clone(),
                document: NewDocument::new(MAPPINGS, id.clone(), Value::from(list.clone())),
            });
            // Mappings name skills by id only: prefer the registry's, then a unique
            // leaderboard skill of that name.
            let matches: Vec<usize> = self
                .list
                .iter()
                .enumerate()
                .filter(|(_, s)| &s.name == id)
                .map(|(n, _)| n)
                .collect();
            let registry: Vec<usize> = matches
                .iter()
                .copied()
                .filter(|&n| self.list[n].target_packages.is_some())
                .collect();
            let pick = if registry.len() == 1 {
                Some(registry[0])
            } else if registry.is_empty() && matches.len() == 1 {
                Some(matches[0])
            } else {
                None
            };
            match pick {
                Some(n) => self.list[n].mapping = Some((origin.clone(), list)),
                None if matches.is_empty() => bundle.rejected.push(fail(
                    id,
                    format!(
                        "no skill with id {id} in the registry or the leaderboard, so its \
                         package mapping cannot be linked (kept as a document)"
                    ),
                )),
                None => bundle.rejected.push(fail(
                    id,
                    format!(
                        "{} skills are named {id} ({}); the mapping does not say which, so \
                         it is not linked (kept as a document)",
                        matches.len(),
                        matches
                            .iter()
                            .map(|&n| format!("{}/{}", self.list[n].namespace, id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
    }

    fn finish(self, bundle: &mut Bundle) {
        for s in self.list {
            let installs = s
                .registry_installs
                .or_else(|| s.row.as_ref().and_then(|r| r.installs));
            // The count that ranks: a registry count that repeats the leaderboard's
            // mis-scrape is that mis-scrape (the manifest keeps the registry's number, so
            // the file is written back as it was read).
            let ranked = match (
                s.row.as_ref().and_then(|r| r.misscrape.as_ref()),
                s.registry_installs,
            ) {
                (Some((raw, corrected)), Some(reg)) if parse_installs(raw) == Some(reg) => {
                    Some(*corrected)
                }
                _ => installs,
            };
            let mut manifest = Map::new();
            manifest.insert("repo".into(), json!(s.repo));
            if let Some(t) = &s.title {
                manifest.insert("title".into(), json!(t));
            }
            if let Some(t) = &s.target_packages {
                manifest.insert("target_packages".into(), json!(t));
            }
            if let Some(n) = installs {
                manifest.insert("installs".into(), json!(n));
            }
            let mut sources = Vec::new();
            if s.target_packages.is_some() {
                sources.push("registry");
            }
            if let Some(row) = &s.row {
                sources.push("leaderboard");
                manifest.insert("leaderboard".into(), Value::Object(row.kept.clone()));
                if let Some((raw, corrected)) = &row.misscrape {
                    manifest.insert(
                        "installs_misscrape".into(),
                        json!({"scraped": raw, "corrected": corrected}),
                    );
                }
            }
            manifest.insert("sources".into(), json!(sources));
            let popularity = ranked.map(|n| Popularity {
                score: popularity_score(n as f64),
                monthly_downloads: None,
                rank: s
                    .row
                    .as_ref()
                    .and_then(|r| r.rank)
                    .and_then(|r| u32::try_from(r).ok()),
            });
            let key = EntryKey::new(Kind::Skill, s.namespace.clone(), s.name.clone());
            let (packages, source, confidence, rel_origin) = match (&s.mapping, &s.target_packages)
            {
                (Some((o, m)), _) => (m.clone(), "package-mappings", MAPPING_CONFIDENCE, o),
                (None, Some(t)) => (t.clone(), "registry", REGISTRY_CONFIDENCE, &s.origin),
                (None, None) => (Vec::new(), "", 0.0, &s.origin),
            };
            let mut relations = Vec::new();
            for (i, p) in packages.iter().enumerate() {
                if let Err(e) = names::validate_name(Kind::Package, "npm", p) {
                    let field = if source == "registry" {
                        format!("targetPackages[{i}]")
                    } else {
                        format!("{}[{i}]", s.name)
                    };
                    bundle.rejected.push(rel_origin.reject(
                        Some(format!("{}/{}", s.namespace, s.name)),
                        Some(&field),
                        format!(
                            "{field}: npm package {p:?}: {}; relation not made",
                            e.message
                        ),
                    ));
                    continue;
                }
                if relations.iter().any(|r: &Relation| r.to.name == *p) {
                    continue;
                }
                relations.push(Relation {
                    kind: RelationKind::MapsTo,
                    from: key.clone(),
                    to: EntryKey::new(Kind::Package, "npm", p.clone()),
                    confidence: Some(confidence),
                    source: Some(source.to_string()),
                    step_order: None,
                });
            }
            let mut record = BundleRecord::new(
                s.origin,
                NewEntry {
                    kind: Kind::Skill,
                    namespace: s.namespace,
                    name: s.name,
                    display_name: s.title,
                    description: s.description,
                    category: None,
                    tags: s.tags,
                    keywords: Vec::new(),
                    status: None,
                    visibility: None,
                    popularity,
                },
            );
            record.revision = Some(Value::Object(manifest));
            record.relations = relations;
            bundle.records.push(record);
        }
    }
}

/// A name rule's reason, without the field the model puts in front of it.
fn rule(e: &quiver_model::Error) -> &str {
    e.field
        .as_deref()
        .and_then(|f| e.message.strip_prefix(f))
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(&e.message)
}

fn repo_owner(repo: &str) -> Option<String> {
    let (owner, name) = repo.split_once('/')?;
    (!owner.is_empty() && !name.is_empty() && !name.contains('/'))
        .then(|| owner.to_ascii_lowercase())
}

fn place(o: &Origin) -> String {
    match o.line {
        Some(l) => format!("{}:{l}", o.file.display()),
        None => o.file.display().to_string(),
    }
}

/// Write the store's skills and the skills collections back as the project's files under
/// `out`: `.upskill/skills-registry.json` (skills seen in the registry, in the order they
/// were created), `.upskill/package-mappings.json`, `scraped.json` (leaderboard rows, by
/// rank) and each agents/config document at its own path.
pub async fn export(
    store: &dyn Store,
    filter: &ExportFilter,
    out: &Path,
) -> quiver_model::Result<ExportSummary> {
    let mut summary = ExportSummary::default();
    let mut registry = Vec::new();
    let mut rows: Vec<(u64, usize, Value)> = Vec::new();
    let entry_filter = EntryFilter {
        kinds: vec![Kind::Skill],
        ..EntryFilter::default()
    };
    for (e, v) in latest_versions(store, &entry_filter, filter, 500).await? {
        let m = &v.manifest;
        let sources: Vec<&str> = m
            .get("sources")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut wrote = false;
        if sources.contains(&"registry") {
            let mut row = Map::new();
            row.insert("id".into(), json!(e.name));
            if let Some(t) = m.get("title") {
                row.insert("title".into(), t.clone());
            }
            row.insert("description".into(), json!(e.description));
            row.insert("repo".into(), m.get("repo").cloned().unwrap_or(Value::Null));
            row.insert("tags".into(), json!(e.tags));
            row.insert(
                "targetPackages".into(),
                m.get("target_packages").cloned().unwrap_or(json!([])),
            );
            if let Some(n) = m.get("installs") {
                row.insert("installs".into(), n.clone());
            }
            registry.push(Value::Object(row));
            wrote = true;
        }
        if let Some(Value::Object(lb)) = m.get("leaderboard") {
            let mut row = lb.clone();
            row.insert("name".into(), json!(e.name));
            let rank = lb.get("rank").and_then(Value::as_u64).unwrap_or(u64::MAX);
            rows.push((rank, rows.len(), Value::Object(row)));
            wrote = true;
        }
        if wrote {
            summary.entries += 1;
        }
    }
    rows.sort_by_key(|(rank, n, _)| (*rank, *n));

    let mappings = document_bodies(store, MAPPINGS, 500).await?;
    let mut map = Map::new();
    for (key, body) in &mappings {
        map.insert(key.clone(), body.clone());
    }
    summary.documents += mappings.len() as u64;

    write_json(
        out,
        ".upskill/skills-registry.json",
        &json!({ "skills": registry }),
    )?;
    write_json(out, ".upskill/package-mappings.json", &Value::Object(map))?;
    let rows: Vec<Value> = rows.into_iter().map(|(_, _, v)| v).collect();
    write_json(out, LEADERBOARD_FILE, &Value::Array(rows))?;
    summary.files += 3;
    for collection in [AGENTS, CONFIG] {
        for (key, body) in document_bodies(store, collection, 500).await? {
            write_json(out, &key, &body)?;
            summary.files += 1;
            summary.documents += 1;
        }
    }
    Ok(summary)
}

/// Write `value` as pretty JSON at `out/rel`; `rel` must stay inside `out`.
pub(super) fn write_json(out: &Path, rel: &str, value: &Value) -> quiver_model::Result<()> {
    let rel_path = Path::new(rel);
    if rel.is_empty()
        || rel_path
            .components()
            .any(|c| !matches!(c, Component::Normal(_)))
    {
        return Err(quiver_model::Error::invalid(
            "key",
            format!("document key {rel:?} is not a relative path inside the export folder"),
        ));
    }
    let path = out.join(rel_path);
    let io = |e: std::io::Error| {
        quiver_model::Error::internal(format_args!("writing {}", path.display()), e)
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| quiver_model::Error::internal(format_args!("serializing {rel}"), e))?;
    text.push('\n');
    std::fs::write(&path, text).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misscrapes_are_found_by_rank_and_repository_digits() {
        let m = |i, r, a| misscraped(Some(i), Some(r), Some(a));
        assert_eq!(m("900014", "hal-9000", 14), Some(("900014".into(), 14)));
        assert_eq!(m("710", "context7", 10), Some(("710".into(), 10)));
        assert_eq!(m("21", "mega-agent-v2", 1), Some(("21".into(), 1)));
        // Consistent with the ranking, or not explained by the name: left alone.
        assert_eq!(m("14", "hal-9000", 14), None);
        assert_eq!(m("900", "agent-skills", 14), None);
        assert_eq!(m("9100", "hal-9000", 14), None, "100 is still more than 14");
        assert_eq!(misscraped(Some("216"), Some("example-skill2"), None), None);
    }

    #[test]
    fn installs_parse() {
        assert_eq!(parse_installs("25.5K"), Some(25_500));
        assert_eq!(parse_installs("1.0K"), Some(1_000));
        assert_eq!(parse_installs("734"), Some(734));
        assert_eq!(parse_installs("1.2M"), Some(1_200_000));
        assert_eq!(parse_installs("lots"), None);
        assert_eq!(parse_installs(""), None);
    }

    #[test]
    fn claims_by_name_and_shape() {
        let p = Path::new(".upskill/skills-registry.json");
        assert!(file_kind(p, b"{\n  \"skills\": [").is_some());
        assert!(file_kind(p, b"[1]").is_none());
        assert!(file_kind(Path::new("x/agents.json"), b"{\"agents\": []}").is_some());
        assert!(file_kind(Path::new("x/agents.json"), b"{\"other\": []}").is_none());
        assert!(file_kind(Path::new("modules.json"), b"{}").is_none());
    }

    #[test]
    fn key_lines_finds_keys_not_values() {
        let text = "{\n \"id\": \"a\",\n \"x\": \"id\"\n}\n{\"id\": 1}";
        assert_eq!(key_lines(text, "id"), vec![2, 5]);
    }
}
