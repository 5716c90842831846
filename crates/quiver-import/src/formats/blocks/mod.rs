//! The `blocks` format of TPMJS: a `blocks.yml` tool catalog, and the npm package
//! manifests (`package.json`) that carry a `tpmjs` field.
//!
//! # What is read, and where it goes
//!
//! A `blocks.yml` (any `.yml`/`.yaml` file named `blocks` or `*.blocks`, or whose first
//! bytes hold a top-level `blocks:` key) is one *catalog*, named by its `name` (or by the
//! file's stem when it has none):
//!
//! | `blocks.yml` | quiver |
//! |---|---|
//! | `blocks.<id>` (each tool block) | `tool` entry `tpmjs/<id>`; description = the block's, category = the id's first segment; its `revision` manifest is the block as it stands (`description`, `path`, `domain_rules`, `inputs`, `outputs` with `measures`, and any other key), plus `catalog` (the catalog's name) and the derived `input_schema` / `output_schema` (JSON Schemas built from `inputs` / `outputs`: an input is required unless it says `optional: true`; `string[]` becomes an array of strings, `'a' \| 'b'` an enum, `A \| B` an `anyOf`, a type name an object titled with it) |
//! | `blocks.domain_rules[]` (shared rules) | document `blocks.rules`, key `<catalog>/<rule id>`, body = the rule |
//! | `philosophy[i]` | document `blocks.philosophy`, key `<catalog>/<i, 4 digits>`, body `{"text": ...}` |
//! | `domain.entities.<id>` / `domain.signals.<id>` / `domain.measures.<id>` | documents `blocks.entities` / `blocks.signals` / `blocks.measures`, key `<catalog>/<id>`, body = the item |
//! | `name`, `root`, `validators` and any other top-level key | document `blocks.catalog`, key `<catalog>`: those keys as they are, plus `layout` (the file's name, the order of its top-level keys, of its domain sections and of the items in each) so export writes the file back in its own order |
//!
//! A `package.json` whose JSON has a `tpmjs` object:
//!
//! | `package.json` | quiver |
//! |---|---|
//! | the package | `package` entry `npm/<name>` with one version (`version`); description, keywords, category = `tpmjs.category`; manifest: `summary` (= description), `license`, `homepage`, `repository` (its URL) and `repository_directory`, `dependencies`, `keywords`, the whole `tpmjs` object, and `manifest_path` (where the file was, relative to the import root) |
//! | `tpmjs.tools[i]` | a relation `implements` from the package to a `tool` entry: the block whose `path` names the package's folder (when the package defines one tool, or when the tool's name without a `Tool` suffix is the block id's last segment); otherwise a `tool` entry `tpmjs/<category>.<tool name>` made from the definition (its `parameters` as `inputs`, `returns`, `input_schema` with `required`, `output_schema`, `package`) so the relation has a target |
//!
//! Counted units: `tool blocks`, `shared rules`, `philosophy lines`, `entities`,
//! `signals`, `measures`, `package manifests`, `tool definitions`.
//!
//! # Export
//!
//! [`export`] regenerates each catalog's `blocks.yml` from the `blocks.*` documents and
//! the latest manifests of the `tpmjs` tool entries whose `catalog` names it (the derived
//! `catalog`, `input_schema` and `output_schema` are dropped), filtered by category and
//! status. `out` is either a `.yml`/`.yaml` file (the one catalog is written there; with
//! several catalogs, use a folder), or a folder: then each catalog goes to the file name
//! it was read from, and the npm packages with a `tpmjs` field are written back as
//! `package.json` files at their `manifest_path`, so importing the folder gives the same
//! entries, documents and relations. What is not kept: YAML comments and quoting, and
//! the `package.json` fields quiver does not store (`scripts`, `exports`, `files`,
//! `devDependencies`, ...): the export is semantically equal to the original in every
//! field that is kept, not textually equal.

mod export;
mod read;
mod schema;

use std::path::{Path, PathBuf};

pub use export::export;

use super::{Bundle, Reader};
use crate::Format;

/// The namespace of tool entries read from catalogs.
pub const TOOL_NAMESPACE: &str = "tpmjs";
/// The namespace of the npm packages.
pub const PACKAGE_NAMESPACE: &str = "npm";

/// Document collections.
pub const CATALOG: &str = "blocks.catalog";
pub const PHILOSOPHY: &str = "blocks.philosophy";
pub const ENTITIES: &str = "blocks.entities";
pub const SIGNALS: &str = "blocks.signals";
pub const MEASURES: &str = "blocks.measures";
pub const RULES: &str = "blocks.rules";

/// The domain sections kept as documents, with their collection.
const DOMAIN_SECTIONS: [(&str, &str); 3] = [
    ("entities", ENTITIES),
    ("signals", SIGNALS),
    ("measures", MEASURES),
];

/// Manifest keys derived at import and dropped at export.
const DERIVED: [&str; 3] = ["catalog", "input_schema", "output_schema"];

pub struct BlocksReader;

fn is_yaml(rel: &Path) -> bool {
    matches!(
        rel.extension().and_then(|e| e.to_str()),
        Some("yml" | "yaml")
    )
}

fn is_package_json(rel: &Path) -> bool {
    rel.file_name().and_then(|n| n.to_str()) == Some("package.json")
}

/// A YAML file named `blocks.yml` or `<x>.blocks.yml` (any case of `.yaml` too).
fn is_blocks_name(rel: &Path) -> bool {
    rel.file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == "blocks" || s.ends_with(".blocks"))
}

/// Whether the text holds a line that starts (in column 0) with `key:`.
fn has_top_level_key(head: &str, key: &str) -> bool {
    head.lines().any(|l| {
        l.strip_prefix(key)
            .is_some_and(|rest| rest.starts_with(':'))
    })
}

impl Reader for BlocksReader {
    fn format(&self) -> Format {
        Format::Blocks
    }

    fn claims(&self, rel: &Path, head: &[u8]) -> bool {
        let head = String::from_utf8_lossy(head);
        if is_yaml(rel) {
            // The `blocks:` key of a real catalog sits far below the first 8 KiB (after
            // the philosophy and the domain), so the two sections before it count too.
            is_blocks_name(rel)
                || has_top_level_key(&head, "blocks")
                || (has_top_level_key(&head, "philosophy") && has_top_level_key(&head, "domain"))
        } else {
            is_package_json(rel) && head.contains("\"tpmjs\"")
        }
    }

    fn read(&self, root: &Path, files: &[PathBuf]) -> Bundle {
        read::read(root, files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_catalogs_and_tpmjs_manifests_only() {
        let r = BlocksReader;
        assert!(r.claims(Path::new("blocks.yml"), b"name: x\n"));
        assert!(r.claims(Path::new("a/team.blocks.yaml"), b""));
        assert!(r.claims(Path::new("cat.yml"), b"name: x\nblocks:\n  a.b: {}\n"));
        assert!(r.claims(
            Path::new("cat.yml"),
            b"name: x\nphilosophy:\n  - p\ndomain:\n  entities: {}\n"
        ));
        assert!(!r.claims(Path::new("tool.yaml"), b"tool_name: nmap\n"));
        assert!(!r.claims(Path::new("tool.yaml"), b"tool_name: x\n  blocks:\n"));
        assert!(r.claims(
            Path::new("x/package.json"),
            b"{\"name\":\"a\",\"tpmjs\":{}}"
        ));
        assert!(!r.claims(Path::new("x/package.json"), b"{\"name\":\"a\"}"));
        assert!(!r.claims(Path::new("x/other.json"), b"{\"tpmjs\":{}}"));
    }
}
