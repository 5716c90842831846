//! Writing catalogs (`blocks.yml`) and `package.json` manifests back from a store.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use quiver_model::{Document, Entry, Error, Kind, Result};
use quiver_store::{EntryFilter, Store};
use serde_json::{Map, Value};
use serde_yaml_ng::{Mapping, Value as Yaml};

use super::{
    is_yaml, CATALOG, DERIVED, DOMAIN_SECTIONS, ENTITIES, MEASURES, PACKAGE_NAMESPACE, PHILOSOPHY,
    RULES, SIGNALS, TOOL_NAMESPACE,
};
use crate::formats::files::{all_documents, latest_versions, write};
use crate::formats::{ExportFilter, ExportSummary};

const PAGE: usize = 500;

/// A tool block to write: its id and its fields.
type Block = (String, Map<String, Value>);

/// The key order of objects in a written catalog (the order TPMJS writes them in); other
/// keys follow in name order.
const KEY_ORDER: [&str; 14] = [
    "id",
    "name",
    "type",
    "optional",
    "required",
    "fields",
    "description",
    "path",
    "domain_rules",
    "inputs",
    "outputs",
    "measures",
    "constraints",
    "extraction_hints",
];

/// The top-level order when a catalog does not record its own.
const TOP_ORDER: [&str; 6] = [
    "name",
    "root",
    "philosophy",
    "domain",
    "blocks",
    "validators",
];

/// Write the store's catalogs (and, to a folder, the npm packages with a `tpmjs` field).
/// See the module documentation for what `out` may be.
pub async fn export(store: &dyn Store, filter: &ExportFilter, out: &Path) -> Result<ExportSummary> {
    let mut summary = ExportSummary::default();
    let catalogs = all_documents(store, CATALOG, PAGE).await?;
    let mut docs = BTreeMap::new();
    for c in [PHILOSOPHY, ENTITIES, SIGNALS, MEASURES, RULES] {
        docs.insert(c, all_documents(store, c, PAGE).await?);
    }

    // The tool blocks of each catalog: (name, manifest), by catalog name.
    let mut blocks: BTreeMap<String, Vec<Block>> = BTreeMap::new();
    for (entry, manifest) in latest(store, Kind::Tool, TOOL_NAMESPACE, filter).await? {
        let Value::Object(mut m) = manifest else {
            continue;
        };
        let Some(Value::String(catalog)) = m.get("catalog").cloned() else {
            continue;
        };
        for d in DERIVED {
            m.remove(d);
        }
        blocks.entry(catalog).or_default().push((entry.name, m));
    }

    let mut names: Vec<(String, Map<String, Value>)> = catalogs
        .iter()
        .map(|d| {
            (
                d.key.clone(),
                d.body.as_object().cloned().unwrap_or_default(),
            )
        })
        .collect();
    for c in blocks.keys() {
        if !names.iter().any(|(n, _)| n == c) {
            names.push((c.clone(), Map::new()));
        }
    }

    let single = is_yaml(out);
    if single && names.len() > 1 {
        return Err(Error::invalid(
            "out",
            format!(
                "the store holds {} catalogs ({}); export them to a folder",
                names.len(),
                names
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if !single {
        std::fs::create_dir_all(out)
            .map_err(|e| Error::internal(format!("creating {}", out.display()), e))?;
    }

    let mut used_files = BTreeSet::new();
    for (catalog, body) in &names {
        let mine = blocks.remove(catalog).unwrap_or_default();
        let (yaml, n_entries, n_docs) = catalog_yaml(catalog, body, &docs, mine);
        let text = serde_yaml_ng::to_string(&yaml)
            .map_err(|e| Error::internal(format!("writing catalog {catalog}"), e))?;
        let text = format!("# The {catalog} catalog, exported by quiver.\n{text}");
        let path = if single {
            out.to_path_buf()
        } else {
            let own = layout(body)
                .and_then(|l| l.get("file"))
                .and_then(Value::as_str)
                .filter(|f| safe_relative(Path::new(f)) && is_yaml(Path::new(f)))
                .map(str::to_string);
            let file = match own {
                Some(f) if !used_files.contains(&f) => f,
                _ => format!("{}.blocks.yml", file_safe(catalog)),
            };
            used_files.insert(file.clone());
            out.join(file)
        };
        write(&path, &text)?;
        summary.files += 1;
        summary.entries += n_entries;
        summary.documents += n_docs;
    }

    if !single {
        export_packages(store, filter, out, &mut summary).await?;
    }
    Ok(summary)
}

fn layout(body: &Map<String, Value>) -> Option<&Map<String, Value>> {
    body.get("layout").and_then(Value::as_object)
}

/// A path that stays inside the folder it is joined to.
fn safe_relative(p: &Path) -> bool {
    !p.as_os_str().is_empty() && p.components().all(|c| matches!(c, Component::Normal(_)))
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The entries of a kind and namespace that the filter admits, with their latest
/// version's manifest.
async fn latest(
    store: &dyn Store,
    kind: Kind,
    namespace: &str,
    filter: &ExportFilter,
) -> Result<Vec<(Entry, Value)>> {
    let f = EntryFilter {
        kinds: vec![kind],
        namespaces: vec![namespace.to_string()],
        categories: filter.categories.clone(),
        statuses: filter.statuses.clone(),
        ..Default::default()
    };
    Ok(latest_versions(store, &f, filter, PAGE)
        .await?
        .into_iter()
        .map(|(e, v)| (e, v.manifest))
        .collect())
}

/// JSON to YAML, with object keys in [`KEY_ORDER`].
fn to_yaml(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Yaml::Number(i.into())
            } else if let Some(u) = n.as_u64() {
                Yaml::Number(u.into())
            } else {
                Yaml::Number(n.as_f64().unwrap_or(0.0).into())
            }
        }
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(a) => Yaml::Sequence(a.iter().map(to_yaml).collect()),
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by_key(|k| {
                (
                    KEY_ORDER
                        .iter()
                        .position(|x| x == k)
                        .unwrap_or(KEY_ORDER.len()),
                    k.as_str(),
                )
            });
            let mut m = Mapping::new();
            for k in keys {
                m.insert(Yaml::String(k.clone()), to_yaml(&o[k]));
            }
            Yaml::Mapping(m)
        }
    }
}

/// `items` (id, value) in the order `order` names, then the rest in id order.
fn in_order<T>(mut items: Vec<(String, T)>, order: Option<&Value>) -> Vec<(String, T)> {
    let order: Vec<&str> = order
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    items.sort_by(|(a, _), (b, _)| {
        let pa = order.iter().position(|x| x == a).unwrap_or(usize::MAX);
        let pb = order.iter().position(|x| x == b).unwrap_or(usize::MAX);
        (pa, a).cmp(&(pb, b))
    });
    items
}

/// A catalog's documents of one collection: (id, body), id without the catalog prefix.
fn of_catalog(
    docs: &BTreeMap<&str, Vec<Document>>,
    collection: &str,
    catalog: &str,
) -> Vec<(String, Value)> {
    let prefix = format!("{catalog}/");
    docs.get(collection)
        .map(|ds| {
            ds.iter()
                .filter_map(|d| {
                    d.key
                        .strip_prefix(&prefix)
                        .map(|id| (id.to_string(), d.body.clone()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A catalog as YAML, with the number of blocks and documents written.
fn catalog_yaml(
    catalog: &str,
    body: &Map<String, Value>,
    docs: &BTreeMap<&str, Vec<Document>>,
    blocks: Vec<Block>,
) -> (Yaml, u64, u64) {
    let layout = layout(body).cloned().unwrap_or_default();
    let mut keys: Vec<String> = match layout.get("keys").and_then(Value::as_array) {
        Some(k) => k
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => TOP_ORDER.iter().map(|s| s.to_string()).collect(),
    };
    for k in body.keys() {
        if k != "layout" && k != "domain" && !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let (mut n_entries, mut n_docs) = (0, 1);
    let mut top = Mapping::new();
    for k in keys {
        let value = match k.as_str() {
            "philosophy" => {
                let mut lines = of_catalog(docs, PHILOSOPHY, catalog);
                lines.sort_by(|a, b| a.0.cmp(&b.0));
                n_docs += lines.len() as u64;
                Yaml::Sequence(
                    lines
                        .iter()
                        .map(|(_, b)| to_yaml(b.get("text").unwrap_or(b)))
                        .collect(),
                )
            }
            "domain" => {
                let (y, n) = domain_yaml(catalog, body, &layout, docs);
                n_docs += n;
                y
            }
            "blocks" => {
                let mut m = Mapping::new();
                let mut items: Vec<(String, Option<Map<String, Value>>)> = blocks
                    .iter()
                    .map(|(n, b)| (n.clone(), Some(b.clone())))
                    .collect();
                let has_rules = layout
                    .get("blocks")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x == "domain_rules"));
                let rules = in_order(of_catalog(docs, RULES, catalog), layout.get("rules"));
                if has_rules || !rules.is_empty() {
                    items.push(("domain_rules".into(), None));
                }
                for (id, block) in in_order(items, layout.get("blocks")) {
                    match block {
                        Some(b) => {
                            n_entries += 1;
                            m.insert(Yaml::String(id), to_yaml(&Value::Object(b)));
                        }
                        None => {
                            n_docs += rules.len() as u64;
                            m.insert(
                                Yaml::String(id),
                                Yaml::Sequence(rules.iter().map(|(_, r)| to_yaml(r)).collect()),
                            );
                        }
                    }
                }
                Yaml::Mapping(m)
            }
            other => match body.get(other) {
                Some(v) => to_yaml(v),
                None => continue,
            },
        };
        top.insert(Yaml::String(k), value);
    }
    (Yaml::Mapping(top), n_entries, n_docs)
}

/// The `domain` mapping, with the number of documents in it.
fn domain_yaml(
    catalog: &str,
    body: &Map<String, Value>,
    layout: &Map<String, Value>,
    docs: &BTreeMap<&str, Vec<Document>>,
) -> (Yaml, u64) {
    let other = body.get("domain").and_then(Value::as_object);
    let mut sections: Vec<String> = match layout.get("domain").and_then(Value::as_array) {
        Some(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        None => DOMAIN_SECTIONS.iter().map(|(s, _)| s.to_string()).collect(),
    };
    for k in other.into_iter().flat_map(|o| o.keys()) {
        if !sections.contains(k) {
            sections.push(k.clone());
        }
    }
    let mut n = 0;
    let mut m = Mapping::new();
    for s in sections {
        let value = match DOMAIN_SECTIONS.iter().find(|(x, _)| *x == s) {
            Some((_, collection)) => {
                let items = in_order(of_catalog(docs, collection, catalog), layout.get(&s));
                if items.is_empty() && !layout.contains_key(&s) {
                    Yaml::Null
                } else {
                    n += items.len() as u64;
                    let mut im = Mapping::new();
                    for (id, b) in items {
                        im.insert(Yaml::String(id), to_yaml(&b));
                    }
                    Yaml::Mapping(im)
                }
            }
            None => match other.and_then(|o| o.get(&s)) {
                Some(v) => to_yaml(v),
                None => continue,
            },
        };
        m.insert(Yaml::String(s), value);
    }
    (Yaml::Mapping(m), n)
}

/// Write each npm package that has a `tpmjs` field back as a `package.json` at its
/// `manifest_path` (or `packages/<name>/package.json` when that path is not a safe
/// relative path).
async fn export_packages(
    store: &dyn Store,
    filter: &ExportFilter,
    out: &Path,
    summary: &mut ExportSummary,
) -> Result<()> {
    for (entry, manifest) in latest(store, Kind::Package, PACKAGE_NAMESPACE, filter).await? {
        let Some(m) = manifest.as_object() else {
            continue;
        };
        let Some(tpmjs) = m.get("tpmjs") else {
            continue;
        };
        let mut pkg = Map::new();
        pkg.insert("name".into(), Value::String(entry.name.clone()));
        if let Some(v) = &entry.latest_version {
            pkg.insert("version".into(), Value::String(v.clone()));
        }
        if let Some(s) = m.get("summary") {
            pkg.insert("description".into(), s.clone());
        }
        if let Some(k) = m.get("keywords") {
            pkg.insert("keywords".into(), k.clone());
        }
        match (m.get("repository"), m.get("repository_directory")) {
            (Some(url), Some(dir)) => {
                let mut r = Map::new();
                r.insert("type".into(), Value::String("git".into()));
                r.insert("url".into(), url.clone());
                r.insert("directory".into(), dir.clone());
                pkg.insert("repository".into(), Value::Object(r));
            }
            (Some(url), None) => {
                pkg.insert("repository".into(), url.clone());
            }
            (None, Some(dir)) => {
                let mut r = Map::new();
                r.insert("directory".into(), dir.clone());
                pkg.insert("repository".into(), Value::Object(r));
            }
            (None, None) => {}
        }
        for k in ["homepage", "license"] {
            if let Some(v) = m.get(k) {
                pkg.insert(k.into(), v.clone());
            }
        }
        pkg.insert("tpmjs".into(), tpmjs.clone());
        if let Some(d) = m.get("dependencies") {
            pkg.insert("dependencies".into(), d.clone());
        }
        let rel = m
            .get("manifest_path")
            .and_then(Value::as_str)
            .map(PathBuf::from)
            .filter(|p| safe_relative(p) && p.file_name().is_some_and(|f| f == "package.json"))
            .unwrap_or_else(|| {
                Path::new("packages")
                    .join(file_safe(&entry.name))
                    .join("package.json")
            });
        let text = serde_json::to_string_pretty(&Value::Object(pkg))
            .map_err(|e| Error::internal(format!("writing {}", entry.name), e))?;
        write(&out.join(rel), &format!("{text}\n"))?;
        summary.files += 1;
        summary.entries += 1;
    }
    Ok(())
}
