//! Prometheus metrics at `/metrics`: request counts and latencies by route, and, read at
//! scrape time, the change feed's head, the index's position and lag, and index size.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::error::ApiResult;
use crate::extract::Auth;
use crate::reply::Prometheus;
use crate::AppState;

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
];

/// The process-wide recorder. Installed once; a second server in the same process (tests)
/// shares it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(LATENCY_BUCKETS)
            .expect("non-empty buckets");
        match builder.install_recorder() {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "metrics recorder not installed; /metrics shows gauges only");
                PrometheusBuilder::new().build_recorder().handle()
            }
        }
    })
}

/// Count and time every request by its route template (not its raw path, so names in
/// paths do not explode the label set).
pub async fn track(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("quiver_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("quiver_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// `GET /metrics` on the API's address: for admins (the numbers describe the whole
/// registry, private entries included). A scraper without a token reads them from the
/// separate metrics address (`--metrics-listen`), which serves nothing else.
pub async fn render(State(state): State<AppState>, Auth(caller): Auth) -> ApiResult<Prometheus> {
    state.registry.require_site_admin(&caller).await?;
    render_open(State(state)).await
}

/// The metrics without a caller check: the separate metrics address's only route.
pub async fn render_open(State(state): State<AppState>) -> ApiResult<Prometheus> {
    let status = state.registry.status().await?;
    metrics::gauge!("quiver_feed_head").set(status.store.feed_head as f64);
    metrics::gauge!("quiver_index_position").set(status.index.position as f64);
    metrics::gauge!("quiver_index_lag_events").set(status.index_lag as f64);
    metrics::gauge!("quiver_index_docs").set(status.index.docs as f64);
    metrics::gauge!("quiver_index_size_bytes").set(status.index.size_bytes as f64);
    metrics::gauge!("quiver_store_entries").set(status.store.entries as f64);
    let j = status.jobs;
    for (state, n) in [
        ("queued", j.queued),
        ("running", j.running),
        ("succeeded", j.succeeded),
        ("dead", j.dead),
    ] {
        metrics::gauge!("quiver_jobs", "state" => state).set(n as f64);
    }
    // The recipe pipeline: queue depth, valves, the current hour's claims and results.
    let pipeline = state.registry.pipeline_status().await?;
    for d in &pipeline.depth {
        metrics::gauge!("quiver_pipeline_items", "ecosystem" => d.ecosystem.clone(), "status" => d.status.as_str())
            .set(d.count as f64);
    }
    for v in &pipeline.valves {
        metrics::gauge!("quiver_pipeline_breaker_open", "ecosystem" => v.ecosystem.clone()).set(
            f64::from(u8::from(
                v.breaker != quiver_store::pipeline::BreakerState::Closed,
            )),
        );
        metrics::gauge!("quiver_pipeline_paused", "ecosystem" => v.ecosystem.clone())
            .set(f64::from(u8::from(v.paused)));
    }
    metrics::gauge!("quiver_pipeline_stopped").set(f64::from(u8::from(pipeline.stopped.is_some())));
    if let Some(a) = pipeline.activity.last() {
        metrics::gauge!("quiver_pipeline_claims_last_hour").set(a.claimed as f64);
        metrics::gauge!("quiver_pipeline_results_last_hour", "outcome" => "passed")
            .set(a.passed as f64);
        metrics::gauge!("quiver_pipeline_results_last_hour", "outcome" => "failed")
            .set(a.failed as f64);
    }
    if let Some(b) = status.store.size_bytes {
        metrics::gauge!("quiver_store_size_bytes").set(b as f64);
    }
    let mut body = handle().render();
    if !body.contains("quiver_feed_head") {
        // No recorder installed in this process: render the gauges by hand.
        body.push_str(&format!(
            "quiver_feed_head {}\nquiver_index_position {}\nquiver_index_lag_events {}\n",
            status.store.feed_head, status.index.position, status.index_lag
        ));
    }
    Ok(Prometheus(body))
}

/// The router of the separate metrics address: `GET /metrics` and nothing else.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(render_open))
        .with_state(state)
}
