//! The mlld module registry: its generated index, the per-module files, the allowlist,
//! the plugin marketplace and the legacy files of earlier designs.
//!
//! Files claimed (by path and name, then by their first bytes):
//!
//! | file | becomes |
//! |---|---|
//! | `modules.json`, `modules.generated.json` (`{version, generated, modules: {"@ns/name": {...}}}`) | `module` entries; the top-level fields as a document `modules.index` (key: the file's path) |
//! | `modules/<ns>/<name>/<semver>.json` | the module's versions |
//! | `modules/<ns>/<name>/metadata.json` | document `modules.metadata` (key `@ns/name`) |
//! | `modules/<ns>/<name>/tags.json` | document `modules.dist_tags` (key `@ns/name`) |
//! | `allowlist.json` | document `modules.allowlist` (key: the file's path) |
//! | `.claude-plugin/marketplace.json` | document `modules.marketplace` (key: the file's path) |
//! | `advisories.json` | document `modules.advisories` (key: the file's path) |
//! | `legacy/**/*.json` (the gist registry, its MCP servers, DNS records, older module files) | document `modules.legacy` (key: the file's path) |
//! | `_index/*.json` | rejected: a derived index, regenerated from the registry files |
//!
//! A module maps to a `module` entry: namespace and name from `@ns/name` (or the
//! `modules/<ns>/<name>/` folder), description = `about`, keywords = its current
//! version's `keywords`. Each version file is a version whose manifest is the file as it
//! stands (`needs`, `license`, `mlldVersion`, `source {type, url, contentHash,
//! repository {...}}`, `dependencies`, `keywords`, `repo`, `bugs`, `publishedAt`,
//! `publishedBy`). A `modules.json` listing is the module-level fields (`name`, `author`,
//! `about`, `owners`, `maintainers`, `availableVersions`, `tags`) plus the current version's
//! fields; its version is taken from the listing when no version file holds it, and a
//! listing that disagrees with a version file is a warning (the file is kept). Owners,
//! maintainers, authorship (`metadata.json`) and dist-tags (`tags.json`) change without a
//! new version, so they are documents, not manifests. `modules.json` and
//! `modules.generated.json` list the same modules: each module is read once, and a listing
//! that differs between them is a warning.
//!
//! The legacy files describe designs the registry left behind (gist ids, MCP servers,
//! DNS records, older module records with other field names); they are kept whole as
//! documents so that nothing is lost and the export can give them back, not turned into
//! entries that would compete with the current modules.
//!
//! Export writes `modules.json` (and each other index file read), the per-module folders
//! and every document's file back under the output folder.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use quiver_model::{names, EntryKey, Kind, NewDocument, NewEntry, NewVersion};
use quiver_store::{EntryFilter, Store};
use serde_json::{json, Map, Value};

use super::files::{document_bodies, file_kinds, key_lines, load_json, path_key};
use super::skills::write_json;
use super::{Bundle, BundleDocument, BundleRecord, ExportFilter, ExportSummary, Origin, Reader};
use crate::Format;

/// Top-level fields of a registry index file (key: the file's path).
pub const INDEX: &str = "modules.index";
/// A module's `metadata.json` (key: `@ns/name`).
pub const METADATA: &str = "modules.metadata";
/// A module's dist-tags, `tags.json` (key: `@ns/name`).
pub const DIST_TAGS: &str = "modules.dist_tags";
/// `allowlist.json` (key: the file's path).
pub const ALLOWLIST: &str = "modules.allowlist";
/// `.claude-plugin/marketplace.json` (key: the file's path).
pub const MARKETPLACE: &str = "modules.marketplace";
/// Advisory files (key: the file's path).
pub const ADVISORIES: &str = "modules.advisories";
/// Legacy files, kept whole (key: the file's path).
pub const LEGACY: &str = "modules.legacy";

/// The fields of a `modules.json` listing that belong to the module, not to a version.
const MODULE_FIELDS: [&str; 7] = [
    "name",
    "author",
    "about",
    "owners",
    "maintainers",
    "availableVersions",
    "tags",
];
/// The fields of `metadata.json` that a `modules.json` listing repeats.
const LISTED_METADATA: [&str; 5] = ["name", "author", "about", "owners", "maintainers"];

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum FileKind {
    Registry,
    Metadata(String, String),
    Tags(String, String),
    Version(String, String, String),
    /// A file in a module folder whose name is not a version.
    Stray(String, String),
    Allowlist,
    Marketplace,
    Advisories,
    Legacy,
    DerivedIndex,
}

fn file_kind(rel: &Path, head: &[u8]) -> Option<FileKind> {
    let comps: Vec<&str> = rel
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    let file = *comps.last()?;
    let stem = file.strip_suffix(".json")?;
    let head = String::from_utf8_lossy(head);
    let object = head.trim_start().starts_with('{');
    if !object {
        return None;
    }
    let dirs = &comps[..comps.len() - 1];
    if dirs.contains(&"_index") {
        return Some(FileKind::DerivedIndex);
    }
    if file == "advisories.json" && head.contains("\"advisories\"") {
        return Some(FileKind::Advisories);
    }
    // Legacy files of this registry: gist registries (modules, MCP servers), older
    // module records, DNS records; other systems' legacy files are not taken.
    let legacy_shape = ["\"modules\"", "\"servers\"", "\"mlldVersion\""]
        .iter()
        .any(|k| head.contains(k))
        || (head.contains("\"records\"") && head.contains("\"domain\""));
    if dirs.contains(&"legacy") && legacy_shape {
        return Some(FileKind::Legacy);
    }
    if matches!(file, "modules.json" | "modules.generated.json") && head.contains("\"modules\"") {
        return Some(FileKind::Registry);
    }
    if comps.len() >= 4 && comps[comps.len() - 4] == "modules" {
        let (ns, name) = (
            comps[comps.len() - 3].to_string(),
            comps[comps.len() - 2].to_string(),
        );
        return Some(match file {
            "metadata.json" => FileKind::Metadata(ns, name),
            "tags.json" => FileKind::Tags(ns, name),
            _ if semver::Version::parse(stem).is_ok() => {
                FileKind::Version(ns, name, stem.to_string())
            }
            _ => FileKind::Stray(ns, name),
        });
    }
    if file == "allowlist.json" && head.contains("\"trustedAuthors\"") {
        return Some(FileKind::Allowlist);
    }
    if file == "marketplace.json" && dirs.last() == Some(&".claude-plugin") {
        return Some(FileKind::Marketplace);
    }
    None
}

pub struct ModulesReader;

impl Reader for ModulesReader {
    fn format(&self) -> Format {
        Format::Modules
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
            "not a file of the modules format (expected modules.json, \
             modules/<ns>/<name>/{metadata,tags,<version>}.json, allowlist.json, \
             .claude-plugin/marketplace.json or a legacy registry file)",
        );
        // `modules.json` before `modules.generated.json`, so the hand-kept index wins.
        typed.sort_by(|(a, pa), (b, pb)| {
            let generated = |p: &Path| p.file_name() == Some("modules.generated.json".as_ref());
            a.cmp(b)
                .then_with(|| generated(pa).cmp(&generated(pb)))
                .then_with(|| pa.cmp(pb))
        });
        let mut modules: BTreeMap<(String, String), Module> = BTreeMap::new();
        for (kind, rel) in typed {
            let whole_file = |collection: &str, bundle: &mut Bundle, value: Value| {
                bundle.documents.push(BundleDocument {
                    origin: Origin::new(rel.clone(), Some(1)),
                    document: NewDocument::new(collection, path_key(rel), value),
                });
            };
            match kind {
                FileKind::DerivedIndex => {
                    bundle.count("legacy files", 1);
                    bundle.rejected.push(Origin::new(rel.clone(), None).reject(
                        None,
                        None,
                        "a derived index (regenerated from the registry files beside it); \
                         not kept",
                    ));
                    continue;
                }
                FileKind::Stray(ns, name) => {
                    bundle.rejected.push(Origin::new(rel.clone(), None).reject(
                        Some(format!("@{ns}/{name}")),
                        None,
                        "in a module folder, but not metadata.json, tags.json or \
                         <semver version>.json",
                    ));
                    continue;
                }
                _ => {}
            }
            let Some((text, value)) = load_json(root, rel, &mut bundle) else {
                if kind == FileKind::Legacy {
                    bundle.count("legacy files", 1);
                }
                continue;
            };
            let origin = Origin::new(rel.clone(), Some(1));
            match kind {
                FileKind::Registry => read_registry(rel, &text, value, &mut modules, &mut bundle),
                FileKind::Metadata(ns, name) => {
                    module(&mut modules, ns, name).metadata = Some((origin, value));
                }
                FileKind::Tags(ns, name) => {
                    module(&mut modules, ns, name).tags = Some((origin, value));
                }
                FileKind::Version(ns, name, version) => {
                    bundle.count("version files", 1);
                    match value.get("version").and_then(Value::as_str) {
                        Some(v) if v == version => {
                            module(&mut modules, ns, name)
                                .versions
                                .insert(version, (origin, value));
                        }
                        other => bundle.rejected.push(origin.reject(
                            Some(format!("@{ns}/{name}")),
                            Some("version"),
                            format!(
                                "version: the file is named for {version} but holds {}",
                                other.map_or("no version".to_string(), |v| format!("{v:?}"))
                            ),
                        )),
                    }
                }
                FileKind::Allowlist => whole_file(ALLOWLIST, &mut bundle, value),
                FileKind::Marketplace => whole_file(MARKETPLACE, &mut bundle, value),
                FileKind::Advisories => {
                    let n = value
                        .get("advisories")
                        .and_then(Value::as_array)
                        .map_or(0, Vec::len);
                    bundle.count("advisories", n as u64);
                    whole_file(ADVISORIES, &mut bundle, value);
                }
                FileKind::Legacy => {
                    bundle.count("legacy files", 1);
                    whole_file(LEGACY, &mut bundle, value);
                }
                FileKind::DerivedIndex | FileKind::Stray(..) => {}
            }
        }
        for ((ns, name), m) in modules {
            m.finish(ns, name, &mut bundle);
        }
        bundle
    }
}

#[derive(Debug, Default)]
struct Module {
    /// The first `modules.json` listing: where, and the listing.
    listing: Option<(Origin, Map<String, Value>)>,
    metadata: Option<(Origin, Value)>,
    tags: Option<(Origin, Value)>,
    versions: BTreeMap<String, (Origin, Value)>,
}

fn module(
    modules: &mut BTreeMap<(String, String), Module>,
    ns: String,
    name: String,
) -> &mut Module {
    modules.entry((ns, name)).or_default()
}

fn read_registry(
    rel: &Path,
    text: &str,
    mut value: Value,
    modules: &mut BTreeMap<(String, String), Module>,
    bundle: &mut Bundle,
) {
    let Some(Value::Object(listed)) = value.as_object_mut().and_then(|o| o.remove("modules"))
    else {
        bundle.rejected.push(Origin::new(rel, Some(1)).reject(
            None,
            Some("modules"),
            "modules: expected an object of \"@namespace/name\" → module",
        ));
        return;
    };
    bundle.documents.push(BundleDocument {
        origin: Origin::new(rel, Some(1)),
        document: NewDocument::new(INDEX, path_key(rel), value),
    });
    for (key, listing) in listed {
        bundle.count("registry listings", 1);
        let origin = Origin::new(rel, key_lines(text, &key).first().copied());
        let Some((ns, name)) = key
            .strip_prefix('@')
            .and_then(|k| k.split_once('/'))
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
        else {
            bundle.rejected.push(origin.reject(
                Some(key.clone()),
                Some("modules"),
                format!("modules: key {key:?} is not \"@namespace/name\""),
            ));
            continue;
        };
        let Value::Object(listing) = listing else {
            bundle.rejected.push(origin.reject(
                Some(key.clone()),
                Some(&key),
                format!("{key}: expected an object"),
            ));
            continue;
        };
        if let Some(n) = listing.get("name").and_then(Value::as_str) {
            if n != name {
                bundle.warnings.push(origin.reject(
                    Some(key.clone()),
                    Some("name"),
                    format!("name: the listing says {n:?}, its key says {name:?}; the key is used"),
                ));
            }
        }
        let m = module(modules, ns.to_string(), name.to_string());
        match &m.listing {
            None => m.listing = Some((origin, listing)),
            Some((_, kept)) if *kept == listing => {
                bundle.count("registry listings repeated", 1);
            }
            Some((first, _)) => bundle.warnings.push(origin.reject(
                Some(key.clone()),
                None,
                format!(
                    "this listing differs from the one at {}; that one is kept",
                    place(first)
                ),
            )),
        }
    }
}

fn place(o: &Origin) -> String {
    match o.line {
        Some(l) => format!("{}:{l}", o.file.display()),
        None => o.file.display().to_string(),
    }
}

/// A listing's fields that belong to its version.
fn version_part(listing: &Map<String, Value>) -> Map<String, Value> {
    listing
        .iter()
        .filter(|(k, _)| !MODULE_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl Module {
    fn finish(mut self, ns: String, name: String, bundle: &mut Bundle) {
        let key = format!("@{ns}/{name}");
        let origin = self
            .listing
            .as_ref()
            .map(|(o, _)| o.clone())
            .or_else(|| self.metadata.as_ref().map(|(o, _)| o.clone()))
            .or_else(|| self.versions.values().next().map(|(o, _)| o.clone()))
            .or_else(|| self.tags.as_ref().map(|(o, _)| o.clone()));
        let Some(origin) = origin else {
            return;
        };
        bundle.count("modules", 1);
        let checked = names::validate_namespace(&ns)
            .and_then(|()| names::validate_name(Kind::Module, &ns, &name));
        if let Err(e) = checked {
            bundle
                .rejected
                .push(origin.reject(Some(key), e.field.as_deref(), e.message));
            return;
        }

        // The listing's version, where no file holds it; a check where one does.
        if let Some((lo, listing)) = &self.listing {
            let part = version_part(listing);
            if let Some(v) = part.get("version").and_then(Value::as_str) {
                match self.versions.get(v) {
                    Some((_, file)) if *file != Value::Object(part.clone()) => {
                        bundle.warnings.push(lo.reject(
                            Some(key.clone()),
                            None,
                            format!(
                                "the listing of {v} differs from its version file; \
                                 the version file is kept"
                            ),
                        ))
                    }
                    Some(_) => {}
                    None => {
                        self.versions
                            .insert(v.to_string(), (lo.clone(), Value::Object(part)));
                    }
                }
            }
            let listed = listing
                .get("availableVersions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for v in listed.iter().filter_map(Value::as_str) {
                if !self.versions.contains_key(v) {
                    bundle.warnings.push(lo.reject(
                        Some(key.clone()),
                        Some("availableVersions"),
                        format!(
                            "availableVersions: {v} has no version file and is not the \
                             listed version, so it is not imported"
                        ),
                    ));
                }
            }
        }
        if self.versions.is_empty() {
            bundle.rejected.push(origin.reject(
                Some(key),
                Some("versions"),
                "versions: no version file (modules/<ns>/<name>/<version>.json) and no \
                 listing in modules.json",
            ));
            return;
        }
        bundle.count("versions", self.versions.len() as u64);

        let listing = self.listing.as_ref().map(|(_, l)| l);
        let metadata = self.metadata.map(|(_, v)| v).or_else(|| {
            listing.map(|l| {
                Value::Object(
                    l.iter()
                        .filter(|(k, _)| LISTED_METADATA.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            })
        });
        let tags = self
            .tags
            .map(|(_, v)| v)
            .or_else(|| listing.and_then(|l| l.get("tags").cloned()));
        let about = metadata
            .as_ref()
            .and_then(|m| m.get("about"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // The current version: the `latest` dist-tag, else the highest.
        let current = tags
            .as_ref()
            .and_then(|t| t.get("latest"))
            .and_then(Value::as_str)
            .filter(|v| self.versions.contains_key(*v))
            .map(str::to_string)
            .or_else(|| {
                self.versions
                    .keys()
                    .filter_map(|v| semver::Version::parse(v).ok())
                    .max()
                    .map(|v| v.to_string())
            });
        let keywords: Vec<String> = current
            .as_ref()
            .and_then(|v| self.versions.get(v))
            .and_then(|(_, m)| m.get("keywords"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();

        for (collection, body) in [(METADATA, metadata), (DIST_TAGS, tags)] {
            if let Some(body) = body {
                bundle.documents.push(BundleDocument {
                    origin: origin.clone(),
                    document: NewDocument::new(collection, key.clone(), body),
                });
            }
        }
        let mut record = BundleRecord::new(
            origin,
            NewEntry {
                kind: Kind::Module,
                namespace: ns,
                name,
                display_name: None,
                description: about,
                category: None,
                tags: Vec::new(),
                keywords,
                status: None,
                visibility: None,
                popularity: None,
            },
        );
        record.versions = self
            .versions
            .into_iter()
            .map(|(version, (_, manifest))| NewVersion {
                version,
                manifest,
                changelog: None,
                breaking: false,
            })
            .collect();
        bundle.records.push(record);
    }
}

/// Write the store's modules and the modules collections back as the registry's files
/// under `out`: `modules/<ns>/<name>/{<version>,metadata,tags}.json`, each index file read
/// (`modules.json`, `modules.generated.json`; `modules.json` when none was), and every
/// other document at its own path.
pub async fn export(
    store: &dyn Store,
    filter: &ExportFilter,
    out: &Path,
) -> quiver_model::Result<ExportSummary> {
    let mut summary = ExportSummary::default();
    let mut listings = Map::new();
    let entry_filter = EntryFilter {
        kinds: vec![Kind::Module],
        ..EntryFilter::default()
    };
    let metadata = document_bodies(store, METADATA, 500).await?;
    let dist_tags = document_bodies(store, DIST_TAGS, 500).await?;
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_entries(&entry_filter, cursor.as_deref(), 500)
            .await?;
        for e in page.items {
            if !filter.admits(e.category.as_deref(), e.status) {
                continue;
            }
            let key = format!("@{}/{}", e.namespace, e.name);
            let dir = format!("modules/{}/{}", e.namespace, e.name);
            let versions = store
                .list_versions(&EntryKey::new(Kind::Module, &e.namespace, &e.name))
                .await?;
            for v in &versions {
                write_json(out, &format!("{dir}/{}.json", v.version), &v.manifest)?;
                summary.files += 1;
            }
            let meta = metadata.get(&key);
            let tags = dist_tags.get(&key);
            if let Some(m) = meta {
                write_json(out, &format!("{dir}/metadata.json"), m)?;
                summary.files += 1;
                summary.documents += 1;
            }
            if let Some(t) = tags {
                write_json(out, &format!("{dir}/tags.json"), t)?;
                summary.files += 1;
                summary.documents += 1;
            }
            let current = tags
                .and_then(|t| t.get("latest"))
                .and_then(Value::as_str)
                .and_then(|l| versions.iter().find(|v| v.version == l))
                .or_else(|| {
                    let latest = e.latest_version.as_deref()?;
                    versions.iter().find(|v| v.version == latest)
                })
                .or_else(|| versions.first());
            let mut listing = Map::new();
            if let Some(Value::Object(m)) = meta {
                for (k, v) in m {
                    if LISTED_METADATA.contains(&k.as_str()) {
                        listing.insert(k.clone(), v.clone());
                    }
                }
            }
            if let Some(Value::Object(m)) = current.map(|v| &v.manifest) {
                for (k, v) in m {
                    listing.insert(k.clone(), v.clone());
                }
            }
            listing.insert(
                "availableVersions".into(),
                json!(versions.iter().map(|v| &v.version).collect::<Vec<_>>()),
            );
            if let Some(t) = tags {
                listing.insert("tags".into(), t.clone());
            }
            listings.insert(key, Value::Object(listing));
            summary.entries += 1;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }

    let mut indexes = document_bodies(store, INDEX, 500).await?;
    if indexes.is_empty() {
        indexes.insert("modules.json".into(), json!({ "version": "2.0" }));
    } else {
        summary.documents += indexes.len() as u64;
    }
    for (path, mut top) in indexes {
        if let Value::Object(o) = &mut top {
            o.insert("modules".into(), Value::Object(listings.clone()));
        }
        write_json(out, &path, &top)?;
        summary.files += 1;
    }
    for collection in [ALLOWLIST, MARKETPLACE, ADVISORIES, LEGACY] {
        for (path, body) in document_bodies(store, collection, 500).await? {
            write_json(out, &path, &body)?;
            summary.files += 1;
            summary.documents += 1;
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_told_apart_by_path_and_shape() {
        let k = |p: &str, head: &str| file_kind(Path::new(p), head.as_bytes());
        assert_eq!(
            k("modules.json", "{\"version\": \"2.0\", \"modules\": {"),
            Some(FileKind::Registry)
        );
        assert_eq!(
            k("x/_index/modules.json", "{\"modules\": {}}"),
            Some(FileKind::DerivedIndex)
        );
        assert_eq!(
            k("modules/mlld/array/2.0.0.json", "{}"),
            Some(FileKind::Version(
                "mlld".into(),
                "array".into(),
                "2.0.0".into()
            ))
        );
        assert_eq!(
            k("modules/mlld/array/notes.json", "{}"),
            Some(FileKind::Stray("mlld".into(), "array".into()))
        );
        assert_eq!(
            k(
                "legacy/later/dns/records.json",
                "{\"domain\": \"x\", \"records\": []}"
            ),
            Some(FileKind::Legacy)
        );
        assert_eq!(
            k("data/legacy/priority-queue.json", "{\"packages\": []}"),
            None
        );
        assert_eq!(
            k("a/advisories.json", "{\"advisories\": []}"),
            Some(FileKind::Advisories)
        );
        assert_eq!(
            k("allowlist.json", "{\"trustedAuthors\": []}"),
            Some(FileKind::Allowlist)
        );
        assert_eq!(k("package.json", "{\"name\": \"x\"}"), None);
        assert_eq!(k("scraped.json", "[{\"rank\": 1}]"), None);
    }
}
