//! Reading catalogs (`blocks.yml`) and `package.json` manifests into a [`Bundle`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quiver_model::{EntryKey, Kind, NewDocument, NewEntry, NewVersion, Relation, RelationKind};
use serde_json::{json, Map, Value};
use serde_yaml_ng::Value as Yaml;

use super::schema::{block_input_required, object_schema, parameter_required, returns_schema};
use super::{
    is_package_json, is_yaml, CATALOG, DOMAIN_SECTIONS, PACKAGE_NAMESPACE, PHILOSOPHY, RULES,
    TOOL_NAMESPACE,
};
use crate::formats::files::read_text;
use crate::formats::{Bundle, BundleDocument, BundleRecord, Origin};

/// A tool block read, for matching packages to it.
struct BlockRef {
    id: String,
    path: Option<String>,
}

pub(super) fn read(root: &Path, files: &[PathBuf]) -> Bundle {
    let mut bundle = Bundle::default();
    let mut blocks = Vec::new();
    let mut packages = Vec::new();
    for rel in files {
        let origin = Origin::new(rel, None);
        let Some(text) = read_text(root, rel, &mut bundle) else {
            continue;
        };
        if is_package_json(rel) {
            packages.push((rel, text));
        } else if is_yaml(rel) {
            read_catalog(rel, &text, &mut bundle, &mut blocks);
        } else {
            bundle.rejected.push(origin.reject(
                None,
                None,
                "not a blocks catalog (a .yml or .yaml file) nor an npm package.json",
            ));
        }
    }
    // Packages after every catalog, so their tools can be matched to any block.
    let mut made = BTreeSet::new();
    for (rel, text) in packages {
        read_package(rel, &text, &blocks, &mut made, &mut bundle);
    }
    bundle
}

// ---------------------------------------------------------------------------------------
// Lines: where a YAML key or list item is, best effort, by scanning the text.

struct Lines<'a>(Vec<&'a str>);

/// A found line: its 0-based index and its indentation.
type At = (usize, usize);

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines(text.lines().collect())
    }

    fn indent(l: &str) -> usize {
        l.len() - l.trim_start_matches(' ').len()
    }

    fn significant(l: &str) -> bool {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    }

    /// The indentation of the lines directly under `parent` (top level: 0).
    fn child_indent(&self, parent: Option<At>) -> Option<(usize, usize)> {
        let Some((at, ind)) = parent else {
            return Some((0, 0));
        };
        let first = (at + 1..self.0.len()).find(|&i| Self::significant(self.0[i]))?;
        let l = self.0[first];
        let ci = Self::indent(l);
        (ci > ind || (ci == ind && l.trim_start().starts_with('-'))).then_some((at + 1, ci))
    }

    /// The significant lines directly under `parent`, with their text after the indent.
    fn children(&self, parent: Option<At>) -> Vec<(usize, &'a str)> {
        let Some((start, ci)) = self.child_indent(parent) else {
            return Vec::new();
        };
        let pind = parent.map(|p| p.1);
        let mut out = Vec::new();
        for i in start..self.0.len() {
            let l = self.0[i];
            if !Self::significant(l) {
                continue;
            }
            let ind = Self::indent(l);
            if parent.is_some() && ind < ci {
                break;
            }
            if Some(ind) == pind && !l.trim_start().starts_with('-') {
                break;
            }
            if ind == ci {
                out.push((i, &l[ind..]));
            }
        }
        out
    }

    /// The line of `key:` directly under `parent`.
    fn key(&self, parent: Option<At>, key: &str) -> Option<At> {
        let ci = self.child_indent(parent)?.1;
        self.children(parent)
            .into_iter()
            .find(|(_, t)| key_matches(t, key))
            .map(|(i, _)| (i, ci))
    }

    /// The line of the `n`-th list item (`- ...`) directly under `parent`.
    fn item(&self, parent: Option<At>, n: usize) -> Option<At> {
        let ci = self.child_indent(parent)?.1;
        self.children(parent)
            .into_iter()
            .filter(|(_, t)| t.starts_with('-'))
            .nth(n)
            .map(|(i, _)| (i, ci))
    }
}

fn key_matches(t: &str, key: &str) -> bool {
    let plain = t.strip_prefix(key);
    let quoted = ['"', '\'']
        .iter()
        .find_map(|q| t.strip_prefix(*q)?.strip_prefix(key)?.strip_prefix(*q));
    plain
        .or(quoted)
        .is_some_and(|rest| rest.trim_start().starts_with(':'))
}

fn line_no(at: Option<At>) -> Option<u64> {
    at.map(|(i, _)| i as u64 + 1)
}

/// The 1-based line of the first occurrence of `needle` at or after byte `from`.
fn text_line(text: &str, needle: &str, from: usize) -> Option<u64> {
    let pos = text.get(from..)?.find(needle)? + from;
    Some(text[..pos].bytes().filter(|&b| b == b'\n').count() as u64 + 1)
}

// ---------------------------------------------------------------------------------------
// Catalogs.

fn to_json(v: &Yaml) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| format!("cannot be represented as JSON: {e}"))
}

fn yaml_key(k: &Yaml) -> Option<String> {
    match k {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The entries of a mapping under string keys (numbers and booleans read as text); an
/// entry under any other key is rejected with `message` (at `origin`, on `field`) and
/// left out.
fn string_keyed<'a>(
    map: &'a serde_yaml_ng::Mapping,
    bundle: &mut Bundle,
    origin: &Origin,
    catalog: &str,
    field: Option<&str>,
    message: &str,
) -> Vec<(String, &'a Yaml)> {
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        match yaml_key(k) {
            Some(k) => out.push((k, v)),
            None => bundle
                .rejected
                .push(origin.reject(Some(catalog.to_string()), field, message)),
        }
    }
    out
}

fn read_catalog(rel: &Path, text: &str, bundle: &mut Bundle, blocks_out: &mut Vec<BlockRef>) {
    let file = Origin::new(rel, None);
    let mut doc: Yaml = match serde_yaml_ng::from_str(text) {
        Ok(d) => d,
        Err(e) => {
            // The message names the line and column, and where the broken part began.
            let o = Origin::new(rel, e.location().map(|l| l.line() as u64));
            bundle
                .rejected
                .push(o.reject(None, None, format!("not valid YAML: {e}")));
            return;
        }
    };
    if let Err(e) = doc.apply_merge() {
        bundle.rejected.push(file.reject(
            None,
            None,
            format!("a YAML merge key (<<) cannot be applied: {e}"),
        ));
        return;
    }
    let Some(top) = doc.as_mapping() else {
        bundle.rejected.push(file.reject(
            None,
            None,
            "a blocks catalog is a mapping with name, root, philosophy, domain, blocks and \
             validators",
        ));
        return;
    };
    let lines = Lines::new(text);
    let stem = rel
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("blocks")
        .trim_end_matches(".blocks")
        .to_string();
    let catalog = match top.get("name") {
        None => stem,
        Some(Yaml::String(s)) if !s.trim().is_empty() && s.len() <= 256 => s.clone(),
        Some(_) => {
            let o = Origin::new(rel, line_no(lines.key(None, "name")));
            bundle.rejected.push(o.reject(
                None,
                Some("name"),
                "name: the catalog's name must be a non-empty string of at most 256 bytes",
            ));
            return;
        }
    };

    let mut body = Map::new();
    let mut keys = Vec::new();
    let mut layout = Map::new();
    for (k, v) in string_keyed(
        top,
        bundle,
        &file,
        &catalog,
        None,
        "top-level keys must be strings",
    ) {
        let at = lines.key(None, &k);
        let origin = Origin::new(rel, line_no(at));
        keys.push(Value::String(k.clone()));
        match k.as_str() {
            "philosophy" => read_philosophy(&catalog, v, &lines, at, &origin, bundle),
            "domain" => read_domain(
                &catalog,
                v,
                &lines,
                at,
                &origin,
                bundle,
                &mut body,
                &mut layout,
            ),
            "blocks" => read_blocks(
                &catalog,
                rel,
                v,
                &lines,
                at,
                bundle,
                &mut layout,
                blocks_out,
            ),
            _ => match to_json(v) {
                Ok(j) => {
                    body.insert(k, j);
                }
                Err(e) => bundle.rejected.push(origin.reject(
                    Some(catalog.clone()),
                    Some(&k),
                    format!("{k} {e}"),
                )),
            },
        }
    }
    if !top.contains_key("blocks") {
        bundle.warnings.push(file.reject(
            Some(catalog.clone()),
            Some("blocks"),
            "blocks: the catalog has no tool blocks",
        ));
    }
    layout.insert("keys".into(), Value::Array(keys));
    let file_name = rel
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| "blocks.yml".into());
    layout.insert("file".into(), Value::String(file_name));
    body.insert("layout".into(), Value::Object(layout));
    bundle.documents.push(BundleDocument {
        origin: Origin::new(rel, Some(1)),
        document: NewDocument::new(CATALOG, catalog, Value::Object(body)),
    });
}

fn doc_key(catalog: &str, id: &str) -> String {
    format!("{catalog}/{id}")
}

fn read_philosophy(
    catalog: &str,
    v: &Yaml,
    lines: &Lines,
    at: Option<At>,
    origin: &Origin,
    bundle: &mut Bundle,
) {
    let Some(seq) = v.as_sequence() else {
        bundle.rejected.push(origin.reject(
            Some(catalog.to_string()),
            Some("philosophy"),
            "philosophy: must be a list of principles",
        ));
        return;
    };
    for (i, p) in seq.iter().enumerate() {
        bundle.count("philosophy lines", 1);
        let o = Origin::new(&origin.file, line_no(lines.item(at, i)).or(origin.line));
        match to_json(p) {
            Ok(text) => bundle.documents.push(BundleDocument {
                origin: o,
                document: NewDocument::new(
                    PHILOSOPHY,
                    doc_key(catalog, &format!("{i:04}")),
                    json!({ "text": text }),
                ),
            }),
            Err(e) => bundle.rejected.push(o.reject(
                Some(catalog.to_string()),
                Some(&format!("philosophy[{i}]")),
                e,
            )),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn read_domain(
    catalog: &str,
    v: &Yaml,
    lines: &Lines,
    at: Option<At>,
    origin: &Origin,
    bundle: &mut Bundle,
    body: &mut Map<String, Value>,
    layout: &mut Map<String, Value>,
) {
    let Some(map) = v.as_mapping() else {
        bundle.rejected.push(origin.reject(
            Some(catalog.to_string()),
            Some("domain"),
            "domain: must be a mapping of entities, signals and measures",
        ));
        return;
    };
    let mut sections = Vec::new();
    let mut other = Map::new();
    for (section, sv) in string_keyed(
        map,
        bundle,
        origin,
        catalog,
        Some("domain"),
        "domain: section names must be strings",
    ) {
        sections.push(Value::String(section.clone()));
        let sat = lines.key(at, &section);
        let so = Origin::new(&origin.file, line_no(sat).or(origin.line));
        let field = format!("domain.{section}");
        let Some(&(_, collection)) = DOMAIN_SECTIONS.iter().find(|(s, _)| *s == section) else {
            // A section quiver has no collection for: kept on the catalog as it is.
            match to_json(sv) {
                Ok(j) => {
                    other.insert(section, j);
                }
                Err(e) => {
                    bundle
                        .rejected
                        .push(so.reject(Some(catalog.to_string()), Some(&field), e))
                }
            }
            continue;
        };
        let items = match sv {
            Yaml::Mapping(m) => m,
            Yaml::Null => continue,
            _ => {
                bundle.rejected.push(so.reject(
                    Some(catalog.to_string()),
                    Some(&field),
                    format!("{field}: must be a mapping of id to definition"),
                ));
                continue;
            }
        };
        let mut order = Vec::new();
        bundle.count(&section, items.len() as u64);
        let ids_message = format!("{field}: ids must be strings");
        for (id, iv) in string_keyed(items, bundle, &so, catalog, Some(&field), &ids_message) {
            let io = Origin::new(&origin.file, line_no(lines.key(sat, &id)).or(so.line));
            match to_json(iv) {
                Ok(j) => {
                    order.push(Value::String(id.clone()));
                    bundle.documents.push(BundleDocument {
                        origin: io,
                        document: NewDocument::new(collection, doc_key(catalog, &id), j),
                    });
                }
                Err(e) => bundle.rejected.push(io.reject(
                    Some(id.clone()),
                    Some(&format!("{field}.{id}")),
                    e,
                )),
            }
        }
        layout.insert(section, Value::Array(order));
    }
    layout.insert("domain".into(), Value::Array(sections));
    if !other.is_empty() {
        body.insert("domain".into(), Value::Object(other));
    }
}

#[allow(clippy::too_many_arguments)]
fn read_blocks(
    catalog: &str,
    rel: &Path,
    v: &Yaml,
    lines: &Lines,
    at: Option<At>,
    bundle: &mut Bundle,
    layout: &mut Map<String, Value>,
    blocks_out: &mut Vec<BlockRef>,
) {
    let origin = Origin::new(rel, line_no(at));
    let Some(map) = v.as_mapping() else {
        bundle.rejected.push(origin.reject(
            Some(catalog.to_string()),
            Some("blocks"),
            "blocks: must be a mapping of block id (e.g. research.pageBrief) to block",
        ));
        return;
    };
    let mut order = Vec::new();
    for (id, bv) in string_keyed(
        map,
        bundle,
        &origin,
        catalog,
        Some("blocks"),
        "blocks: block ids must be strings",
    ) {
        let bat = lines.key(at, &id);
        let bo = Origin::new(rel, line_no(bat).or(origin.line));
        if id == "domain_rules" {
            order.push(Value::String(id));
            let rules = read_rules(catalog, bv, lines, bat, &bo, bundle);
            layout.insert("rules".into(), Value::Array(rules));
            continue;
        }
        bundle.count("tool blocks", 1);
        match block_record(catalog, &id, bv, bo.clone()) {
            Ok((record, path)) => {
                order.push(Value::String(id.clone()));
                blocks_out.push(BlockRef { id, path });
                bundle.records.push(record);
            }
            Err((field, reason)) => bundle.rejected.push(bo.reject(
                Some(format!("{TOOL_NAMESPACE}/{id}")),
                Some(&field),
                reason,
            )),
        }
    }
    layout.insert("blocks".into(), Value::Array(order));
}

/// The shared rules (`blocks.domain_rules`), as documents; returns their ids in order.
fn read_rules(
    catalog: &str,
    v: &Yaml,
    lines: &Lines,
    at: Option<At>,
    origin: &Origin,
    bundle: &mut Bundle,
) -> Vec<Value> {
    let mut ids = Vec::new();
    let Some(seq) = v.as_sequence() else {
        bundle.rejected.push(origin.reject(
            Some(catalog.to_string()),
            Some("blocks.domain_rules"),
            "blocks.domain_rules: must be a list of {id, description}",
        ));
        return ids;
    };
    let mut seen = BTreeSet::new();
    for (i, r) in seq.iter().enumerate() {
        bundle.count("shared rules", 1);
        let o = Origin::new(&origin.file, line_no(lines.item(at, i)).or(origin.line));
        let field = format!("blocks.domain_rules[{i}]");
        let body = match to_json(r) {
            Ok(b) => b,
            Err(e) => {
                bundle
                    .rejected
                    .push(o.reject(Some(catalog.to_string()), Some(&field), e));
                continue;
            }
        };
        let Some(id) = body.get("id").and_then(Value::as_str).map(str::to_string) else {
            bundle.rejected.push(o.reject(
                Some(catalog.to_string()),
                Some(&format!("{field}.id")),
                format!("{field}.id: a shared rule needs a string id"),
            ));
            continue;
        };
        if !seen.insert(id.clone()) {
            bundle.rejected.push(o.reject(
                Some(id.clone()),
                Some(&format!("{field}.id")),
                format!("{field}.id: the rule '{id}' is already defined above"),
            ));
            continue;
        }
        ids.push(Value::String(id.clone()));
        bundle.documents.push(BundleDocument {
            origin: o,
            document: NewDocument::new(RULES, doc_key(catalog, &id), body),
        });
    }
    ids
}

/// A list of named items (`inputs`, `outputs`), checked.
fn named_items(block: &Map<String, Value>, field: &str) -> Result<Vec<Value>, (String, String)> {
    let items = match block.get(field) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err((field.into(), format!("{field}: must be a list"))),
    };
    for (i, item) in items.iter().enumerate() {
        let ok = item
            .as_object()
            .and_then(|o| o.get("name"))
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !ok {
            return Err((
                format!("{field}[{i}].name"),
                format!("{field}[{i}]: must be a mapping with a non-empty name"),
            ));
        }
    }
    Ok(items.clone())
}

/// A tool block as a `tool` entry; its `path`, for matching packages.
fn block_record(
    catalog: &str,
    id: &str,
    v: &Yaml,
    origin: Origin,
) -> Result<(BundleRecord, Option<String>), (String, String)> {
    // Checked here rather than only by the pipeline, so that the catalog's layout
    // names only blocks that can be stored.
    quiver_model::names::validate_name(Kind::Tool, TOOL_NAMESPACE, id).map_err(|e| {
        (
            "name".to_string(),
            format!("block id '{id}': {}", e.message),
        )
    })?;
    let json = to_json(v).map_err(|e| ("blocks".to_string(), e))?;
    let Value::Object(mut manifest) = json else {
        return Err((
            id.to_string(),
            format!("block {id}: must be a mapping (description, path, inputs, outputs, ...)"),
        ));
    };
    let description = match manifest.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(("description".into(), "description: must be a string".into())),
    };
    let path = match manifest.get("path") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(("path".into(), "path: must be a string".into())),
    };
    let inputs = named_items(&manifest, "inputs")?;
    let outputs = named_items(&manifest, "outputs")?;
    if let Some(rules) = manifest.get("domain_rules") {
        let ok = rules.is_null()
            || rules.as_array().is_some_and(|a| {
                a.iter()
                    .all(|r| r.get("id").and_then(Value::as_str).is_some())
            });
        if !ok {
            return Err((
                "domain_rules".into(),
                "domain_rules: must be a list of {id, description}".into(),
            ));
        }
    }
    for derived in super::DERIVED {
        if manifest.contains_key(derived) {
            return Err((
                derived.into(),
                format!("{derived}: is derived by quiver and must not be written in a block"),
            ));
        }
    }
    manifest.insert("catalog".into(), Value::String(catalog.to_string()));
    manifest.insert(
        "input_schema".into(),
        object_schema(&inputs, block_input_required, true),
    );
    manifest.insert(
        "output_schema".into(),
        object_schema(&outputs, |_| true, false),
    );
    let category = id.split('.').next().filter(|s| !s.is_empty() && *s != id);
    let entry = NewEntry {
        kind: Kind::Tool,
        namespace: TOOL_NAMESPACE.into(),
        name: id.to_string(),
        display_name: None,
        description,
        category: category.map(str::to_string),
        tags: Vec::new(),
        keywords: Vec::new(),
        status: None,
        visibility: None,
        popularity: None,
    };
    let mut record = BundleRecord::new(origin, entry);
    record.revision = Some(Value::Object(manifest));
    Ok((record, path))
}

// ---------------------------------------------------------------------------------------
// Package manifests.

fn str_field<'a>(obj: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    obj.get(k).and_then(Value::as_str)
}

fn read_package(
    rel: &Path,
    text: &str,
    blocks: &[BlockRef],
    made: &mut BTreeSet<String>,
    bundle: &mut Bundle,
) {
    let json: Value = match serde_json::from_str(text) {
        Ok(j) => j,
        Err(e) => {
            let o = Origin::new(rel, Some(e.line() as u64));
            bundle.rejected.push(o.reject(
                None,
                None,
                format!("not valid JSON (column {}): {e}", e.column()),
            ));
            return;
        }
    };
    bundle.count("package manifests", 1);
    let origin = Origin::new(rel, text_line(text, "\"name\"", 0).or(Some(1)));
    let Some(obj) = json.as_object() else {
        bundle
            .rejected
            .push(origin.reject(None, None, "a package.json is a JSON object"));
        return;
    };
    let name = str_field(obj, "name").map(str::to_string);
    let reject = |field: &str, reason: String| origin.reject(name.clone(), Some(field), reason);
    let tpmjs = match obj.get("tpmjs") {
        Some(Value::Object(t)) => t,
        Some(_) => {
            bundle
                .rejected
                .push(reject("tpmjs", "tpmjs: must be an object".into()));
            return;
        }
        None => {
            bundle.rejected.push(reject(
                "tpmjs",
                "tpmjs: missing; only npm packages that declare TPMJS tools are read".into(),
            ));
            return;
        }
    };
    let Some(pkg) = name.clone() else {
        bundle
            .rejected
            .push(reject("name", "name: a package.json needs its name".into()));
        return;
    };
    let Some(version) = str_field(obj, "version") else {
        bundle.rejected.push(reject(
            "version",
            "version: a package.json needs its version".into(),
        ));
        return;
    };
    let tools = match tpmjs.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => {
            bundle.rejected.push(reject(
                "tpmjs.tools",
                "tpmjs.tools: must be a list of tool definitions".into(),
            ));
            return;
        }
    };
    bundle.count("tool definitions", tools.len() as u64);

    let mut manifest = Map::new();
    let description = match obj.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(d)) => d.clone(),
        Some(_) => {
            bundle.rejected.push(reject(
                "description",
                "description: must be a string".into(),
            ));
            return;
        }
    };
    if obj.contains_key("description") {
        manifest.insert("summary".into(), Value::String(description.clone()));
    }
    for k in ["license", "homepage"] {
        if let Some(v) = obj.get(k) {
            if !v.is_string() {
                bundle
                    .rejected
                    .push(reject(k, format!("{k}: must be a string")));
                return;
            }
            manifest.insert(k.into(), v.clone());
        }
    }
    match obj.get("repository") {
        None | Some(Value::Null) => {}
        Some(Value::String(url)) => {
            manifest.insert("repository".into(), Value::String(url.clone()));
        }
        Some(Value::Object(r)) => {
            if let Some(url) = str_field(r, "url") {
                manifest.insert("repository".into(), Value::String(url.into()));
            }
            if let Some(dir) = str_field(r, "directory") {
                manifest.insert("repository_directory".into(), Value::String(dir.into()));
            }
        }
        Some(_) => {
            bundle.rejected.push(reject(
                "repository",
                "repository: must be a URL or {type, url, directory}".into(),
            ));
            return;
        }
    }
    if let Some(deps) = obj.get("dependencies") {
        let ok = deps
            .as_object()
            .is_some_and(|d| d.values().all(Value::is_string));
        if !ok {
            bundle.rejected.push(reject(
                "dependencies",
                "dependencies: must map package names to version ranges (strings)".into(),
            ));
            return;
        }
        manifest.insert("dependencies".into(), deps.clone());
    }
    let keywords: Vec<String> = match obj.get("keywords") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a
            .iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect(),
        Some(_) => {
            bundle.rejected.push(reject(
                "keywords",
                "keywords: must be a list of strings".into(),
            ));
            return;
        }
    };
    if obj.contains_key("keywords") {
        manifest.insert("keywords".into(), json!(keywords));
    }
    manifest.insert("tpmjs".into(), Value::Object(tpmjs.clone()));
    manifest.insert(
        "manifest_path".into(),
        Value::String(rel.to_string_lossy().replace('\\', "/")),
    );
    let category = str_field(tpmjs, "category").map(str::to_string);

    let from = EntryKey::new(Kind::Package, PACKAGE_NAMESPACE, &pkg);
    let folder = rel
        .parent()
        .and_then(Path::file_name)
        .and_then(|f| f.to_str());
    let candidates: Vec<&BlockRef> = blocks
        .iter()
        .filter(|b| {
            b.path
                .as_deref()
                .and_then(|p| Path::new(p).file_name())
                .and_then(|f| f.to_str())
                .is_some_and(|f| Some(f) == folder)
        })
        .collect();
    let mut relations = Vec::new();
    let tpmjs_at = text.find("\"tpmjs\"").unwrap_or(0);
    for (i, def) in tools.iter().enumerate() {
        let field = format!("tpmjs.tools[{i}]");
        let Some(d) = def.as_object() else {
            bundle.rejected.push(reject(
                &field,
                format!("{field}: a tool definition is an object"),
            ));
            continue;
        };
        let Some(tool) = str_field(d, "name").or_else(|| str_field(d, "exportName")) else {
            bundle.rejected.push(reject(
                &format!("{field}.name"),
                format!("{field}: a tool definition needs a name or an exportName"),
            ));
            continue;
        };
        let line = text_line(text, &format!("\"{tool}\""), tpmjs_at).or(origin.line);
        let base = tool.strip_suffix("Tool").unwrap_or(tool);
        let matched = if candidates.len() == 1 && tools.len() == 1 {
            Some(candidates[0])
        } else {
            candidates
                .iter()
                .copied()
                .find(|b| b.id.rsplit('.').next() == Some(base))
        };
        let target = match matched {
            Some(b) => b.id.clone(),
            None => {
                let segment = category
                    .as_deref()
                    .filter(|c| segment_ok(c))
                    .unwrap_or(TOOL_NAMESPACE);
                let target = format!("{segment}.{tool}");
                if let Err(e) =
                    quiver_model::names::validate_name(Kind::Tool, TOOL_NAMESPACE, &target)
                {
                    bundle.rejected.push(Origin::new(rel, line).reject(
                        name.clone(),
                        Some(&format!("{field}.name")),
                        format!(
                            "{field}: the tool '{target}' cannot be named: {}",
                            e.message
                        ),
                    ));
                    continue;
                }
                if made.insert(target.clone()) {
                    let o = Origin::new(rel, line);
                    bundle
                        .records
                        .push(defined_tool(&target, segment, &pkg, d, o));
                } else {
                    bundle.warnings.push(Origin::new(rel, line).reject(
                        name.clone(),
                        Some(&field),
                        format!(
                            "{field}: the tool '{target}' is defined by another package too; \
                             both implement the first definition"
                        ),
                    ));
                }
                target
            }
        };
        relations.push(Relation {
            kind: RelationKind::Implements,
            from: from.clone(),
            to: EntryKey::new(Kind::Tool, TOOL_NAMESPACE, target),
            confidence: None,
            source: None,
            step_order: None,
        });
    }

    let entry = NewEntry {
        kind: Kind::Package,
        namespace: PACKAGE_NAMESPACE.into(),
        name: pkg,
        display_name: None,
        description,
        category,
        tags: Vec::new(),
        keywords,
        status: None,
        visibility: None,
        popularity: None,
    };
    let mut record = BundleRecord::new(origin, entry);
    record.versions.push(NewVersion {
        version: version.to_string(),
        manifest: Value::Object(manifest),
        changelog: None,
        breaking: false,
    });
    record.relations = relations;
    bundle.records.push(record);
}

/// Whether `s` can be one segment of a tool name.
fn segment_ok(s: &str) -> bool {
    let mut b = s.bytes();
    b.next().is_some_and(|c| c.is_ascii_alphabetic())
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

/// A `tool` entry made from a package's tool definition that no block describes.
fn defined_tool(
    name: &str,
    category: &str,
    pkg: &str,
    def: &Map<String, Value>,
    origin: Origin,
) -> BundleRecord {
    let mut manifest = def.clone();
    let params = match manifest.remove("parameters") {
        Some(Value::Array(a)) => a,
        _ => Vec::new(),
    };
    manifest.insert(
        "input_schema".into(),
        object_schema(&params, parameter_required, true),
    );
    manifest.insert("inputs".into(), Value::Array(params));
    if let Some(r) = def.get("returns") {
        manifest.insert("output_schema".into(), returns_schema(r));
    }
    manifest.insert("package".into(), Value::String(pkg.to_string()));
    let entry = NewEntry {
        kind: Kind::Tool,
        namespace: TOOL_NAMESPACE.into(),
        name: name.to_string(),
        display_name: None,
        description: str_field(def, "description")
            .unwrap_or_default()
            .to_string(),
        category: Some(category.to_string()),
        tags: Vec::new(),
        keywords: Vec::new(),
        status: None,
        visibility: None,
        popularity: None,
    };
    let mut record = BundleRecord::new(origin, entry);
    record.revision = Some(Value::Object(manifest));
    record
}
