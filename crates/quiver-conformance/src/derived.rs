//! What derived work relies on: writes committed with their audit rows
//! ([`quiver_store::AuditDraft`], the store's `*_audited` methods), durable feed-consumer
//! positions ([`quiver_store::FeedCursors`]), and queueing many jobs at once
//! ([`quiver_store::JobQueue::enqueue_many`]).

use quiver_model::{EntryKey, EntryPatch, ErrorCode, Kind, NewVersion, Relation, RelationKind};
use quiver_store::{AuditDiff, AuditDraft, AuditFilter, Database, NewAuditRecord, NewJob};
use serde_json::json;

use crate::{new_entry, TestDatabase};

fn draft(action: &str, diff: AuditDiff) -> quiver_store::Audit {
    Some(AuditDraft {
        record: NewAuditRecord {
            actor: "tester".into(),
            action: action.into(),
            namespace: Some("acme".into()),
            target: "t".into(),
            outcome: "allowed".into(),
            reason: None,
            diff: Some(json!({"given": true})),
            client: None,
        },
        diff,
    })
}

async fn rows(db: &Database, action: &str) -> Vec<quiver_store::AuditRecord> {
    let filter = AuditFilter {
        action: Some(action.into()),
        ..AuditFilter::default()
    };
    db.audit.list_audit(&filter, None, 100).await.unwrap().items
}

/// Every check, on one fresh database.
pub async fn run(ts: &TestDatabase) {
    new_versions(&ts.db).await;
    audited_writes(&ts.db).await;
    feed_cursors(ts).await;
    enqueue_many(&ts.db).await;
}

/// The entries that got versions in a window of the feed, each once, without the
/// skipped namespaces.
async fn new_versions(db: &Database) {
    let s = &db.store;
    let start = s.feed_head().await.unwrap();
    let v = |n: &str| {
        quiver_store::valid_version(
            Kind::Package,
            NewVersion {
                version: n.into(),
                manifest: json!({}),
                changelog: None,
                breaking: false,
            },
        )
        .unwrap()
    };
    let a = s
        .create_entry(new_entry(Kind::Package, "acme", "with-versions", "a"))
        .await
        .unwrap();
    let b = s
        .create_entry(new_entry(Kind::Package, "mirror", "skipped", "b"))
        .await
        .unwrap();
    s.create_entry(new_entry(Kind::Package, "acme", "no-versions", "c"))
        .await
        .unwrap();
    for n in ["1.0.0", "1.1.0"] {
        s.publish_version(&a.key(), v(n)).await.unwrap();
        s.publish_version(&b.key(), v(n)).await.unwrap();
    }
    let head = s.feed_head().await.unwrap();
    let skip = vec!["mirror".to_string()];
    let ids = s
        .entries_with_new_versions(start, head, &skip)
        .await
        .unwrap();
    assert_eq!(ids, vec![a.id], "once, and not the skipped namespace's");
    let all = s.entries_with_new_versions(start, head, &[]).await.unwrap();
    assert_eq!(all.len(), 2);
    // A window before the versions has none.
    let none = s
        .entries_with_new_versions(start, start + 3, &[])
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

/// Each audited write commits exactly one row with it; a refused write commits none.
async fn audited_writes(db: &Database) {
    let s = &db.store;
    let e = s
        .create_entry_audited(
            new_entry(Kind::Tool, "acme", "audited.one", "an audited entry"),
            draft("entry.create", AuditDiff::Created),
        )
        .await
        .unwrap();
    let created = rows(db, "entry.create").await;
    assert_eq!(created.len(), 1);
    // The diff of a created thing is every field of what was stored, from nothing.
    let d = created[0].diff.clone().unwrap();
    assert_eq!(d["id"]["after"], json!(e.id), "{d}");
    assert_eq!(d["name"]["before"], json!(null));

    // A refused write (the name is taken) leaves no row.
    let dup = s
        .create_entry_audited(
            new_entry(Kind::Tool, "acme", "audited.one", "again"),
            draft("entry.create", AuditDiff::Created),
        )
        .await
        .unwrap_err();
    assert_eq!(dup.code, ErrorCode::Conflict);
    assert_eq!(
        rows(db, "entry.create").await.len(),
        1,
        "no row without its write"
    );

    let key = EntryKey::new(Kind::Tool, "acme", "audited.one");
    let before = serde_json::to_value(&e).unwrap();
    s.update_entry_audited(
        &key,
        EntryPatch {
            description: Some("changed".into()),
            ..EntryPatch::default()
        },
        draft("entry.update", AuditDiff::Changed(before)),
    )
    .await
    .unwrap();
    let updated = rows(db, "entry.update").await;
    assert_eq!(updated.len(), 1);
    let d = updated[0].diff.clone().unwrap();
    assert_eq!(d["description"]["after"], "changed", "{d}");
    assert!(d.get("name").is_none(), "only changed fields: {d}");

    let v = |n: &str| {
        quiver_store::valid_version(
            Kind::Tool,
            NewVersion {
                version: n.into(),
                manifest: json!({"summary": n}),
                changelog: None,
                breaking: false,
            },
        )
        .unwrap()
    };
    s.publish_version_audited(&key, v("1.0.0"), draft("version.publish", AuditDiff::Given))
        .await
        .unwrap();
    // Publishing it again is refused (versions are immutable): still one row.
    s.publish_version_audited(&key, v("1.0.0"), draft("version.publish", AuditDiff::Given))
        .await
        .unwrap_err();
    let published = rows(db, "version.publish").await;
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].diff,
        Some(json!({"given": true})),
        "given as is"
    );

    s.set_yanked_audited(
        &key,
        "1.0.0",
        true,
        Some("broken".into()),
        draft("version.yank", AuditDiff::Given),
    )
    .await
    .unwrap();
    s.set_yanked_audited(
        &key,
        "9.9.9",
        true,
        None,
        draft("version.yank", AuditDiff::Given),
    )
    .await
    .unwrap_err();
    assert_eq!(rows(db, "version.yank").await.len(), 1);

    s.create_entry(new_entry(Kind::Package, "acme", "other", "the other end"))
        .await
        .unwrap();
    let rel = Relation {
        kind: RelationKind::DependsOn,
        from: key.clone(),
        to: EntryKey::new(Kind::Package, "acme", "other"),
        confidence: None,
        source: None,
        step_order: None,
    };
    for _ in 0..2 {
        s.add_relation_audited(rel.clone(), draft("relation.add", AuditDiff::Created))
            .await
            .unwrap();
    }
    assert_eq!(
        rows(db, "relation.add").await.len(),
        1,
        "adding an identical relation writes nothing, so no row"
    );
}

/// Positions start at 0, move forward only by compare-and-set, and are shared by every
/// handle on the database.
async fn feed_cursors(ts: &TestDatabase) {
    let c = &ts.db.cursors;
    assert_eq!(c.cursor("gates").await.unwrap(), 0);
    assert!(c.advance_cursor("gates", 0, 5).await.unwrap());
    assert_eq!(c.cursor("gates").await.unwrap(), 5);
    assert!(
        !c.advance_cursor("gates", 0, 7).await.unwrap(),
        "stale from"
    );
    assert!(
        !c.advance_cursor("gates", 4, 7).await.unwrap(),
        "stale from"
    );
    assert_eq!(c.cursor("gates").await.unwrap(), 5);
    let back = c.advance_cursor("gates", 5, 3).await.unwrap_err();
    assert_eq!(back.code, ErrorCode::InvalidInput);
    assert!(c.advance_cursor("gates", 5, 9).await.unwrap());
    // Another consumer is apart; a later move from a never-moved one is stale.
    assert_eq!(c.cursor("hooks").await.unwrap(), 0);
    assert!(!c.advance_cursor("hooks", 3, 4).await.unwrap());

    let other = ts.open_another().await;
    assert_eq!(other.cursors.cursor("gates").await.unwrap(), 9);

    // Racing moves from one position: exactly one wins.
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let c = if i % 2 == 0 {
                ts.db.cursors.clone()
            } else {
                other.cursors.clone()
            };
            tokio::spawn(async move { c.advance_cursor("gates", 9, 10 + i).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

/// Many jobs in one call, deduplicated against unfinished jobs and among themselves.
async fn enqueue_many(db: &Database) {
    let job = |k: &str| NewJob::new("derived", json!({"k": k})).dedup_key(format!("d:{k}"));
    let first = db.jobs.enqueue(job("a")).await.unwrap();
    let ids = db
        .jobs
        .enqueue_many(vec![job("a"), job("b"), job("b"), job("c")])
        .await
        .unwrap();
    assert_eq!(ids.len(), 4);
    assert_eq!(ids[0], first, "an unfinished job's key answers that job");
    assert_eq!(ids[1], ids[2], "one job per key within the batch too");
    assert_ne!(ids[1], ids[3]);
    // An invalid job refuses the whole batch.
    let bad = NewJob::new("derived", json!({})).dedup_key("");
    assert!(db.jobs.enqueue_many(vec![job("d"), bad]).await.is_err());
    let none = db.jobs.enqueue_many(vec![job("d")]).await.unwrap();
    assert_eq!(none.len(), 1);
}
