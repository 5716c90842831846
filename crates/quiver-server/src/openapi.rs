//! The OpenAPI 3.1 document served at `/api/v1/openapi.json`.
//!
//! Schemas come from the model's own types (schemars derives them, so they cannot drift
//! from what the server really sends); paths are listed in [`OPERATIONS`], and a test
//! checks that every route the router serves is documented there.

use std::sync::OnceLock;

use quiver_engine::accounts::{Login, NewTokenSecret, Registered, Registration, TokenRequest};
use quiver_model::{Entry, EntryPatch, Namespace, NewEntry, NewVersion, Relation, Version};
use quiver_search::SearchResults;
use quiver_store::{ApiToken, Membership, User};
use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde_json::{json, Map, Value};

use crate::error::ErrorBody;
use crate::routes::{
    DeprecateRequest, KindInfo, MemberRequest, NamespaceRequest, RelationRequest, SearchResponse,
    SiteRoleRequest, YankRequest,
};

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

/// The audit log's listing parameters: its filters (which the export takes alone), then
/// the page's.
const AUDIT_PAGE: &[(&str, &str, &str)] = &[
    ("namespace", "query", "rows about this namespace"),
    ("actor", "query", "rows by this actor"),
    (
        "action",
        "query",
        "e.g. entry.create, version.publish, member.set",
    ),
    ("outcome", "query", "allowed or denied"),
    ("since", "query", "rows at or after this RFC 3339 time"),
    ("until", "query", "rows before this RFC 3339 time"),
    ("cursor", "query", "next_cursor of the previous page"),
    ("limit", "query", "1 to 100, default 20"),
];
const AUDIT_FILTERS: &[(&str, &str, &str)] = AUDIT_PAGE.split_at(6).0;

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
        "post",
        "/api/v1/entries/{kind}/{namespace}/{name}/status",
        "Move an entry along its lifecycle (draft, review, published, deprecated, archived) with a reason",
        ENTRY_PATH,
        Some("StatusChange"),
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
    op!(
        "post",
        "/api/v1/users",
        "Register a user (claims the user namespace of the same name)",
        &[],
        Some("Registration"),
        201,
        Some("User"),
        false
    ),
    op!(
        "put",
        "/api/v1/users/{user}/role",
        "Set a user's site role (admins only)",
        &[("user", "path", "a user name")],
        Some("SiteRoleRequest"),
        200,
        Some("User"),
        false
    ),
    op!(
        "put",
        "/api/v1/users/{user}/trust",
        "Set a publisher's trust level: new, standard, trusted or core (moderators and admins)",
        &[("user", "path", "a user name")],
        Some("TrustRequest"),
        200,
        Some("Trust"),
        false
    ),
    op!(
        "get",
        "/api/v1/reviews",
        "The moderation queue (moderators and admins)",
        &[("state", "query", "pending (default), approved, rejected or changes_requested")],
        None,
        200,
        Some("ReviewPage"),
        false
    ),
    op!(
        "get",
        "/api/v1/entries/{kind}/{namespace}/{name}/review",
        "An entry's review: state, changes asked, decisions and comments (its writers and moderators)",
        ENTRY_PATH,
        None,
        200,
        Some("Review"),
        false
    ),
    op!(
        "post",
        "/api/v1/entries/{kind}/{namespace}/{name}/review",
        "Approve, reject (with a reason), request changes (with a list), resubmit, or comment",
        ENTRY_PATH,
        Some("ReviewAction"),
        200,
        Some("Review"),
        false
    ),
    op!(
        "get",
        "/api/v1/user",
        "The signed-in user and their namespace memberships",
        &[],
        None,
        200,
        Some("Registered"),
        false
    ),
    op!(
        "post",
        "/api/v1/session",
        "Password login: answers a session token, shown once",
        &[],
        Some("Login"),
        201,
        Some("NewTokenSecret"),
        false
    ),
    op!(
        "get",
        "/api/v1/tokens",
        "The caller's API tokens, newest first (never the secrets)",
        &[],
        None,
        200,
        Some("ApiToken"),
        true
    ),
    op!(
        "post",
        "/api/v1/tokens",
        "Create an API token (shown once) within the calling token's scopes",
        &[],
        Some("TokenRequest"),
        201,
        Some("NewTokenSecret"),
        false
    ),
    op!(
        "delete",
        "/api/v1/tokens/{id}",
        "Revoke one of the caller's tokens",
        &[("id", "path", "a token id")],
        None,
        200,
        Some("ApiToken"),
        false
    ),
    op!(
        "post",
        "/api/v1/namespaces",
        "Create an organisation namespace owned by the caller (409 names the owner of a taken one)",
        &[],
        Some("NamespaceRequest"),
        201,
        Some("Namespace"),
        false
    ),
    op!(
        "get",
        "/api/v1/namespaces/{namespace}/members",
        "A namespace's members and their roles",
        &[("namespace", "path", "a namespace")],
        None,
        200,
        Some("Membership"),
        true
    ),
    op!(
        "put",
        "/api/v1/namespaces/{namespace}/members/{user}",
        "Add a member or change their role (owners and admins)",
        &[
            ("namespace", "path", "a namespace"),
            ("user", "path", "a user name")
        ],
        Some("MemberRequest"),
        200,
        Some("Membership"),
        false
    ),
    op!(
        "delete",
        "/api/v1/namespaces/{namespace}/members/{user}",
        "Remove a member (owners and admins; a namespace keeps at least one owner)",
        &[
            ("namespace", "path", "a namespace"),
            ("user", "path", "a user name")
        ],
        None,
        204,
        None,
        false
    ),
    op!(
        "get",
        "/api/v1/audit",
        "The audit log, newest first: writes and denied writes with diffs (admins; owners with namespace=theirs)",
        AUDIT_PAGE,
        None,
        200,
        Some("AuditPage"),
        false
    ),
    op!(
        "get",
        "/api/v1/audit/export",
        "Every audit row the filters select, newest first, streamed as JSON lines (application/x-ndjson, one AuditRecord per line); the same rights as the listing",
        AUDIT_FILTERS,
        None,
        200,
        Some("AuditRecord"),
        false
    ),
    op!(
        "post",
        "/api/v1/device/code",
        "Device sign-in (RFC 8628): a device code to poll with and a user code to approve",
        &[],
        Some("DeviceCodeRequest"),
        200,
        Some("DeviceAuthorization"),
        false
    ),
    op!(
        "post",
        "/api/v1/device/approve",
        "Approve (or deny) a device's user code as the signed-in user",
        &[],
        Some("DeviceDecision"),
        200,
        Some("DeviceDecided"),
        false
    ),
    op!(
        "post",
        "/api/v1/device/token",
        "A device's poll: the token once approved (once only), else 400 with the RFC 8628 error code",
        &[],
        Some("DeviceTokenRequest"),
        200,
        Some("NewTokenSecret"),
        false
    ),
    op!(
        "get",
        "/api/v1/auth/oidc/start",
        "Sign in through the configured outside provider: a redirect with state and PKCE (404 when none is configured)",
        &[],
        None,
        302,
        None,
        false
    ),
    op!(
        "post",
        "/api/v1/auth/oidc/link",
        "A signed-in user (a session, or a token with every scope) starts a sign-in at the outside provider that links that identity to their account: answers {\"authorize_url\"} and sets the sign-in cookie",
        &[],
        None,
        200,
        None,
        false
    ),
    op!(
        "get",
        "/api/v1/auth/oidc/callback",
        "The provider's redirect back: checks the state, exchanges the code, links or creates the user, answers a session token (201); after a link started with POST /api/v1/auth/oidc/link, answers {\"linked\": {provider, subject, user}} (200)",
        &[
            ("code", "query", "the provider's authorization code"),
            ("state", "query", "the state sent at the start"),
            ("error", "query", "the provider's error, when it refused")
        ],
        None,
        201,
        Some("NewTokenSecret"),
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

/// A page of audit rows, as `GET /api/v1/audit` returns it.
#[derive(JsonSchema)]
#[allow(dead_code)]
struct AuditPage {
    items: Vec<quiver_store::AuditRecord>,
    next_cursor: Option<String>,
}

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
        AuditPage,
        NewEntry,
        EntryPatch,
        NewVersion,
        Version,
        Relation,
        RelationRequest,
        YankRequest,
        DeprecateRequest,
        quiver_engine::lifecycle::StatusChange,
        quiver_engine::review::TrustRequest,
        quiver_engine::review::Trust,
        quiver_engine::review::ReviewAction,
        quiver_engine::review::Review,
        quiver_engine::review::ReviewPage,
        SearchResponse,
        SearchResults,
        KindInfo,
        ErrorBody,
        Registration,
        Login,
        TokenRequest,
        NewTokenSecret,
        Registered,
        User,
        ApiToken,
        Membership,
        Namespace,
        NamespaceRequest,
        MemberRequest,
        SiteRoleRequest,
        quiver_engine::device::DeviceCodeRequest,
        quiver_engine::device::DeviceAuthorization,
        quiver_engine::device::DeviceDecision,
        quiver_engine::device::DeviceDecided,
        quiver_engine::device::DeviceTokenRequest
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

/// The media type of an operation's success body: JSON, but JSON lines for exports.
fn content_type(path: &str) -> &'static str {
    if path.ends_with("/export") {
        "application/x-ndjson"
    } else {
        "application/json"
    }
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
                    "content": {content_type(op.path): {"schema": match op.response {
                        Some(r) if op.response_is_array => json!({"type": "array", "items": schema_ref(r)}),
                        Some(r) => schema_ref(r),
                        None => json!({}),
                    }}}
                },
                "429": {
                    "description": "rate limited (code rate_limited): retry after Retry-After seconds",
                    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                    "content": {"application/json": {"schema": schema_ref("ErrorBody")}}
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
        if op.method != "get"
            || [
                "/api/v1/user",
                "/api/v1/tokens",
                "/api/v1/audit",
                "/api/v1/audit/export",
                "/api/v1/reviews",
            ]
            .contains(&op.path)
        {
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
