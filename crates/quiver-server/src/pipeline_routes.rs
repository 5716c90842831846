//! The recipe pipeline's routes (`/api/v1/pipeline/...`): thin handlers over the engine's
//! `pipeline` service. Reads are public; operating takes the right to publish in the
//! recipes' namespace (the engine checks it).

use axum::extract::State;
use quiver_engine::pipeline::{
    Blocker, ChecksumVerdict, ClaimRequest, Claimed, FailureQuery, FailureRecord, Gap, ItemDetail,
    ItemOutcome, NewItem, PackageRequest, PipelineStatus, Report, RequestOutcome, RequeueQuery,
    ResultPage, Valve, ValveChange,
};
use quiver_store::pipeline::{
    Checksum, ChecksumAlert, ItemFilter, ItemStatus, QueueItem, UpsertOutcome,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, PathParams, Query};
use crate::params::{PageSize, Param, Time};
use crate::reply::Json;
use crate::AppState;

/// Queue depth by status and ecosystem, totals, each ecosystem's valves (pause, breaker,
/// hourly claims), claims and results per hour.
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<PipelineStatus>> {
    Ok(Json::ok(state.registry.pipeline_status().await?))
}

/// Which queue items to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ItemParams {
    /// pending, in_progress, success, failed, blocked, requires_manual or excluded
    status: Option<Param<ItemStatus>>,
    ecosystem: Option<String>,
    /// Items after this id (the previous page's last).
    after: Option<String>,
    limit: Option<PageSize>,
}

pub async fn list_items(
    State(state): State<AppState>,
    Query(p): Query<ItemParams>,
) -> ApiResult<Json<Vec<QueueItem>>> {
    let filter = ItemFilter {
        status: p.status.map(|s| s.0),
        ecosystem: p.ecosystem,
        after: p.after,
        limit: p.limit.map_or(20, |l| l.0),
    };
    Ok(Json::ok(state.registry.pipeline_items(filter).await?))
}

/// Body of `POST /api/v1/pipeline/items`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddItems {
    /// 1 to 10,000 items.
    pub items: Vec<NewItem>,
    /// Replace the items that exist (default: leave them as they are).
    #[serde(default)]
    pub replace: bool,
}

pub async fn add_items(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<AddItems>,
) -> ApiResult<Json<UpsertOutcome>> {
    Ok(Json::ok(
        state
            .registry
            .pipeline_add(&caller, b.items, b.replace)
            .await?,
    ))
}

/// A queue item by id (`homebrew:node`; a `/` in it percent-encoded).
#[derive(Deserialize, JsonSchema)]
pub struct ItemPath {
    pub id: String,
}

/// An item, its history (newest first), its latest result per environment and what
/// blocks it where.
pub async fn get_item(
    State(state): State<AppState>,
    PathParams(p): PathParams<ItemPath>,
) -> ApiResult<Json<ItemDetail>> {
    Ok(Json::ok(state.registry.pipeline_item(&p.id).await?))
}

pub async fn claim(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<ClaimRequest>,
) -> ApiResult<Json<Claimed>> {
    Ok(Json::ok(state.registry.pipeline_claim(&caller, b).await?))
}

pub async fn report(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<Report>,
) -> ApiResult<Json<Vec<ItemOutcome>>> {
    Ok(Json::ok(state.registry.pipeline_report(&caller, b).await?))
}

/// Which failure records to read, newest first.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureParams {
    ecosystem: Option<String>,
    environment: Option<String>,
    category: Option<String>,
    since: Option<Time>,
    /// Records older than this id (the previous page's `next`).
    before: Option<Param<i64>>,
    limit: Option<PageSize>,
}

pub async fn failures(
    State(state): State<AppState>,
    Query(p): Query<FailureParams>,
) -> ApiResult<Json<ResultPage>> {
    let q = FailureQuery {
        ecosystem: p.ecosystem,
        environment: p.environment,
        category: p.category,
        since: p.since.map(|t| t.0),
        before: p.before.map(|b| b.0),
        limit: Some(p.limit.map_or(50, |l| l.0)),
    };
    Ok(Json::ok(state.registry.pipeline_failures(q).await?))
}

/// Body of `POST /api/v1/pipeline/failures`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailureRecords {
    /// 1 to 10,000 records.
    pub records: Vec<FailureRecord>,
}

/// How many records were stored.
#[derive(Serialize, JsonSchema)]
pub struct Recorded {
    pub recorded: u64,
}

pub async fn record_failures(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<FailureRecords>,
) -> ApiResult<Json<Recorded>> {
    let recorded = state
        .registry
        .pipeline_record_failures(&caller, b.records)
        .await?;
    Ok(Json::ok(Recorded { recorded }))
}

/// How much of the blockers ranking to show.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BlockerParams {
    limit: Option<PageSize>,
    /// Items listed under each dependency (default 10).
    items: Option<PageSize>,
}

pub async fn blockers(
    State(state): State<AppState>,
    Query(p): Query<BlockerParams>,
) -> ApiResult<Json<Vec<Blocker>>> {
    Ok(Json::ok(
        state
            .registry
            .pipeline_blockers(p.limit.map_or(20, |l| l.0), p.items.map_or(10, |l| l.0))
            .await?,
    ))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GapParams {
    /// Only this environment.
    environment: Option<String>,
}

pub async fn gaps(
    State(state): State<AppState>,
    Query(p): Query<GapParams>,
) -> ApiResult<Json<Vec<Gap>>> {
    Ok(Json::ok(
        state
            .registry
            .pipeline_gaps(p.environment.as_deref())
            .await?,
    ))
}

/// The items a re-queue moved.
#[derive(Serialize, JsonSchema)]
pub struct Requeued {
    pub requeued: Vec<String>,
}

pub async fn requeue(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<RequeueQuery>,
) -> ApiResult<Json<Requeued>> {
    Ok(Json::ok(Requeued {
        requeued: state.registry.pipeline_requeue(&caller, b).await?,
    }))
}

/// An ecosystem (`homebrew`, `cargo`, …).
#[derive(Deserialize, JsonSchema)]
pub struct EcosystemPath {
    pub ecosystem: String,
}

pub async fn valve(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<EcosystemPath>,
    JsonBody(b): JsonBody<ValveChange>,
) -> ApiResult<Json<Valve>> {
    Ok(Json::ok(
        state
            .registry
            .pipeline_valve(&caller, &p.ecosystem, b)
            .await?,
    ))
}

/// Body of `POST /api/v1/pipeline/stop`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    pub reason: String,
}

pub async fn stop(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<StopRequest>,
) -> ApiResult<Json<Valve>> {
    Ok(Json::ok(
        state
            .registry
            .pipeline_valve(
                &caller,
                quiver_store::pipeline::ALL_ECOSYSTEMS,
                ValveChange::Pause { reason: b.reason },
            )
            .await?,
    ))
}

pub async fn start(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Json<Valve>> {
    Ok(Json::ok(
        state
            .registry
            .pipeline_valve(
                &caller,
                quiver_store::pipeline::ALL_ECOSYSTEMS,
                ValveChange::Resume {},
            )
            .await?,
    ))
}

pub async fn record_checksum(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<Checksum>,
) -> ApiResult<Json<ChecksumVerdict>> {
    Ok(Json::ok(
        state.registry.pipeline_checksum(&caller, b).await?,
    ))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    recipe: Option<String>,
    limit: Option<PageSize>,
}

pub async fn checksum_alerts(
    State(state): State<AppState>,
    Query(p): Query<AlertParams>,
) -> ApiResult<Json<Vec<ChecksumAlert>>> {
    Ok(Json::ok(
        state
            .registry
            .pipeline_checksum_alerts(p.recipe.as_deref(), p.limit.map_or(50, |l| l.0))
            .await?,
    ))
}

pub async fn request(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<PackageRequest>,
) -> ApiResult<Json<RequestOutcome>> {
    Ok(Json::ok(state.registry.pipeline_request(&caller, b).await?))
}
