//! The store's tsuku data back into tsuku's own files.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use quiver_model::{Error, Kind, Result};
use quiver_store::{EntryFilter, Store};
use serde_json::{Map, Value};

use super::data::{key_line, relative_path, FileDoc, Layout};
use super::recipe::DERIVED;
use super::{EMBEDDED_NAMESPACE, FILES_COLLECTION, NAMESPACE};
use crate::formats::files::{all_documents, latest_versions, write};
use crate::formats::{ExportFilter, ExportSummary};

/// Entries or documents read per store call.
const PAGE: usize = 500;

/// Write recipes to `out/recipes/<first letter>/<name>.toml` (embedded ones to
/// `out/internal/recipe/recipes/<name>.toml`) and every data file `tsuku.files` describes
/// to its path under `out`.
pub async fn export(store: &dyn Store, filter: &ExportFilter, out: &Path) -> Result<ExportSummary> {
    let mut summary = ExportSummary::default();
    export_recipes(store, filter, out, &mut summary).await?;
    export_data(store, filter, out, &mut summary).await?;
    Ok(summary)
}

/// A JSON value as TOML (`None` for null, which TOML lacks).
fn to_toml(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64()?),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().filter_map(to_toml).collect()),
        Value::Object(o) => toml::Value::Table(
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), to_toml(v)?)))
                .collect(),
        ),
    })
}

/// A recipe manifest as the TOML file it came from (without quiver's derived fields).
pub(super) fn recipe_toml(manifest: &Value) -> Result<String> {
    let mut m = manifest.as_object().cloned().unwrap_or_default();
    m.remove(DERIVED);
    let Some(toml::Value::Table(t)) = to_toml(&Value::Object(m)) else {
        return Err(Error::invalid(
            "manifest",
            "a recipe manifest must be an object",
        ));
    };
    toml::to_string(&t).map_err(|e| Error::internal("writing a recipe as TOML", e))
}

async fn export_recipes(
    store: &dyn Store,
    filter: &ExportFilter,
    out: &Path,
    summary: &mut ExportSummary,
) -> Result<()> {
    let entries = EntryFilter {
        kinds: vec![Kind::Recipe],
        namespaces: vec![NAMESPACE.to_string(), EMBEDDED_NAMESPACE.to_string()],
        ..Default::default()
    };
    for (e, version) in latest_versions(store, &entries, filter, PAGE).await? {
        let text = recipe_toml(&version.manifest)
            .map_err(|err| err.in_field(&format!("{}/{}", e.namespace, e.name)))?;
        let file = format!("{}.toml", e.name);
        let path = if e.namespace == EMBEDDED_NAMESPACE {
            out.join("internal/recipe/recipes").join(file)
        } else {
            let letter: String = e.name.chars().take(1).collect();
            out.join("recipes").join(letter).join(file)
        };
        write(&path, &text)?;
        summary.files += 1;
        summary.entries += 1;
    }
    Ok(())
}

fn pretty(v: &Value) -> Result<String> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| Error::internal("writing JSON", e))
}

/// A data file's text from its description and its records, in file order.
fn file_text(fd: &FileDoc, records: Vec<(String, Value)>) -> Result<String> {
    match fd.layout {
        Layout::Whole => pretty(records.first().map_or(&Value::Null, |(_, v)| v)),
        Layout::Array => {
            let mut top = fd.rest.clone();
            let field = fd.field.clone().unwrap_or_else(|| "entries".to_string());
            top.insert(field, records.into_iter().map(|(_, v)| v).collect());
            pretty(&Value::Object(top))
        }
        Layout::Map => {
            let mut top = fd.rest.clone();
            for (_, r) in records {
                let (Some(eco), Some(dep)) = (
                    r.get("ecosystem").and_then(Value::as_str),
                    r.get("dependency").and_then(Value::as_str),
                ) else {
                    continue;
                };
                let target = match r.get("recipe").and_then(Value::as_str) {
                    Some(recipe) if r.get("status") != Some(&Value::from("pending")) => recipe,
                    _ => "pending",
                };
                if let Value::Object(m) = top
                    .entry(eco.to_string())
                    .or_insert_with(|| Value::Object(Map::new()))
                {
                    m.insert(dep.to_string(), Value::from(target));
                }
            }
            pretty(&Value::Object(top))
        }
        Layout::Lines => {
            let mut text = String::new();
            let mut at_line = 1;
            for (key, r) in records {
                let line = if fd.pretty {
                    serde_json::to_string_pretty(&r)
                } else {
                    // Back on the line the key names: blank lines stay blank.
                    while key_line(&key).is_some_and(|l| l > at_line) {
                        text.push('\n');
                        at_line += 1;
                    }
                    serde_json::to_string(&r)
                }
                .map_err(|e| Error::internal("writing JSON", e))?;
                text.push_str(&line);
                text.push('\n');
                at_line += 1;
            }
            Ok(text)
        }
    }
}

async fn export_data(
    store: &dyn Store,
    filter: &ExportFilter,
    out: &Path,
    summary: &mut ExportSummary,
) -> Result<()> {
    let mut files = Vec::new();
    for h in all_documents(store, FILES_COLLECTION, PAGE).await? {
        let field = format!("{FILES_COLLECTION}/{}", h.key);
        let fd: FileDoc = serde_json::from_value(h.body).map_err(|e| {
            Error::invalid(field.clone(), format!("not a tsuku file description: {e}"))
        })?;
        let rel = relative_path(&h.key).ok_or_else(|| {
            Error::invalid(field, "the file's path must be relative, without `..`")
        })?;
        files.push((rel, fd));
    }
    // Documents the files do not list (added after the import, by tsuku's own pipeline
    // through quiver) go at the end of the one queue or mapping file of their collection.
    let mut writers: HashMap<&str, usize> = HashMap::new();
    let mut listed: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (_, fd) in &files {
        *writers.entry(&fd.collection).or_default() += 1;
        listed
            .entry(&fd.collection)
            .or_default()
            .extend(fd.keys.iter().map(String::as_str));
    }
    let mut collections: HashMap<&str, BTreeMap<String, Value>> = HashMap::new();
    for (rel, fd) in &files {
        if !collections.contains_key(fd.collection.as_str()) {
            let docs = match filter.live.get(&fd.collection) {
                Some(live) => live.iter().cloned().collect(),
                None => all_documents(store, &fd.collection, PAGE)
                    .await?
                    .into_iter()
                    .map(|d| (d.key, d.body))
                    .collect(),
            };
            collections.insert(&fd.collection, docs);
        }
        let docs = &collections[fd.collection.as_str()];
        let mut records: Vec<(String, Value)> = fd
            .keys
            .iter()
            .filter_map(|k| Some((k.clone(), docs.get(k)?.clone())))
            .collect();
        if matches!(fd.layout, Layout::Array | Layout::Map) && writers[fd.collection.as_str()] == 1
        {
            let known = &listed[fd.collection.as_str()];
            records.extend(
                docs.iter()
                    .filter(|(k, _)| !known.contains(k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone())),
            );
        }
        if fd.layout == Layout::Whole && records.is_empty() {
            continue;
        }
        let n = records.len() as u64;
        write(&out.join(rel), &file_text(fd, records)?)?;
        summary.files += 1;
        summary.documents += n;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recipe_toml_drops_derived_and_parses_back() {
        let m = json!({
            "metadata": {"name": "x", "tier": 0},
            "steps": [{"action": "a", "when": {"os": ["linux"]}}, {"action": "b"}],
            "derived": {"steps": 2},
        });
        let text = recipe_toml(&m).unwrap();
        let back: toml::Table = toml::from_str(&text).unwrap();
        let back = serde_json::to_value(back).unwrap();
        let mut want = m.clone();
        want.as_object_mut().unwrap().remove("derived");
        assert_eq!(back, want);
    }

    #[test]
    fn dep_mapping_back() {
        let fd = FileDoc {
            collection: "tsuku.dep_mapping".into(),
            layout: Layout::Map,
            field: None,
            rest: Map::new(),
            keys: vec![],
            pretty: false,
        };
        let text = file_text(
            &fd,
            vec![
                (
                    "homebrew:gcc".to_string(),
                    json!({"ecosystem": "homebrew", "dependency": "gcc", "status": "mapped", "recipe": "gcc-libs"}),
                ),
                (
                    "homebrew:xz".to_string(),
                    json!({"ecosystem": "homebrew", "dependency": "xz", "status": "pending", "recipe": null}),
                ),
            ],
        )
        .unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v, json!({"homebrew": {"gcc": "gcc-libs", "xz": "pending"}}));
    }

    #[test]
    fn lines_go_back_to_their_lines() {
        let fd = FileDoc {
            collection: "tsuku.failures".into(),
            layout: Layout::Lines,
            field: None,
            rest: Map::new(),
            keys: vec![],
            pretty: false,
        };
        let records = vec![
            ("f.jsonl:2".to_string(), json!({"a": 1})),
            ("f.jsonl:5".to_string(), json!({"a": 2})),
        ];
        let text = file_text(&fd, records).unwrap();
        assert_eq!(text, "\n{\"a\":1}\n\n\n{\"a\":2}\n");
    }
}
