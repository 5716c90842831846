//! One recipe file (TOML) into a `recipe` entry; see the module docs for the mapping.

use std::collections::BTreeSet;
use std::path::Path;

use quiver_model::{Kind, NewEntry};
use serde_json::{json, Map, Value};

use super::text::LineIndex;
use super::{EMBEDDED_NAMESPACE, NAMESPACE};
use crate::formats::{Bundle, BundleRecord, Origin};

/// The manifest's top-level key quiver computes; never a recipe's own.
pub(super) const DERIVED: &str = "derived";

/// The `when` keys (and `metadata.supported_<key>`) summarized into `derived.platforms`.
const PLATFORM_KEYS: [&str; 6] = ["os", "arch", "libc", "linux_family", "gpu", "platform"];

/// A TOML value as JSON. Datetimes (which JSON lacks) become their TOML text and are
/// listed in `dates`; non-finite floats become null and are listed in `non_finite`.
fn to_json(
    v: &toml::Value,
    path: &str,
    dates: &mut Vec<String>,
    non_finite: &mut Vec<String>,
) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => {
                non_finite.push(path.to_string());
                Value::Null
            }
        },
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => {
            dates.push(path.to_string());
            Value::String(d.to_string())
        }
        toml::Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| to_json(x, &format!("{path}[{i}]"), dates, non_finite))
                .collect(),
        ),
        toml::Value::Table(t) => Value::Object(table_to_json(t, path, dates, non_finite)),
    }
}

fn table_to_json(
    t: &toml::Table,
    path: &str,
    dates: &mut Vec<String>,
    non_finite: &mut Vec<String>,
) -> Map<String, Value> {
    t.iter()
        .map(|(k, v)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            (k.clone(), to_json(v, &p, dates, non_finite))
        })
        .collect()
}

/// The line of `metadata.name` (or of `[metadata]`), best effort.
fn name_line(text: &str) -> Option<u64> {
    let mut in_metadata = false;
    let mut metadata_line = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_metadata = t == "[metadata]";
            if in_metadata {
                metadata_line = Some(i as u64 + 1);
            }
        } else if in_metadata
            && t.strip_prefix("name")
                .is_some_and(|r| r.trim_start().starts_with('='))
        {
            return Some(i as u64 + 1);
        }
    }
    metadata_line
}

/// The strings of a `when` value or `metadata.supported_*` (a string or an array of them).
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// What quiver computes from a recipe: platforms, actions, run_command steps.
pub fn derive(manifest: &Map<String, Value>) -> (Value, Vec<String>) {
    let empty = Map::new();
    let metadata = manifest
        .get("metadata")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let steps: &[Value] = manifest
        .get("steps")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let mut platforms: Vec<(&str, BTreeSet<String>)> = PLATFORM_KEYS
        .iter()
        .map(|k| (*k, BTreeSet::new()))
        .collect();
    for (key, set) in &mut platforms {
        if let Some(v) = metadata.get(&format!("supported_{key}")) {
            set.extend(strings(v));
        }
        for step in steps {
            if let Some(v) = step.get("when").and_then(|w| w.get(*key)) {
                set.extend(strings(v));
            }
        }
    }
    let mut actions: Vec<String> = Vec::new();
    let mut run_command_steps = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        if let Some(a) = step.get("action").and_then(Value::as_str) {
            if !actions.iter().any(|x| x == a) {
                actions.push(a.to_string());
            }
            if a == "run_command" {
                run_command_steps.push(i + 1);
            }
        }
    }
    let platforms: Map<String, Value> = platforms
        .into_iter()
        .filter(|(_, s)| !s.is_empty())
        .map(|(k, s)| (k.to_string(), json!(s)))
        .collect();
    let unsupported = metadata
        .get("unsupported_platforms")
        .map(strings)
        .unwrap_or_default();
    let mut tags = actions.clone();
    if !run_command_steps.is_empty() {
        tags.push("run-command".to_string());
    }
    tags.truncate(quiver_model::validate::MAX_TAGS);
    let derived = json!({
        "platforms": platforms,
        "unsupported_platforms": unsupported,
        "actions": actions,
        "steps": steps.len(),
        "flags": {
            "run_command": !run_command_steps.is_empty(),
            "run_command_steps": run_command_steps,
        },
    });
    (derived, tags)
}

/// Read one recipe file into `b`: a record, or one rejection.
pub(super) fn read(rel: &Path, text: &str, embedded: bool, b: &mut Bundle) {
    b.count(
        if embedded {
            "embedded recipes"
        } else {
            "recipes"
        },
        1,
    );
    let file_origin = Origin::new(rel, None);
    let table: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let (line, col) = e
                .span()
                .map(|s| LineIndex::new(text).line_col(s.start))
                .unwrap_or((0, 0));
            let origin = Origin::new(rel, (line > 0).then_some(line));
            let at = if line > 0 {
                format!(" at line {line}, column {col}")
            } else {
                String::new()
            };
            b.rejected.push(origin.reject(
                None,
                None,
                format!("not valid TOML{at}: {}", e.message().trim()),
            ));
            return;
        }
    };
    let origin = Origin::new(rel, name_line(text));
    let (mut dates, mut non_finite) = (Vec::new(), Vec::new());
    let mut manifest = table_to_json(&table, "", &mut dates, &mut non_finite);

    let Some(metadata) = manifest.get("metadata").and_then(Value::as_object) else {
        b.rejected.push(file_origin.reject(
            None,
            Some("metadata"),
            "a recipe needs a [metadata] table (with name, description, homepage)",
        ));
        return;
    };
    let name = match metadata.get("name").and_then(Value::as_str) {
        Some(n) if !n.trim().is_empty() => n.to_string(),
        _ => {
            b.rejected.push(origin.reject(
                None,
                Some("metadata.name"),
                "metadata.name is missing or not a non-empty string",
            ));
            return;
        }
    };
    if !non_finite.is_empty() {
        b.rejected.push(origin.reject(
            Some(name),
            Some(&non_finite[0]),
            format!(
                "infinite or NaN numbers cannot be stored as JSON: {}",
                non_finite.join(", ")
            ),
        ));
        return;
    }
    if manifest.contains_key(DERIVED) {
        b.rejected.push(origin.reject(
            Some(name),
            Some(DERIVED),
            "the top-level table `derived` is reserved for the fields quiver computes; \
             rename it in the recipe",
        ));
        return;
    }
    let steps = manifest.get("steps");
    if let Some(steps) = steps {
        let Some(list) = steps.as_array() else {
            b.rejected.push(origin.reject(
                Some(name),
                Some("steps"),
                "steps must be an array of tables ([[steps]])",
            ));
            return;
        };
        for (i, step) in list.iter().enumerate() {
            if step
                .get("action")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                b.rejected.push(origin.reject(
                    Some(name),
                    Some(&format!("steps[{i}].action")),
                    format!("step {} has no action (a non-empty string)", i + 1),
                ));
                return;
            }
        }
    }
    let description = metadata
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let category = metadata
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.trim().is_empty())
        .map(str::to_string);

    let stem = rel.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if stem != name {
        b.warnings.push(origin.reject(
            Some(name.clone()),
            Some("metadata.name"),
            format!(
                "metadata.name {name:?} differs from the file name {stem:?}; \
                 export writes it as {name}.toml"
            ),
        ));
    }
    if !dates.is_empty() {
        b.warnings.push(origin.reject(
            Some(name.clone()),
            Some(&dates[0]),
            format!(
                "TOML dates are stored (and exported) as strings: {}",
                dates.join(", ")
            ),
        ));
    }

    let (derived, tags) = derive(&manifest);
    let step_count = derived["steps"].as_u64().unwrap_or(0);
    let run_commands = derived["flags"]["run_command_steps"]
        .as_array()
        .map_or(0, Vec::len) as u64;
    b.count("steps", step_count);
    b.count("run_command steps", run_commands);
    manifest.insert(DERIVED.to_string(), derived);

    let entry = NewEntry {
        kind: Kind::Recipe,
        namespace: if embedded {
            EMBEDDED_NAMESPACE
        } else {
            NAMESPACE
        }
        .to_string(),
        name,
        display_name: None,
        description,
        category,
        tags,
        keywords: Vec::new(),
        status: None,
        visibility: None,
        popularity: None,
    };
    let mut record = BundleRecord::new(origin, entry);
    record.revision = Some(Value::Object(manifest));
    b.records.push(record);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_platforms_and_run_command() {
        let text = r#"
[metadata]
name = "x"
supported_libc = ["glibc"]
unsupported_platforms = ["darwin/arm64"]

[[steps]]
action = "download"
when = { os = ["linux"], arch = "amd64" }

[[steps]]
action = "run_command"
command = "make"

[[steps]]
action = "download"
when = { os = ["darwin"] }
"#;
        let mut b = Bundle::default();
        read(Path::new("recipes/x/x.toml"), text, false, &mut b);
        assert!(b.rejected.is_empty(), "{:?}", b.rejected);
        let r = &b.records[0];
        assert_eq!(r.origin.line, Some(3));
        assert_eq!(r.entry.tags, vec!["download", "run_command", "run-command"]);
        let d = &r.revision.as_ref().unwrap()["derived"];
        assert_eq!(d["platforms"]["os"], json!(["darwin", "linux"]));
        assert_eq!(d["platforms"]["arch"], json!(["amd64"]));
        assert_eq!(d["platforms"]["libc"], json!(["glibc"]));
        assert_eq!(d["unsupported_platforms"], json!(["darwin/arm64"]));
        assert_eq!(d["flags"]["run_command_steps"], json!([2]));
        assert_eq!(b.counts["run_command steps"], 1);
        assert_eq!(b.counts["steps"], 3);
    }

    #[test]
    fn rejects_steps_without_action_and_a_derived_table() {
        let cases = [
            (
                "[metadata]\nname = \"x\"\n[[steps]]\nurl = \"u\"\n",
                "steps[0].action",
            ),
            ("[metadata]\nname = \"x\"\n[derived]\na = 1\n", "derived"),
            ("steps = \"all\"\n[metadata]\nname = \"x\"\n", "steps"),
            ("[package]\nname = \"x\"\n", "metadata"),
        ];
        for (text, field) in cases {
            let mut b = Bundle::default();
            read(Path::new("recipes/x/x.toml"), text, false, &mut b);
            assert!(b.records.is_empty(), "{text}");
            assert_eq!(b.rejected.len(), 1, "{text}");
            assert_eq!(b.rejected[0].field.as_deref(), Some(field), "{text}");
        }
    }

    #[test]
    fn syntax_error_names_line_and_column() {
        let mut b = Bundle::default();
        read(
            Path::new("r/b.toml"),
            "[metadata]\nname = \"b\"\ndescription = oops\n",
            false,
            &mut b,
        );
        assert!(b.records.is_empty());
        assert_eq!(b.rejected.len(), 1);
        assert_eq!(b.rejected[0].line, Some(3));
        assert!(
            b.rejected[0].reason.contains("line 3"),
            "{}",
            b.rejected[0].reason
        );
    }
}
