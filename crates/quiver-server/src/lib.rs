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

pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
mod routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Bearer token that makes a caller an admin (and, once set, the only writer).
    pub admin_token: Option<String>,
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
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
        .route("/openapi.json", get(routes::openapi));
    Router::new()
        .nest("/api/v1", api)
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
        })
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
        .with_state(state)
}

/// Serve until `shutdown` resolves, then finish in-flight requests.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    metrics::handle();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
