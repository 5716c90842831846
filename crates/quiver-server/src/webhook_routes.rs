//! Webhooks' routes (`/api/v1/webhooks/...`): thin handlers over the engine's `webhooks`
//! service. A subscription is managed by its owner (the user, or a namespace's owners)
//! and site admins; anyone else is told it does not exist. Secrets are answered once,
//! when a subscription is created or its secret rotated.

use axum::extract::State;
use axum::response::NoContent;
use quiver_engine::store::webhooks::Delivery;
use quiver_engine::webhooks::{
    DeliveryPage, NewWebhook, WebhookPatch, WebhookView, WebhookWithSecret,
};
use quiver_model::Error;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, PathParams, Query};
use crate::reply::{Accepted, Created, Json};
use crate::AppState;

/// A webhook, by id.
#[derive(Deserialize, JsonSchema)]
pub struct WebhookPath {
    /// The webhook's id (a whole number).
    #[schemars(with = "i64")]
    id: String,
}

/// A delivery of a webhook.
#[derive(Deserialize, JsonSchema)]
pub struct DeliveryPath {
    /// The webhook's id (a whole number).
    #[schemars(with = "i64")]
    id: String,
    /// The delivery's id (a whole number).
    #[schemars(with = "i64")]
    delivery_id: String,
}

fn number(field: &str, raw: &str) -> Result<i64, Error> {
    raw.parse()
        .map_err(|_| Error::invalid(field, format!("'{raw}' is not an id")))
}

/// Whose webhooks to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookListParams {
    /// A namespace whose webhooks to list (its owners); without it, the caller's own.
    namespace: Option<String>,
}

/// Which deliveries to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    /// Deliveries with ids below this one (the previous page's `next_before`).
    before: Option<i64>,
    /// At most this many (1 to 100, default 50).
    limit: Option<usize>,
}

pub async fn create(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<NewWebhook>,
) -> ApiResult<Created<WebhookWithSecret>> {
    let w = state.registry.create_webhook(&caller, b).await?;
    Ok(Created::at(format!("/api/v1/webhooks/{}", w.webhook.id), w))
}

pub async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(q): Query<WebhookListParams>,
) -> ApiResult<Json<Vec<WebhookView>>> {
    Ok(Json::ok(
        state
            .registry
            .list_webhooks(&caller, q.namespace.as_deref())
            .await?,
    ))
}

pub async fn get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<WebhookPath>,
) -> ApiResult<Json<WebhookView>> {
    let id = number("id", &p.id)?;
    Ok(Json::ok(state.registry.get_webhook(&caller, id).await?))
}

pub async fn update(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<WebhookPath>,
    JsonBody(b): JsonBody<WebhookPatch>,
) -> ApiResult<Json<WebhookView>> {
    let id = number("id", &p.id)?;
    Ok(Json::ok(
        state.registry.update_webhook(&caller, id, b).await?,
    ))
}

pub async fn delete(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<WebhookPath>,
) -> ApiResult<NoContent> {
    let id = number("id", &p.id)?;
    state.registry.delete_webhook(&caller, id).await?;
    Ok(NoContent)
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<WebhookPath>,
) -> ApiResult<Json<WebhookWithSecret>> {
    let id = number("id", &p.id)?;
    Ok(Json::ok(
        state.registry.rotate_webhook_secret(&caller, id).await?,
    ))
}

pub async fn deliveries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<WebhookPath>,
    Query(q): Query<DeliveryParams>,
) -> ApiResult<Json<DeliveryPage>> {
    let id = number("id", &p.id)?;
    Ok(Json::ok(
        state
            .registry
            .list_webhook_deliveries(&caller, id, q.before, q.limit.unwrap_or(50))
            .await?,
    ))
}

pub async fn redeliver(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<DeliveryPath>,
) -> ApiResult<Accepted<Delivery>> {
    let id = number("id", &p.id)?;
    let delivery = number("delivery_id", &p.delivery_id)?;
    let d = state
        .registry
        .redeliver_webhook(&caller, id, delivery)
        .await?;
    Ok(Accepted::at(
        format!("/api/v1/webhooks/{id}/deliveries?before={}", d.id + 1),
        d,
    ))
}

pub async fn ping(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<WebhookPath>,
) -> ApiResult<Accepted<Delivery>> {
    let id = number("id", &p.id)?;
    let d = state.registry.ping_webhook(&caller, id).await?;
    Ok(Accepted::at(
        format!("/api/v1/webhooks/{id}/deliveries?before={}", d.id + 1),
        d,
    ))
}
