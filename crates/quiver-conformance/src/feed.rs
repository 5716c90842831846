//! The feed waker's suite: a write wakes a subscriber of the same database, and (where
//! several processes share one database, as nodes do on PostgreSQL) a write through
//! another handle wakes it too.
//!
//! A wake is checked twice: the first may come from the subscription catching up as it
//! starts (a listener reads the head once it is connected), so a second write, made once
//! the subscription has certainly started, must wake it again on its own. The backends'
//! test factories turn off any polling fallback, so only the waker can pass these.

use std::time::Duration;

use quiver_model::Kind;
use quiver_store::{Database, FeedSubscription};

use crate::{new_entry, TestDatabase};

/// How long a wake may take (a notification round trip, with a loaded test machine).
const WAKE_WITHIN: Duration = Duration::from_secs(5);

/// Create an entry through `db` and return the feed head after it.
async fn write(db: &Database, name: &str) -> i64 {
    db.store
        .create_entry(new_entry(Kind::Tool, "acme", name, "wakes the followers"))
        .await
        .unwrap();
    db.store.feed_head().await.unwrap()
}

/// Wait until `sub` reports a head of at least `head`.
async fn woken(sub: &mut FeedSubscription, head: i64, what: &str) {
    tokio::time::timeout(WAKE_WITHIN, async { while sub.changed().await < head {} })
        .await
        .unwrap_or_else(|_| panic!("{what}: no wake with head {head} within {WAKE_WITHIN:?}"));
}

/// A write through the database wakes its subscribers, each time.
pub async fn a_write_wakes_a_subscriber(t: &TestDatabase) {
    let mut a = t.db.feed.subscribe();
    let mut b = t.db.feed.subscribe();
    let first = write(&t.db, "text.first").await;
    woken(&mut a, first, "first write, first subscriber").await;
    woken(&mut b, first, "first write, second subscriber").await;
    let second = write(&t.db, "text.second").await;
    assert!(second > first);
    woken(&mut a, second, "second write, first subscriber").await;
    woken(&mut b, second, "second write, second subscriber").await;
}

/// A write through another handle on the same database (another node) wakes a
/// subscriber of this one.
pub async fn a_write_on_another_handle_wakes_a_subscriber(t: &TestDatabase) {
    let other = t.open_another().await;
    let mut sub = t.db.feed.subscribe();
    let first = write(&other, "text.first").await;
    woken(&mut sub, first, "first write on the other handle").await;
    let second = write(&other, "text.second").await;
    woken(&mut sub, second, "second write on the other handle").await;
}
