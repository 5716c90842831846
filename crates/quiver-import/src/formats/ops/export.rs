//! The export of the `ops-tools` format: the store's opsconductor tools and documents
//! back as the catalog's own files.
//!
//! - each `tool` entry of namespace `opsconductor` (its latest version's manifest, without
//!   `quiver_source_path`) → `tools/<quiver_source_path>`, or, for a manifest without
//!   one, `tools/<platform>/<name>.yaml`; the top-level keys in the catalog's usual
//!   order (`tool_name`, `execution_location`, `version`, `description`, ...);
//! - `ops.optimization_profiles` → `tool_optimization_profiles.yaml` (the `_file`
//!   document's fields, then `tools:` with one profile per document);
//! - `ops.schemas` → `shared/schemas/<key>.json`.
//!
//! YAML comments are not kept by the import, so they are not written back; everything
//! else is (the files are equal to the originals as data, not as text).

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use quiver_model::{Error, Kind, Result};
use quiver_store::{EntryFilter, Store};
use serde_json::Value;

use super::{
    NAMESPACE, PROFILES_COLLECTION, PROFILES_FILE, PROFILES_FILE_KEY, SCHEMAS_COLLECTION,
    SOURCE_PATH,
};
use crate::formats::files::{all_documents, latest_versions, write};
use crate::formats::{ExportFilter, ExportSummary};

/// The top-level keys of a profile in the order the catalog writes them; others follow
/// in name order.
const KEY_ORDER: &[&str] = &[
    "tool_name",
    "execution_location",
    "version",
    "description",
    "platform",
    "category",
    "status",
    "enabled",
    "defaults",
    "capabilities",
    "dependencies",
    "metadata",
    "created_by",
    "examples",
];

const PAGE: usize = 500;

pub async fn export(store: &dyn Store, filter: &ExportFilter, out: &Path) -> Result<ExportSummary> {
    let mut summary = ExportSummary::default();
    export_tools(store, filter, out, &mut summary).await?;
    export_profiles(store, out, &mut summary).await?;
    export_schemas(store, out, &mut summary).await?;
    Ok(summary)
}

fn to_yaml(v: &serde_yaml_ng::Value, what: &str) -> Result<String> {
    serde_yaml_ng::to_string(v).map_err(|e| Error::internal(format!("writing {what} as YAML"), e))
}

fn yaml_value(v: &Value) -> Result<serde_yaml_ng::Value> {
    serde_yaml_ng::to_value(v).map_err(|e| Error::internal("converting to YAML", e))
}

/// A stored source path, if it is a plain relative path (no `..`, no root).
fn safe_relative(p: &str) -> Option<PathBuf> {
    let path = Path::new(p);
    let ok = !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then(|| path.to_path_buf())
}

/// A single path segment made safe for a file name.
fn file_safe(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    match s.trim_matches('.') {
        "" => "_".into(),
        t => t.to_string(),
    }
}

/// Keys written first in nested mappings (a capability, a pattern, an input), in this
/// order; the others follow in name order.
const NESTED_FIRST: &[&str] = &["name", "capability_name", "pattern_name", "description"];

/// A JSON value as YAML with its mappings' keys in the catalog's usual order: `first`
/// for this mapping, [`NESTED_FIRST`] below it.
fn ordered(v: &Value, first: &[&str]) -> Result<serde_yaml_ng::Value> {
    Ok(match v {
        Value::Object(map) => {
            let mut out = serde_yaml_ng::Mapping::new();
            for k in first {
                if let Some(v) = map.get(*k) {
                    out.insert((*k).into(), ordered(v, NESTED_FIRST)?);
                }
            }
            for (k, v) in map {
                if !first.contains(&k.as_str()) {
                    out.insert(k.clone().into(), ordered(v, NESTED_FIRST)?);
                }
            }
            serde_yaml_ng::Value::Mapping(out)
        }
        Value::Array(items) => serde_yaml_ng::Value::Sequence(
            items
                .iter()
                .map(|i| ordered(i, NESTED_FIRST))
                .collect::<Result<_>>()?,
        ),
        scalar => yaml_value(scalar)?,
    })
}

async fn export_tools(
    store: &dyn Store,
    filter: &ExportFilter,
    out: &Path,
    summary: &mut ExportSummary,
) -> Result<()> {
    let entry_filter = EntryFilter {
        kinds: vec![Kind::Tool],
        namespaces: vec![NAMESPACE.to_string()],
        ..Default::default()
    };
    let mut written: BTreeSet<PathBuf> = BTreeSet::new();
    for (entry, version) in latest_versions(store, &entry_filter, filter, PAGE).await? {
        let mut manifest = match version.manifest {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let stored = manifest
            .remove(SOURCE_PATH)
            .and_then(|v| v.as_str().and_then(safe_relative));
        manifest
            .entry("tool_name")
            .or_insert_with(|| Value::String(entry.name.clone()));
        let mut rel = stored.unwrap_or_else(|| {
            let platform = manifest
                .get("platform")
                .and_then(Value::as_str)
                .map_or_else(|| "other".to_string(), file_safe);
            Path::new(&platform).join(format!("{}.yaml", file_safe(&entry.name)))
        });
        if written.contains(&rel) {
            // Two tools from the same path (imported from two roots): keep both.
            let stem = rel
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            rel.set_file_name(format!("{stem}.{}.yaml", file_safe(&entry.name)));
        }
        let text = to_yaml(&ordered(&Value::Object(manifest), KEY_ORDER)?, &entry.name)?;
        write(&out.join("tools").join(&rel), &text)?;
        written.insert(rel);
        summary.files += 1;
        summary.entries += 1;
    }
    Ok(())
}

async fn export_profiles(store: &dyn Store, out: &Path, summary: &mut ExportSummary) -> Result<()> {
    let docs = all_documents(store, PROFILES_COLLECTION, PAGE).await?;
    if docs.is_empty() {
        return Ok(());
    }
    let mut top = serde_yaml_ng::Mapping::new();
    let mut tools = serde_yaml_ng::Mapping::new();
    for doc in &docs {
        if doc.key == PROFILES_FILE_KEY {
            if let Value::Object(fields) = &doc.body {
                for (k, v) in fields {
                    top.insert(k.clone().into(), ordered(v, NESTED_FIRST)?);
                }
            }
        } else {
            tools.insert(doc.key.clone().into(), ordered(&doc.body, NESTED_FIRST)?);
        }
    }
    top.insert("tools".into(), serde_yaml_ng::Value::Mapping(tools));
    let text = to_yaml(&serde_yaml_ng::Value::Mapping(top), PROFILES_FILE)?;
    write(&out.join(PROFILES_FILE), &text)?;
    summary.files += 1;
    summary.documents += docs.len() as u64;
    Ok(())
}

async fn export_schemas(store: &dyn Store, out: &Path, summary: &mut ExportSummary) -> Result<()> {
    for doc in all_documents(store, SCHEMAS_COLLECTION, PAGE).await? {
        let name = format!("{}.json", file_safe(&doc.key));
        let mut text = serde_json::to_string_pretty(&doc.body)
            .map_err(|e| Error::internal(format!("writing schema {}", doc.key), e))?;
        text.push('\n');
        write(&out.join("shared").join("schemas").join(name), &text)?;
        summary.files += 1;
        summary.documents += 1;
    }
    Ok(())
}
