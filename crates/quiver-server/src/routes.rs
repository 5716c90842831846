//! Route handlers: each parses its input, calls one engine method, and shapes the answer.

use std::time::Instant;

use axum::extract::{Path, RawQuery, State};
use axum::http::header::LOCATION;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use quiver_engine::accounts::{Login, Registration, TokenRequest};
use quiver_engine::auth::{NamespaceRole, SiteRole};
use quiver_engine::Registry;
use quiver_model::{
    EntryKey, EntryPatch, Error, Kind, NewEntry, NewVersion, Relation, RelationKind, Status,
};
use quiver_search::{SearchQuery, SearchResults, Sort};
use quiver_store::{Direction, EntryFilter};
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{json_with_etag, Auth, JsonBody, Params};
use crate::AppState;

/// What an entry path addresses below `/api/v1/entries/{kind}/{namespace}/`.
#[derive(Debug, PartialEq)]
enum Sub {
    Entry,
    Versions,
    Version(String),
    Yank(String),
    Unyank(String),
    Relations,
    Deprecate,
    Status,
    Review,
}

/// Split `name[/rest]`. npm scoped names carry a slash (`@types/node`), so a first segment
/// that starts with '@' takes the next one with it; `%2F` works too.
fn parse_entry_path(kind: &str, namespace: &str, rest: &str) -> ApiResult<(EntryKey, Sub)> {
    let kind: Kind = kind.parse().map_err(ApiError::from)?;
    let segs: Vec<&str> = rest.split('/').collect();
    let (name, tail) = if segs[0].starts_with('@') && segs.len() >= 2 && !segs[1].is_empty() {
        (format!("{}/{}", segs[0], segs[1]), &segs[2..])
    } else {
        (segs[0].to_string(), &segs[1..])
    };
    let tail: Vec<&str> = tail.iter().copied().filter(|s| !s.is_empty()).collect();
    let sub = match tail.as_slice() {
        [] => Sub::Entry,
        ["versions"] => Sub::Versions,
        ["versions", v] => Sub::Version(v.to_string()),
        ["versions", v, "yank"] => Sub::Yank(v.to_string()),
        ["versions", v, "unyank"] => Sub::Unyank(v.to_string()),
        ["relations"] => Sub::Relations,
        ["deprecate"] => Sub::Deprecate,
        ["status"] => Sub::Status,
        ["review"] => Sub::Review,
        _ => return Err(ApiError::not_found("route")),
    };
    if name.is_empty() {
        return Err(ApiError::not_found("route"));
    }
    Ok((EntryKey::new(kind, namespace, name), sub))
}

fn entry_location(key: &EntryKey) -> String {
    format!(
        "/api/v1/entries/{}/{}/{}",
        key.kind, key.namespace, key.name
    )
}

fn method_not_allowed() -> ApiError {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        error: Error::invalid("method", "this method is not allowed on this path"),
    }
}

const LIST_PARAMS: &[&str] = &[
    "kind",
    "namespace",
    "category",
    "tag",
    "status",
    "cursor",
    "limit",
];

pub async fn list_entries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let p = Params::parse(query.as_deref(), LIST_PARAMS)?;
    let filter = EntryFilter {
        kinds: p.list::<Kind>("kind")?,
        namespaces: p.strings("namespace"),
        categories: p.strings("category"),
        tags: p.strings("tag"),
        statuses: p.list::<Status>("status")?,
        visibilities: vec![],
        private_namespaces: None,
    };
    let limit = p.usize("limit", 20)?;
    let page = state
        .registry
        .list_entries(&caller, filter, p.get("cursor"), limit)
        .await?;
    json_with_etag(&headers, &page)
}

pub async fn create_entry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(entry): JsonBody<NewEntry>,
) -> ApiResult<Response> {
    let e = state.registry.create_entry(&caller, entry).await?;
    Ok((
        StatusCode::CREATED,
        [(LOCATION, entry_location(&e.key()))],
        Json(e),
    )
        .into_response())
}

pub async fn entry_get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((kind, namespace, rest)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (key, sub) = parse_entry_path(&kind, &namespace, &rest)?;
    let r = &state.registry;
    match sub {
        Sub::Entry => {
            Params::parse(query.as_deref(), &[])?;
            json_with_etag(&headers, &r.get_entry(&caller, &key).await?)
        }
        Sub::Versions => {
            Params::parse(query.as_deref(), &[])?;
            json_with_etag(&headers, &r.list_versions(&caller, &key).await?)
        }
        Sub::Version(v) => {
            Params::parse(query.as_deref(), &[])?;
            json_with_etag(&headers, &r.get_version(&caller, &key, &v).await?)
        }
        Sub::Relations => {
            let p = Params::parse(query.as_deref(), &["direction"])?;
            let direction = match p.get("direction").unwrap_or("both") {
                "outgoing" => Direction::Outgoing,
                "incoming" => Direction::Incoming,
                "both" => Direction::Both,
                other => {
                    return Err(Error::invalid(
                        "direction",
                        format!("'{other}' is not outgoing, incoming or both"),
                    )
                    .into())
                }
            };
            json_with_etag(&headers, &r.list_relations(&caller, &key, direction).await?)
        }
        Sub::Review => {
            Params::parse(query.as_deref(), &[])?;
            Ok(Json(r.get_review(&caller, &key).await?).into_response())
        }
        Sub::Yank(_) | Sub::Unyank(_) | Sub::Deprecate | Sub::Status => Err(method_not_allowed()),
    }
}

/// Body of `POST .../versions/{version}/yank`.
#[derive(Debug, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `POST .../deprecate`.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecateRequest {
    pub message: String,
    #[serde(default)]
    pub replacement: Option<String>,
}

/// Body of `POST .../relations`: an edge from this entry.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationRequest {
    pub kind: RelationKind,
    pub to: EntryKey,
    #[serde(default)]
    pub confidence: Option<f64>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub step_order: Option<i32>,
}

async fn optional_body<T: serde::de::DeserializeOwned + Default>(
    req: axum::extract::Request,
) -> ApiResult<T> {
    use axum::extract::FromRequest;
    let empty = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|v| v == "0")
        || !req.headers().contains_key(axum::http::header::CONTENT_TYPE);
    if empty {
        return Ok(T::default());
    }
    JsonBody::<T>::from_request(req, &()).await.map(|b| b.0)
}

pub async fn entry_post(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((kind, namespace, rest)): Path<(String, String, String)>,
    req: axum::extract::Request,
) -> ApiResult<Response> {
    use axum::extract::FromRequest;
    let (key, sub) = parse_entry_path(&kind, &namespace, &rest)?;
    let r = &state.registry;
    match sub {
        Sub::Versions => {
            let JsonBody(v) = JsonBody::<NewVersion>::from_request(req, &()).await?;
            let v = r.publish_version(&caller, &key, v).await?;
            let loc = format!("{}/versions/{}", entry_location(&key), v.version);
            Ok((StatusCode::CREATED, [(LOCATION, loc)], Json(v)).into_response())
        }
        Sub::Yank(v) => {
            let body: YankRequest = optional_body(req).await?;
            Ok(Json(r.yank(&caller, &key, &v, body.reason).await?).into_response())
        }
        Sub::Unyank(v) => Ok(Json(r.unyank(&caller, &key, &v).await?).into_response()),
        Sub::Deprecate => {
            let JsonBody(d) = JsonBody::<DeprecateRequest>::from_request(req, &()).await?;
            Ok(Json(r.deprecate(&caller, &key, d.message, d.replacement).await?).into_response())
        }
        Sub::Review => {
            let JsonBody(a) =
                JsonBody::<quiver_engine::review::ReviewAction>::from_request(req, &()).await?;
            Ok(Json(r.review(&caller, &key, a).await?).into_response())
        }
        Sub::Status => {
            let JsonBody(c) =
                JsonBody::<quiver_engine::lifecycle::StatusChange>::from_request(req, &()).await?;
            Ok(Json(r.change_status(&caller, &key, c).await?).into_response())
        }
        Sub::Relations => {
            let JsonBody(b) = JsonBody::<RelationRequest>::from_request(req, &()).await?;
            let rel = Relation {
                kind: b.kind,
                from: key,
                to: b.to,
                confidence: b.confidence,
                source: b.source,
                step_order: b.step_order,
            };
            let rel = r.add_relation(&caller, rel).await?;
            Ok((StatusCode::CREATED, Json(rel)).into_response())
        }
        Sub::Entry | Sub::Version(_) => Err(method_not_allowed()),
    }
}

pub async fn entry_patch(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((kind, namespace, rest)): Path<(String, String, String)>,
    JsonBody(patch): JsonBody<EntryPatch>,
) -> ApiResult<Response> {
    let (key, sub) = parse_entry_path(&kind, &namespace, &rest)?;
    if sub != Sub::Entry {
        return Err(method_not_allowed());
    }
    Ok(Json(state.registry.update_entry(&caller, &key, patch).await?).into_response())
}

const SEARCH_PARAMS: &[&str] = &[
    "q",
    "kind",
    "namespace",
    "category",
    "tag",
    "status",
    "sort",
    "limit",
    "cursor",
    "facets",
    "highlight",
];

/// A search answer: the results and how long the engine took.
#[derive(Serialize, schemars::JsonSchema)]
pub struct SearchResponse {
    #[serde(flatten)]
    pub results: SearchResults,
    /// Time spent in the engine, microseconds.
    pub took_us: u64,
}

pub async fn search(
    State(state): State<AppState>,
    Auth(caller): Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(query.as_deref(), SEARCH_PARAMS)?;
    let q = p.get("q").unwrap_or("").to_string();
    if q.len() > 256 {
        return Err(Error::invalid("q", "must be at most 256 bytes").into());
    }
    let sort = match p.get("sort").unwrap_or("relevance") {
        "relevance" => Sort::Relevance,
        "popularity" => Sort::Popularity,
        "recent" => Sort::Recent,
        "name" => Sort::Name,
        other => {
            return Err(Error::invalid(
                "sort",
                format!("'{other}' is not relevance, popularity, recent or name"),
            )
            .into())
        }
    };
    let query = SearchQuery {
        q,
        kinds: p.list::<Kind>("kind")?,
        namespaces: p.strings("namespace"),
        categories: p.strings("category"),
        tags: p.strings("tag"),
        statuses: p.list::<Status>("status")?,
        sort,
        limit: p.usize("limit", 20)?,
        cursor: p.get("cursor").map(str::to_string),
        facets: p.bool("facets")?,
        highlight: p.bool("highlight")?,
        private_namespaces: vec![],
        all_private: false,
    };
    let started = Instant::now();
    let results = state.registry.search(&caller, query)?;
    let took_us = started.elapsed().as_micros() as u64;
    Ok(Json(SearchResponse { results, took_us }).into_response())
}

/// A kind and the JSON Schema its manifests are validated against.
#[derive(Serialize, schemars::JsonSchema)]
pub struct KindInfo {
    pub kind: Kind,
    pub schema: serde_json::Value,
}

pub async fn kinds(headers: HeaderMap) -> ApiResult<Response> {
    let all: Vec<KindInfo> = Kind::ALL
        .iter()
        .map(|k| KindInfo {
            kind: *k,
            schema: Registry::kind_schema(*k).clone(),
        })
        .collect();
    json_with_etag(&headers, &all)
}

pub async fn kind_schema(Path(kind): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let kind: Kind = kind.parse().map_err(ApiError::from)?;
    json_with_etag(&headers, Registry::kind_schema(kind))
}

pub async fn status(State(state): State<AppState>) -> ApiResult<Response> {
    Ok(Json(state.registry.status().await?).into_response())
}

pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

pub async fn readyz(State(state): State<AppState>) -> ApiResult<Response> {
    state.registry.ready().await?;
    Ok(Json(serde_json::json!({"status": "ready"})).into_response())
}

pub async fn openapi(headers: HeaderMap) -> ApiResult<Response> {
    json_with_etag(&headers, crate::openapi::document())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

const JOB_PARAMS: &[&str] = &["state", "kind", "cursor", "limit"];

pub async fn list_jobs(
    State(state): State<AppState>,
    Auth(caller): Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(query.as_deref(), JOB_PARAMS)?;
    let filter = quiver_store::JobFilter {
        states: p.list::<quiver_store::JobState>("state")?,
        kinds: p.strings("kind"),
    };
    let page = state
        .registry
        .list_jobs(&caller, filter, p.get("cursor"), p.usize("limit", 20)?)
        .await?;
    Ok(Json(page).into_response())
}

fn job_id(id: &str) -> ApiResult<quiver_store::JobId> {
    id.parse()
        .map_err(|_| Error::invalid("id", format!("'{id}' is not a job id")).into())
}

pub async fn get_job(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.registry.get_job(&caller, job_id(&id)?).await?).into_response())
}

pub async fn retry_job(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.registry.retry_job(&caller, job_id(&id)?).await?).into_response())
}

/// Queue a rebuild of this node's search index; answers 202 with the job to poll.
pub async fn rebuild_index(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Response> {
    let job = state.registry.request_index_rebuild(&caller).await?;
    let loc = format!("/api/v1/jobs/{}", job.id);
    Ok((StatusCode::ACCEPTED, [(LOCATION, loc)], Json(job)).into_response())
}

// ---- accounts ------------------------------------------------------------------------

/// Register a user (and their user namespace).
pub async fn register(
    State(state): State<AppState>,
    JsonBody(r): JsonBody<Registration>,
) -> ApiResult<Response> {
    let user = state.registry.register(r).await?;
    Ok((StatusCode::CREATED, Json(user)).into_response())
}

/// The signed-in user and their memberships.
pub async fn whoami(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    Ok(Json(state.registry.whoami(&caller).await?).into_response())
}

/// Body of `PUT /api/v1/users/{name}/role`.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteRoleRequest {
    /// `admin`, `moderator`, or null for none.
    pub site_role: Option<SiteRole>,
}

pub async fn set_site_role(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<SiteRoleRequest>,
) -> ApiResult<Response> {
    let user = state
        .registry
        .set_site_role(&caller, &name, b.site_role)
        .await?;
    Ok(Json(user).into_response())
}

/// `PUT /users/{name}/trust`: a publisher's trust level (moderators and admins).
pub async fn set_trust(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(name): Path<String>,
    JsonBody(b): JsonBody<quiver_engine::review::TrustRequest>,
) -> ApiResult<Response> {
    let t = state.registry.set_trust(&caller, &name, b.level).await?;
    Ok(Json(t).into_response())
}

/// `GET /reviews?state=pending`: the moderation queue (moderators and admins).
pub async fn list_reviews(
    State(state): State<AppState>,
    Auth(caller): Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(query.as_deref(), &["state"])?;
    let st = match p.get("state") {
        None => None,
        Some(s) => Some(
            serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|_| {
                Error::invalid(
                    "state",
                    format!("'{s}' is not pending, approved, rejected or changes_requested"),
                )
            })?,
        ),
    };
    Ok(Json(state.registry.list_reviews(&caller, st).await?).into_response())
}

/// Password login: answers a session token (shown once).
pub async fn login(
    State(state): State<AppState>,
    JsonBody(l): JsonBody<Login>,
) -> ApiResult<Response> {
    let t = state.registry.login(l).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

pub async fn list_tokens(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Response> {
    Ok(Json(state.registry.list_tokens(&caller).await?).into_response())
}

pub async fn create_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(r): JsonBody<TokenRequest>,
) -> ApiResult<Response> {
    let t = state.registry.create_token(&caller, r).await?;
    Ok((StatusCode::CREATED, Json(t)).into_response())
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let id: i64 = id
        .parse()
        .map_err(|_| Error::invalid("id", format!("'{id}' is not a token id")))?;
    Ok(Json(state.registry.revoke_token(&caller, id).await?).into_response())
}

/// Body of `POST /api/v1/namespaces`.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceRequest {
    /// Lowercase letters, digits, `-` and `_`.
    pub name: String,
}

pub async fn create_namespace(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<NamespaceRequest>,
) -> ApiResult<Response> {
    let ns = state.registry.create_namespace(&caller, &b.name).await?;
    let loc = format!("/api/v1/namespaces/{}/members", ns.name);
    Ok((StatusCode::CREATED, [(LOCATION, loc)], Json(ns)).into_response())
}

pub async fn list_members(
    State(state): State<AppState>,
    Path(ns): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(state.registry.members(&ns).await?).into_response())
}

/// Body of `PUT /api/v1/namespaces/{namespace}/members/{user}`.
#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// `owner`, `maintainer` or `viewer`.
    pub role: NamespaceRole,
}

pub async fn set_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((ns, user)): Path<(String, String)>,
    JsonBody(b): JsonBody<MemberRequest>,
) -> ApiResult<Response> {
    let m = state
        .registry
        .set_member(&caller, &ns, &user, b.role)
        .await?;
    Ok(Json(m).into_response())
}

pub async fn remove_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Path((ns, user)): Path<(String, String)>,
) -> ApiResult<Response> {
    state.registry.remove_member(&caller, &ns, &user).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

const AUDIT_PARAMS: &[&str] = &[
    "namespace",
    "actor",
    "action",
    "outcome",
    "since",
    "until",
    "cursor",
    "limit",
];

fn audit_filter(p: &Params) -> ApiResult<quiver_store::AuditFilter> {
    Ok(quiver_store::AuditFilter {
        namespace: p.get("namespace").map(str::to_string),
        actor: p.get("actor").map(str::to_string),
        action: p.get("action").map(str::to_string),
        outcome: p.get("outcome").map(str::to_string),
        since: p.timestamp("since")?,
        until: p.timestamp("until")?,
    })
}

/// The audit log: admins read all of it, a namespace's owners read theirs.
pub async fn list_audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(query.as_deref(), AUDIT_PARAMS)?;
    let page = state
        .registry
        .list_audit(
            &caller,
            audit_filter(&p)?,
            p.get("cursor"),
            p.usize("limit", 20)?,
        )
        .await?;
    Ok(Json(page).into_response())
}

/// The whole audit log (the same filters and rights as the listing), newest first, as
/// JSON lines, streamed: one row per line, read from the store a page at a time.
pub async fn export_audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    RawQuery(query): RawQuery,
) -> ApiResult<Response> {
    let p = Params::parse(query.as_deref(), &AUDIT_PARAMS[..6])?;
    let export = state.registry.export_audit(&caller, audit_filter(&p)?)?;
    let lines = futures_util::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_page().await {
            Ok(Some(rows)) => {
                let mut buf = Vec::with_capacity(rows.len() * 256);
                for r in &rows {
                    // A row is plain data: serializing it cannot fail.
                    serde_json::to_writer(&mut buf, r).unwrap_or_default();
                    buf.push(b'\n');
                }
                Some((Ok(axum::body::Bytes::from(buf)), Some(export)))
            }
            Ok(None) => None,
            // A failure mid-stream can no longer change the status: the body ends early
            // (the client sees a truncated transfer) and the error is logged.
            Err(e) => {
                tracing::error!(error = %e, "audit export failed");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/x-ndjson"),
        )],
        axum::body::Body::from_stream(lines),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths() {
        let (k, s) = parse_entry_path("package", "npm", "@types/node/versions/1.0.0/yank").unwrap();
        assert_eq!(k.name, "@types/node");
        assert_eq!(s, Sub::Yank("1.0.0".into()));
        let (k, s) = parse_entry_path("tool", "tpmjs", "text.csvParse").unwrap();
        assert_eq!(k.name, "text.csvParse");
        assert_eq!(s, Sub::Entry);
        let (_, s) = parse_entry_path("tool", "tpmjs", "x/relations").unwrap();
        assert_eq!(s, Sub::Relations);
        assert!(parse_entry_path("tool", "tpmjs", "x/nope").is_err());
        let e = parse_entry_path("gadget", "tpmjs", "x").unwrap_err();
        assert_eq!(e.error.field.as_deref(), Some("kind"));
    }
}
