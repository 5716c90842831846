//! tsuku: install recipes (TOML) and the data its recipe-generation pipeline keeps.
//!
//! # What is read, and where it goes
//!
//! **Recipes** (`recipes/<letter>/<name>.toml`, and the recipes embedded in the tsuku
//! binary, `internal/recipe/recipes/<name>.toml`) become `recipe` entries:
//!
//! | tsuku | quiver |
//! |---|---|
//! | registry recipe | namespace `tsuku` |
//! | embedded recipe | namespace `tsuku-embedded` (a separate catalog: the binary ships it, the registry may ship a recipe of the same name) |
//! | `metadata.name` | entry name (a warning when it differs from the file's name) |
//! | `metadata.description` | description |
//! | `metadata.type` (when not empty, e.g. `library`) | category |
//! | the steps' actions (`homebrew`, `github_archive`...), in order, and `run-command` when a step runs a shell command | tags |
//! | the whole file (`metadata`, `version`, `steps`, `verify`, anything else) | the manifest, published as a revision (1.0.0, then the next patch when it changes) |
//!
//! The manifest also carries a `derived` object, computed here and dropped on export:
//! `platforms` (every `os`, `arch`, `libc`, `linux_family`, `gpu` and `platform` value the
//! steps' `when` tables and `metadata.supported_*` name; empty means "any"),
//! `unsupported_platforms` (from `metadata`), `actions`, `steps` (how many) and `flags`
//! (`run_command`: whether a step runs an arbitrary command, `run_command_steps`: their
//! 1-based positions). A recipe whose own file has a top-level `derived` table is rejected,
//! as that name is quiver's.
//!
//! **Pipeline data** becomes documents, one per record, each body the record as tsuku
//! wrote it:
//!
//! | file | collection | key |
//! |---|---|---|
//! | `recipes/discovery/<a>/<ab>/<name>.json` | `tsuku.discovery` | `<name>` |
//! | `data/queues/priority-queue.json` (`entries[]`) | `tsuku.priority_queue` | entry `name` |
//! | `data/queues/priority-queue-*.json` (`packages[]`, tiers) | `tsuku.homebrew_queue` | package `id` |
//! | `data/queues/batch-results*.json` | `tsuku.batch_results` | `batch_id` |
//! | `data/legacy/priority-queue.json` (`packages[]`) | `tsuku.legacy_priority_queue` | package `id` |
//! | `data/legacy/dep-mapping.json` | `tsuku.dep_mapping` | `<ecosystem>:<dependency>`, body `{ecosystem, dependency, status: mapped\|pending, recipe}` |
//! | `data/failures/*.jsonl` (both line shapes) | `tsuku.failures` | `<file name>:<line>` |
//! | `data/metrics/*.jsonl` (one or several lines per record) | `tsuku.metrics` | `<file name>:<line>`, or `<file name>#<n>` (the n-th record) when records span several lines |
//! | `data/discovery-seeds/<file>.json` (`entries[]`) | `tsuku.discovery_seeds` | `<file stem>:<name>` |
//! | `data/disambiguations/*.jsonl` | `tsuku.disambiguations` | `<file name>:<line>` |
//! | `data/disambiguations/audit/<tool>.json` | `tsuku.disambiguations` | `audit/<tool>` |
//! | `data/schemas/<file>.json`, `data/examples/<file>.json` | `tsuku.schemas`, `tsuku.examples` | file name |
//!
//! The two failure line shapes are checked: per recipe and platform
//! (`{schema_version, recipe, platform, exit_code, category, timestamp}`, the `batch-*`
//! files) and per ecosystem and environment (`{schema_version, ecosystem, environment,
//! updated_at, failures[{package_id, ...}]}`); a line of neither shape is rejected with
//! its file and line.
//!
//! Every data file also gets a document in `tsuku.files`, keyed by its path from the
//! tsuku root (`data/queues/priority-queue.json`): which collection holds its records,
//! its layout, its file-level fields (`schema_version`, `updated_at`, `tiers`,
//! `category`...) and its record keys in file order. Export rebuilds each file from it;
//! a JSON Lines record goes back to the line its key names (a line that was blank or
//! rejected comes back blank), so keys stay the same through a round trip.
//!
//! # What is claimed
//!
//! A `.toml` file with a `[metadata]` table; a `.json` file under `data/queues`,
//! `data/legacy`, `data/discovery-seeds`, `data/disambiguations/audit`, `data/schemas`,
//! `data/examples` or `recipes/discovery/<a>/<ab>/`; a `.jsonl` file under
//! `data/failures`, `data/metrics` or `data/disambiguations`. The `data` folder must be
//! in the path (import the tsuku root, or force `--format recipes`).
//!
//! # Export
//!
//! [`export`] writes recipes back to `recipes/<first letter>/<name>.toml` (embedded ones
//! to `internal/recipe/recipes/<name>.toml`) and every file `tsuku.files` describes back to
//! its path. Files are semantically equal to what was read (same TOML/JSON values; key
//! order and layout may differ). The export filter applies to recipes; documents have no
//! category or status and are all written. A document added to a collection later (not
//! listed in any `tsuku.files` document) is written at the end of its collection's file
//! when one queue or mapping file holds that collection, and not written otherwise.

mod data;
mod export;
mod recipe;
mod text;

use std::path::{Component, Path, PathBuf};

use super::files::read_text;
use super::{Bundle, Reader};
use crate::Format;

pub use export::export;
pub use recipe::derive as derive_recipe;

/// Namespace of the registry's recipes.
pub const NAMESPACE: &str = "tsuku";
/// Namespace of the recipes embedded in the tsuku binary.
pub const EMBEDDED_NAMESPACE: &str = "tsuku-embedded";
/// Collection describing each data file (layout, file-level fields, record keys).
pub const FILES_COLLECTION: &str = "tsuku.files";

/// Reads tsuku recipes and pipeline data.
pub struct RecipesReader;

/// A folder of tsuku's `data/` tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataDir {
    Queues,
    Legacy,
    Failures,
    Metrics,
    DiscoverySeeds,
    Disambiguations,
    DisambiguationAudit,
    Schemas,
    Examples,
    Discovery,
}

/// Where a file sits in a tsuku tree.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    Recipe {
        embedded: bool,
    },
    /// `canonical`: the path from the tsuku root, with `/` separators.
    Data {
        dir: DataDir,
        canonical: String,
    },
}

fn components(rel: &Path) -> Vec<String> {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect()
}

/// Where `rel` sits in a tsuku tree, from its path alone.
fn place(rel: &Path) -> Option<Place> {
    let comps = components(rel);
    let file = comps.last()?;
    let ext = Path::new(file).extension()?.to_str()?;
    let n = comps.len();
    if ext == "toml" {
        let embedded = comps
            .windows(3)
            .any(|w| w[0] == "internal" && w[1] == "recipe" && w[2] == "recipes");
        return Some(Place::Recipe { embedded });
    }
    // recipes/discovery/<a>/<ab>/<name>.json
    if ext == "json" && n >= 5 && comps[n - 5] == "recipes" && comps[n - 4] == "discovery" {
        return Some(Place::Data {
            dir: DataDir::Discovery,
            canonical: comps[n - 5..].join("/"),
        });
    }
    // data/disambiguations/audit/<tool>.json
    if ext == "json"
        && n >= 4
        && comps[n - 4] == "data"
        && comps[n - 3] == "disambiguations"
        && comps[n - 2] == "audit"
    {
        return Some(Place::Data {
            dir: DataDir::DisambiguationAudit,
            canonical: comps[n - 4..].join("/"),
        });
    }
    if n < 3 || comps[n - 3] != "data" {
        return None;
    }
    let dir = match (comps[n - 2].as_str(), ext) {
        ("queues", "json") => DataDir::Queues,
        ("legacy", "json") => DataDir::Legacy,
        ("discovery-seeds", "json") => DataDir::DiscoverySeeds,
        ("schemas", "json") => DataDir::Schemas,
        ("examples", "json") => DataDir::Examples,
        ("failures", "jsonl") => DataDir::Failures,
        ("metrics", "jsonl") => DataDir::Metrics,
        ("disambiguations", "jsonl") => DataDir::Disambiguations,
        _ => return None,
    };
    Some(Place::Data {
        dir,
        canonical: comps[n - 3..].join("/"),
    })
}

/// Whether `head` (the first bytes of a TOML file) has a `[metadata]` table.
fn has_metadata_table(head: &[u8]) -> bool {
    String::from_utf8_lossy(head)
        .lines()
        .any(|l| l.trim() == "[metadata]")
}

impl Reader for RecipesReader {
    fn format(&self) -> Format {
        Format::Recipes
    }

    fn claims(&self, rel: &Path, head: &[u8]) -> bool {
        match place(rel) {
            Some(Place::Recipe { .. }) => has_metadata_table(head),
            // JSON objects; an empty file too (tsuku writes empty failure files).
            Some(Place::Data { .. }) => head
                .iter()
                .find(|b| !b.is_ascii_whitespace())
                .is_none_or(|&b| b == b'{'),
            None => false,
        }
    }

    fn read(&self, root: &Path, files: &[PathBuf]) -> Bundle {
        let mut bundle = Bundle::default();
        let mut seen = data::Seen::default();
        for rel in files {
            let origin = super::Origin::new(rel.clone(), None);
            let Some(place) = place(rel) else {
                bundle.rejected.push(origin.reject(
                    None,
                    None,
                    "not a tsuku file: expected a recipe (.toml with [metadata]), \
                     recipes/discovery/<a>/<ab>/<name>.json, or a .json/.jsonl file under \
                     data/{queues,legacy,failures,metrics,discovery-seeds,disambiguations,\
                     schemas,examples}",
                ));
                continue;
            };
            let Some(text) = read_text(root, rel, &mut bundle) else {
                continue;
            };
            match place {
                Place::Recipe { embedded } => recipe::read(rel, &text, embedded, &mut bundle),
                Place::Data { dir, canonical } => {
                    data::read(rel, dir, &canonical, &text, &mut bundle, &mut seen)
                }
            }
        }
        bundle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places() {
        let p = |s: &str| place(Path::new(s));
        assert_eq!(
            p("recipes/a/age.toml"),
            Some(Place::Recipe { embedded: false })
        );
        assert_eq!(
            p("x/internal/recipe/recipes/go.toml"),
            Some(Place::Recipe { embedded: true })
        );
        assert_eq!(
            p("tsuku/data/queues/priority-queue.json"),
            Some(Place::Data {
                dir: DataDir::Queues,
                canonical: "data/queues/priority-queue.json".into()
            })
        );
        assert_eq!(
            p("recipes/discovery/a/ag/age.json"),
            Some(Place::Data {
                dir: DataDir::Discovery,
                canonical: "recipes/discovery/a/ag/age.json".into()
            })
        );
        assert_eq!(
            p("data/disambiguations/audit/a2ps.json"),
            Some(Place::Data {
                dir: DataDir::DisambiguationAudit,
                canonical: "data/disambiguations/audit/a2ps.json".into()
            })
        );
        // Not tsuku's: other systems' JSON, a JSON file where JSONL is expected.
        assert_eq!(p("modules.json"), None);
        assert_eq!(p("registry/skills-registry.json"), None);
        assert_eq!(p("shared/schemas/x.json"), None);
        assert_eq!(p("data/failures/x.json"), None);
        assert_eq!(p("queues/priority-queue.json"), None);
    }

    #[test]
    fn claims_toml_only_with_metadata() {
        let r = RecipesReader;
        assert!(r.claims(
            Path::new("recipes/a/age.toml"),
            b"# c\n[metadata]\nname = \"age\"\n"
        ));
        assert!(!r.claims(Path::new("Cargo.toml"), b"[package]\nname = \"x\"\n"));
        assert!(r.claims(Path::new("data/metrics/runs.jsonl"), b"\n{\"a\":1}"));
        assert!(!r.claims(Path::new("data/metrics/runs.jsonl"), b"a,b\n"));
    }
}
