//! Manifests: validation against the kind's JSON Schema, canonical form and content hash.
//!
//! The schemas of the built-in kinds live in `schemas/<kind>.json` in this crate, are
//! compiled once, and are served by the API so that clients can validate before publishing.

use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Error, Kind, Result};

/// The raw JSON Schema document of a kind's manifest.
pub fn kind_schema_source(kind: Kind) -> &'static str {
    match kind {
        Kind::Tool => include_str!("../schemas/tool.json"),
        Kind::Recipe => include_str!("../schemas/recipe.json"),
        Kind::Skill => include_str!("../schemas/skill.json"),
        Kind::Module => include_str!("../schemas/module.json"),
        Kind::Package => include_str!("../schemas/package.json"),
    }
}

/// The parsed JSON Schema of a kind's manifest.
pub fn kind_schema(kind: Kind) -> &'static Value {
    static SCHEMAS: OnceLock<Vec<Value>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|k| serde_json::from_str(kind_schema_source(*k)).expect("built-in schema is JSON"))
            .collect()
    });
    &all[kind_index(kind)]
}

fn kind_index(kind: Kind) -> usize {
    Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)
}

fn validator(kind: Kind) -> &'static jsonschema::Validator {
    static VALIDATORS: OnceLock<Vec<jsonschema::Validator>> = OnceLock::new();
    let all = VALIDATORS.get_or_init(|| {
        Kind::ALL
            .iter()
            .map(|k| jsonschema::validator_for(kind_schema(*k)).expect("built-in schema compiles"))
            .collect()
    });
    &all[kind_index(kind)]
}

/// Validate a manifest against its kind's schema. The error names the first failing
/// location as `manifest.<path>` and says which rule it broke.
pub fn validate_manifest(kind: Kind, manifest: &Value) -> Result<()> {
    if let Some(err) = validator(kind).iter_errors(manifest).next() {
        let path = err.instance_path().to_string();
        let field = if path.is_empty() {
            "manifest".to_string()
        } else {
            format!("manifest{}", path.replace('/', "."))
        };
        return Err(Error::invalid(field, err.to_string()));
    }
    // Tool manifests carry JSON Schemas of their own; they must be valid schemas.
    if kind == Kind::Tool {
        for key in ["input_schema", "output_schema"] {
            if let Some(schema) = manifest.get(key) {
                if let Err(e) = jsonschema::meta::validate(schema) {
                    return Err(Error::invalid(
                        format!("manifest.{key}"),
                        format!("is not a valid JSON Schema: {e}"),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Canonical JSON: object keys sorted, no insignificant white space. Two manifests that
/// mean the same thing have the same canonical form, whatever order their keys came in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// sha256 (lowercase hex) of the canonical JSON of a manifest.
pub fn manifest_sha256(value: &Value) -> String {
    sha256_hex(&canonical_json(value))
}

/// sha256 (lowercase hex) of a canonical JSON text.
pub fn sha256_hex(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_form_ignores_key_order() {
        let a = json!({"b": 1, "a": {"y": [1, 2], "x": "s"}});
        let b = json!({"a": {"x": "s", "y": [1, 2]}, "b": 1});
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(manifest_sha256(&a), manifest_sha256(&b));
        assert_ne!(manifest_sha256(&a), manifest_sha256(&json!({"b": 2})));
    }

    #[test]
    fn every_kind_accepts_an_empty_manifest_object_or_says_why() {
        for kind in Kind::ALL {
            let r = validate_manifest(*kind, &json!({}));
            if let Err(e) = r {
                assert!(e.field.unwrap().starts_with("manifest"), "{kind}");
            }
        }
    }

    #[test]
    fn manifest_must_be_an_object() {
        let e = validate_manifest(Kind::Package, &json!([1])).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("manifest"));
    }

    #[test]
    fn tool_schemas_must_be_valid_schemas() {
        let ok =
            json!({"input_schema": {"type": "object", "properties": {"url": {"type": "string"}}}});
        validate_manifest(Kind::Tool, &ok).unwrap();
        let bad = json!({"input_schema": {"type": "no-such-type"}});
        let e = validate_manifest(Kind::Tool, &bad).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("manifest.input_schema"));
    }

    #[test]
    fn recipe_steps_need_an_action() {
        let bad = json!({"steps": [{"repo": "x/y"}]});
        let e = validate_manifest(Kind::Recipe, &bad).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("manifest.steps.0"), "{e}");
    }
}
