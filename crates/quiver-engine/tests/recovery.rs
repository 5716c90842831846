//! Crash recovery and the index follower on SQLite: a write committed to the store whose
//! index update never happened (the process died in between) is found by search after the
//! next start; the follower is woken by this process's writes and polls for another's.

use std::sync::Arc;

use quiver_engine::{index_path, Caller, EngineConfig, Registry};
use quiver_model::{Kind, NewEntry, NewVersion};
use quiver_search::{SearchIndex, SearchQuery};
use quiver_sqlite::SqliteStore;
use quiver_store::{valid_version, Store};

fn entry(name: &str, description: &str) -> NewEntry {
    NewEntry {
        kind: Kind::Tool,
        namespace: "acme".into(),
        name: name.into(),
        display_name: None,
        description: description.into(),
        category: None,
        tags: vec![],
        keywords: vec![],
        status: None,
        visibility: None,
        popularity: None,
    }
}

/// The embedded store's file in a data directory (as the binary keeps it).
fn store_path(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("quiver.db")
}

/// The registry over the embedded store of `config.data_dir`.
async fn open(config: EngineConfig) -> Arc<Registry> {
    let db = quiver_sqlite::open(store_path(&config.data_dir)).unwrap();
    Registry::open(db, config).await.unwrap()
}

fn names(index: &SearchIndex, q: &str) -> Vec<String> {
    index
        .search(&SearchQuery::text(q))
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.name)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn index_catches_up_after_a_crash_between_commit_and_index() {
    let dir = tempfile::tempdir().unwrap();
    {
        let registry = open(EngineConfig::new(dir.path())).await;
        let key = registry
            .create_entry(
                &Caller::Anonymous,
                entry("before.crash", "walrus tusk polisher"),
            )
            .await
            .unwrap()
            .key();
        registry
            .publish_version(
                &Caller::Anonymous,
                &key,
                NewVersion {
                    version: "1.0.0".into(),
                    manifest: serde_json::json!({}),
                    changelog: None,
                    breaking: false,
                },
            )
            .await
            .unwrap();
        registry.sync_index().await.unwrap();
        assert_eq!(names(registry.index(), "walrus"), vec!["before.crash"]);
    }

    // The "crashed" process: writes commit to the store, and it dies before any index
    // update (the index is never opened, so nothing can apply them).
    {
        let store = SqliteStore::open(store_path(dir.path())).unwrap();
        let e = store
            .create_entry(entry("after.crash", "walrus whisker trimmer"))
            .await
            .unwrap();
        store
            .publish_version(
                &e.key(),
                valid_version(
                    Kind::Tool,
                    NewVersion {
                        version: "0.1.0".into(),
                        manifest: serde_json::json!({}),
                        changelog: None,
                        breaking: false,
                    },
                )
                .unwrap(),
            )
            .await
            .unwrap();
        let index = SearchIndex::open(&index_path(dir.path())).unwrap();
        assert!(
            index.position() < store.feed_head().await.unwrap(),
            "the index is behind"
        );
        assert_eq!(names(&index, "walrus"), vec!["before.crash"]);
    }

    // Restart: the engine catches the index up before it serves.
    let registry = open(EngineConfig::new(dir.path())).await;
    let head = registry.store().feed_head().await.unwrap();
    assert_eq!(
        registry.index().position(),
        head,
        "neither behind nor ahead"
    );
    let mut found = names(registry.index(), "walrus");
    found.sort();
    assert_eq!(found, vec!["after.crash", "before.crash"]);
    let status = registry.status().await.unwrap();
    assert_eq!(status.index_lag, 0);
    let _: Arc<Registry> = registry;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_indexes_writes_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    config.poll_interval = std::time::Duration::from_millis(20);
    let registry = open(config).await;
    let follower = registry.spawn_follower();
    // Another process (say `quiver import`) writes to the same store file.
    let other = SqliteStore::open(store_path(dir.path())).unwrap();
    let mut e = entry("from.elsewhere", "narwhal horn buffer");
    e.status = Some(quiver_model::Status::Published);
    other.create_entry(e).await.unwrap();
    let mut seen = false;
    for _ in 0..100 {
        if names(registry.index(), "narwhal") == vec!["from.elsewhere"] {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    follower.abort();
    assert!(
        seen,
        "the follower picked up the other process's write from the feed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_follower_is_woken_by_a_write_not_by_its_poll() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = EngineConfig::new(dir.path());
    // Far longer than the test waits: only the feed waker can explain the index update.
    config.poll_interval = std::time::Duration::from_secs(600);
    let registry = open(config).await;
    let follower = registry.spawn_follower();
    let mut e = entry("woken.write", "manatee flipper lotion");
    e.status = Some(quiver_model::Status::Published);
    registry.create_entry(&Caller::Anonymous, e).await.unwrap();
    let mut seen = false;
    for _ in 0..100 {
        if names(registry.index(), "manatee") == vec!["woken.write"] {
            seen = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    follower.abort();
    assert!(seen, "the write woke the follower within two seconds");
}
