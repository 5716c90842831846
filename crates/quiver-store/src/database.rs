//! One handle on one database: [`Database`] bundles every part a capability needs, and
//! every part is always there.
//!
//! A backend builds the whole handle (`quiver_sqlite::open`, `quiver_postgres::open`);
//! callers pick the part they need (`db.jobs`, `db.accounts`, …) and never ask whether the
//! database has one. A new capability adds its part here, its migration on both backends
//! and its suite in `quiver-conformance`, so a backend that lacks it does not compile.
//!
//! [`FeedWaker`] tells followers of the change feed (the search index, other derived
//! views) that the feed has advanced, whoever wrote: on SQLite, an in-process signal sent
//! after each commit that appended feed rows (one process owns the file; other processes'
//! writes are found by polling); on PostgreSQL, `LISTEN`/`NOTIFY`, so a write on any node
//! wakes the followers of every node.

use std::sync::Arc;

use tokio::sync::watch;

use crate::{
    AccountStore, AuditLog, DeviceCodeStore, ExternalIdentityStore, FeedCursors, JobQueue,
    PipelineStore, RateLimiter, Store, TelemetryStore, Throttle,
};

/// Every part of one database. Cloning is cheap (the parts are shared).
#[derive(Clone)]
pub struct Database {
    /// Entries, versions, relations, documents and the change feed.
    pub store: Arc<dyn Store>,
    /// The durable job queue.
    pub jobs: Arc<dyn JobQueue>,
    /// Users, organisations, memberships and API tokens.
    pub accounts: Arc<dyn AccountStore>,
    /// The audit log.
    pub audit: Arc<dyn AuditLog>,
    /// The per-request rate limits' counts: in the database where every node must share
    /// them (PostgreSQL), in memory where one process is the whole server (SQLite: a write
    /// per request would queue reads behind the file's write lock).
    pub rate_limiter: Arc<dyn RateLimiter>,
    /// Durable counters in the database, shared by every node using it: for rare events
    /// that must be counted exactly once each, whatever the concurrency (a trusted
    /// publisher's daily auto-publishes). Windows are aligned to the epoch, so a 24 h
    /// window is the UTC day.
    pub counters: Arc<dyn RateLimiter>,
    /// The credential throttle's attempt counts (GCRA per key), in the database on both
    /// backends: every node shares them and a restart forgets no lockout.
    pub throttle: Arc<dyn Throttle>,
    /// Device authorization requests (RFC 8628).
    pub device_codes: Arc<dyn DeviceCodeStore>,
    /// Links to outside sign-in providers.
    pub identities: Arc<dyn ExternalIdentityStore>,
    /// Wakes followers of the change feed.
    pub feed: Arc<dyn FeedWaker>,
    /// Durable positions of the feed's consumers (derived work done once per event).
    pub cursors: Arc<dyn FeedCursors>,
    /// Tool executions and their hourly roll-ups.
    pub telemetry: Arc<dyn TelemetryStore>,
    /// The recipe pipeline's queue, results, blocks, valves, checksums and requests.
    pub pipeline: Arc<dyn PipelineStore>,
    /// Security advisories and the entries they affect.
    pub advisories: Arc<dyn crate::advisories::AdvisoryStore>,
    /// Counted downloads and resolutions, and the popularity refreshed from them.
    pub downloads: Arc<dyn crate::downloads::DownloadStore>,
    /// Webhook subscriptions and their deliveries.
    pub webhooks: Arc<dyn crate::webhooks::WebhookStore>,
}

impl Database {
    /// The backend's short name (`sqlite`, `postgres`).
    pub fn backend(&self) -> &'static str {
        self.store.backend()
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

/// Tells followers of the change feed that it has advanced.
pub trait FeedWaker: Send + Sync + 'static {
    /// Start following: the subscription wakes after the feed advances. Subscribe once
    /// per follower and keep the subscription (on PostgreSQL it holds a connection).
    fn subscribe(&self) -> FeedSubscription;
}

/// One follower's subscription to the feed's head.
///
/// Heads only grow and are coalesced: a busy follower sees the newest head, not every one
/// in between. A wake is a hint: read `Store::feed_since(position)` until it returns
/// nothing. Wakes may be spurious (a reconnect re-reads the head), never missing for a
/// write committed through the same database (another process writing an SQLite file is
/// found only by polling).
pub struct FeedSubscription {
    heads: watch::Receiver<i64>,
    /// Whatever produces the heads and must live as long as the subscription (the
    /// PostgreSQL listener's connection).
    _source: Box<dyn Send + Sync>,
}

impl FeedSubscription {
    /// A subscription to the heads `heads` receives, keeping `source` alive with it.
    pub fn new(heads: watch::Receiver<i64>, source: impl Send + Sync + 'static) -> Self {
        FeedSubscription {
            heads,
            _source: Box::new(source),
        }
    }

    /// Wait until the head moves past the last one this subscription returned, and return
    /// the newest. Waits forever if the source has ended (followers also poll).
    pub async fn changed(&mut self) -> i64 {
        if self.heads.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        *self.heads.borrow_and_update()
    }

    /// The newest head heard of so far.
    pub fn head(&self) -> i64 {
        *self.heads.borrow()
    }
}

/// A feed waker for one process: the backend calls [`LocalFeed::advanced`] after a commit
/// that appended to the feed, and every subscription of this handle wakes.
#[derive(Debug)]
pub struct LocalFeed {
    head: watch::Sender<i64>,
}

impl LocalFeed {
    /// A waker whose heads start at `head` (the feed's head when the database was opened).
    pub fn new(head: i64) -> Self {
        LocalFeed {
            head: watch::Sender::new(head),
        }
    }

    /// The feed's head is now `head`: wake the subscribers if it grew.
    pub fn advanced(&self, head: i64) {
        self.head.send_if_modified(|cur| {
            if head > *cur {
                *cur = head;
                true
            } else {
                false
            }
        });
    }
}

impl FeedWaker for LocalFeed {
    fn subscribe(&self) -> FeedSubscription {
        FeedSubscription::new(self.head.subscribe(), ())
    }
}
