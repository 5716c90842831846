//! Several nodes over one PostgreSQL database: a write on one is searchable on the other
//! within a second (woken by LISTEN/NOTIFY, not by polling), and a node that was down
//! catches up from its last feed position when it comes back.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL` (set by `.ci/run`); says so loudly and passes without.

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_engine::{Caller, EngineConfig, Registry};
use quiver_model::{Kind, NewEntry, Status};
use quiver_postgres::testing::{test_url, TestSchema};
use quiver_search::SearchQuery;

fn entry(name: &str, description: &str) -> NewEntry {
    NewEntry {
        kind: Kind::Tool,
        namespace: "fleet".into(),
        name: name.into(),
        display_name: None,
        description: description.into(),
        category: None,
        tags: vec![],
        keywords: vec![],
        status: Some(Status::Published),
        visibility: None,
        popularity: None,
    }
}

async fn node(schema: &TestSchema, dir: &std::path::Path) -> Arc<Registry> {
    let mut config = EngineConfig::new(dir);
    // Long enough that only a notification can explain a sub-second propagation.
    config.poll_interval = Duration::from_secs(30);
    Registry::open(schema.database().await.unwrap(), config)
        .await
        .unwrap()
}

fn finds(r: &Registry, q: &str, name: &str) -> bool {
    r.search(&Caller::Anonymous, SearchQuery::text(q))
        .unwrap()
        .hits
        .iter()
        .any(|h| h.name == name)
}

async fn wait_until_found(r: &Registry, q: &str, name: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if finds(r, q, name) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} not found on the other node within {within:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_node_is_found_on_another_and_a_late_node_catches_up() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(&schema, dir_a.path()).await;
    let b = node(&schema, dir_b.path()).await;
    let follow_a = a.spawn_follower();
    let follow_b = b.spawn_follower();
    // Let B's listener connect before the write it must hear about.
    tokio::time::sleep(Duration::from_millis(300)).await;

    a.create_entry(
        &Caller::Anonymous,
        entry("otter.polish", "sea otter fur polisher"),
    )
    .await
    .unwrap();
    let took = wait_until_found(&b, "otter", "otter.polish", Duration::from_secs(1)).await;
    eprintln!("propagated to the other node in {took:?}");

    // Node B goes down; writes continue on A; B comes back and catches up at start.
    follow_b.abort();
    drop(b);
    for i in 0..5 {
        a.create_entry(
            &Caller::Anonymous,
            entry(&format!("otter.comb{i}"), "sea otter whisker comb"),
        )
        .await
        .unwrap();
    }
    let b = node(&schema, dir_b.path()).await;
    let head = b.store().feed_head().await.unwrap();
    assert_eq!(
        b.index().position(),
        head,
        "the returning node caught up before serving"
    );
    for i in 0..5 {
        assert!(finds(&b, "whisker", &format!("otter.comb{i}")));
    }
    follow_a.abort();
}
