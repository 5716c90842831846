//! The website's webhook pages for a signed-in owner: their subscriptions and a form to
//! add one (the secret shown once), and one subscription's delivery log with redelivery
//! and a test ping. The same `Registry` calls as the API; every form checks its CSRF
//! token first.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use quiver_engine::webhooks::NewWebhook;
use quiver_model::Error;
use quiver_store::webhooks::EVENT_TYPES;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::account_pages::{private, problem_of, redirect_path, redirect_to, when};
use crate::reply::PageOr;
use crate::session::Visitor;
use crate::web::{error_page, render};
use crate::AppState;

/// The form that adds a webhook.
#[derive(Deserialize, JsonSchema)]
pub struct WebhookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    url: String,
    /// `version.published`, … (checked boxes; none: every event).
    #[serde(default)]
    event_version_published: Option<String>,
    #[serde(default)]
    event_version_yanked: Option<String>,
    #[serde(default)]
    event_entry_deprecated: Option<String>,
    /// Comma-separated namespaces to follow (empty: all).
    #[serde(default)]
    namespaces: String,
}

/// A form with nothing but its CSRF token.
#[derive(Deserialize, JsonSchema)]
pub struct WebhookCsrfForm {
    #[serde(default)]
    csrf: String,
}

/// A webhook, by id. Read as text, so that an id that is not a number answers the
/// website's not-found page instead of the API's JSON error.
#[derive(Deserialize, JsonSchema)]
pub struct WebhookPagePath {
    id: String,
}

/// A delivery of a webhook (ids read as text, as above).
#[derive(Deserialize, JsonSchema)]
pub struct DeliveryPagePath {
    id: String,
    delivery_id: String,
}

/// A page address's id: a webhook or delivery that cannot exist is not found.
fn page_id(what: &str, id: &str) -> Result<i64, Error> {
    id.parse::<i64>()
        .ok()
        .filter(|i| *i > 0)
        .ok_or_else(|| Error::not_found(format!("{what} {id}")))
}

#[derive(Serialize)]
struct Row {
    id: i64,
    url: String,
    events: String,
    active: bool,
    disabled_reason: Option<String>,
    failures: u32,
    created: String,
}

#[derive(Serialize)]
struct ListView {
    hooks: Vec<Row>,
    events: &'static [&'static str],
    csrf: Option<String>,
    secret: Option<String>,
    problem: Option<String>,
}

async fn list_page(
    state: &AppState,
    v: &Visitor,
    status: StatusCode,
    secret: Option<String>,
    problem: Option<String>,
) -> PageOr {
    let hooks = match state.registry.list_webhooks(&v.caller, None).await {
        Ok(h) => h,
        Err(e) => return error_page(v, e).into(),
    };
    let view = ListView {
        hooks: hooks
            .iter()
            .map(|w| Row {
                id: w.id,
                url: w.url.clone(),
                events: if w.filter.events.is_empty() {
                    "all".into()
                } else {
                    w.filter.events.join(", ")
                },
                active: w.active,
                disabled_reason: w.disabled_reason.clone(),
                failures: w.consecutive_failures,
                created: when(w.created_at),
            })
            .collect(),
        events: EVENT_TYPES,
        csrf: v.csrf(),
        secret,
        problem,
    };
    private(render(v, status, "webhooks.html", &view)).into()
}

/// `GET /webhooks`: the signed-in user's webhooks and a form to add one.
pub async fn webhooks(State(state): State<AppState>, v: Visitor) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    list_page(&state, &v, StatusCode::OK, None, None).await
}

/// `POST /webhooks`: add a webhook; the page shows its secret once.
pub async fn create_webhook(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<WebhookForm>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let mut events = vec![];
    for (on, name) in [
        (&f.event_version_published, "version.published"),
        (&f.event_version_yanked, "version.yanked"),
        (&f.event_entry_deprecated, "entry.deprecated"),
    ] {
        if on.is_some() {
            events.push(name.to_string());
        }
    }
    let new = NewWebhook {
        url: f.url.trim().to_string(),
        namespace: None,
        events,
        kinds: vec![],
        namespaces: f
            .namespaces
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect(),
        entries: vec![],
    };
    match state.registry.create_webhook(&v.caller, new).await {
        Ok(w) => list_page(&state, &v, StatusCode::CREATED, Some(w.secret), None).await,
        Err(e) => {
            let status = crate::error::status_of(e.code);
            list_page(&state, &v, status, None, Some(problem_of(&e))).await
        }
    }
}

#[derive(Serialize)]
struct DeliveryRow {
    id: i64,
    event: String,
    state: &'static str,
    attempts: u32,
    status: Option<u16>,
    duration_ms: Option<u64>,
    error: Option<String>,
    created: String,
    redelivery_of: Option<i64>,
}

#[derive(Serialize)]
struct LogView {
    id: i64,
    url: String,
    active: bool,
    deliveries: Vec<DeliveryRow>,
    csrf: Option<String>,
}

/// `GET /webhooks/{id}`: a webhook's delivery log, with redelivery and a test ping.
pub async fn webhook_log(
    State(state): State<AppState>,
    v: Visitor,
    Path(WebhookPagePath { id }): Path<WebhookPagePath>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    let id = match page_id("webhook", &id) {
        Ok(id) => id,
        Err(e) => return error_page(&v, e).into(),
    };
    let w = match state.registry.get_webhook(&v.caller, id).await {
        Ok(w) => w,
        Err(e) => return error_page(&v, e).into(),
    };
    let page = match state
        .registry
        .list_webhook_deliveries(&v.caller, id, None, 100)
        .await
    {
        Ok(p) => p,
        Err(e) => return error_page(&v, e).into(),
    };
    let view = LogView {
        id: w.id,
        url: w.url,
        active: w.active,
        deliveries: page
            .items
            .into_iter()
            .map(|d| DeliveryRow {
                id: d.id,
                event: d.event,
                state: d.state.as_str(),
                attempts: d.attempts,
                status: d.last_status,
                duration_ms: d.last_duration_ms,
                error: d.last_error,
                created: when(d.created_at),
                redelivery_of: d.redelivery_of,
            })
            .collect(),
        csrf: v.csrf(),
    };
    private(render(&v, StatusCode::OK, "webhook.html", &view)).into()
}

/// `POST /webhooks/{id}/deliveries/{delivery_id}/redeliver`: send it again.
pub async fn redeliver(
    State(state): State<AppState>,
    v: Visitor,
    Path(DeliveryPagePath { id, delivery_id }): Path<DeliveryPagePath>,
    Form(f): Form<WebhookCsrfForm>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let (id, delivery_id) = match (page_id("webhook", &id), page_id("delivery", &delivery_id)) {
        (Ok(id), Ok(d)) => (id, d),
        (Err(e), _) | (_, Err(e)) => return error_page(&v, e).into(),
    };
    match state
        .registry
        .redeliver_webhook(&v.caller, id, delivery_id)
        .await
    {
        Ok(_) => redirect_path(&v, format!("/webhooks/{id}")),
        Err(e) => error_page(&v, e).into(),
    }
}

/// `POST /webhooks/{id}/test`: send a ping.
pub async fn ping(
    State(state): State<AppState>,
    v: Visitor,
    Path(WebhookPagePath { id }): Path<WebhookPagePath>,
    Form(f): Form<WebhookCsrfForm>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let id = match page_id("webhook", &id) {
        Ok(id) => id,
        Err(e) => return error_page(&v, e).into(),
    };
    match state.registry.ping_webhook(&v.caller, id).await {
        Ok(_) => redirect_path(&v, format!("/webhooks/{id}")),
        Err(e) => error_page(&v, e).into(),
    }
}
