//! The PostgreSQL rate limiter: concurrent hits from several stores (nodes) over one schema
//! are each counted exactly once (the upsert is atomic), and subjects and classes count
//! apart. Needs `QUIVER_TEST_POSTGRES_URL`; without it the test prints `SKIPPED` and passes.

use std::sync::Arc;
use std::time::Duration;

use quiver_postgres::testing::{test_url, TestSchema};
use quiver_store::{RateLimiter, Verdict};

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_from_two_nodes_are_counted_exactly() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let nodes: Vec<Arc<dyn RateLimiter>> = vec![
        Arc::new(schema.store().await.unwrap()),
        Arc::new(schema.store().await.unwrap()),
    ];
    let limit = 25;
    let mut tasks = vec![];
    for i in 0..40 {
        let node = nodes[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            node.hit("addr:x", "read", DAY, limit).await.unwrap()
        }));
    }
    let mut allowed = vec![];
    let mut limited = 0;
    for t in tasks {
        match t.await.unwrap() {
            Verdict::Allowed {
                remaining,
                reset_after,
            } => {
                assert!(reset_after <= DAY);
                allowed.push(remaining);
            }
            Verdict::Limited { retry_after } => {
                assert!(retry_after <= DAY && retry_after > Duration::ZERO);
                limited += 1;
            }
        }
    }
    // Exactly `limit` allowed, each with a distinct remaining count: no hit lost or doubled.
    allowed.sort_unstable();
    assert_eq!(allowed, (0..limit).collect::<Vec<_>>());
    assert_eq!(limited, 40 - limit);

    // Another subject, and another class of the same subject, start from zero.
    for (subject, class) in [("addr:y", "read"), ("addr:x", "search")] {
        assert!(matches!(
            nodes[0].hit(subject, class, DAY, limit).await.unwrap(),
            Verdict::Allowed { remaining, .. } if remaining == limit - 1
        ));
    }
    assert!(matches!(
        nodes[1].hit("addr:y", "read", DAY, limit).await.unwrap(),
        Verdict::Allowed { remaining, .. } if remaining == limit - 2
    ));
}
