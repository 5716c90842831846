//! Webhook subscriptions and deliveries ([`quiver_store::webhooks::WebhookStore`]):
//! secrets kept apart from the body and out of audit diffs, owners' lists, deliveries
//! unique per subscription and event key (a repeated fan-out adds nothing), attempts
//! moving a delivery to succeeded, pending with its next time, or dead, the run of
//! failures that disables a subscription with its audit row in the same transaction, and
//! deletion taking the deliveries with it. Checked across two handles.

use jiff::{SignedDuration, Timestamp};
use quiver_model::ErrorCode;
use quiver_store::webhooks::{
    Attempt, DeliveryState, NewDelivery, Webhook, WebhookFilter, WebhookOwner,
};
use quiver_store::{AuditDiff, AuditDraft, AuditFilter, Database, NewAuditRecord, NewUser};
use serde_json::json;

fn draft(action: &str) -> quiver_store::Audit {
    Some(AuditDraft {
        record: NewAuditRecord {
            actor: "tester".into(),
            action: action.into(),
            namespace: None,
            target: "webhook".into(),
            outcome: "allowed".into(),
            reason: None,
            diff: None,
            client: None,
        },
        diff: AuditDiff::Stored,
    })
}

fn webhook(owner: WebhookOwner, url: &str, secret: &str) -> Webhook {
    let now = Timestamp::now();
    Webhook {
        id: 0,
        owner,
        url: url.into(),
        filter: WebhookFilter {
            events: vec!["version.published".into()],
            ..WebhookFilter::default()
        },
        active: true,
        disabled_reason: None,
        consecutive_failures: 0,
        secret: secret.into(),
        previous_secret: None,
        previous_secret_until: None,
        created_at: now,
        updated_at: now,
    }
}

fn delivery(webhook_id: i64, key: &str) -> NewDelivery {
    NewDelivery {
        webhook_id,
        event_key: key.into(),
        event: "version.published".into(),
        payload: json!({"event": "version.published", "key": key}),
        redelivery_of: None,
    }
}

fn failed(at: Timestamp, retry_at: Option<Timestamp>) -> Attempt {
    Attempt {
        at,
        ok: false,
        status: Some(500),
        duration_ms: 3,
        error: Some("HTTP 500".into()),
        retry_at,
    }
}

async fn audit_rows(db: &Database, action: &str) -> Vec<quiver_store::AuditRecord> {
    let filter = AuditFilter {
        action: Some(action.into()),
        ..AuditFilter::default()
    };
    db.audit.list_audit(&filter, None, 100).await.unwrap().items
}

/// Every check, on one database and a second handle on it.
pub async fn run(db: &Database, other: &Database) {
    let ann = db
        .accounts
        .register_user(NewUser {
            name: "hookann".into(),
            email: None,
            password_hash: "$argon2id$not-checked-here".into(),
            site_role: None,
        })
        .await
        .unwrap();
    let s = &db.webhooks;
    let o = &other.webhooks;

    // Create: ids assigned, secrets kept apart, read back on the other handle.
    let a = s
        .create_webhook(
            webhook(WebhookOwner::User(ann.id), "http://127.0.0.1:9/a", "sec-a"),
            draft("webhook.create"),
        )
        .await
        .unwrap();
    assert!(a.id > 0);
    let b = s
        .create_webhook(
            webhook(
                WebhookOwner::Namespace("acme".into()),
                "http://127.0.0.1:9/b",
                "sec-b",
            ),
            None,
        )
        .await
        .unwrap();
    let got = o.webhook(a.id).await.unwrap().unwrap();
    assert_eq!(got, a);
    assert_eq!(got.secret, "sec-a");
    assert!(!format!("{got:?}").contains("sec-a"), "no secret in Debug");
    assert!(!serde_json::to_string(&got).unwrap().contains("sec-a"));
    let created = audit_rows(db, "webhook.create").await;
    assert_eq!(created.len(), 1);
    let diff = serde_json::to_string(&created[0].diff).unwrap();
    assert!(diff.contains("127.0.0.1:9/a"), "{diff}");
    assert!(
        !diff.contains("sec-a"),
        "no secret in the audit diff: {diff}"
    );
    assert!(o.webhook(a.id + b.id + 100).await.unwrap().is_none());

    // Lists by owner, and all.
    let mine = o.webhooks(Some(&WebhookOwner::User(ann.id))).await.unwrap();
    assert_eq!(mine.iter().map(|w| w.id).collect::<Vec<_>>(), vec![a.id]);
    let acme = o
        .webhooks(Some(&WebhookOwner::Namespace("acme".into())))
        .await
        .unwrap();
    assert_eq!(acme.iter().map(|w| w.id).collect::<Vec<_>>(), vec![b.id]);
    assert_eq!(o.webhooks(None).await.unwrap().len(), 2);

    // Update: fields and secrets written, the owner kept.
    let mut changed = a.clone();
    changed.url = "http://127.0.0.1:9/a2".into();
    changed.secret = "sec-a2".into();
    changed.previous_secret = Some("sec-a".into());
    changed.previous_secret_until = Some(Timestamp::now() + SignedDuration::from_hours(1));
    changed.owner = WebhookOwner::User(ann.id + 1000);
    let up = s
        .update_webhook(changed, draft("webhook.update"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        up.owner,
        WebhookOwner::User(ann.id),
        "the owner never moves"
    );
    let got = o.webhook(a.id).await.unwrap().unwrap();
    assert_eq!(got.url, "http://127.0.0.1:9/a2");
    assert_eq!(
        got.signing_secrets(Timestamp::now()),
        vec!["sec-a2", "sec-a"]
    );
    let updated = audit_rows(db, "webhook.update").await;
    let diff = serde_json::to_string(&updated[0].diff).unwrap();
    assert!(diff.contains("a2"), "{diff}");
    assert!(
        !diff.contains("sec-a"),
        "no secret in the audit diff: {diff}"
    );
    let mut gone = a.clone();
    gone.id = a.id + b.id + 100;
    assert!(s.update_webhook(gone, None).await.unwrap().is_none());

    // Deliveries: unique per subscription and key, from either handle.
    let now = Timestamp::now();
    let ids = s
        .add_deliveries(vec![delivery(a.id, "1:x"), delivery(a.id, "2:x")], now)
        .await
        .unwrap();
    assert_eq!(ids.len(), 2);
    let again = o
        .add_deliveries(
            vec![
                delivery(a.id, "2:x"),
                delivery(b.id, "2:x"),
                delivery(a.id, "1:x"),
            ],
            now,
        )
        .await
        .unwrap();
    assert_eq!(again[0], ids[1]);
    assert_eq!(again[2], ids[0]);
    assert_ne!(
        again[1], ids[1],
        "another subscription's delivery is its own"
    );
    let e = s
        .add_deliveries(vec![delivery(a.id + b.id + 100, "1:x")], now)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let d = o.delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!(d.state, DeliveryState::Pending);
    assert_eq!(d.attempts, 0);
    assert_eq!(d.event_key, "1:x");
    assert_eq!(d.payload["key"], "1:x");
    let listed = o.deliveries(a.id, None, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![ids[1], ids[0]],
        "newest first"
    );
    let older = o.deliveries(a.id, Some(ids[1]), 10).await.unwrap();
    assert_eq!(older.iter().map(|d| d.id).collect::<Vec<_>>(), vec![ids[0]]);

    // Attempts: a failure with a retry stays pending, a success ends it and resets
    // the run; a repeated record on a finished delivery changes nothing.
    let later = now + SignedDuration::from_secs(2);
    let r = s
        .record_attempt(
            ids[0],
            failed(now, Some(later)),
            3,
            draft("webhook.disable"),
        )
        .await
        .unwrap();
    assert!(!r.disabled);
    assert_eq!(r.delivery.state, DeliveryState::Pending);
    assert_eq!(r.delivery.attempts, 1);
    assert_eq!(r.delivery.next_attempt_at, Some(later));
    assert_eq!(r.delivery.last_status, Some(500));
    assert_eq!(
        o.webhook(a.id).await.unwrap().unwrap().consecutive_failures,
        1
    );
    let ok = Attempt {
        at: later,
        ok: true,
        status: Some(204),
        duration_ms: 5,
        error: None,
        retry_at: None,
    };
    let r = o
        .record_attempt(ids[0], ok.clone(), 3, draft("webhook.disable"))
        .await
        .unwrap();
    assert_eq!(r.delivery.state, DeliveryState::Succeeded);
    assert_eq!(r.delivery.attempts, 2);
    assert_eq!(r.delivery.delivered_at, Some(later));
    assert_eq!(r.delivery.last_duration_ms, Some(5));
    assert_eq!(
        s.webhook(a.id).await.unwrap().unwrap().consecutive_failures,
        0
    );
    let r = s
        .record_attempt(ids[0], failed(later, None), 3, None)
        .await
        .unwrap();
    assert_eq!(
        r.delivery.state,
        DeliveryState::Succeeded,
        "finished stays so"
    );
    assert_eq!(r.delivery.attempts, 2);

    // A run of failures: dead after the last attempt, the subscription disabled with
    // its audit row when the run reaches its length, once.
    let r = s
        .record_attempt(
            ids[1],
            failed(now, Some(later)),
            3,
            draft("webhook.disable"),
        )
        .await
        .unwrap();
    assert!(!r.disabled);
    let r = s
        .record_attempt(ids[1], failed(now, None), 3, draft("webhook.disable"))
        .await
        .unwrap();
    assert_eq!(r.delivery.state, DeliveryState::Dead);
    assert!(!r.disabled);
    assert!(audit_rows(db, "webhook.disable").await.is_empty());
    let r = o
        .record_attempt(again[1], failed(now, None), 1, draft("webhook.disable"))
        .await
        .unwrap();
    assert!(r.disabled, "b's first failure with a run of one");
    let more = s
        .add_deliveries(vec![delivery(a.id, "3:x")], now)
        .await
        .unwrap();
    let r = s
        .record_attempt(more[0], failed(now, None), 3, draft("webhook.disable"))
        .await
        .unwrap();
    assert!(r.disabled, "the third failure in a row");
    let w = o.webhook(a.id).await.unwrap().unwrap();
    assert!(!w.active);
    assert_eq!(w.consecutive_failures, 3);
    assert!(w.disabled_reason.unwrap().contains("3 failed"));
    assert_eq!(audit_rows(db, "webhook.disable").await.len(), 2);
    let e = s
        .record_attempt(a.id + b.id + 1000, failed(now, None), 3, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);

    // Many attempts at once: each recorded, a gone delivery skipped.
    let batch = s
        .add_deliveries(vec![delivery(b.id, "9:x"), delivery(b.id, "10:x")], now)
        .await
        .unwrap();
    let recs = o
        .record_attempts(vec![
            (batch[0], ok.clone(), 0, None),
            (batch[1], failed(now, Some(later)), 0, None),
            (a.id + b.id + 1000, ok.clone(), 0, None),
        ])
        .await
        .unwrap();
    assert_eq!(recs.len(), 2);
    let state = |id: i64| {
        recs.iter()
            .find(|r| r.delivery.id == id)
            .unwrap()
            .delivery
            .state
    };
    assert_eq!(state(batch[0]), DeliveryState::Succeeded);
    assert_eq!(state(batch[1]), DeliveryState::Pending);
    assert_eq!(
        s.delivery(batch[1]).await.unwrap().unwrap().next_attempt_at,
        Some(later)
    );

    // Deletion takes the deliveries with it.
    assert!(o
        .delete_webhook(a.id, draft("webhook.delete"))
        .await
        .unwrap());
    assert!(!s.delete_webhook(a.id, None).await.unwrap());
    assert!(s.webhook(a.id).await.unwrap().is_none());
    assert!(s.delivery(ids[0]).await.unwrap().is_none());
    assert!(s.deliveries(a.id, None, 10).await.unwrap().is_empty());
    assert_eq!(audit_rows(db, "webhook.delete").await.len(), 1);
    assert!(s.webhook(b.id).await.unwrap().is_some());
}
