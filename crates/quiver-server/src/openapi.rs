//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`, generated from the router.
//!
//! Paths, parameters, bodies and answers come from the handlers' types through `aide`
//! (see [`crate::api`]); schemas from the model's own types (schemars), so they cannot
//! drift from what the server really sends. This module adds what is the same for every
//! operation: the 429 answer of the rate-limited ones, the error envelope as the default
//! answer, operation ids, and the document's header and security scheme. The codes of the
//! error envelope, with their statuses, are the schema of `ErrorDetail.code` (from
//! [`crate::error::Code`]).

use std::sync::OnceLock;

use aide::openapi::{Info, OpenApi};
use serde_json::{json, Value};

/// The OpenAPI document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn build() -> Value {
    let mut api = OpenApi {
        info: Info {
            title: "quiver".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: Some(
                "A registry for the tools that developers and AI agents use: tool specs, install recipes, agent skills, prompt/code modules and packages."
                    .into(),
            ),
            ..Info::default()
        },
        ..OpenApi::default()
    };
    let _ = crate::api(None).finish_api(&mut api);
    let mut doc = serde_json::to_value(&api).expect("the document serializes");
    doc["openapi"] = json!("3.1.0");
    doc["components"]["securitySchemes"] = json!({"bearer": {"type": "http", "scheme": "bearer"}});
    let paths = doc["paths"]
        .as_object_mut()
        .expect("the document has paths");
    for (path, item) in paths.iter_mut() {
        for method in METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            op.insert(
                "operationId".into(),
                json!(format!(
                    "{method}{}",
                    path.replace(['/', '{', '}', '.'], "_")
                )),
            );
            let limited = op.get("x-rate-limit-class").and_then(Value::as_str) != Some("none");
            let responses = op
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses are an object");
            if limited {
                responses.insert(
                    "429".into(),
                    json!({
                        "description": "rate limited (code rate_limited): retry after Retry-After seconds",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                    }),
                );
            }
        }
    }
    doc
}
