//! The accounts conformance suite: what every [`AccountStore`] backend must do.
//!
//! A backend's test file instantiates every check with
//! [`accounts_suite!`](crate::accounts_suite), passing the same async factory of
//! [`TestDatabase`]s as the main suite; the accounts are reached through
//! [`Database::accounts`](quiver_store::Database::accounts).

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use quiver_auth::{NamespaceRole, Scope, SiteRole};
use quiver_model::{ErrorCode, Kind, OwnerKind};

use crate::store::new_entry;
use crate::TestDatabase;
use quiver_store::accounts::{AccountStore, NewToken, NewUser};

fn accounts(t: &TestDatabase) -> Arc<dyn AccountStore> {
    t.db.accounts.clone()
}

fn new_user(name: &str) -> NewUser {
    NewUser {
        name: name.into(),
        email: Some(format!("{name}@example.org")),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{name}"),
        site_role: None,
    }
}

fn new_token(user_id: i64, name: &str, hash: &str) -> NewToken {
    NewToken {
        user_id,
        name: name.into(),
        token_hash: hash.into(),
        scopes: vec![Scope::PublishUpdate, Scope::PublishNew],
        pattern: Some("text.*".into()),
        expires_at: None,
    }
}

pub async fn register_creates_user_namespace_and_owner(t: &TestDatabase) {
    let a = accounts(t);
    assert_eq!(a.count_users().await.unwrap(), 0);
    let head = t.db.store.feed_head().await.unwrap();
    let alice = a.register_user(new_user("alice")).await.unwrap();
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.email.as_deref(), Some("alice@example.org"));
    assert_eq!(alice.site_role, None);
    assert_eq!(a.count_users().await.unwrap(), 1);

    let rec = a.get_user("alice").await.unwrap().expect("alice exists");
    assert_eq!(rec.user, alice);
    assert_eq!(rec.password_hash, new_user("alice").password_hash);
    assert_eq!(
        a.get_user_by_id(alice.id).await.unwrap(),
        Some(alice.clone())
    );
    assert!(a.get_user("nobody").await.unwrap().is_none());

    let ns =
        t.db.store
            .get_namespace("alice")
            .await
            .unwrap()
            .expect("user namespace");
    assert_eq!(ns.owner_kind, OwnerKind::User);
    let members = a.members("alice").await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        (
            members[0].user.as_str(),
            members[0].role,
            members[0].user_id
        ),
        ("alice", NamespaceRole::Owner, alice.id)
    );
    // The new namespace is in the feed, like any other namespace.
    assert_eq!(t.db.store.feed_head().await.unwrap(), head + 1);
}

/// Skill preferences: set, changed, cleared, per user, for existing skills only.
pub async fn skill_preferences_are_per_user(t: &TestDatabase) {
    use quiver_model::EntryKey;
    use quiver_store::PreferenceAction::{Hide, Pin};
    let a = accounts(t);
    let s = &t.db.store;
    let alice = a.register_user(new_user("alice")).await.unwrap();
    let bob = a.register_user(new_user("bob")).await.unwrap();
    for name in ["react-rules", "next-rules"] {
        s.create_entry(new_entry(Kind::Skill, "upskill", name, name))
            .await
            .unwrap();
    }
    let react = EntryKey::new(Kind::Skill, "upskill", "react-rules");
    let next = EntryKey::new(Kind::Skill, "upskill", "next-rules");
    let at = Timestamp::from_millisecond(1_700_000_000_000).unwrap();
    s.set_skill_preference(alice.id, "npm", "react", &react, Some(Hide), at)
        .await
        .unwrap();
    s.set_skill_preference(alice.id, "npm", "*", &next, Some(Pin), at)
        .await
        .unwrap();
    let got = s.skill_preferences(alice.id).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|p| (p.package.as_str(), p.skill.name.as_str(), p.action))
            .collect::<Vec<_>>(),
        [("*", "next-rules", Pin), ("react", "react-rules", Hide)]
    );
    assert_eq!(got[0].updated_at, at);
    assert!(s.skill_preferences(bob.id).await.unwrap().is_empty());
    // Changed, then cleared.
    s.set_skill_preference(alice.id, "npm", "react", &react, Some(Pin), at)
        .await
        .unwrap();
    assert_eq!(s.skill_preferences(alice.id).await.unwrap()[1].action, Pin);
    s.set_skill_preference(alice.id, "npm", "react", &react, None, at)
        .await
        .unwrap();
    assert_eq!(s.skill_preferences(alice.id).await.unwrap().len(), 1);
    let missing = EntryKey::new(Kind::Skill, "upskill", "nope");
    let err = s
        .set_skill_preference(alice.id, "npm", "react", &missing, Some(Hide), at)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

/// Advisories: numbered per year from 0001, found by the entries they affect, listed
/// newest first with filters, withdrawn (then left out unless asked for).
pub async fn advisories_are_numbered_indexed_and_withdrawn(t: &TestDatabase) {
    use quiver_model::EntryKey;
    use quiver_store::advisories::{AdvisoryFilter, Affected, NewAdvisory, Severity};
    let s = &t.db.store;
    let adv = &t.db.advisories;
    for name in ["fmt", "io"] {
        s.create_entry(new_entry(Kind::Module, "alice", name, name))
            .await
            .unwrap();
    }
    let fmt = EntryKey::new(Kind::Module, "alice", "fmt");
    let io = EntryKey::new(Kind::Module, "alice", "io");
    let new = |summary: &str, severity, keys: &[&EntryKey]| NewAdvisory {
        aliases: vec!["CVE-2026-0001".into()],
        summary: summary.into(),
        description: "details".into(),
        severity,
        cvss: None,
        advisory_type: None,
        recommendation: Some("upgrade".into()),
        affected: keys
            .iter()
            .map(|k| Affected {
                entry: (*k).clone(),
                range: "<1.2.0".into(),
                fixed: vec!["1.2.0".into()],
            })
            .collect(),
        reporter: Some("bob".into()),
        verified: true,
    };
    let t1 = Timestamp::from_millisecond(1_780_000_000_000).unwrap(); // 2026
    let a1 = adv
        .create_advisory(new("first", Severity::High, &[&fmt]), t1, None)
        .await
        .unwrap();
    assert_eq!(a1.id, "QVR-2026-0001");
    assert_eq!(a1.advisory_type, "vulnerability");
    let t2 = Timestamp::from_millisecond(1_780_000_001_000).unwrap();
    let a2 = adv
        .create_advisory(new("second", Severity::Low, &[&fmt, &io]), t2, None)
        .await
        .unwrap();
    assert_eq!(a2.id, "QVR-2026-0002");
    let t3 = Timestamp::from_millisecond(1_800_000_000_000).unwrap(); // 2027
    let a3 = adv
        .create_advisory(new("next year", Severity::Critical, &[&io]), t3, None)
        .await
        .unwrap();
    assert_eq!(a3.id, "QVR-2027-0001");
    // An entry that does not exist: refused, nothing written.
    let nope = EntryKey::new(Kind::Module, "alice", "nope");
    let err = adv
        .create_advisory(new("bad", Severity::Low, &[&nope]), t3, None)
        .await
        .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("affected[0].entry"));
    assert_eq!(
        adv.advisory("QVR-2026-0001").await.unwrap(),
        Some(a1.clone())
    );
    assert!(adv.advisory("QVR-2026-0404").await.unwrap().is_none());
    let all = |f: AdvisoryFilter| async move {
        adv.advisories(&f)
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.id)
            .collect::<Vec<_>>()
    };
    let f = AdvisoryFilter {
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        all(f.clone()).await,
        ["QVR-2027-0001", "QVR-2026-0002", "QVR-2026-0001"]
    );
    assert_eq!(
        all(AdvisoryFilter {
            entry: Some(fmt.clone()),
            ..f.clone()
        })
        .await,
        ["QVR-2026-0002", "QVR-2026-0001"]
    );
    assert_eq!(
        all(AdvisoryFilter {
            min_severity: Some(Severity::High),
            ..f.clone()
        })
        .await,
        ["QVR-2027-0001", "QVR-2026-0001"]
    );
    let mut of_io: Vec<String> = adv
        .advisories_of(&[io.clone(), nope.clone()])
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    of_io.sort();
    assert_eq!(of_io, ["QVR-2026-0002", "QVR-2027-0001"]);
    // Withdrawn: kept, but out of lists and lookups unless asked for.
    let w = adv
        .withdraw_advisory("QVR-2026-0002", "not a problem".into(), t3, None)
        .await
        .unwrap();
    assert_eq!(w.withdrawn_at, Some(t3));
    assert_eq!(w.withdrawn_reason.as_deref(), Some("not a problem"));
    assert_eq!(all(f.clone()).await, ["QVR-2027-0001", "QVR-2026-0001"]);
    assert_eq!(
        all(AdvisoryFilter {
            include_withdrawn: true,
            ..f.clone()
        })
        .await
        .len(),
        3
    );
    assert_eq!(
        adv.advisories_of(std::slice::from_ref(&fmt))
            .await
            .unwrap()
            .len(),
        1
    );
    let err = adv
        .withdraw_advisory("QVR-1999-0001", "x".into(), t3, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

pub async fn taken_names_conflict_and_write_nothing(t: &TestDatabase) {
    let a = accounts(t);
    a.register_user(new_user("alice")).await.unwrap();
    let e = a.register_user(new_user("alice")).await.unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Conflict, Some("name"))
    );
    // A namespace taken by entries (an organisation) cannot be claimed by a user.
    t.db.store
        .create_entry(new_entry(Kind::Tool, "acme", "x", "a tool"))
        .await
        .unwrap();
    let e = a.register_user(new_user("acme")).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert!(e.message.contains("acme"), "{e}");
    assert!(a.get_user("acme").await.unwrap().is_none());
    assert_eq!(a.count_users().await.unwrap(), 1);
    assert!(a.members("acme").await.unwrap().is_empty());
}

pub async fn organisations_and_members(t: &TestDatabase) {
    let a = accounts(t);
    let alice = a.register_user(new_user("alice")).await.unwrap();
    let bob = a.register_user(new_user("bob")).await.unwrap();
    let ns = a.create_org("acme", alice.id).await.unwrap();
    assert_eq!(
        (ns.name.as_str(), ns.owner_kind),
        ("acme", OwnerKind::Organisation)
    );
    let e = a.create_org("acme", bob.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    let e = a.create_org("bob", alice.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict, "a user namespace is taken too");

    let m = a
        .set_member("acme", bob.id, NamespaceRole::Maintainer)
        .await
        .unwrap();
    assert_eq!(
        (m.user.as_str(), m.role),
        ("bob", NamespaceRole::Maintainer)
    );
    let roles: Vec<(String, NamespaceRole)> = a
        .members("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.user, m.role))
        .collect();
    assert_eq!(
        roles,
        vec![
            ("alice".to_string(), NamespaceRole::Owner),
            ("bob".to_string(), NamespaceRole::Maintainer)
        ]
    );
    let mine: Vec<(String, NamespaceRole)> = a
        .memberships_of(bob.id)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.namespace, m.role))
        .collect();
    assert_eq!(
        mine,
        vec![
            ("acme".to_string(), NamespaceRole::Maintainer),
            ("bob".to_string(), NamespaceRole::Owner)
        ]
    );

    // The last owner can be neither demoted nor removed; nothing changes.
    let e = a
        .set_member("acme", alice.id, NamespaceRole::Viewer)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code, e.field.as_deref()),
        (ErrorCode::Conflict, Some("role"))
    );
    let e = a.remove_member("acme", alice.id).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);
    assert_eq!(
        a.members("acme").await.unwrap()[0].role,
        NamespaceRole::Owner
    );
    // With a second owner, the first may go.
    a.set_member("acme", bob.id, NamespaceRole::Owner)
        .await
        .unwrap();
    assert!(a.remove_member("acme", alice.id).await.unwrap());
    assert!(!a.remove_member("acme", alice.id).await.unwrap());
    assert_eq!(a.members("acme").await.unwrap().len(), 1);

    let e = a
        .set_member("nowhere", bob.id, NamespaceRole::Viewer)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let e = a
        .set_member("acme", 987_654, NamespaceRole::Viewer)
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

pub async fn site_roles(t: &TestDatabase) {
    let a = accounts(t);
    let mut u = new_user("root");
    u.site_role = Some(SiteRole::Admin);
    let root = a.register_user(u).await.unwrap();
    assert_eq!(root.site_role, Some(SiteRole::Admin));
    let m = a.register_user(new_user("mod")).await.unwrap();
    let m = a
        .set_site_role(m.id, Some(SiteRole::Moderator))
        .await
        .unwrap();
    assert_eq!(m.site_role, Some(SiteRole::Moderator));
    assert_eq!(
        a.get_user("mod").await.unwrap().unwrap().user.site_role,
        Some(SiteRole::Moderator)
    );
    let m = a.set_site_role(m.id, None).await.unwrap();
    assert_eq!(m.site_role, None);
    let e = a.set_site_role(999_999, None).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
}

pub async fn tokens_lifecycle(t: &TestDatabase) {
    let a = accounts(t);
    let alice = a.register_user(new_user("alice")).await.unwrap();
    let bob = a.register_user(new_user("bob")).await.unwrap();
    let t1 = a
        .create_token(new_token(alice.id, "ci", &"a".repeat(64)))
        .await
        .unwrap();
    assert_eq!(t1.name, "ci");
    assert_eq!(t1.user_id, alice.id);
    assert_eq!(t1.scopes, vec![Scope::PublishNew, Scope::PublishUpdate]);
    assert_eq!(t1.pattern.as_deref(), Some("text.*"));
    assert!(t1.revoked_at.is_none() && t1.last_used_at.is_none() && t1.expires_at.is_none());
    let expires = Timestamp::from_second(2_000_000_000).unwrap();
    let mut n2 = new_token(alice.id, "laptop", &"b".repeat(64));
    n2.expires_at = Some(expires);
    n2.pattern = None;
    n2.scopes = vec![Scope::Admin];
    let t2 = a.create_token(n2).await.unwrap();
    assert_eq!(t2.expires_at, Some(expires));
    assert!(t2.is_active(expires - SignedDuration::from_secs(1)));
    assert!(!t2.is_active(expires));

    let e = a
        .create_token(new_token(bob.id, "dup", &"a".repeat(64)))
        .await
        .unwrap_err();
    assert_eq!(e.code, ErrorCode::Conflict);

    assert_eq!(
        a.token_by_hash(&"a".repeat(64)).await.unwrap(),
        Some(t1.clone())
    );
    assert!(a.token_by_hash(&"c".repeat(64)).await.unwrap().is_none());
    let ids: Vec<i64> = a
        .list_tokens(alice.id)
        .await
        .unwrap()
        .iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, vec![t2.id, t1.id], "newest first");
    assert!(a.list_tokens(bob.id).await.unwrap().is_empty());

    let used = Timestamp::from_second(1_900_000_000).unwrap();
    a.touch_token(t1.id, used).await.unwrap();
    assert_eq!(
        a.token_by_hash(&"a".repeat(64))
            .await
            .unwrap()
            .unwrap()
            .last_used_at,
        Some(used)
    );

    // Only its owner revokes a token; revoking twice keeps the first time.
    let e = a.revoke_token(bob.id, t1.id, used).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    let r = a.revoke_token(alice.id, t1.id, used).await.unwrap();
    assert_eq!(r.revoked_at, Some(used));
    assert!(!r.is_active(used));
    let later = used + SignedDuration::from_secs(60);
    let r = a.revoke_token(alice.id, t1.id, later).await.unwrap();
    assert_eq!(r.revoked_at, Some(used));
    let stored = a.token_by_hash(&"a".repeat(64)).await.unwrap().unwrap();
    assert_eq!(stored.revoked_at, Some(used));
    assert_eq!(
        a.list_tokens(alice.id).await.unwrap().len(),
        2,
        "revoked tokens stay listed"
    );
}

pub async fn audit_log_appends_filters_and_pages(t: &TestDatabase) {
    use quiver_store::{AuditFilter, NewAuditRecord};
    let log = t.db.audit.clone();
    let rec = |actor: &str, ns: &str, outcome: &str| NewAuditRecord {
        actor: actor.into(),
        action: "entry.create".into(),
        namespace: Some(ns.into()),
        target: format!("tool/{ns}/x"),
        outcome: outcome.into(),
        reason: (outcome == "denied").then(|| "no rights".to_string()),
        diff: Some(serde_json::json!({"description": {"before": null, "after": "x"}})),
        client: (actor == "alice").then(|| "c0ffee".to_string()),
    };
    let mut ids = vec![];
    for (actor, ns, outcome) in [
        ("alice", "acme", "allowed"),
        ("bob", "acme", "denied"),
        ("alice", "beta", "allowed"),
        ("carol", "acme", "allowed"),
    ] {
        ids.push(log.append_audit(rec(actor, ns, outcome)).await.unwrap());
    }
    let all = log
        .list_audit(&AuditFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(
        all.items.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids.iter().rev().copied().collect::<Vec<_>>(),
        "newest first"
    );
    assert_eq!(all.items[2].reason.as_deref(), Some("no rights"));
    assert_eq!(all.items[2].diff, rec("bob", "acme", "denied").diff);
    assert_eq!(all.items[3].client.as_deref(), Some("c0ffee"));
    assert_eq!(all.items[2].client, None);
    assert!(all.next_cursor.is_none());
    let acme = AuditFilter {
        namespace: Some("acme".into()),
        ..Default::default()
    };
    let p1 = log.list_audit(&acme, None, 2).await.unwrap();
    let actors: Vec<&str> = p1.items.iter().map(|r| r.actor.as_str()).collect();
    assert_eq!(actors, vec!["carol", "bob"]);
    let p2 = log
        .list_audit(&acme, p1.next_cursor.as_deref(), 2)
        .await
        .unwrap();
    assert_eq!(p2.items.len(), 1);
    assert_eq!(p2.items[0].actor, "alice");
    assert!(p2.next_cursor.is_none());
    let denied = AuditFilter {
        outcome: Some("denied".into()),
        actor: Some("bob".into()),
        ..Default::default()
    };
    assert_eq!(
        log.list_audit(&denied, None, 10).await.unwrap().items.len(),
        1
    );
    // Time windows: rows at or after `since`, before `until`.
    let first_at = all.items.last().unwrap().at;
    let none_before = AuditFilter {
        until: Some(first_at),
        ..Default::default()
    };
    assert!(log
        .list_audit(&none_before, None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    let from_first = AuditFilter {
        since: Some(first_at),
        until: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(1)),
        namespace: Some("acme".into()),
        ..Default::default()
    };
    assert_eq!(
        log.list_audit(&from_first, None, 10)
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    let after_all = AuditFilter {
        since: Some(all.items[0].at + jiff::SignedDuration::from_secs(1)),
        ..Default::default()
    };
    assert!(log
        .list_audit(&after_all, None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    let e = log
        .list_audit(&AuditFilter::default(), Some("garbage"), 10)
        .await
        .unwrap_err();
    assert_eq!(e.field.as_deref(), Some("cursor"));
}

/// Instantiate every accounts check as a `#[tokio::test]` for one backend.
#[macro_export]
macro_rules! accounts_suite {
    ($factory:expr) => {
        $crate::accounts_suite!(@each $factory;
            register_creates_user_namespace_and_owner,
            taken_names_conflict_and_write_nothing,
            organisations_and_members,
            site_roles,
            tokens_lifecycle,
            skill_preferences_are_per_user,
            advisories_are_numbered_indexed_and_withdrawn,
            audit_log_appends_filters_and_pages
        );
    };
    (@each $factory:expr; $($name:ident),+) => {
        mod accounts_suite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(ts) = $factory.await else { return };
                    $crate::accounts::$name(&ts).await;
                    drop(ts);
                }
            )+
        }
    };
}
