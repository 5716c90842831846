//! Resolution's routes (`/api/v1/resolve/...`) and dist-tags'
//! (`/api/v1/entries/{kind}/{namespace}/{name}/dist-tags`): thin handlers over the
//! engine's `resolve` service. A caller resolves only entries they may see; tags are
//! set by those who may publish the entry.

use axum::extract::State;
use quiver_engine::resolve::{
    BatchAnswer, BatchRequest, DistTags, ResolveRef, Resolved, SetDistTag,
};
use quiver_model::{EntryKey, Kind};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, PathParams, Query};
use crate::params::Param;
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
