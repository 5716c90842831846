//! Applying another quiver's entry snapshots (`mirror.rs`) to a local SQLite store:
//! idempotent, private entries left out, content checked, relations once both ends exist,
//! namespaces prefixed, and the source's position kept by compare-and-set.

use std::collections::HashMap;

use quiver_engine::content::sha256_hex;
use quiver_engine::mirror::{Mirror, Snapshot};
use quiver_engine::{Caller, EngineConfig};
use quiver_model::{EntryKey, Kind};
use serde_json::json;

const BYTES: &[u8] = b"/var @greeting = \"hello\"\n";

fn snapshot(name: &str, visibility: &str, content: Option<&[u8]>) -> Snapshot {
    let mut manifest = json!({"license": "CC0"});
    let mut contents = HashMap::new();
    if let Some(bytes) = content {
        let hash = sha256_hex(BYTES);
        manifest["source"] = json!({"content_hash": format!("sha256:{hash}")});
        contents.insert(hash, bytes.to_vec());
    }
    let entry = serde_json::from_value(json!({
        "id": 7, "kind": "module", "namespace": "alice", "name": name,
        "display_name": null, "description": format!("the {name} module, for mirror tests"),
        "category": null, "tags": ["greeting"], "keywords": [], "status": "published",
        "visibility": visibility, "deprecation": null, "popularity": {"score": 0.0},
        "latest_version": "1.0.0", "created_at": "2026-12-01T10:00:00Z",
        "updated_at": "2026-12-01T10:00:00Z"
    }))
    .unwrap();
    let version = serde_json::from_value(json!({
        "version": "1.0.0", "manifest": manifest, "sha256": "ignored", "changelog": null,
        "breaking": false, "yanked": false, "yank_reason": null,
        "published_at": "2026-12-01T10:00:00Z"
    }))
    .unwrap();
    let relation = serde_json::from_value(json!({
        "kind": "depends_on",
        "from": {"kind": "module", "namespace": "alice", "name": "greet"},
        "to": {"kind": "module", "namespace": "alice", "name": "base"}
    }))
    .unwrap();
    Snapshot {
        entry,
        versions: vec![version],
        relations: vec![relation],
        contents,
    }
}

fn key(ns: &str, name: &str) -> EntryKey {
    EntryKey::new(Kind::Module, ns, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_apply_once_and_never_private_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = quiver_sqlite::open(dir.path().join("quiver.db")).unwrap();
    let config = EngineConfig::new(dir.path().join("data"));
    let mirror = Mirror::new(db.clone(), &config, "http://source.example/", "").unwrap();

    let err = mirror
        .apply(&Caller::Anonymous, vec![snapshot("greet", "public", None)])
        .await
        .unwrap_err();
    assert!(err.message.contains("site admins"), "{err}");

    // The relation's target is not here yet: it waits.
    let a = mirror
        .apply(
            &Caller::Operator,
            vec![snapshot("greet", "public", Some(BYTES))],
        )
        .await
        .unwrap();
    assert_eq!((a.created, a.contents_stored), (1, 1), "{a:?}");
    assert_eq!((a.relations_added, a.relations_waiting), (0, 1), "{a:?}");
    assert!(mirror.has_content(&sha256_hex(BYTES)).await.unwrap());
    let head = db.store.feed_head().await.unwrap();

    // Again: nothing written.
    let a = mirror
        .apply(
            &Caller::Operator,
            vec![snapshot("greet", "public", Some(BYTES))],
        )
        .await
        .unwrap();
    assert_eq!((a.created, a.updated, a.unchanged), (0, 0, 1), "{a:?}");
    assert!(!a.wrote());
    assert_eq!(db.store.feed_head().await.unwrap(), head);

    // The target arrives (its snapshot carries the incoming relation): added.
    let a = mirror
        .apply(&Caller::Operator, vec![snapshot("base", "public", None)])
        .await
        .unwrap();
    assert_eq!((a.created, a.relations_added), (1, 1), "{a:?}");
    let rels = db
        .store
        .list_relations(&key("alice", "greet"), quiver_store::Direction::Outgoing)
        .await
        .unwrap();
    assert_eq!(rels.len(), 1);

    // A private entry is left out, whatever the source answered.
    let a = mirror
        .apply(&Caller::Operator, vec![snapshot("secret", "private", None)])
        .await
        .unwrap();
    assert_eq!((a.created, a.skipped_private), (0, 1), "{a:?}");
    assert!(db
        .store
        .get_entry(&key("alice", "secret"))
        .await
        .unwrap()
        .is_none());

    // Content that is not what the manifest declares is refused.
    let mut bad = snapshot("other", "public", Some(BYTES));
    for bytes in bad.contents.values_mut() {
        *bytes = b"something else".to_vec();
    }
    let a = mirror.apply(&Caller::Operator, vec![bad]).await.unwrap();
    assert!(a.rejected.iter().any(|r| r.contains("sha256")), "{a:?}");

    // The position: per source, moved by compare-and-set.
    assert_eq!(mirror.consumer(), "mirror:http://source.example");
    assert_eq!(mirror.position().await.unwrap(), 0);
    assert!(mirror.advance(0, 5).await.unwrap());
    assert!(
        !mirror.advance(0, 7).await.unwrap(),
        "moved by someone else"
    );
    assert_eq!(mirror.position().await.unwrap(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_renames_namespaces_and_relations() {
    let dir = tempfile::tempdir().unwrap();
    let db = quiver_sqlite::open(dir.path().join("quiver.db")).unwrap();
    let config = EngineConfig::new(dir.path().join("data"));
    assert!(Mirror::new(db.clone(), &config, "http://s", "Up!").is_err());
    let mirror = Mirror::new(db.clone(), &config, "http://s", "up-").unwrap();
    let a = mirror
        .apply(
            &Caller::Operator,
            vec![
                snapshot("greet", "public", None),
                snapshot("base", "public", None),
            ],
        )
        .await
        .unwrap();
    assert_eq!((a.created, a.relations_added), (2, 1), "{a:?}");
    assert!(db
        .store
        .get_entry(&key("alice", "greet"))
        .await
        .unwrap()
        .is_none());
    let rels = db
        .store
        .list_relations(&key("up-alice", "greet"), quiver_store::Direction::Outgoing)
        .await
        .unwrap();
    assert_eq!(rels[0].to, key("up-alice", "base"));
}
