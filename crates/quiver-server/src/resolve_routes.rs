//! Resolution's routes (`/api/v1/resolve/...`) and dist-tags'
//! (`/api/v1/entries/{kind}/{namespace}/{name}/dist-tags`): thin handlers over the
//! engine's `resolve` service. A caller resolves only entries they may see; tags are
//! set by those who may publish the entry.

use axum::extract::State;
use axum::http::HeaderMap;
use quiver_engine::resolve::{
    BatchAnswer, BatchRequest, DistTags, ResolveRef, Resolved, SetDistTag,
};
use quiver_engine::store::advisories::{Advisory, AdvisoryFilter, NewAdvisory, Severity};
use quiver_model::{EntryKey, Kind};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::download_routes::user_agent;
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, PathParams, Query};
use crate::params::Param;
use crate::reply::{Created, Json};
use crate::routes::EntryPath;
use crate::AppState;

/// What to resolve to.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RangeParams {
    /// A semver range (`^1.2`, `~1.2.3`, `>=1, <2`, `1.x`), an exact version (`1.2.3`), or
    /// `latest` (the default).
    range: Option<String>,
}

pub async fn resolve_one(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<EntryPath>,
    Query(q): Query<RangeParams>,
    headers: HeaderMap,
) -> ApiResult<Json<Resolved>> {
    let r = ResolveRef {
        kind: p.kind.0,
        namespace: p.namespace,
        name: p.name,
        range: q.range,
    };
    let resolved = state.registry.resolve(&caller, &r).await?;
    // Every resolution counts, as a download does (off the request path).
    let hit = EntryKey::new(resolved.kind, &resolved.namespace, &resolved.name);
    state
        .registry
        .count_downloads(&[(hit, resolved.version.clone())], user_agent(&headers))
        .await;
    Ok(Json::ok(resolved))
}

pub async fn resolve_batch(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
    JsonBody(req): JsonBody<BatchRequest>,
) -> ApiResult<Json<BatchAnswer>> {
    let answer = state.registry.resolve_batch(&caller, req).await?;
    let hits: Vec<(EntryKey, String)> = answer
        .items
        .iter()
        .filter_map(|i| i.resolved.as_ref())
        .map(|r| {
            (
                EntryKey::new(r.kind, &r.namespace, &r.name),
                r.version.clone(),
            )
        })
        .collect();
    state
        .registry
        .count_downloads(&hits, user_agent(&headers))
        .await;
    Ok(Json::ok(answer))
}

pub async fn dist_tags(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<EntryPath>,
) -> ApiResult<Json<DistTags>> {
    Ok(Json::ok(state.registry.dist_tags(&caller, &p.key()).await?))
}

/// An entry's dist-tag.
#[derive(Deserialize, JsonSchema)]
pub struct DistTagPath {
    /// tool, recipe, skill, module or package
    kind: Param<Kind>,
    namespace: String,
    name: String,
    /// A lowercase name (`stable`, `beta`, `latest`), not a version range.
    tag: String,
}

impl DistTagPath {
    fn key(&self) -> EntryKey {
        EntryKey::new(self.kind.0, &self.namespace, &self.name)
    }
}

pub async fn set_dist_tag(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<DistTagPath>,
    JsonBody(b): JsonBody<SetDistTag>,
) -> ApiResult<Json<DistTags>> {
    Ok(Json::ok(
        state
            .registry
            .set_dist_tag(&caller, &p.key(), &p.tag, Some(&b.version))
            .await?,
    ))
}

pub async fn remove_dist_tag(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<DistTagPath>,
) -> ApiResult<Json<DistTags>> {
    Ok(Json::ok(
        state
            .registry
            .set_dist_tag(&caller, &p.key(), &p.tag, None)
            .await?,
    ))
}

/// Which advisories to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AdvisoryParams {
    /// With namespace and name: only the advisories affecting that entry.
    kind: Option<Param<Kind>>,
    namespace: Option<String>,
    name: Option<String>,
    /// The least severity: low, medium, high or critical.
    severity: Option<Param<SeverityParam>>,
    /// Withdrawn advisories too (default false).
    include_withdrawn: Option<Param<bool>>,
    /// 1 to 100 (default 50).
    limit: Option<Param<usize>>,
}

/// A severity as a query parameter.
#[derive(Debug, Clone, Copy, JsonSchema)]
#[schemars(rename = "Severity")]
pub struct SeverityParam(Severity);

impl std::str::FromStr for SeverityParam {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Severity::parse(s)
            .map(SeverityParam)
            .ok_or_else(|| format!("`{s}`: low, medium, high or critical"))
    }
}

pub async fn advisories(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<AdvisoryParams>,
) -> ApiResult<Json<Vec<Advisory>>> {
    let entry = match (p.kind, p.namespace, p.name) {
        (Some(k), Some(ns), Some(n)) => Some(EntryKey::new(k.0, ns, n)),
        (None, None, None) => None,
        _ => {
            return Err(quiver_model::Error::invalid(
                "kind",
                "give kind, namespace and name together, or none of them",
            )
            .into())
        }
    };
    let f = AdvisoryFilter {
        entry,
        min_severity: p.severity.map(|s| (s.0).0),
        include_withdrawn: p.include_withdrawn.is_some_and(|b| b.0),
        limit: p.limit.map_or(50, |l| l.0),
    };
    Ok(Json::ok(state.registry.advisories(&caller, f).await?))
}

/// An advisory's id.
#[derive(Deserialize, JsonSchema)]
pub struct AdvisoryPath {
    /// `QVR-2026-0001`.
    id: String,
}

pub async fn advisory(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<AdvisoryPath>,
) -> ApiResult<Json<Advisory>> {
    Ok(Json::ok(state.registry.advisory(&caller, &p.id).await?))
}

pub async fn create_advisory(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<NewAdvisory>,
) -> ApiResult<Created<Advisory>> {
    let a = state.registry.create_advisory(&caller, b).await?;
    Ok(Created::at(format!("/api/v1/advisories/{}", a.id), a))
}

/// Why an advisory is withdrawn.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Withdrawal {
    pub reason: String,
}

pub async fn withdraw_advisory(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<AdvisoryPath>,
    JsonBody(b): JsonBody<Withdrawal>,
) -> ApiResult<Json<Advisory>> {
    Ok(Json::ok(
        state
            .registry
            .withdraw_advisory(&caller, &p.id, b.reason)
            .await?,
    ))
}
