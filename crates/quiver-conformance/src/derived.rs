//! What derived work relies on: writes committed with their audit rows
//! ([`quiver_store::AuditDraft`], the store's `*_audited` methods), durable feed-consumer
//! positions ([`quiver_store::FeedCursors`]), and queueing many jobs at once
//! ([`quiver_store::JobQueue::enqueue_many`]).

use jiff::{SignedDuration, Timestamp};
use quiver_auth::{NamespaceRole, Scope, SiteRole};
use quiver_model::{
    EntryKey, EntryPatch, ErrorCode, Kind, NewDocument, NewVersion, Relation, RelationKind,
};
use quiver_store::audit::WRITTEN_ID;
use quiver_store::device::{DeviceToken, NewDeviceCode};
use quiver_store::{
    AuditDiff, AuditDraft, AuditFilter, Database, NewAuditRecord, NewJob, NewToken, NewUser,
};
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
    audited_account_writes(&ts.db).await;
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

/// The account writes (users, namespaces, members, roles, tokens, device sign-ins,
/// outside identities, documents) commit their rows the same way: one per write, none
/// for a refused one, and a `Stored` diff made from what the store saw in the write.
async fn audited_account_writes(db: &Database) {
    let a = &db.accounts;
    let user = |name: &str| NewUser {
        name: name.into(),
        email: None,
        password_hash: "$argon2id$not-checked-here".into(),
        site_role: None,
    };
    let ann = a
        .register_user_audited(user("ann"), draft("user.register", AuditDiff::Created))
        .await
        .unwrap();
    let e = a
        .register_user_audited(user("ann"), draft("user.register", AuditDiff::Created))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let registered = rows(db, "user.register").await;
    assert_eq!(registered.len(), 1, "no row for the refused registration");
    let d = registered[0].diff.clone().unwrap();
    assert_eq!(d["id"]["after"], json!(ann.id), "{d}");
    assert!(d.get("password_hash").is_none(), "no hash in the log: {d}");
    let ben = a.register_user(user("ben")).await.unwrap();

    a.create_org_audited(
        "aud-org",
        ann.id,
        draft("namespace.create", AuditDiff::Created),
    )
    .await
    .unwrap();
    a.create_org_audited(
        "aud-org",
        ben.id,
        draft("namespace.create", AuditDiff::Created),
    )
    .await
    .unwrap_err();
    assert_eq!(rows(db, "namespace.create").await.len(), 1);

    let set = |id, role| {
        a.set_member_audited("aud-org", id, role, draft("member.set", AuditDiff::Stored))
    };
    set(ben.id, NamespaceRole::Maintainer).await.unwrap();
    set(ben.id, NamespaceRole::Owner).await.unwrap();
    set(ben.id, NamespaceRole::Owner).await.unwrap();
    set(ann.id, NamespaceRole::Maintainer).await.unwrap();
    // Demoting the last owner is refused: no row.
    set(ben.id, NamespaceRole::Maintainer).await.unwrap_err();
    let sets = rows(db, "member.set").await; // newest first
    assert_eq!(sets.len(), 4, "{sets:?}");
    let d = sets[0].diff.clone().unwrap();
    assert_eq!(
        d,
        json!({"role": {"before": "owner", "after": "maintainer"}})
    );
    assert_eq!(
        sets[1].diff,
        Some(json!({})),
        "an unchanged role changes nothing"
    );
    let d = sets[2].diff.clone().unwrap();
    assert_eq!(
        d,
        json!({"role": {"before": "maintainer", "after": "owner"}})
    );
    let d = sets[3].diff.clone().unwrap();
    assert_eq!(
        d["role"],
        json!({"before": null, "after": "maintainer"}),
        "{d}"
    );

    let remove =
        |id| a.remove_member_audited("aud-org", id, draft("member.remove", AuditDiff::Stored));
    assert!(remove(ann.id).await.unwrap());
    assert!(!remove(ann.id).await.unwrap(), "not a member any more");
    remove(ben.id).await.unwrap_err(); // the last owner stays
    let removed = rows(db, "member.remove").await;
    assert_eq!(removed.len(), 1, "{removed:?}");
    let d = removed[0].diff.clone().unwrap();
    assert_eq!(
        d["role"],
        json!({"before": "maintainer", "after": null}),
        "{d}"
    );

    a.set_site_role_audited(
        ben.id,
        Some(SiteRole::Moderator),
        draft("user.site_role", AuditDiff::Stored),
    )
    .await
    .unwrap();
    a.set_site_role_audited(i64::MAX, None, draft("user.site_role", AuditDiff::Stored))
        .await
        .unwrap_err();
    let roles = rows(db, "user.site_role").await;
    assert_eq!(roles.len(), 1);
    assert_eq!(
        roles[0].diff,
        Some(json!({"site_role": {"before": null, "after": "moderator"}}))
    );

    let mut token_draft = draft("token.create", AuditDiff::Created);
    if let Some(d) = &mut token_draft {
        d.record.target = format!("token {WRITTEN_ID}");
    }
    let t = a
        .create_token_audited(
            NewToken {
                user_id: ben.id,
                name: "ci".into(),
                token_hash: "aud-hash-1".into(),
                scopes: vec![Scope::Yank],
                pattern: None,
                expires_at: None,
            },
            token_draft.clone(),
        )
        .await
        .unwrap();
    let e = a
        .create_token_audited(
            NewToken {
                user_id: i64::MAX,
                name: "nobody's".into(),
                token_hash: "aud-hash-2".into(),
                scopes: vec![Scope::Yank],
                pattern: None,
                expires_at: None,
            },
            token_draft.clone(),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let made = rows(db, "token.create").await;
    assert_eq!(made.len(), 1);
    assert_eq!(
        made[0].target,
        format!("token {}", t.id),
        "the id the store gave"
    );

    let now = Timestamp::now();
    let r = a
        .revoke_token_audited(ben.id, t.id, now, draft("token.revoke", AuditDiff::Stored))
        .await
        .unwrap();
    a.revoke_token_audited(ann.id, t.id, now, draft("token.revoke", AuditDiff::Stored))
        .await
        .unwrap_err(); // not ann's
    let revoked = rows(db, "token.revoke").await;
    assert_eq!(revoked.len(), 1);
    assert_eq!(
        revoked[0].diff,
        Some(json!({"revoked_at": {"before": null, "after": r.revoked_at}})),
        "only what the revocation changed"
    );

    // A device sign-in: the decision and the minted token, each with its row.
    let devices = &db.device_codes;
    devices
        .create_device_code(NewDeviceCode {
            device_code_hash: "aud-device".into(),
            user_code_hash: "aud-user".into(),
            client_name: "aud client".into(),
            scopes: vec![Scope::Yank],
            interval_secs: 5,
            expires_at: Timestamp::now() + SignedDuration::from_mins(10),
        })
        .await
        .unwrap();
    let decide = |code: &'static str| {
        devices.decide_device_code(
            code,
            ben.id,
            true,
            Timestamp::now(),
            draft("device.approve", AuditDiff::Given),
        )
    };
    assert!(decide("aud-user").await.unwrap().is_some());
    assert!(
        decide("aud-user").await.unwrap().is_none(),
        "decided already"
    );
    assert!(decide("aud-nobody").await.unwrap().is_none());
    assert_eq!(rows(db, "device.approve").await.len(), 1);
    let redeem = || {
        devices.redeem_device_code(
            "aud-device",
            DeviceToken {
                name: "device: aud".into(),
                token_hash: "aud-device-token".into(),
                expires_at: None,
            },
            token_draft.clone(),
        )
    };
    let minted = redeem().await.unwrap().unwrap();
    assert!(
        redeem().await.unwrap().is_none(),
        "a token is handed out once"
    );
    let made = rows(db, "token.create").await;
    assert_eq!(made.len(), 2, "{made:?}");
    assert_eq!(made[0].target, format!("token {}", minted.id));

    let ext = &db.identities;
    ext.link_external("hub", "aud-1", ben.id, draft("user.link", AuditDiff::Given))
        .await
        .unwrap();
    ext.link_external("hub", "aud-1", ann.id, draft("user.link", AuditDiff::Given))
        .await
        .unwrap_err();
    assert_eq!(rows(db, "user.link").await.len(), 1);

    let doc = |body| vec![NewDocument::new("aud-docs", "k", body)];
    db.store
        .put_documents_audited(doc(json!({"level": 1})), draft("doc.put", AuditDiff::Given))
        .await
        .unwrap();
    // Every document rejected: nothing written, no row.
    db.store
        .put_documents_audited(
            doc(json!({"x": "\u{0}"})),
            draft("doc.put", AuditDiff::Given),
        )
        .await
        .unwrap();
    assert_eq!(rows(db, "doc.put").await.len(), 1);
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
