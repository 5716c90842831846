//! The device-code suite: what every backend's device codes
//! ([`DeviceCodeStore`](quiver_store::DeviceCodeStore)) and outside identities
//! ([`ExternalIdentityStore`](quiver_store::ExternalIdentityStore)) must do.

use jiff::{SignedDuration, Timestamp};
use quiver_auth::Scope;

use quiver_store::accounts::{ApiToken, NewUser};
use quiver_store::device::{DeviceStatus, DeviceToken, NewDeviceCode};
use quiver_store::Database;

fn new_code(n: &str, expires_at: Timestamp) -> NewDeviceCode {
    NewDeviceCode {
        device_code_hash: format!("device-{n}"),
        user_code_hash: format!("user-{n}"),
        client_name: format!("client {n}"),
        scopes: vec![Scope::PublishNew, Scope::Yank],
        interval_secs: 5,
        expires_at,
    }
}

fn token(n: &str) -> DeviceToken {
    DeviceToken {
        name: format!("device: {n}"),
        token_hash: format!("token-hash-{n}"),
        expires_at: None,
    }
}

/// Create, look up, poll, decide and redeem; a token is minted once, even when two
/// redeems race.
pub async fn run(db: &Database) {
    let accounts = db.accounts.clone();
    let devices = db.device_codes.clone();
    let user = accounts
        .register_user(NewUser {
            name: "devon".into(),
            email: None,
            password_hash: "$argon2id$not-checked-here".into(),
            site_role: None,
        })
        .await
        .unwrap();
    let later = Timestamp::now() + SignedDuration::from_mins(10);

    let c = devices
        .create_device_code(new_code("a", later))
        .await
        .unwrap();
    assert_eq!(c.status, DeviceStatus::Pending);
    assert_eq!(c.scopes, vec![Scope::PublishNew, Scope::Yank]);
    assert_eq!(
        (c.user_id, c.token_id, c.last_polled_at),
        (None, None, None)
    );
    let mut dup = new_code("b", later);
    dup.user_code_hash = "user-a".into();
    let e = devices.create_device_code(dup).await.unwrap_err();
    assert_eq!(e.code, quiver_model::ErrorCode::Conflict);
    assert_eq!(e.field.as_deref(), Some("user_code"));
    assert_eq!(
        devices.device_code_by_user_code("user-a").await.unwrap(),
        Some(c.clone())
    );
    assert_eq!(
        devices.device_code_by_user_code("user-x").await.unwrap(),
        None
    );

    // Polls answer the state before them.
    let t1 = Timestamp::now();
    assert_eq!(
        devices.poll_device_code("device-x", t1).await.unwrap(),
        None
    );
    let p = devices
        .poll_device_code("device-a", t1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.last_polled_at, None);
    let t2 = t1 + SignedDuration::from_secs(7);
    let p = devices
        .poll_device_code("device-a", t2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        p.last_polled_at.map(|t| t.as_millisecond()),
        Some(t1.as_millisecond())
    );
    devices.set_device_interval(c.id, 10).await.unwrap();
    let p = devices
        .poll_device_code("device-a", t2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.interval_secs, 10);

    // Nothing to redeem before approval.
    assert_eq!(
        devices
            .redeem_device_code("device-a", token("early"), None)
            .await
            .unwrap(),
        None
    );
    let d = devices
        .decide_device_code("user-a", user.id, true, Timestamp::now(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (d.status, d.user_id),
        (DeviceStatus::Approved, Some(user.id))
    );
    // Decided once.
    assert_eq!(
        devices
            .decide_device_code("user-a", user.id, false, Timestamp::now(), None)
            .await
            .unwrap(),
        None
    );

    // Two redeems race: one token.
    let (r1, r2) = tokio::join!(
        devices.redeem_device_code("device-a", token("one"), None),
        devices.redeem_device_code("device-a", token("two"), None),
    );
    let minted: Vec<ApiToken> = [r1.unwrap(), r2.unwrap()].into_iter().flatten().collect();
    assert_eq!(minted.len(), 1, "{minted:?}");
    let t = &minted[0];
    assert_eq!(t.user_id, user.id);
    assert_eq!(t.scopes, vec![Scope::PublishNew, Scope::Yank]);
    assert!(t.name.starts_with("device: "));
    assert_eq!(
        devices
            .redeem_device_code("device-a", token("three"), None)
            .await
            .unwrap(),
        None
    );
    let done = devices
        .device_code_by_user_code("user-a")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, DeviceStatus::Redeemed);
    assert_eq!(done.token_id, Some(t.id));
    let hash = if t.name == "device: one" {
        "token-hash-one"
    } else {
        "token-hash-two"
    };
    assert_eq!(
        accounts.token_by_hash(hash).await.unwrap().map(|x| x.id),
        Some(t.id)
    );

    // Denied, and expired: neither can be approved or redeemed.
    devices
        .create_device_code(new_code("c", later))
        .await
        .unwrap();
    let d = devices
        .decide_device_code("user-c", user.id, false, Timestamp::now(), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.status, DeviceStatus::Denied);
    assert_eq!(
        devices
            .redeem_device_code("device-c", token("c"), None)
            .await
            .unwrap(),
        None
    );
    let past = Timestamp::now() - SignedDuration::from_secs(1);
    devices
        .create_device_code(new_code("d", past))
        .await
        .unwrap();
    assert_eq!(
        devices
            .decide_device_code("user-d", user.id, true, Timestamp::now(), None)
            .await
            .unwrap(),
        None
    );
    // Requests expired for over a day are cleared when a new one is made.
    let long_ago = Timestamp::now() - SignedDuration::from_hours(25);
    devices
        .create_device_code(new_code("e", long_ago))
        .await
        .unwrap();
    devices
        .create_device_code(new_code("f", later))
        .await
        .unwrap();
    assert_eq!(
        devices.device_code_by_user_code("user-e").await.unwrap(),
        None
    );
    assert!(devices
        .device_code_by_user_code("user-d")
        .await
        .unwrap()
        .is_some());

    // External identities: linked once, found by provider and subject.
    let ext = db.identities.clone();
    assert_eq!(ext.external_user("hub", "42").await.unwrap(), None);
    ext.link_external("hub", "42", user.id, None).await.unwrap();
    assert_eq!(ext.external_user("hub", "42").await.unwrap(), Some(user.id));
    assert_eq!(ext.external_user("other", "42").await.unwrap(), None);
    let e = ext
        .link_external("hub", "42", user.id, None)
        .await
        .unwrap_err();
    assert_eq!(e.code, quiver_model::ErrorCode::Conflict);
}
