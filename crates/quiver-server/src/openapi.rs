//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
//!
//! Schemas come from the model's own types (schemars derives them, so they cannot drift
//! from what the server really sends); paths are listed in [`OPERATIONS`], and a test
//! checks that every route the router serves is documented there.

use std::sync::OnceLock;

use quiver_model::{Entry, EntryPatch, NewEntry, NewVersion, Relation, Version};
use quiver_search::SearchResults;
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::error::ErrorBody;
use crate::routes::{DeprecateRequest, KindInfo, RelationRequest, SearchResponse, YankRequest};

/// One documented operation.
pub struct Operation {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub params: &'static [(&'static str, &'static str, &'static str)],
    pub body: Option<&'static str>,
    pub status: u16,
    pub response: Option<&'static str>,
    pub response_is_array: bool,
}

const ENTRY_PATH: &[(&str, &str, &str)] = &[
    ("kind", "path", "tool, recipe, skill, module or package"),
    (
        "namespace",
        "path",
        "the owner namespace (for packages: pypi, npm, ...)",
    ),
    (
        "name",
        "path",
        "the entry's name; npm scoped names keep their slash (@types/node)",
    ),
];
const VERSION_PATH: &[(&str, &str, &str)] = &[
    ("kind", "path", "tool, recipe, skill, module or package"),
    ("namespace", "path", "the owner namespace"),
    ("name", "path", "the entry's name"),
    ("version", "path", "a semantic version"),
];
const FILTERS: &[(&str, &str, &str)] = &[
    ("kind", "query", "comma-separated kinds"),
    ("namespace", "query", "comma-separated namespaces"),
    ("category", "query", "comma-separated categories"),
    (
        "tag",
        "query",
        "tags the entry must all have (comma-separated)",
    ),
    ("status", "query", "comma-separated statuses"),
    ("cursor", "query", "next_cursor of the previous page"),
    ("limit", "query", "1 to 100, default 20"),
];
const SEARCH: &[(&str, &str, &str)] = &[
    (
        "q",
        "query",
        "free text: names (exact, split, prefix, typos) and descriptions",
    ),
    ("kind", "query", "comma-separated kinds"),
    (
        "namespace",
        "query",
        "comma-separated namespaces (ecosystems)",
    ),
    ("category", "query", "comma-separated categories"),
    ("tag", "query", "comma-separated tags"),
    (
        "status",
        "query",
        "comma-separated statuses (default: published, deprecated)",
    ),
    (
        "sort",
        "query",
        "relevance (default), popularity, recent or name",
    ),
    ("limit", "query", "1 to 100, default 20"),
    ("cursor", "query", "next_cursor of the previous page"),
    (
        "facets",
        "query",
        "true to count kind/namespace/category/tags/status facets",
    ),
    (
        "highlight",
        "query",
        "true for highlighted description snippets",
    ),
];

macro_rules! op {
    ($m:literal, $p:literal, $s:literal, $params:expr, $body:expr, $status:literal, $resp:expr, $arr:literal) => {
        Operation {
            method: $m,
            path: $p,
            summary: $s,
            params: $params,
            body: $body,
            status: $status,
            response: $resp,
            response_is_array: $arr,
        }
    };
}

/// Every operation the server answers.
pub const OPERATIONS: &[Operation] = &[
    op!(
        "get",
        "/api/v1/entries",
        "List entries with filters and cursor pagination",
        FILTERS,
        None,
        200,
        Some("EntryPage"),
        false
    ),
    op!(
        "post",
        "/api/v1/entries",
        "Create an entry",
        &[],
        Some("NewEntry"),
        201,
        Some("Entry"),
        false
    ),
    op!(
        "get",
        "/api/v1/entries/{kind}/{namespace}/{name}",
        "Read one entry (exact lookup, no search index)",
        ENTRY_PATH,
        None,
        200,
        Some("Entry"),
        false
    ),
    op!(
        "patch",
        "/api/v1/entries/{kind}/{namespace}/{name}",
        "Update an entry's fields",
        ENTRY_PATH,
        Some("EntryPatch"),
        200,
        Some("Entry"),
        false
    ),
    op!(
        "post",
        "/api/v1/entries/{kind}/{namespace}/{name}/deprecate",
        "Deprecate an entry with a message and an optional replacement",
        ENTRY_PATH,
        Some("DeprecateRequest"),
        200,
        Some("Entry"),
        false
    ),
    op!(
        "get",
        "/api/v1/entries/{kind}/{namespace}/{name}/versions",
        "List versions, newest first",
        ENTRY_PATH,
        None,
        200,
        Some("Version"),
        true
    ),
    op!(
        "post",
        "/api/v1/entries/{kind}/{namespace}/{name}/versions",
        "Publish a version (immutable once published)",
        ENTRY_PATH,
        Some("NewVersion"),
        201,
        Some("Version"),
        false
    ),
    op!(
        "get",
        "/api/v1/entries/{kind}/{namespace}/{name}/versions/{version}",
        "Read one version",
        VERSION_PATH,
        None,
        200,
        Some("Version"),
        false
    ),
    op!(
        "post",
        "/api/v1/entries/{kind}/{namespace}/{name}/versions/{version}/yank",
        "Yank a version, with a reason",
        VERSION_PATH,
        Some("YankRequest"),
        200,
        Some("Version"),
        false
    ),
    op!(
        "post",
        "/api/v1/entries/{kind}/{namespace}/{name}/versions/{version}/unyank",
        "Undo a yank",
        VERSION_PATH,
        None,
        200,
        Some("Version"),
        false
    ),
    op!(
        "get",
        "/api/v1/entries/{kind}/{namespace}/{name}/relations",
        "Relations of an entry (direction: outgoing, incoming, both)",
        ENTRY_PATH,
        None,
        200,
        Some("Relation"),
        true
    ),
    op!(
        "post",
        "/api/v1/entries/{kind}/{namespace}/{name}/relations",
        "Add a relation from this entry",
        ENTRY_PATH,
        Some("RelationRequest"),
        201,
        Some("Relation"),
        false
    ),
    op!(
        "get",
        "/api/v1/search",
        "Search entries",
        SEARCH,
        None,
        200,
        Some("SearchResponse"),
        false
    ),
    op!(
        "get",
        "/api/v1/kinds",
        "The built-in kinds and their manifest JSON Schemas",
        &[],
        None,
        200,
        Some("KindInfo"),
        true
    ),
    op!(
        "get",
        "/api/v1/kinds/{kind}/schema",
        "The manifest JSON Schema of one kind",
        &[("kind", "path", "a kind")],
        None,
        200,
        None,
        false
    ),
    op!(
        "get",
        "/api/v1/status",
        "Store and index statistics",
        &[],
        None,
        200,
        Some("EngineStatus"),
        false
    ),
    op!(
        "get",
        "/api/v1/openapi.json",
        "This document",
        &[],
        None,
        200,
        None,
        false
    ),
    op!("get", "/healthz", "Liveness", &[], None, 200, None, false),
    op!(
        "get",
        "/readyz",
        "Readiness (the store answers)",
        &[],
        None,
        200,
        None,
        false
    ),
];

/// A page of entries, as `GET /api/v1/entries` returns it.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct EntryPage {
    items: Vec<Entry>,
    next_cursor: Option<String>,
}

fn components() -> Map<String, Value> {
    let mut settings = SchemaSettings::draft2020_12();
    settings.definitions_path = "/components/schemas".into();
    let mut gen = settings.into_generator();
    macro_rules! add {
        ($($t:ty),+) => { $( let _ = gen.subschema_for::<$t>(); )+ };
    }
    add!(
        Entry,
        EntryPage,
        NewEntry,
        EntryPatch,
        NewVersion,
        Version,
        Relation,
        RelationRequest,
        YankRequest,
        DeprecateRequest,
        SearchResponse,
        SearchResults,
        KindInfo,
        ErrorBody
    );
    let mut defs = gen.take_definitions(true);
    defs.insert(
        "EngineStatus".into(),
        json!({"type": "object", "description": "Store and index statistics."}),
    );
    defs
}

/// The OpenAPI document (built once).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(build)
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn build() -> Value {
    let mut paths = Map::new();
    for op in OPERATIONS {
        let params: Vec<Value> = op
            .params
            .iter()
            .map(|(name, loc, desc)| {
                json!({
                    "name": name, "in": loc, "required": *loc == "path",
                    "description": desc, "schema": {"type": "string"}
                })
            })
            .collect();
        let mut o = json!({
            "summary": op.summary,
            "operationId": format!("{}{}", op.method, op.path.replace(['/', '{', '}', '.'], "_")),
            "parameters": params,
            "responses": {
                op.status.to_string(): {
                    "description": "success",
                    "content": {"application/json": {"schema": match op.response {
                        Some(r) if op.response_is_array => json!({"type": "array", "items": schema_ref(r)}),
                        Some(r) => schema_ref(r),
                        None => json!({}),
                    }}}
                },
                "default": {
                    "description": "an error, in the one error envelope",
                    "content": {"application/json": {"schema": schema_ref("ErrorBody")}}
                }
            }
        });
        if let Some(b) = op.body {
            o["requestBody"] = json!({
                "required": true,
                "content": {"application/json": {"schema": schema_ref(b)}}
            });
        }
        if op.method != "get" {
            o["security"] = json!([{"bearer": []}, {}]);
        }
        paths
            .entry(op.path.to_string())
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("path item is an object")
            .insert(op.method.to_string(), o);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "quiver",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A registry for the tools that developers and AI agents use: tool specs, install recipes, agent skills, prompt/code modules and packages."
        },
        "paths": paths,
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}
