//! JSON Schemas derived from the TypeScript-like type strings of blocks and tool
//! definitions (`string`, `object[]`, `'a' | 'b'`, `PageBrief`).

use serde_json::{json, Map, Value};

/// The JSON Schema of one type string.
pub fn type_schema(t: &str) -> Value {
    let t = t.trim();
    let parts = split_union(t);
    if parts.len() > 1 {
        let literals: Option<Vec<Value>> = parts.iter().map(|p| literal(p)).collect();
        return match literals {
            Some(values) => json!({ "type": "string", "enum": values }),
            None => json!({ "anyOf": parts.iter().map(|p| type_schema(p)).collect::<Vec<_>>() }),
        };
    }
    if let Some(inner) = t.strip_suffix("[]") {
        return json!({ "type": "array", "items": type_schema(inner) });
    }
    if let Some(v) = literal(t) {
        return json!({ "type": "string", "enum": [v] });
    }
    match t {
        "string" | "number" | "integer" | "boolean" | "object" | "array" | "null" => {
            json!({ "type": t })
        }
        "" | "any" | "unknown" => json!({}),
        named => json!({ "type": "object", "title": named }),
    }
}

/// `'a'` or `"a"` → `a`.
fn literal(t: &str) -> Option<Value> {
    let t = t.trim();
    for q in ['\'', '"'] {
        if let Some(inner) = t.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return Some(Value::String(inner.to_string()));
        }
    }
    None
}

/// Split on `|` outside quotes.
fn split_union(t: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quote: Option<char> = None;
    let mut start = 0;
    for (i, c) in t.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '|') => {
                parts.push(t[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(t[start..].trim());
    parts.retain(|p| !p.is_empty());
    parts
}

/// A property's schema: the type's, with the description.
fn property(item: &Map<String, Value>) -> Value {
    let mut schema = match item.get("type").and_then(Value::as_str) {
        Some(t) => type_schema(t),
        None => json!({}),
    };
    if let (Some(obj), Some(d)) = (schema.as_object_mut(), item.get("description")) {
        obj.insert("description".into(), d.clone());
    }
    schema
}

/// An object schema over named items (`inputs`, `outputs`, `parameters`); `required`
/// decides which are required.
pub fn object_schema(
    items: &[Value],
    required: impl Fn(&Map<String, Value>) -> bool,
    closed: bool,
) -> Value {
    let mut props = Map::new();
    let mut req = Vec::new();
    for item in items.iter().filter_map(Value::as_object) {
        let Some(name) = item.get("name").and_then(Value::as_str) else {
            continue;
        };
        props.insert(name.to_string(), property(item));
        if required(item) {
            req.push(Value::String(name.to_string()));
        }
    }
    let mut schema = Map::new();
    schema.insert("type".into(), json!("object"));
    schema.insert("properties".into(), Value::Object(props));
    if !req.is_empty() {
        schema.insert("required".into(), Value::Array(req));
    }
    if closed {
        schema.insert("additionalProperties".into(), json!(false));
    }
    Value::Object(schema)
}

/// A block input is required unless it says `optional: true` (or `required: false`).
pub fn block_input_required(item: &Map<String, Value>) -> bool {
    item.get("optional").and_then(Value::as_bool) != Some(true)
        && item.get("required").and_then(Value::as_bool) != Some(false)
}

/// A tool definition's parameter is required when it says `required: true`.
pub fn parameter_required(item: &Map<String, Value>) -> bool {
    item.get("required").and_then(Value::as_bool) == Some(true)
}

/// The output schema of a tool definition's `returns` (`{type, description}`).
pub fn returns_schema(returns: &Value) -> Value {
    match returns.as_object() {
        Some(r) => property(r),
        None => json!({}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_strings_become_schemas() {
        assert_eq!(type_schema("string"), json!({"type": "string"}));
        assert_eq!(
            type_schema("number[][]"),
            json!({"type": "array", "items": {"type": "array", "items": {"type": "number"}}})
        );
        assert_eq!(
            type_schema("'markdown' | 'mdx'"),
            json!({"type": "string", "enum": ["markdown", "mdx"]})
        );
        assert_eq!(
            type_schema("string | string[]"),
            json!({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
        );
        assert_eq!(
            type_schema("PageBrief"),
            json!({"type": "object", "title": "PageBrief"})
        );
        assert_eq!(type_schema("any"), json!({}));
    }

    #[test]
    fn object_schema_marks_required_inputs() {
        let items = vec![
            json!({"name": "url", "type": "string", "description": "The URL"}),
            json!({"name": "html", "type": "string", "optional": true}),
        ];
        let s = object_schema(&items, block_input_required, true);
        assert_eq!(s["required"], json!(["url"]));
        assert_eq!(s["properties"]["url"]["description"], json!("The URL"));
        assert_eq!(s["additionalProperties"], json!(false));
    }
}
