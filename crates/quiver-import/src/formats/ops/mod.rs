//! The `ops-tools` format: opsconductor's tool catalog (one YAML profile per tool), its
//! tool optimization profiles and its shared JSON Schemas.
//!
//! # What is claimed
//!
//! - `*.yaml` / `*.yml` whose first bytes have a top-level `tool_name:` (the canonical
//!   profile), `tool:` (the legacy wrapper), `name:` + `version:` + `platform:` (the
//!   legacy Windows layout), or `capabilities:` (a profile without a `tool_name`, which
//!   is rejected with that reason rather than ignored);
//! - `tool_optimization_profiles.yaml` (or `.yml`);
//! - `*.json` in a `shared/schemas/` folder.
//!
//! # Mapping
//!
//! | source | quiver |
//! |---|---|
//! | a canonical profile | a `tool` entry in namespace `opsconductor` |
//! | `tool_name` | entry name (must follow the tool name rule; otherwise rejected) |
//! | `description`, `category` | entry description, category |
//! | `metadata.tags` | entry tags |
//! | `metadata.display_name` (if any) | entry display name |
//! | capability names | entry keywords |
//! | `version` (`1.0` → `1.0.0`) | the version; without one, the profile is a revision |
//! | the whole profile | the version's manifest, plus `quiver_source_path` |
//! | `tool_optimization_profiles.yaml` `tools.<name>` | document `ops.optimization_profiles` / `<name>` |
//! | its other top-level fields (`version`) | document `ops.optimization_profiles` / `_file` |
//! | `shared/schemas/<Stem>.json` | document `ops.schemas` / `<Stem>` |
//!
//! `quiver_source_path` is the file's path below the `tools/` folder (`linux/ping.yaml`),
//! kept so the export can write each profile back where it was; the export drops it.
//!
//! # Legacy layouts and the template
//!
//! - The Windows `name/version/description/platform/category/tags/metadata` layout is
//!   mapped (with a warning): `name` → `tool_name`, `tags` → `metadata.tags`, an empty
//!   `capabilities`, the other fields as they are.
//! - The `tool:` wrapper is unwrapped (with a warning): `capability` and `pattern` become
//!   `capabilities.<capability.name>.patterns.<pattern.name>` (their other fields kept),
//!   `inputs` are split by their `required` flag into the pattern's `required_inputs`
//!   and `optional_inputs`, and `policy` goes to the pattern, with `approval_required` →
//!   `requires_approval` and `timeout_seconds` → `max_execution_time`.
//! - A legacy file whose name a canonical profile of the same import also has is
//!   rejected, naming that profile (the canonical one is the tool; the legacy one is a
//!   second, older definition of another platform's tool under the same name).
//! - A profile whose `tool_name` is a `<PLACEHOLDER>` is the authoring template: rejected.
//! - A profile with no `tool_name` (the VAPIX network-settings file keeps its name under
//!   `metadata.name`) is rejected with that reason.
//!
//! The export writes mapped legacy files in the canonical layout, so their round trip is
//! equal to the mapped form, not to the legacy text.
//!
//! # Expressions
//!
//! Each pattern's `time_estimate_ms`, `cost_estimate` and `policy.requires_background_if`
//! is parsed ([`expr`]). A syntax error rejects the tool (or the optimization profile),
//! naming the field, its line, the expression and the position. A variable that is not an
//! input of the pattern (`required_inputs`, `optional_inputs`, `api_parameters` names)
//! nor one of the context variables the catalog measures work by ([`CONTEXT_VARIABLES`],
//! or [`PROFILE_CONTEXT_VARIABLES`] in the optimization profiles, where the file's own
//! header lists them) is a warning, as is a call of an unknown function; the record is
//! taken.

mod export;
pub mod expr;
mod lines;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use quiver_model::{Kind, NewDocument, NewEntry, NewVersion};
use serde_json::{Map, Value};

use self::lines::{locate, Seg};
use super::files::read_text;
use super::{Bundle, BundleDocument, BundleRecord, Origin, Reader};
use crate::{Format, Rejected};

pub use export::export;

/// The namespace of every opsconductor tool.
pub const NAMESPACE: &str = "opsconductor";
/// Documents: one per tool of `tool_optimization_profiles.yaml`, plus [`PROFILES_FILE_KEY`].
pub const PROFILES_COLLECTION: &str = "ops.optimization_profiles";
/// The key holding the optimization profiles file's fields other than `tools`.
pub const PROFILES_FILE_KEY: &str = "_file";
/// Documents: the shared JSON Schemas, by file stem.
pub const SCHEMAS_COLLECTION: &str = "ops.schemas";
/// The manifest field holding the profile's path below `tools/`; dropped on export.
pub const SOURCE_PATH: &str = "quiver_source_path";
/// The optimization profiles file's name.
pub const PROFILES_FILE: &str = "tool_optimization_profiles.yaml";

/// Context variables the tool profiles' expressions may use besides the pattern's
/// inputs (the model's list: the tool template's and the catalog's workload measures).
pub use quiver_model::expr::CONTEXT_VARIABLES;

/// The variables the optimization profiles file documents in its header.
pub const PROFILE_CONTEXT_VARIABLES: &[&str] = &["N", "pages", "p95_latency", "cost", "time_ms"];

pub struct OpsReader;

/// The top-level keys among the first bytes of a YAML file.
fn top_level_keys(head: &str) -> BTreeSet<&str> {
    head.lines()
        .filter(|l| !l.starts_with([' ', '\t', '#', '-']) && !l.is_empty())
        .filter_map(|l| {
            l.split_once(':')
                .map(|(k, _)| k.trim().trim_matches(['"', '\'']))
        })
        .collect()
}

fn is_profiles_file(rel: &Path) -> bool {
    rel.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == PROFILES_FILE || n == "tool_optimization_profiles.yml")
}

fn extension(rel: &Path) -> Option<&str> {
    rel.extension().and_then(|e| e.to_str())
}

fn is_schema_file(rel: &Path) -> bool {
    let mut up = rel.components().rev().skip(1);
    extension(rel) == Some("json")
        && up.next() == Some(Component::Normal("schemas".as_ref()))
        && up.next() == Some(Component::Normal("shared".as_ref()))
}

impl Reader for OpsReader {
    fn format(&self) -> Format {
        Format::OpsTools
    }

    fn claims(&self, rel: &Path, head: &[u8]) -> bool {
        if is_schema_file(rel) {
            return true;
        }
        if !matches!(extension(rel), Some("yaml" | "yml")) {
            return false;
        }
        if is_profiles_file(rel) {
            return true;
        }
        let head = String::from_utf8_lossy(head);
        let keys = top_level_keys(&head);
        keys.contains("tool_name")
            || keys.contains("tool")
            || keys.contains("capabilities")
            || (keys.contains("name") && keys.contains("version") && keys.contains("platform"))
    }

    fn read(&self, root: &Path, files: &[PathBuf]) -> Bundle {
        let mut bundle = Bundle::default();
        let mut tools = Vec::new();
        let mut distinct_time = BTreeSet::new();
        for rel in files {
            let Some(text) = read_text(root, rel, &mut bundle) else {
                continue;
            };
            if is_schema_file(rel) {
                read_schema(&mut bundle, rel, &text);
            } else if is_profiles_file(rel) {
                read_profiles(&mut bundle, rel, &text);
            } else {
                bundle.count("tool files", 1);
                match read_tool_file(&mut bundle, rel, &text, &mut distinct_time) {
                    Ok(t) => tools.push(t),
                    Err(r) => bundle.rejected.push(*r),
                }
            }
        }
        if !distinct_time.is_empty() {
            bundle.count(
                "distinct time_estimate_ms expressions",
                distinct_time.len() as u64,
            );
        }
        settle_tools(&mut bundle, tools);
        bundle
    }
}

/// A YAML or JSON parse, as a JSON value or a rejection naming the file and position.
fn parse_yaml(rel: &Path, text: &str) -> Result<Value, Box<Rejected>> {
    let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|e| {
        let line = e.location().map(|l| l.line() as u64);
        let col = e.location().map(|l| l.column());
        let at = match (line, col) {
            (Some(l), Some(c)) => format!(" at line {l} column {c}"),
            _ => String::new(),
        };
        Box::new(Origin::new(rel, line).reject(None, None, format!("not valid YAML{at}: {e}")))
    })?;
    yaml_to_json(yaml).map_err(|reason| Box::new(Origin::new(rel, None).reject(None, None, reason)))
}

/// YAML to JSON: mapping keys that are numbers or booleans become their text; tags are
/// dropped (the tagged value is kept); non-finite floats are refused.
pub(crate) fn yaml_to_json(v: serde_yaml_ng::Value) -> Result<Value, String> {
    use serde_yaml_ng::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                serde_json::Number::from_f64(f)
                    .map(Value::Number)
                    .ok_or_else(|| format!("the number {n} has no JSON form"))?
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .map(yaml_to_json)
                .collect::<Result<_, _>>()?,
        ),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => {
                        return Err(format!(
                            "a mapping key must be a string, not {}",
                            serde_yaml_ng::to_string(&other).unwrap_or_default().trim()
                        ))
                    }
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

/// The file's path below its `tools/` folder (or as given, when there is none).
fn source_path(rel: &Path) -> String {
    let comps: Vec<_> = rel.components().collect();
    let start = comps
        .iter()
        .position(|c| *c == Component::Normal("tools".as_ref()))
        .map_or(0, |i| i + 1);
    let parts: Vec<String> = comps[start..]
        .iter()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    parts.join("/")
}

/// How a tool file was laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Canonical,
    LegacyNameVersion,
    Wrapper,
}

impl Layout {
    fn describe(self) -> &'static str {
        match self {
            Layout::Canonical => "canonical",
            Layout::LegacyNameVersion => "legacy `name/version`",
            Layout::Wrapper => "legacy `tool:` wrapper",
        }
    }
}

/// A tool file read into a record, before names are compared across files.
struct ToolRead {
    layout: Layout,
    record: BundleRecord,
    warnings: Vec<Rejected>,
}

/// Take the records, except legacy ones whose name a canonical profile already has.
fn settle_tools(bundle: &mut Bundle, tools: Vec<ToolRead>) {
    let canonical: BTreeMap<String, PathBuf> = tools
        .iter()
        .filter(|t| t.layout == Layout::Canonical)
        .map(|t| (t.record.entry.name.clone(), t.record.origin.file.clone()))
        .collect();
    for t in tools {
        if t.layout != Layout::Canonical {
            if let Some(file) = canonical.get(&t.record.entry.name) {
                let name = t.record.entry.name.clone();
                bundle.rejected.push(t.record.origin.reject(
                    Some(name.clone()),
                    Some("name"),
                    format!(
                        "name: `{name}` is also the tool_name of the canonical profile {}; \
                         this {} file is not taken (give it its own tool_name and convert it \
                         to the canonical layout to keep both)",
                        file.display(),
                        t.layout.describe()
                    ),
                ));
                continue;
            }
        }
        bundle.warnings.extend(t.warnings);
        bundle.records.push(t.record);
    }
}

fn read_tool_file(
    bundle: &mut Bundle,
    rel: &Path,
    text: &str,
    distinct_time: &mut BTreeSet<String>,
) -> Result<ToolRead, Box<Rejected>> {
    let value = parse_yaml(rel, text)?;
    let file = Origin::new(rel, None);
    let Value::Object(map) = value else {
        let what = if value.is_null() {
            "empty"
        } else {
            "not a mapping"
        };
        return Err(Box::new(file.reject(
            None,
            None,
            format!("the file is {what}; a tool profile is a mapping with a tool_name"),
        )));
    };
    if map.contains_key("tool_name") {
        bundle.count("canonical profiles", 1);
        let origin = Origin::new(rel, locate(text, &[Seg::Key("tool_name")]).or(Some(1)));
        return canonical(
            bundle,
            origin,
            text,
            map,
            Layout::Canonical,
            Vec::new(),
            distinct_time,
        );
    }
    if let Some(tool) = map.get("tool") {
        bundle.count("tool: wrapper files", 1);
        let origin = Origin::new(rel, locate(text, &[Seg::Key("tool")]).or(Some(1)));
        let Value::Object(tool) = tool else {
            return Err(Box::new(origin.reject(
                None,
                Some("tool"),
                "tool: the wrapper layout needs a mapping under `tool`",
            )));
        };
        let (mapped, summary) =
            unwrap_tool(&map, tool).map_err(|r| Box::new(origin.reject(None, Some("tool"), r)))?;
        let name = mapped
            .get("tool_name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let warning = origin.reject(
            name,
            Some("tool"),
            format!("legacy `tool:` wrapper layout mapped to the canonical profile ({summary})"),
        );
        return canonical(
            bundle,
            origin,
            text,
            mapped,
            Layout::Wrapper,
            vec![warning],
            distinct_time,
        );
    }
    if map.contains_key("name") && map.contains_key("version") {
        bundle.count("legacy name/version files", 1);
        let origin = Origin::new(rel, locate(text, &[Seg::Key("name")]).or(Some(1)));
        let mapped = map_legacy(map).map_err(|r| Box::new(origin.reject(None, Some("tags"), r)))?;
        let name = mapped
            .get("tool_name")
            .and_then(Value::as_str)
            .map(str::to_string);
        let warning = origin.reject(
            name,
            Some("name"),
            "legacy `name/version` layout mapped to the canonical profile (name → tool_name, \
             tags → metadata.tags); it has no capabilities",
        );
        return canonical(
            bundle,
            origin,
            text,
            mapped,
            Layout::LegacyNameVersion,
            vec![warning],
            distinct_time,
        );
    }
    let hint = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(|n| {
            format!(" (metadata.name is `{n}`: add `tool_name: {n}` at the top level to take it)")
        })
        .unwrap_or_default();
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let line = locate(text, &[Seg::Key("metadata")]).or(Some(1));
    Err(Box::new(Origin::new(rel, line).reject(
        name,
        Some("tool_name"),
        format!(
            "tool_name: missing; the file has no top-level tool_name, tool or name/version{hint}"
        ),
    )))
}

/// The `name/version` Windows layout as a canonical profile.
fn map_legacy(mut map: Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    if let Some(name) = map.remove("name") {
        out.insert("tool_name".into(), name);
    }
    let tags = map.remove("tags");
    for (k, v) in map {
        out.insert(k, v);
    }
    if let Some(tags) = tags {
        let meta = out
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(meta) = meta else {
            return Err("tags: cannot move the tags under metadata, which is not a mapping".into());
        };
        match (meta.get_mut("tags"), tags) {
            (Some(Value::Array(existing)), Value::Array(more)) => {
                for t in more {
                    if !existing.contains(&t) {
                        existing.push(t);
                    }
                }
            }
            (Some(_), _) => {
                return Err(
                    "tags: both tags and metadata.tags are set, and not both as lists".into(),
                )
            }
            (None, tags) => {
                meta.insert("tags".into(), tags);
            }
        }
    }
    out.entry("capabilities")
        .or_insert_with(|| Value::Object(Map::new()));
    Ok(out)
}

/// A `capability` or `pattern` of the wrapper: its name and its other fields.
type Named = Option<(String, Map<String, Value>)>;

/// The `tool:` wrapper as a canonical profile, and a summary of what was mapped.
fn unwrap_tool(
    outer: &Map<String, Value>,
    tool: &Map<String, Value>,
) -> Result<(Map<String, Value>, String), String> {
    let mut tool = tool.clone();
    let mut out = Map::new();
    if let Some(name) = tool.remove("name") {
        out.insert("tool_name".into(), name);
    }
    let capability = tool.remove("capability");
    let pattern = tool.remove("pattern");
    let inputs = tool.remove("inputs");
    let policy = tool.remove("policy");
    for (k, v) in tool {
        out.insert(k, v);
    }
    // Keys beside `tool:` at the top level are kept as they are.
    for (k, v) in outer {
        if k != "tool" {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    let named = |v: Option<Value>, what: &str| -> Result<Named, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(mut m)) => match m.remove("name") {
                Some(Value::String(n)) => Ok(Some((n, m))),
                _ => Err(format!("tool.{what}: needs a `name` (a string)")),
            },
            Some(_) => Err(format!("tool.{what}: must be a mapping")),
        }
    };
    let capability = named(capability, "capability")?;
    let pattern = named(pattern, "pattern")?;
    let mut pattern_map = Map::new();
    let mut summary = Vec::new();
    let mut n_inputs = 0;
    if let Some(inputs) = inputs {
        let Value::Array(inputs) = inputs else {
            return Err("tool.inputs: must be a list".into());
        };
        let (mut required, mut optional) = (Vec::new(), Vec::new());
        for input in inputs {
            n_inputs += 1;
            match input {
                Value::Object(mut m) => {
                    let req = m.remove("required");
                    if req == Some(Value::Bool(true)) {
                        required.push(Value::Object(m));
                    } else {
                        optional.push(Value::Object(m));
                    }
                }
                _ => return Err("tool.inputs: each input must be a mapping".into()),
            }
        }
        if !required.is_empty() {
            pattern_map.insert("required_inputs".into(), Value::Array(required));
        }
        if !optional.is_empty() {
            pattern_map.insert("optional_inputs".into(), Value::Array(optional));
        }
    }
    if let Some(policy) = policy {
        let Value::Object(policy) = policy else {
            return Err("tool.policy: must be a mapping".into());
        };
        let mut p = Map::new();
        for (k, v) in policy {
            let k = match k.as_str() {
                "approval_required" => "requires_approval".to_string(),
                "timeout_seconds" => "max_execution_time".to_string(),
                _ => k,
            };
            p.insert(k, v);
        }
        pattern_map.insert("policy".into(), Value::Object(p));
    }
    let (cap_name, mut cap) = capability.unwrap_or_else(|| ("default".into(), Map::new()));
    let (pat_name, pat) = pattern.unwrap_or_else(|| ("default".into(), Map::new()));
    for (k, v) in pat {
        pattern_map.entry(k).or_insert(v);
    }
    summary.push(format!("capability `{cap_name}`"));
    summary.push(format!("pattern `{pat_name}`"));
    summary.push(format!("{n_inputs} inputs"));
    let mut patterns = Map::new();
    patterns.insert(pat_name, Value::Object(pattern_map));
    cap.insert("patterns".into(), Value::Object(patterns));
    let mut caps = Map::new();
    caps.insert(cap_name, Value::Object(cap));
    out.insert("capabilities".into(), Value::Object(caps));
    Ok((
        out,
        format!("{}; it has no time or cost estimates", summary.join(", ")),
    ))
}

/// One pattern of a profile, wherever it sits.
struct PatternAt<'a> {
    /// `capabilities.<cap>.patterns.<pat>` or `capabilities[i].patterns[j]`.
    field: String,
    /// The path to it in the text, for line numbers.
    path: Vec<Seg<'a>>,
    value: &'a Value,
}

/// Every capability's patterns, in either layout the catalog uses: mappings keyed by
/// name, or lists of items with `capability_name` / `pattern_name`. Counts capabilities.
fn patterns<'a>(
    prefix: &[Seg<'a>],
    caps: &'a Value,
    n_caps: &mut u64,
) -> Result<Vec<PatternAt<'a>>, (String, String)> {
    let mut out = Vec::new();
    let caps: Vec<(String, Seg<'a>, &'a Value)> = match caps {
        Value::Null => Vec::new(),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (format!("capabilities.{k}"), Seg::Key(k.as_str()), v))
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let seg = match v.get("capability_name").and_then(Value::as_str) {
                    Some(n) => Seg::Item("capability_name", n),
                    None => Seg::Key("capability_name"),
                };
                (format!("capabilities[{i}]"), seg, v)
            })
            .collect(),
        _ => {
            return Err((
                "capabilities".into(),
                "capabilities: must be a mapping (or a list) of capabilities".into(),
            ))
        }
    };
    for (field, seg, cap) in caps {
        *n_caps += 1;
        let Value::Object(cap_map) = cap else {
            return Err((
                field.clone(),
                format!("{field}: a capability must be a mapping"),
            ));
        };
        let pats: Vec<(String, Seg<'a>, &'a Value)> = match cap_map.get("patterns") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| (format!("{field}.patterns.{k}"), Seg::Key(k.as_str()), v))
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(j, v)| {
                    let s = match v.get("pattern_name").and_then(Value::as_str) {
                        Some(n) => Seg::Item("pattern_name", n),
                        None => Seg::Key("pattern_name"),
                    };
                    (format!("{field}.patterns[{j}]"), s, v)
                })
                .collect(),
            Some(_) => {
                return Err((
                    format!("{field}.patterns"),
                    format!("{field}.patterns: must be a mapping (or a list) of patterns"),
                ))
            }
        };
        for (pfield, pseg, pat) in pats {
            if !pat.is_object() {
                return Err((
                    pfield.clone(),
                    format!("{pfield}: a pattern must be a mapping"),
                ));
            }
            out.push(PatternAt {
                field: pfield,
                path: prefix
                    .iter()
                    .copied()
                    .chain([Seg::Key("capabilities"), seg, Seg::Key("patterns"), pseg])
                    .collect(),
                value: pat,
            });
        }
    }
    Ok(out)
}

/// The names of a pattern's inputs.
/// What checking a profile's expressions found.
#[derive(Default)]
struct ExprFindings {
    /// The first syntax error: field, line, reason.
    errors: Vec<(String, Option<u64>, String)>,
    /// Warnings: field, line, reason.
    warnings: Vec<(String, Option<u64>, String)>,
}

/// Check the expressions of every pattern, counting them.
fn check_expressions(
    bundle: &mut Bundle,
    text: &str,
    pats: &[PatternAt<'_>],
    context: &[&str],
) -> ExprFindings {
    let mut found = ExprFindings::default();
    for p in pats {
        let inputs = expr::input_names(p.value);
        let mut exprs: Vec<(String, Vec<Seg<'_>>, &Value)> = Vec::new();
        for f in expr::EXPRESSION_FIELDS {
            if let Some(v) = p.value.get(*f) {
                let mut path = p.path.clone();
                path.push(Seg::Key(f));
                exprs.push((format!("{}.{f}", p.field), path, v));
            }
        }
        if let Some(v) = p
            .value
            .get("policy")
            .and_then(|x| x.get("requires_background_if"))
        {
            let mut path = p.path.clone();
            path.extend([Seg::Key("policy"), Seg::Key("requires_background_if")]);
            exprs.push((
                format!("{}.policy.requires_background_if", p.field),
                path,
                v,
            ));
        }
        for (field, path, v) in exprs {
            bundle.count("expressions", 1);
            let line = locate(text, &path);
            let src = match v {
                Value::Number(_) => continue,
                Value::String(s) => s.as_str(),
                other => {
                    bundle.count("expression errors", 1);
                    found.errors.push((
                        field.clone(),
                        line,
                        format!(
                            "{field}: must be a number or an expression in a string, not {other}"
                        ),
                    ));
                    continue;
                }
            };
            match expr::check(src) {
                Err(e) => {
                    bundle.count("expression errors", 1);
                    found.errors.push((
                        field.clone(),
                        line,
                        format!("{field}: `{src}` is not a valid expression: {e}"),
                    ));
                }
                Ok(c) => {
                    for var in c.variables {
                        if inputs.contains(var.as_str()) || context.contains(&var.as_str()) {
                            continue;
                        }
                        bundle.count("unknown variables", 1);
                        let hint = inputs
                            .iter()
                            .find(|i| i.eq_ignore_ascii_case(&var))
                            .map(|i| {
                                format!(
                                    " (the pattern has an input `{i}`: names are case-sensitive)"
                                )
                            })
                            .unwrap_or_default();
                        found.warnings.push((
                            field.clone(),
                            line,
                            format!(
                                "{field}: `{src}` uses `{var}`, which is neither an input of the \
                                 pattern nor a known context variable ({}){hint}",
                                context.join(", ")
                            ),
                        ));
                    }
                    for f in c.unknown_functions {
                        bundle.count("unknown functions", 1);
                        found.warnings.push((
                            field.clone(),
                            line,
                            format!(
                                "{field}: `{src}` calls `{f}`, which is not a known function \
                                 ({})",
                                expr::function_names()
                            ),
                        ));
                    }
                }
            }
        }
    }
    found
}

/// "1.0" → "1.0.0"; a full semver stays; anything else is refused.
fn coerce_version(v: &Value) -> Result<String, String> {
    let s = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => return Err(format!("version: must be a version like 1.0, not {other}")),
    };
    if semver::Version::parse(&s).is_ok() {
        return Ok(s);
    }
    let parts: Vec<&str> = s.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if (1..=2).contains(&parts.len()) && parts.iter().all(numeric) {
        let mut parts: Vec<String> = parts
            .iter()
            .map(|p| p.trim_start_matches('0').to_string())
            .map(|p| if p.is_empty() { "0".into() } else { p })
            .collect();
        parts.resize(3, "0".into());
        return Ok(parts.join("."));
    }
    Err(format!(
        "version: `{s}` is not a version (expected e.g. 1.0 or 1.2.3)"
    ))
}

fn is_placeholder(s: &str) -> bool {
    let s = s.trim();
    s.starts_with('<') && s.ends_with('>')
}

/// A profile (canonical, or mapped from a legacy layout) into a record.
fn canonical(
    bundle: &mut Bundle,
    origin: Origin,
    text: &str,
    mut map: Map<String, Value>,
    layout: Layout,
    mut warnings: Vec<Rejected>,
    distinct_time: &mut BTreeSet<String>,
) -> Result<ToolRead, Box<Rejected>> {
    let rel = origin.file.clone();
    let reject = |name: Option<&str>, field: &str, reason: String| {
        Box::new(origin.reject(name.map(str::to_string), Some(field), reason))
    };
    let name = match map.get("tool_name") {
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(reject(
                None,
                "tool_name",
                format!("tool_name: must be a string, not {other}"),
            ))
        }
        None => return Err(reject(None, "tool_name", "tool_name: missing".into())),
    };
    let empty = Value::Null;
    let caps = map.get("capabilities").unwrap_or(&empty);
    let mut n_caps = 0;
    let pats = patterns(&[], caps, &mut n_caps);
    bundle.count("capabilities", n_caps);
    if let Ok(ps) = &pats {
        bundle.count("patterns", ps.len() as u64);
        if layout == Layout::Canonical {
            for p in ps {
                if let Some(t) = p.value.get("time_estimate_ms") {
                    let key = match t {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    distinct_time.insert(key);
                }
            }
        }
    }
    if is_placeholder(&name) {
        return Err(reject(
            Some(&name),
            "tool_name",
            format!(
                "tool_name: `{name}` is a placeholder: this is the authoring template, not a tool \
                 (copy it and fill in the <PLACEHOLDER> values to add a tool)"
            ),
        ));
    }
    if let Err(e) = quiver_model::names::validate_name(Kind::Tool, NAMESPACE, &name) {
        return Err(reject(
            Some(&name),
            "tool_name",
            format!("tool_name: `{name}`: {}", e.message),
        ));
    }
    let pats = pats.map_err(|(field, reason)| reject(Some(&name), &field, reason))?;
    let findings = check_expressions(bundle, text, &pats, CONTEXT_VARIABLES);
    if let Some((field, line, reason)) = findings.errors.first() {
        let more = match findings.errors.len() {
            1 => String::new(),
            n => format!(" (and {} more expression errors in this file)", n - 1),
        };
        return Err(Box::new(Rejected {
            file: Some(rel.to_path_buf()),
            line: line.or(origin.line),
            name: Some(name.clone()),
            field: Some(field.clone()),
            reason: format!("{reason}{more}"),
        }));
    }
    for (field, line, reason) in findings.warnings {
        warnings.push(Rejected {
            file: Some(rel.to_path_buf()),
            line: line.or(origin.line),
            name: Some(name.clone()),
            field: Some(field),
            reason,
        });
    }
    let description = match map.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(reject(
                Some(&name),
                "description",
                format!("description: must be a string, not {other}"),
            ))
        }
    };
    let category = match map.get("category") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(reject(
                Some(&name),
                "category",
                format!("category: must be a string, not {other}"),
            ))
        }
    };
    let metadata = map.get("metadata");
    let tags = match metadata.and_then(|m| m.get("tags")) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|t| match t {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(format!(
                    "metadata.tags: each tag must be a string, not {other}"
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|r| reject(Some(&name), "metadata.tags", r))?,
        Some(other) => {
            return Err(reject(
                Some(&name),
                "metadata.tags",
                format!("metadata.tags: must be a list, not {other}"),
            ))
        }
    };
    let display_name = metadata
        .and_then(|m| m.get("display_name"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut keywords: Vec<String> = Vec::new();
    match map.get("capabilities") {
        Some(Value::Object(m)) => keywords.extend(m.keys().cloned()),
        Some(Value::Array(items)) => keywords.extend(
            items
                .iter()
                .filter_map(|c| c.get("capability_name").and_then(Value::as_str))
                .map(str::to_string),
        ),
        _ => {}
    }
    let version = match map.get("version") {
        None | Some(Value::Null) => None,
        Some(v) => Some(coerce_version(v).map_err(|r| reject(Some(&name), "version", r))?),
    };
    map.insert(SOURCE_PATH.into(), Value::String(source_path(&rel)));
    let manifest = Value::Object(map);
    let entry = NewEntry {
        kind: Kind::Tool,
        namespace: NAMESPACE.into(),
        name,
        display_name,
        description,
        category,
        tags,
        keywords,
        status: None,
        visibility: None,
        popularity: None,
    };
    let mut record = BundleRecord::new(origin, entry);
    match version {
        Some(version) => record.versions.push(NewVersion {
            version,
            manifest,
            changelog: None,
            breaking: false,
        }),
        None => record.revision = Some(manifest),
    }
    Ok(ToolRead {
        layout,
        record,
        warnings,
    })
}

/// `tool_optimization_profiles.yaml`: a document per tool, and one for the rest.
fn read_profiles(bundle: &mut Bundle, rel: &Path, text: &str) {
    let value = match parse_yaml(rel, text) {
        Ok(v) => v,
        Err(r) => return bundle.rejected.push(*r),
    };
    let file = Origin::new(rel, Some(1));
    let Value::Object(mut map) = value else {
        return bundle.rejected.push(file.reject(
            None,
            None,
            "the optimization profiles file must be a mapping with a `tools` mapping",
        ));
    };
    let tools = match map.remove("tools") {
        Some(Value::Object(t)) => t,
        _ => {
            return bundle.rejected.push(file.reject(
                None,
                Some("tools"),
                "tools: missing or not a mapping of tool name to profile",
            ))
        }
    };
    bundle.documents.push(BundleDocument {
        origin: file.clone(),
        document: NewDocument::new(PROFILES_COLLECTION, PROFILES_FILE_KEY, Value::Object(map)),
    });
    for (name, profile) in tools {
        bundle.count("optimization profiles", 1);
        let origin = Origin::new(rel, locate(text, &[Seg::Key("tools"), Seg::Key(&name)]));
        if name == PROFILES_FILE_KEY {
            bundle.rejected.push(origin.reject(
                Some(name),
                Some("tools"),
                format!("tools: a profile may not be named `{PROFILES_FILE_KEY}` (kept for the file's other fields)"),
            ));
            continue;
        }
        if !profile.is_object() {
            bundle.rejected.push(origin.reject(
                Some(name.clone()),
                Some(&format!("tools.{name}")),
                format!("tools.{name}: a profile must be a mapping"),
            ));
            continue;
        }
        let mut n_caps = 0;
        let caps = profile.get("capabilities").unwrap_or(&Value::Null);
        let prefix = [Seg::Key("tools"), Seg::Key(&name)];
        let pats = match patterns(&prefix, caps, &mut n_caps) {
            Ok(p) => p,
            Err((field, reason)) => {
                bundle.rejected.push(origin.reject(
                    Some(name.clone()),
                    Some(&format!("tools.{name}.{field}")),
                    format!("tools.{name}.{reason}"),
                ));
                continue;
            }
        };
        let findings = check_expressions(bundle, text, &pats, PROFILE_CONTEXT_VARIABLES);
        for (field, line, reason) in &findings.warnings {
            bundle.warnings.push(Rejected {
                file: Some(rel.to_path_buf()),
                line: line.or(origin.line),
                name: Some(name.clone()),
                field: Some(format!("tools.{name}.{field}")),
                reason: format!("tools.{name}.{reason}"),
            });
        }
        if let Some((field, line, reason)) = findings.errors.first() {
            bundle.rejected.push(Rejected {
                file: Some(rel.to_path_buf()),
                line: line.or(origin.line),
                name: Some(name.clone()),
                field: Some(format!("tools.{name}.{field}")),
                reason: format!("tools.{name}.{reason}"),
            });
            continue;
        }
        bundle.documents.push(BundleDocument {
            origin,
            document: NewDocument::new(PROFILES_COLLECTION, name, profile),
        });
    }
}

/// A shared JSON Schema: a document keyed by the file's stem.
fn read_schema(bundle: &mut Bundle, rel: &Path, text: &str) {
    bundle.count("schemas", 1);
    let file = Origin::new(rel, None);
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return bundle
                .rejected
                .push(Origin::new(rel, Some(e.line() as u64)).reject(
                    None,
                    None,
                    format!(
                        "not valid JSON at line {} column {}: {e}",
                        e.line(),
                        e.column()
                    ),
                ))
        }
    };
    if !value.is_object() {
        return bundle
            .rejected
            .push(file.reject(None, None, "a JSON Schema must be an object"));
    }
    let Some(stem) = rel.file_stem().and_then(|s| s.to_str()) else {
        return bundle
            .rejected
            .push(file.reject(None, None, "the file name is not valid UTF-8"));
    };
    bundle.documents.push(BundleDocument {
        origin: Origin::new(rel, Some(1)),
        document: NewDocument::new(SCHEMAS_COLLECTION, stem, value),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_only_ops_files() {
        let r = OpsReader;
        assert!(r.claims(Path::new("tools/linux/ps.yaml"), b"# x\ntool_name: ps\n"));
        assert!(r.claims(
            Path::new("w/a.yaml"),
            b"name: A\nversion: '1'\nplatform: windows\n"
        ));
        assert!(r.claims(Path::new("w/b.yml"), b"tool:\n  name: B\n"));
        assert!(r.claims(
            Path::new("v/c.yaml"),
            b"---\nmetadata:\n  name: c\ncapabilities:\n"
        ));
        assert!(r.claims(Path::new(PROFILES_FILE), b"version: '1'\n"));
        assert!(r.claims(Path::new("shared/schemas/Step.json"), b"{}"));
        assert!(!r.claims(Path::new("data/schemas/x.schema.json"), b"{}"));
        assert!(!r.claims(Path::new("blocks.yml"), b"blocks:\n  - name: x\n"));
        assert!(!r.claims(Path::new("x.yaml"), b"name: x\nversion: 1\n"));
        assert!(!r.claims(Path::new("ps.toml"), b"tool_name = 'x'\n"));
    }

    #[test]
    fn coerces_versions() {
        assert_eq!(coerce_version(&Value::from("1.0")).unwrap(), "1.0.0");
        assert_eq!(coerce_version(&Value::from("2")).unwrap(), "2.0.0");
        assert_eq!(
            coerce_version(&Value::from("1.2.3-rc.1")).unwrap(),
            "1.2.3-rc.1"
        );
        assert_eq!(coerce_version(&Value::from(1.5)).unwrap(), "1.5.0");
        assert_eq!(coerce_version(&Value::from("01.02")).unwrap(), "1.2.0");
        assert!(coerce_version(&Value::from("v1")).is_err());
        assert!(coerce_version(&Value::Bool(true)).is_err());
    }

    #[test]
    fn source_paths_are_below_tools() {
        assert_eq!(
            source_path(Path::new("tools/linux/ps.yaml")),
            "linux/ps.yaml"
        );
        assert_eq!(source_path(Path::new("x/tools/ps.yaml")), "ps.yaml");
        assert_eq!(source_path(Path::new("linux/ps.yaml")), "linux/ps.yaml");
    }
}
