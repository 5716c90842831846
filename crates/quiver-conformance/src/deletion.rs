//! Per-version disable, deletion and tombstones: what every backend must do.
//!
//! A disabled version keeps its row and is marked, and is never the entry's latest; a
//! deleted version goes with the dist-tags that point at it and leaves a tombstone; a
//! deleted entry goes with everything hanging from it (versions, relations both ways,
//! tags, dist-tags, download counts) in one transaction, leaves a tombstone, and each
//! deletion writes one feed row (`delete`).

use jiff::Timestamp;
use quiver_model::{
    Disabled, ErrorCode, FeedEntity, FeedOp, Kind, NewVersion, Relation, RelationKind, Visibility,
};
use quiver_store::downloads::DownloadHit;
use quiver_store::{valid_version, Database, Direction, NewTombstone};
use serde_json::json;

use crate::store::{key, new_entry};

fn version(kind: Kind, v: &str) -> quiver_store::ValidVersion {
    valid_version(
        kind,
        NewVersion {
            version: v.into(),
            manifest: json!({"summary": format!("release {v}")}),
            changelog: None,
            breaking: false,
        },
    )
    .expect("test version is valid")
}

fn tombstone(reason: &str, by_admin: bool) -> NewTombstone {
    NewTombstone {
        reason: reason.into(),
        actor: "alice".into(),
        by_admin,
    }
}

/// A version disabled with a reason stays readable and marked, stops being the latest,
/// and is the latest again once enabled; each change is a version update on the feed.
pub async fn disable_a_version(db: &Database) {
    let s = &db.store;
    let k = key(Kind::Skill, "acme", "linter");
    s.create_entry(new_entry(k.kind, &k.namespace, &k.name, "lints"))
        .await
        .unwrap();
    for v in ["1.0.0", "1.1.0"] {
        s.publish_version(&k, version(k.kind, v)).await.unwrap();
    }
    assert_eq!(
        s.get_entry(&k).await.unwrap().unwrap().latest_version,
        Some("1.1.0".into())
    );
    let d = Disabled {
        reason: "crashes on start".into(),
        since: Timestamp::from_millisecond(1_780_000_000_000).unwrap(),
    };
    let head = s.feed_head().await.unwrap();
    let v = s
        .set_version_disabled_audited(&k, "1.1.0", Some(d.clone()), None)
        .await
        .unwrap();
    assert_eq!(v.disabled.as_ref(), Some(&d));
    let feed = s.feed_since(head, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(
        (feed[0].entity, feed[0].op),
        (FeedEntity::Version, FeedOp::Update)
    );
    let got = s.get_version(&k, "1.1.0").await.unwrap().unwrap();
    assert_eq!(got.disabled.as_ref(), Some(&d), "still readable, marked");
    let page = s.list_versions_page(&k, None, 10, false).await.unwrap();
    assert_eq!(page.items[0].disabled.as_ref(), Some(&d));
    let sets = s.resolution_sets(std::slice::from_ref(&k)).await.unwrap();
    let set = sets[0].as_ref().unwrap();
    assert_eq!(
        set.versions
            .iter()
            .find(|v| v.version == "1.1.0")
            .unwrap()
            .disabled
            .as_ref(),
        Some(&d)
    );
    assert_eq!(
        s.get_entry(&k).await.unwrap().unwrap().latest_version,
        Some("1.0.0".into()),
        "a disabled version is never the latest"
    );
    let v = s
        .set_version_disabled_audited(&k, "1.1.0", None, None)
        .await
        .unwrap();
    assert_eq!(v.disabled, None);
    assert_eq!(
        s.get_entry(&k).await.unwrap().unwrap().latest_version,
        Some("1.1.0".into())
    );
    let e = s
        .set_version_disabled_audited(&k, "9.9.9", Some(d), None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

/// A deleted version goes with its dist-tags, leaves a tombstone and a feed row, and the
/// latest version is recomputed.
pub async fn delete_a_version(db: &Database) {
    let s = &db.store;
    let k = key(Kind::Skill, "acme", "formatter");
    let e = s
        .create_entry(new_entry(k.kind, &k.namespace, &k.name, "formats"))
        .await
        .unwrap();
    for v in ["1.0.0", "2.0.0"] {
        s.publish_version(&k, version(k.kind, v)).await.unwrap();
    }
    s.set_dist_tag_audited(&k, "stable", Some("2.0.0"), Timestamp::now(), None)
        .await
        .unwrap();
    s.set_dist_tag_audited(&k, "old", Some("1.0.0"), Timestamp::now(), None)
        .await
        .unwrap();
    let head = s.feed_head().await.unwrap();
    let t = s
        .delete_version_audited(&k, "2.0.0", tombstone("leaked a key", false), None)
        .await
        .unwrap();
    assert_eq!(t.key(), k);
    assert_eq!(t.version.as_deref(), Some("2.0.0"));
    assert_eq!(t.entry_id, e.id);
    assert!(t.version_id.is_some());
    assert_eq!(t.reason, "leaked a key");
    assert_eq!(t.actor, "alice");
    assert!(!t.by_admin);
    assert_eq!(t.visibility, Visibility::Public);
    assert!(s.get_version(&k, "2.0.0").await.unwrap().is_none());
    let left: Vec<String> = s
        .list_versions(&k)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(left, vec!["1.0.0"]);
    let tags: Vec<String> = s
        .dist_tags(&k)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tag)
        .collect();
    assert_eq!(tags, vec!["old"], "the tag on the deleted version went");
    assert_eq!(
        s.get_entry(&k).await.unwrap().unwrap().latest_version,
        Some("1.0.0".into())
    );
    let feed = s.feed_since(head, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(
        (feed[0].entity, feed[0].op, feed[0].entry_id),
        (FeedEntity::Version, FeedOp::Delete, Some(e.id))
    );
    assert_eq!(Some(feed[0].entity_id), t.version_id);
    assert_eq!(s.tombstones(&k).await.unwrap(), vec![t.clone()]);
    assert_eq!(s.tombstones_of_entries(&[e.id]).await.unwrap(), vec![t]);
    let err = s
        .delete_version_audited(&k, "2.0.0", tombstone("again", false), None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

/// A deleted entry goes with its versions, relations both ways, tags and download
/// counts, in one transaction with a tombstone and one feed row; the other entries stay.
pub async fn delete_an_entry(db: &Database) {
    let s = &db.store;
    let k = key(Kind::Tool, "acme", "scanner");
    let dep = key(Kind::Tool, "acme", "uses-scanner");
    let used = key(Kind::Tool, "acme", "base");
    let mut ids = Vec::new();
    for k in [&k, &dep, &used] {
        let e = s
            .create_entry(new_entry(k.kind, &k.namespace, &k.name, "a tool"))
            .await
            .unwrap();
        s.publish_version(k, version(k.kind, "1.0.0"))
            .await
            .unwrap();
        ids.push(e.id);
    }
    for (from, to) in [(&dep, &k), (&k, &used)] {
        s.add_relation(Relation {
            kind: RelationKind::DependsOn,
            from: from.clone(),
            to: to.clone(),
            confidence: None,
            source: None,
            step_order: None,
        })
        .await
        .unwrap();
    }
    s.set_dist_tag_audited(&k, "stable", Some("1.0.0"), Timestamp::now(), None)
        .await
        .unwrap();
    let hit = |key: &quiver_model::EntryKey| DownloadHit {
        entry: key.clone(),
        version: "1.0.0".into(),
        client: "c1".into(),
        at: Timestamp::now(),
    };
    db.downloads
        .record_downloads(vec![hit(&k), hit(&used)], vec![], 3_600_000)
        .await
        .unwrap();
    let head = s.feed_head().await.unwrap();
    let t = s
        .delete_entry_audited(&k, tombstone("malware", true), None)
        .await
        .unwrap();
    assert_eq!(t.key(), k);
    assert_eq!(t.version, None);
    assert_eq!(t.version_id, None);
    assert_eq!(t.entry_id, ids[0]);
    assert!(t.by_admin);
    assert!(s.get_entry(&k).await.unwrap().is_none());
    assert!(s.get_entries_by_id(&[ids[0]]).await.unwrap().is_empty());
    assert!(s.get_version(&k, "1.0.0").await.ok().flatten().is_none());
    for other in [&dep, &used] {
        assert!(
            s.list_relations(other, Direction::Both)
                .await
                .unwrap()
                .is_empty(),
            "the relations of {other} to the deleted entry went"
        );
        assert!(s.get_entry(other).await.unwrap().is_some());
    }
    assert!(db.downloads.download_totals(&k).await.unwrap().is_empty());
    assert_eq!(
        db.downloads.download_totals(&used).await.unwrap(),
        vec![("1.0.0".to_string(), 1)]
    );
    let feed = s.feed_since(head, 10).await.unwrap();
    assert_eq!(feed.len(), 1);
    assert_eq!(
        (
            feed[0].entity,
            feed[0].op,
            feed[0].entity_id,
            feed[0].entry_id
        ),
        (FeedEntity::Entry, FeedOp::Delete, ids[0], Some(ids[0]))
    );
    assert_eq!(s.tombstones(&k).await.unwrap(), vec![t.clone()]);
    assert_eq!(
        s.tombstones_of_entries(&[ids[0], ids[1]]).await.unwrap(),
        vec![t.clone()]
    );
    // The store leaves the reservation to the engine: the name can be created again,
    // and its tombstone stays.
    let again = s
        .create_entry(new_entry(k.kind, &k.namespace, &k.name, "again"))
        .await
        .unwrap();
    assert_ne!(again.id, ids[0]);
    assert_eq!(s.tombstones(&k).await.unwrap(), vec![t]);
    let missing = key(Kind::Tool, "acme", "never-was");
    let err = s
        .delete_entry_audited(&missing, tombstone("x", false), None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(s.tombstones(&missing).await.unwrap().is_empty());
}
