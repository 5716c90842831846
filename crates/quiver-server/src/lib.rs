//! quiver's HTTP API: thin axum routes over the engine.
//!
//! Each handler parses its input, calls one [`Registry`] method and shapes the answer.
//! Errors from the engine become HTTP statuses in one place ([`error`]) and leave as one
//! JSON envelope. The caller is an extractor ([`extract::Auth`]) that every route takes,
//! so a route cannot forget to pass it to the engine.

use std::future::Future;
use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use quiver_engine::Registry;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

mod device;
pub mod error;
pub mod extract;
pub mod limits;
pub mod metrics;
mod oidc;
pub mod openapi;
mod routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Bearer token of the bootstrap admin (no account; may do everything). Other bearer
    /// tokens are API tokens of user accounts, resolved by the engine.
    pub admin_token: Option<String>,
}

/// The whole HTTP surface, without rate limits.
pub fn router(state: AppState) -> Router {
    router_with(state, limits::RateLimits::off())
}

/// The whole HTTP surface with `limits` (see [`limits`]). Client addresses are known only
/// when served with connect info (as [`serve_with`] does); without it, anonymous callers
/// share one count.
pub fn router_with(state: AppState, limits: limits::RateLimits) -> Router {
    let trust_forwarded_for = limits.trust_forwarded_for;
    let limiting = limits::Limiting::new(&state, limits);
    let api = Router::new()
        .route(
            "/entries",
            get(routes::list_entries).post(routes::create_entry),
        )
        .route(
            "/entries/{kind}/{namespace}/{*rest}",
            get(routes::entry_get)
                .post(routes::entry_post)
                .patch(routes::entry_patch),
        )
        .route("/search", get(routes::search))
        .route("/kinds", get(routes::kinds))
        .route("/kinds/{kind}/schema", get(routes::kind_schema))
        .route("/status", get(routes::status))
        .route("/jobs", get(routes::list_jobs))
        .route("/jobs/{id}", get(routes::get_job))
        .route("/jobs/{id}/retry", axum::routing::post(routes::retry_job))
        .route("/index/rebuild", axum::routing::post(routes::rebuild_index))
        .route("/users", axum::routing::post(routes::register))
        .route(
            "/users/{name}/role",
            axum::routing::put(routes::set_site_role),
        )
        .route("/users/{name}/trust", axum::routing::put(routes::set_trust))
        .route("/reviews", get(routes::list_reviews))
        .route("/user", get(routes::whoami))
        .route("/audit", get(routes::list_audit))
        .route("/audit/export", get(routes::export_audit))
        .route("/session", axum::routing::post(routes::login))
        .route(
            "/tokens",
            get(routes::list_tokens).post(routes::create_token),
        )
        .route("/tokens/{id}", axum::routing::delete(routes::revoke_token))
        .route("/namespaces", axum::routing::post(routes::create_namespace))
        .route("/namespaces/{namespace}/members", get(routes::list_members))
        .route(
            "/namespaces/{namespace}/members/{user}",
            axum::routing::put(routes::set_member).delete(routes::remove_member),
        )
        .route("/device/code", axum::routing::post(device::device_code))
        .route(
            "/device/approve",
            axum::routing::post(device::device_approve),
        )
        .route("/device/token", axum::routing::post(device::device_token))
        .route("/auth/oidc/start", get(oidc::start))
        .route("/auth/oidc/link", axum::routing::post(oidc::link))
        .route("/auth/oidc/callback", get(oidc::callback))
        .route("/openapi.json", get(routes::openapi));
    let mut app = Router::new()
        .nest("/api/v1", api)
        .route("/device", get(device::page).post(device::page_submit))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(metrics::render))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(|| async {
            error::ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                error: quiver_model::Error::invalid(
                    "method",
                    "this method is not allowed on this path",
                ),
            }
        });
    if let Some(l) = limiting {
        app = app.layer(axum::middleware::from_fn_with_state(l, limits::limit));
    }
    app.layer(axum::middleware::from_fn_with_state(
        trust_forwarded_for,
        limits::client_context,
    ))
    .layer(axum::middleware::from_fn(metrics::track))
    .layer(TraceLayer::new_for_http())
    .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
    .with_state(state)
}

/// Serve until `shutdown` resolves, then finish in-flight requests. No rate limits: see
/// [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, limits::RateLimits::off(), shutdown).await
}

/// [`serve`] with rate limits, counted per token or per client address.
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    limits: limits::RateLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    metrics::handle();
    let app = router_with(state, limits);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
