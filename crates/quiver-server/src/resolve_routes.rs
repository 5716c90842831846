//! Resolution's routes (`/api/v1/resolve/...`): thin handlers over the engine's `resolve`
//! service. Reads: a caller resolves only entries they may see.

use axum::extract::State;
use quiver_engine::resolve::{BatchAnswer, BatchRequest, ResolveRef, Resolved};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, PathParams, Query};
use crate::reply::Json;
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
) -> ApiResult<Json<Resolved>> {
    let r = ResolveRef {
        kind: p.kind.0,
        namespace: p.namespace,
        name: p.name,
        range: q.range,
    };
    Ok(Json::ok(state.registry.resolve(&caller, &r).await?))
}

pub async fn resolve_batch(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<BatchRequest>,
) -> ApiResult<Json<BatchAnswer>> {
    Ok(Json::ok(state.registry.resolve_batch(&caller, req).await?))
}
