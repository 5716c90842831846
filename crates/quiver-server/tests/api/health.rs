//! Liveness, readiness, statistics and metrics.

use reqwest::StatusCode;

use crate::entries::start;

#[tokio::test]
async fn health_and_readiness() {
    let app = start().await;
    assert_eq!(app.get("/healthz", None).await.0, StatusCode::OK);
    assert_eq!(app.get("/readyz", None).await.0, StatusCode::OK);
    let (s, st) = app.get("/api/v1/status", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(st["backend"], "sqlite");
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for metric in [
        "quiver_http_requests_total",
        "quiver_http_request_duration_seconds",
        "quiver_index_lag_events",
        "quiver_feed_head",
    ] {
        assert!(
            text.contains(metric),
            "{metric} missing from /metrics:\n{text}"
        );
    }
    assert!(text.contains("route=\"/api/v1/status\""), "{text}");
}
