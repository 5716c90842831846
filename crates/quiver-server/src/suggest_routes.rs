//! Skill suggestions' routes (`/api/v1/skills/suggest`, `/api/v1/skills/bulk-suggest`,
//! `/api/v1/packages/{ecosystem}/{name}/skills`): thin handlers over the engine's
//! `suggest` service. Reads: a caller sees only the skills and packages they may read.

use axum::extract::State;
use quiver_engine::events::{CoInstalls, EventBatch};
use quiver_engine::store::{EventsOutcome, SkillPreference};
use quiver_engine::suggest::{
    BulkSuggestRequest, BulkSuggestions, PackageSkills, SetPreference, SuggestRequest, Suggestions,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, PathParams, Query};
use crate::params::{values, Csv, PageSize, Param};
use crate::reply::Json;
use crate::AppState;

/// Which packages to suggest skills for.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SuggestParams {
    /// Packages by name or `ecosystem:name`, comma-separated or repeated
    /// (`packages=react&packages=next`).
    packages: Option<Csv<String>>,
    /// The ecosystem of names given without one: npm (default), pypi or cargo.
    ecosystem: Option<String>,
    /// Count development-only dependencies (default true).
    include_dev: Option<Param<bool>>,
    /// Most skills answered (1 to 100, default 10).
    limit: Option<Param<usize>>,
}

pub async fn suggest_get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<SuggestParams>,
) -> ApiResult<Json<Suggestions>> {
    let req = SuggestRequest {
        packages: values(p.packages),
        ecosystem: p.ecosystem,
        manifest: None,
        include_dev: p.include_dev.map(|b| b.0),
        limit: p.limit.map(|l| l.0),
    };
    Ok(Json::ok(state.registry.suggest_skills(&caller, req).await?))
}

pub async fn suggest_post(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<SuggestRequest>,
) -> ApiResult<Json<Suggestions>> {
    Ok(Json::ok(state.registry.suggest_skills(&caller, req).await?))
}

pub async fn bulk_suggest(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<BulkSuggestRequest>,
) -> ApiResult<Json<BulkSuggestions>> {
    Ok(Json::ok(
        state.registry.bulk_suggest_skills(&caller, req).await?,
    ))
}

/// A package (a scoped npm name's `/` may be sent as is or as `%2F`).
#[derive(Deserialize, JsonSchema)]
pub struct PackagePath {
    /// npm, pypi or cargo.
    ecosystem: String,
    name: String,
}

/// How many skills.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PackageSkillParams {
    /// Most skills answered (1 to 100, default 10).
    limit: Option<Param<usize>>,
}

pub async fn package_skills(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<PackagePath>,
    Query(q): Query<PackageSkillParams>,
) -> ApiResult<Json<PackageSkills>> {
    Ok(Json::ok(
        state
            .registry
            .skills_of_package(&caller, &p.ecosystem, &p.name, q.limit.map(|l| l.0))
            .await?,
    ))
}

pub async fn preferences(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<SkillPreference>>> {
    Ok(Json::ok(state.registry.skill_preferences(&caller).await?))
}

pub async fn set_preference(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(req): JsonBody<SetPreference>,
) -> ApiResult<Json<Vec<SkillPreference>>> {
    Ok(Json::ok(
        state.registry.set_skill_preference(&caller, req).await?,
    ))
}

pub async fn record_events(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<EventBatch>,
) -> ApiResult<Json<EventsOutcome>> {
    Ok(Json::ok(state.registry.record_events(&caller, b).await?))
}

/// How many, and how sure.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CoInstallParams {
    /// The least number of projects behind a recommendation (never below 5).
    min_projects: Option<Param<u64>>,
    /// 1 to 100 (default 10).
    limit: Option<PageSize>,
}

pub async fn co_installed(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<crate::routes::EntryPath>,
    Query(q): Query<CoInstallParams>,
) -> ApiResult<Json<CoInstalls>> {
    Ok(Json::ok(
        state
            .registry
            .co_installed(
                &caller,
                &p.key(),
                q.min_projects.map(|m| m.0),
                q.limit.map_or(10, |l| l.0),
            )
            .await?,
    ))
}
