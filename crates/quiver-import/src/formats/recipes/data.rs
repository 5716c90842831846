//! tsuku's pipeline data files into documents; see the module docs for the mapping.
//!
//! Each file is split into records by its [`Layout`], each record one document, and the
//! file itself described by a [`FileDoc`] in [`FILES_COLLECTION`] so export can put it
//! back together.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use quiver_model::NewDocument;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::text::LineIndex;
use super::{DataDir, FILES_COLLECTION};
use crate::formats::{Bundle, BundleDocument, Origin};
use crate::Rejected;

/// How a file holds its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Layout {
    /// The file is one record.
    Whole,
    /// An object whose `field` is an array of records; the other fields are in `rest`.
    Array,
    /// `{<ecosystem>: {<dependency>: <recipe> | "pending"}}`: one record per pair.
    Map,
    /// JSON Lines: one object per line, or objects spread over several lines (`pretty`).
    Lines,
}

/// A data file as `tsuku.files` describes it: enough to write it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct FileDoc {
    /// The collection holding the file's records.
    pub collection: String,
    pub layout: Layout,
    /// [`Layout::Array`]: the field holding the records (`entries`, `packages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The file's other top-level fields (`schema_version`, `updated_at`, `tiers`...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub rest: Map<String, Value>,
    /// The records' document keys, in file order.
    pub keys: Vec<String>,
    /// [`Layout::Lines`]: records were written over several lines each.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pretty: bool,
}

/// Document keys already taken in this read, with where.
#[derive(Default)]
pub(super) struct Seen {
    keys: HashMap<(String, String), Origin>,
}

impl Seen {
    /// Take `key` in `collection`, or say where it was taken first.
    fn take(&mut self, collection: &str, key: &str, origin: &Origin) -> Result<(), String> {
        let k = (collection.to_string(), key.to_string());
        if let Some(first) = self.keys.get(&k) {
            let line = first.line.map(|l| format!(" line {l}")).unwrap_or_default();
            return Err(format!(
                "duplicate record {key:?} in {collection}: first read from {}{line}",
                first.file.display()
            ));
        }
        self.keys.insert(k, origin.clone());
        Ok(())
    }
}

/// A file's records as they are read.
struct FileOut<'a> {
    rel: &'a Path,
    doc: FileDoc,
    docs: Vec<BundleDocument>,
}

impl<'a> FileOut<'a> {
    fn new(rel: &'a Path, collection: &str, layout: Layout) -> Self {
        FileOut {
            rel,
            doc: FileDoc {
                collection: collection.to_string(),
                layout,
                field: None,
                rest: Map::new(),
                keys: Vec::new(),
                pretty: false,
            },
            docs: Vec::new(),
        }
    }

    /// Add a record, unless its key is taken (then it is rejected).
    fn push(
        &mut self,
        b: &mut Bundle,
        seen: &mut Seen,
        key: String,
        line: Option<u64>,
        body: Value,
    ) {
        let origin = Origin::new(self.rel, line);
        if let Err(reason) = seen.take(&self.doc.collection, &key, &origin) {
            b.rejected.push(origin.reject(Some(key), None, reason));
            return;
        }
        self.doc.keys.push(key.clone());
        self.docs.push(BundleDocument {
            origin,
            document: NewDocument::new(self.doc.collection.clone(), key, body),
        });
    }

    /// Hand the records and the file's description to the bundle.
    fn finish(self, canonical: &str, b: &mut Bundle) {
        let body = serde_json::to_value(&self.doc).unwrap_or(Value::Null);
        b.documents.push(BundleDocument {
            origin: Origin::new(self.rel, Some(1)),
            document: NewDocument::new(FILES_COLLECTION, canonical, body),
        });
        b.documents.extend(self.docs);
    }
}

fn file_name(canonical: &str) -> &str {
    canonical.rsplit('/').next().unwrap_or(canonical)
}

fn stem(canonical: &str) -> &str {
    let name = file_name(canonical);
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// Read one data file into `b`.
pub(super) fn read(
    rel: &Path,
    dir: DataDir,
    canonical: &str,
    text: &str,
    b: &mut Bundle,
    seen: &mut Seen,
) {
    b.count("data files", 1);
    match dir {
        DataDir::Failures => read_lines(
            rel,
            canonical,
            text,
            "tsuku.failures",
            Some(check_failure),
            b,
            seen,
        ),
        DataDir::Metrics => read_lines(rel, canonical, text, "tsuku.metrics", None, b, seen),
        DataDir::Disambiguations => {
            read_lines(rel, canonical, text, "tsuku.disambiguations", None, b, seen)
        }
        _ => {
            let value: Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => {
                    b.rejected.push(Rejected {
                        file: Some(rel.to_path_buf()),
                        line: Some(e.line() as u64),
                        name: None,
                        field: None,
                        reason: format!(
                            "not valid JSON at line {}, column {}: {e}",
                            e.line(),
                            e.column()
                        ),
                    });
                    return;
                }
            };
            read_json(rel, dir, canonical, text, value, b, seen);
        }
    }
}

fn reject_file(rel: &Path, b: &mut Bundle, field: Option<&str>, reason: String) {
    b.rejected
        .push(Origin::new(rel, None).reject(None, field, reason));
}

fn field_names(v: &Value) -> String {
    match v.as_object() {
        Some(o) if !o.is_empty() => o.keys().cloned().collect::<Vec<_>>().join(", "),
        Some(_) => "none".to_string(),
        None => format!("not an object but {}", json_type(v)),
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_json(
    rel: &Path,
    dir: DataDir,
    canonical: &str,
    text: &str,
    value: Value,
    b: &mut Bundle,
    seen: &mut Seen,
) {
    let name = file_name(canonical);
    let stem = stem(canonical);
    let has_array = |f: &str| value.get(f).is_some_and(Value::is_array);
    match dir {
        DataDir::Discovery => {
            b.count("discovery entries", 1);
            whole(
                rel,
                canonical,
                "tsuku.discovery",
                stem.to_string(),
                value,
                b,
                seen,
            );
        }
        DataDir::DisambiguationAudit => {
            b.count("disambiguation audits", 1);
            let key = format!("audit/{stem}");
            whole(rel, canonical, "tsuku.disambiguations", key, value, b, seen);
        }
        DataDir::Schemas => {
            b.count("schemas", 1);
            whole(
                rel,
                canonical,
                "tsuku.schemas",
                name.to_string(),
                value,
                b,
                seen,
            );
        }
        DataDir::Examples => {
            b.count("examples", 1);
            whole(
                rel,
                canonical,
                "tsuku.examples",
                name.to_string(),
                value,
                b,
                seen,
            );
        }
        DataDir::Queues if stem.starts_with("batch-results") => {
            b.count("batch results", 1);
            let key = value
                .get("batch_id")
                .and_then(Value::as_str)
                .filter(|k| !k.is_empty())
                .unwrap_or(stem)
                .to_string();
            whole(rel, canonical, "tsuku.batch_results", key, value, b, seen);
        }
        DataDir::Queues if has_array("entries") => {
            let spec = ArraySpec {
                collection: "tsuku.priority_queue",
                field: "entries",
                key_field: "name",
                prefix: String::new(),
                unit: "queue entries",
            };
            array(rel, canonical, text, value, &spec, b, seen);
        }
        DataDir::Queues if has_array("packages") => {
            let spec = ArraySpec {
                collection: "tsuku.homebrew_queue",
                field: "packages",
                key_field: "id",
                prefix: String::new(),
                unit: "homebrew queue packages",
            };
            array(rel, canonical, text, value, &spec, b, seen);
        }
        DataDir::Legacy if has_array("packages") => {
            let spec = ArraySpec {
                collection: "tsuku.legacy_priority_queue",
                field: "packages",
                key_field: "id",
                prefix: String::new(),
                unit: "legacy queue packages",
            };
            array(rel, canonical, text, value, &spec, b, seen);
        }
        DataDir::Legacy
            if value
                .as_object()
                .is_some_and(|o| !o.is_empty() && o.values().all(Value::is_object)) =>
        {
            dep_mapping(rel, canonical, text, value, b, seen);
        }
        DataDir::DiscoverySeeds if has_array("entries") => {
            let spec = ArraySpec {
                collection: "tsuku.discovery_seeds",
                field: "entries",
                key_field: "name",
                prefix: format!("{stem}:"),
                unit: "discovery seeds",
            };
            array(rel, canonical, text, value, &spec, b, seen);
        }
        DataDir::Queues => reject_file(
            rel,
            b,
            None,
            format!(
                "not a tsuku queue: expected `entries` (priority queue) or `packages` \
                 (tiered queue) to be an array, or a batch-results file; top-level fields: {}",
                field_names(&value)
            ),
        ),
        DataDir::Legacy => reject_file(
            rel,
            b,
            None,
            format!(
                "not a legacy tsuku file: expected `packages` (priority queue) or \
                 {{<ecosystem>: {{<dependency>: <recipe>}}}} (dependency mapping); \
                 top-level fields: {}",
                field_names(&value)
            ),
        ),
        DataDir::DiscoverySeeds => reject_file(
            rel,
            b,
            Some("entries"),
            format!(
                "a discovery seed file needs an `entries` array; top-level fields: {}",
                field_names(&value)
            ),
        ),
        DataDir::Failures | DataDir::Metrics | DataDir::Disambiguations => reject_file(
            rel,
            b,
            None,
            "expected a JSON Lines (.jsonl) file here".to_string(),
        ),
    }
}

/// A file that is one record.
fn whole(
    rel: &Path,
    canonical: &str,
    collection: &str,
    key: String,
    value: Value,
    b: &mut Bundle,
    seen: &mut Seen,
) {
    let mut out = FileOut::new(rel, collection, Layout::Whole);
    out.push(b, seen, key, Some(1), value);
    if !out.docs.is_empty() {
        out.finish(canonical, b);
    }
}

struct ArraySpec {
    collection: &'static str,
    field: &'static str,
    key_field: &'static str,
    prefix: String,
    unit: &'static str,
}

/// An object whose `spec.field` is an array of records keyed by `spec.key_field`.
fn array(
    rel: &Path,
    canonical: &str,
    text: &str,
    value: Value,
    spec: &ArraySpec,
    b: &mut Bundle,
    seen: &mut Seen,
) {
    let Value::Object(mut top) = value else {
        return reject_file(rel, b, None, "expected a JSON object".to_string());
    };
    let Some(Value::Array(items)) = top.remove(spec.field) else {
        return reject_file(
            rel,
            b,
            Some(spec.field),
            format!("`{}` must be an array", spec.field),
        );
    };
    let mut out = FileOut::new(rel, spec.collection, Layout::Array);
    out.doc.field = Some(spec.field.to_string());
    out.doc.rest = top;
    let mut ix = LineIndex::new(text);
    b.count(spec.unit, items.len() as u64);
    for (i, item) in items.into_iter().enumerate() {
        let key = item
            .get(spec.key_field)
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .map(str::to_string);
        let Some(key) = key else {
            b.rejected.push(Origin::new(rel, None).reject(
                None,
                Some(&format!("{}[{i}].{}", spec.field, spec.key_field)),
                format!(
                    "{} {} has no `{}` (a non-empty string), so it has no key",
                    spec.field,
                    i + 1,
                    spec.key_field
                ),
            ));
            continue;
        };
        let line = serde_json::to_string(&key)
            .ok()
            .and_then(|needle| ix.find(&needle));
        out.push(b, seen, format!("{}{key}", spec.prefix), line, item);
    }
    out.finish(canonical, b);
}

/// `{<ecosystem>: {<dependency>: <recipe> | "pending"}}`.
fn dep_mapping(
    rel: &Path,
    canonical: &str,
    text: &str,
    value: Value,
    b: &mut Bundle,
    seen: &mut Seen,
) {
    let Value::Object(top) = value else {
        return reject_file(rel, b, None, "expected a JSON object".to_string());
    };
    let mut out = FileOut::new(rel, "tsuku.dep_mapping", Layout::Map);
    let ix = LineIndex::new(text);
    for (ecosystem, deps) in top {
        let Value::Object(deps) = deps else { continue };
        b.count("dependency mappings", deps.len() as u64);
        for (dep, recipe) in deps {
            let line = serde_json::to_string(&dep)
                .ok()
                .and_then(|needle| ix.find_key(&needle));
            let key = format!("{ecosystem}:{dep}");
            let body = match recipe.as_str() {
                Some("pending") => json!({
                    "ecosystem": ecosystem, "dependency": dep,
                    "status": "pending", "recipe": null,
                }),
                Some(r) if !r.is_empty() => json!({
                    "ecosystem": ecosystem, "dependency": dep,
                    "status": "mapped", "recipe": r,
                }),
                _ => {
                    b.rejected.push(Origin::new(rel, line).reject(
                        Some(key),
                        Some(&format!("{ecosystem}.{dep}")),
                        format!(
                            "a dependency maps to a recipe name or \"pending\", not {}",
                            json_type(&recipe)
                        ),
                    ));
                    continue;
                }
            };
            out.push(b, seen, key, line, body);
        }
    }
    out.finish(canonical, b);
}

/// Checks a failure line's shape; `Ok` names it (for the counts).
type ShapeCheck = fn(&Map<String, Value>) -> Result<&'static str, String>;

/// The two failure line shapes: per recipe and platform (`batch-*` files), or per
/// ecosystem and environment with a `failures` array.
fn check_failure(o: &Map<String, Value>) -> Result<&'static str, String> {
    let missing = |fields: &[&str], is: fn(&Value) -> bool| -> Vec<String> {
        fields
            .iter()
            .filter(|f| !o.get(**f).is_some_and(is))
            .map(|f| f.to_string())
            .collect()
    };
    if o.contains_key("ecosystem") || o.contains_key("failures") {
        let mut bad = missing(&["ecosystem", "environment"], Value::is_string);
        bad.extend(missing(&["failures"], Value::is_array));
        if bad.is_empty() {
            let items = o
                .get("failures")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            if let Some(i) = items
                .iter()
                .position(|f| !f.get("package_id").is_some_and(Value::is_string))
            {
                return Err(format!(
                    "failures[{i}] has no package_id (ecosystem failure lines are \
                     {{schema_version, ecosystem, environment, updated_at, \
                     failures[{{package_id, category, message, timestamp}}]}})"
                ));
            }
            return Ok("failure lines (ecosystem, environment)");
        }
        return Err(format!(
            "an ecosystem failure line needs ecosystem and environment (strings) and a \
             failures array; wrong or missing: {}",
            bad.join(", ")
        ));
    }
    if o.contains_key("recipe") || o.contains_key("platform") {
        let bad = missing(&["recipe", "platform", "category"], Value::is_string);
        if bad.is_empty() {
            return Ok("failure lines (recipe, platform)");
        }
        return Err(format!(
            "a recipe failure line needs recipe, platform and category (strings); wrong or \
             missing: {}",
            bad.join(", ")
        ));
    }
    Err(format!(
        "matches neither failure line shape: {{schema_version, recipe, platform, exit_code, \
         category, timestamp}} or {{schema_version, ecosystem, environment, updated_at, \
         failures[]}}; fields: {}",
        o.keys().cloned().collect::<Vec<_>>().join(", ")
    ))
}

/// JSON Lines: one object per line, or (when a line is not a whole object) a stream of
/// objects spread over lines, read as one piece.
fn read_lines(
    rel: &Path,
    canonical: &str,
    text: &str,
    collection: &str,
    check: Option<ShapeCheck>,
    b: &mut Bundle,
    seen: &mut Seen,
) {
    let name = file_name(canonical);
    let unit = match collection {
        "tsuku.failures" => "failure lines",
        "tsuku.metrics" => "metrics records",
        _ => "disambiguation lines",
    };
    let one_per_line = text
        .lines()
        .map(str::trim)
        .all(|l| l.is_empty() || (l.starts_with('{') && l.ends_with('}')));
    // (line, value or why the line is not JSON) of each record, in file order.
    let mut records: Vec<(u64, Result<Value, String>)> = Vec::new();
    let mut pretty = false;
    if one_per_line {
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let n = i as u64 + 1;
            b.count(unit, 1);
            let parsed = serde_json::from_str::<Value>(line)
                .map_err(|e| format!("not valid JSON at column {}: {e}", e.column()));
            records.push((n, parsed));
        }
    } else {
        let ix = LineIndex::new(text);
        let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
        let mut prev = 0;
        while let Some(next) = stream.next() {
            match next {
                Ok(v) => {
                    let end = stream.byte_offset();
                    let chunk = text.get(prev..end).unwrap_or_default();
                    let start = prev + (chunk.len() - chunk.trim_start().len());
                    let line = ix.line(start);
                    pretty |= ix.line(end.saturating_sub(1)) > line;
                    records.push((line, Ok(v)));
                    prev = end;
                }
                Err(e) => {
                    b.rejected
                        .push(Origin::new(rel, Some(e.line() as u64)).reject(
                            None,
                            None,
                            format!(
                                "not valid JSON at line {}, column {} (records span several \
                             lines here, so the file is read whole and not taken): {e}",
                                e.line(),
                                e.column()
                            ),
                        ));
                    return;
                }
            }
        }
        b.count(unit, records.len() as u64);
    }
    let mut out = FileOut::new(rel, collection, Layout::Lines);
    out.doc.pretty = pretty;
    for (i, (line, value)) in records.into_iter().enumerate() {
        let ordinal = i as u64 + 1;
        let origin = Origin::new(rel, Some(line));
        let value = match value {
            Ok(v) => v,
            Err(reason) => {
                b.rejected.push(origin.reject(None, None, reason));
                continue;
            }
        };
        let Some(obj) = value.as_object() else {
            b.rejected.push(origin.reject(
                None,
                None,
                format!("expected a JSON object, found {}", json_type(&value)),
            ));
            continue;
        };
        if let Some(check) = check {
            match check(obj) {
                Ok(shape) => {
                    b.count(shape, 1);
                    if let Some(f) = obj.get("failures").and_then(Value::as_array) {
                        b.count("package failures", f.len() as u64);
                    }
                }
                Err(reason) => {
                    let name = obj
                        .get("recipe")
                        .or_else(|| obj.get("ecosystem"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    b.rejected.push(origin.reject(name, None, reason));
                    continue;
                }
            }
        }
        out.push(
            b,
            seen,
            line_key(name, pretty, line, ordinal),
            Some(line),
            value,
        );
    }
    out.finish(canonical, b);
}

/// A JSON Lines record's key: `<file name>:<line>`, or `<file name>#<n>` (the n-th record)
/// when records span lines (their lines change when the file is written again).
fn line_key(file_name: &str, pretty: bool, line: u64, ordinal: u64) -> String {
    if pretty {
        format!("{file_name}#{ordinal}")
    } else {
        format!("{file_name}:{line}")
    }
}

/// The line a JSON Lines key names (`<file name>:<line>`).
pub(super) fn key_line(key: &str) -> Option<u64> {
    key.rsplit_once(':')?.1.parse().ok()
}

/// Where a data file goes back to: its path from the tsuku root, checked to stay inside
/// the export folder.
pub(super) fn relative_path(canonical: &str) -> Option<PathBuf> {
    let p = Path::new(canonical);
    let ok = !canonical.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
    ok.then(|| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(canonical: &str, dir: DataDir, text: &str) -> Bundle {
        let mut b = Bundle::default();
        read(
            Path::new(canonical),
            dir,
            canonical,
            text,
            &mut b,
            &mut Seen::default(),
        );
        b
    }

    #[test]
    fn failure_shapes() {
        let text = concat!(
            r#"{"schema_version":1,"recipe":"a","platform":"linux","exit_code":6,"category":"x","timestamp":"t"}"#,
            "\n",
            r#"{"schema_version":1,"ecosystem":"npm","environment":"e","updated_at":"t","failures":[{"package_id":"npm:a"}]}"#,
            "\n\n",
            r#"{"schema_version":1,"what":"else"}"#,
            "\n",
            r#"{"recipe": 3, "platform": "p"}"#,
            "\n",
        );
        let b = read_str("data/failures/f.jsonl", DataDir::Failures, text);
        assert_eq!(b.documents.len(), 3, "header and two lines");
        assert_eq!(b.documents[1].document.key, "f.jsonl:1");
        assert_eq!(b.documents[2].document.key, "f.jsonl:2");
        assert_eq!(b.rejected.len(), 2);
        assert_eq!(b.rejected[0].line, Some(4));
        assert!(b.rejected[0].reason.contains("neither"));
        assert_eq!(b.rejected[1].line, Some(5));
        assert!(b.rejected[1].reason.contains("recipe"));
        assert_eq!(b.counts["failure lines"], 4);
        assert_eq!(b.counts["package failures"], 1);
    }

    #[test]
    fn pretty_stream_records_and_their_lines() {
        let text = "{\n  \"a\": 1\n}\n{\n  \"a\": 2\n}\n";
        let b = read_str("data/metrics/m.jsonl", DataDir::Metrics, text);
        assert!(b.rejected.is_empty());
        let keys: Vec<_> = b
            .documents
            .iter()
            .map(|d| d.document.key.as_str())
            .collect();
        assert_eq!(keys, ["data/metrics/m.jsonl", "m.jsonl#1", "m.jsonl#2"]);
        assert_eq!(b.documents[2].origin.line, Some(4));
        assert_eq!(b.documents[0].document.body["pretty"], json!(true));
        let broken = read_str(
            "data/metrics/m.jsonl",
            DataDir::Metrics,
            "{\n \"a\": 1\n}\n{\n \"a\" 2\n}\n",
        );
        assert!(broken.documents.is_empty());
        assert_eq!(broken.rejected.len(), 1);
        assert_eq!(broken.rejected[0].line, Some(5));
    }

    #[test]
    fn canonical_paths_stay_inside() {
        assert!(relative_path("data/queues/q.json").is_some());
        assert!(relative_path("../x").is_none());
        assert!(relative_path("/etc/x").is_none());
        assert!(relative_path("").is_none());
    }
}
