//! Webhook subscriptions and their deliveries (migration `0025_webhooks` on both
//! backends).
//!
//! A subscription belongs to a user or a namespace, names a target URL and a filter
//! (event types, kinds, namespaces, entries), and keeps the secret its deliveries are
//! signed with: the secret itself (the server must sign with it), in a column of its own,
//! never in the JSON body, never in `Debug` output, never in an audit diff. A rotation
//! keeps the previous secret until `previous_secret_until`, and deliveries are signed with
//! both meanwhile.
//!
//! A delivery is one event for one subscription, unique by `(webhook_id, event_key)`, so a
//! feed consumer that repeats its work after a crash adds nothing twice. Its state moves
//! `pending` → `succeeded`, or `pending` → `dead` after the last attempt;
//! [`WebhookStore::record_attempt`] records one attempt and, in the same transaction,
//! the subscription's run of consecutive failures, disabling it (with its audit row) when
//! the run reaches the given length.

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Error, Kind, Result};
use serde::{Deserialize, Serialize};

use crate::Audit;

/// Who owns a subscription: a user, or a namespace (managed by its owners).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOwner {
    /// A user's id.
    User(i64),
    /// A namespace's name.
    Namespace(String),
}

/// The event types a subscription can ask for.
pub const EVENT_TYPES: &[&str] = &[
    "version.published",
    "version.yanked",
    "version.deleted",
    "entry.deprecated",
    "entry.deleted",
];

/// The event a test delivery (`POST …/test`) sends; always delivered, whatever the filter.
pub const PING: &str = "ping";

/// Which events a subscription receives. An empty list means "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookFilter {
    /// Event types (see the webhooks section of the README).
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub kinds: Vec<Kind>,
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Entries as `kind/namespace/name`.
    #[serde(default)]
    pub entries: Vec<String>,
}

impl WebhookFilter {
    /// Whether an event of `event` type about `kind/namespace/name` passes.
    pub fn matches(&self, event: &str, kind: Kind, namespace: &str, name: &str) -> bool {
        (self.events.is_empty() || self.events.iter().any(|e| e == event))
            && (self.kinds.is_empty() || self.kinds.contains(&kind))
            && (self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace))
            && (self.entries.is_empty()
                || self
                    .entries
                    .iter()
                    .any(|e| *e == format!("{}/{namespace}/{name}", kind.as_str())))
    }

    /// Check the event types (the rest is free-form: a filter on a name that does not
    /// exist yet is allowed).
    pub fn validate(&self) -> Result<()> {
        for (i, e) in self.events.iter().enumerate() {
            if !EVENT_TYPES.contains(&e.as_str()) {
                return Err(Error::invalid(
                    format!("events[{i}]"),
                    format!("'{e}' is not one of {}", EVENT_TYPES.join(", ")),
                ));
            }
        }
        for (i, e) in self.entries.iter().enumerate() {
            if e.split('/').count() != 3 {
                return Err(Error::invalid(
                    format!("entries[{i}]"),
                    "an entry is kind/namespace/name",
                ));
            }
        }
        Ok(())
    }
}

/// A subscription. Its `Debug` and its serialized form leave the secrets out.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: i64,
    pub owner: WebhookOwner,
    /// Where deliveries are POSTed (http or https).
    pub url: String,
    pub filter: WebhookFilter,
    /// Off when its owner disabled it or after a run of failed deliveries.
    pub active: bool,
    /// Why it was disabled, when it was by the server.
    pub disabled_reason: Option<String>,
    /// Failed attempts in a row (a success resets it).
    pub consecutive_failures: u32,
    /// The signing secret (stored in its own column, never serialized).
    #[serde(skip)]
    pub secret: String,
    /// The secret before the last rotation, still signing until `previous_secret_until`.
    #[serde(skip)]
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Webhook {
            id,
            owner,
            url,
            filter,
            active,
            disabled_reason,
            consecutive_failures,
            secret: _,
            previous_secret,
            previous_secret_until,
            created_at,
            updated_at,
        } = self;
        f.debug_struct("Webhook")
            .field("id", id)
            .field("owner", owner)
            .field("url", &quiver_auth::secrets::redact_url(url))
            .field("filter", filter)
            .field("active", active)
            .field("disabled_reason", disabled_reason)
            .field("consecutive_failures", consecutive_failures)
            .field("secret", &quiver_auth::secrets::Redacted)
            .field(
                "previous_secret",
                &previous_secret
                    .as_ref()
                    .map(|_| quiver_auth::secrets::Redacted),
            )
            .field("previous_secret_until", previous_secret_until)
            .field("created_at", created_at)
            .field("updated_at", updated_at)
            .finish()
    }
}

impl Webhook {
    /// The secrets that sign a delivery at `now`: the current one, then the previous one
    /// while its overlap lasts.
    pub fn signing_secrets(&self, now: Timestamp) -> Vec<&str> {
        let mut out = vec![self.secret.as_str()];
        if let (Some(prev), Some(until)) = (&self.previous_secret, self.previous_secret_until) {
            if now < until {
                out.push(prev);
            }
        }
        out
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its first or next attempt.
    Pending,
    /// The target answered 2xx.
    Succeeded,
    /// Every attempt failed (dead-lettered; redeliver to try again).
    Dead,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Dead => "dead",
        }
    }
}

/// One event for one subscription, with its last attempt's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: i64,
    /// What makes it unique for its subscription (the feed position and event type, or a
    /// redelivery's or ping's own key).
    pub event_key: String,
    /// The event type (`version.published`, `ping`, …).
    pub event: String,
    /// The JSON body sent.
    pub payload: serde_json::Value,
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<Timestamp>,
    /// The last attempt's HTTP status, when the target answered.
    pub last_status: Option<u16>,
    /// How long the last attempt took, in milliseconds.
    pub last_duration_ms: Option<u64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// The delivery this one repeats, for a redelivery.
    pub redelivery_of: Option<i64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
}

/// A delivery to add.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub webhook_id: i64,
    pub event_key: String,
    pub event: String,
    pub payload: serde_json::Value,
    pub redelivery_of: Option<i64>,
}

impl NewDelivery {
    /// The stored delivery this becomes, pending and due at `at`.
    pub fn into_delivery(self, id: i64, at: Timestamp) -> Delivery {
        Delivery {
            id,
            webhook_id: self.webhook_id,
            event_key: self.event_key,
            event: self.event,
            payload: self.payload,
            state: DeliveryState::Pending,
            attempts: 0,
            next_attempt_at: Some(at),
            last_status: None,
            last_duration_ms: None,
            last_error: None,
            redelivery_of: self.redelivery_of,
            created_at: at,
            updated_at: at,
            delivered_at: None,
        }
    }
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub at: Timestamp,
    /// The target answered 2xx.
    pub ok: bool,
    pub status: Option<u16>,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// When a failed attempt is tried again (`None`: that was the last, the delivery is
    /// dead).
    pub retry_at: Option<Timestamp>,
}

/// What [`WebhookStore::record_attempt`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecorded {
    pub delivery: Delivery,
    /// This attempt's failure disabled the subscription.
    pub disabled: bool,
}

/// Apply an attempt to a delivery (both backends share it).
pub fn apply_attempt(d: &mut Delivery, a: &Attempt) {
    d.attempts += 1;
    d.last_status = a.status;
    d.last_duration_ms = Some(a.duration_ms);
    d.last_error = a.error.clone();
    d.updated_at = a.at;
    if a.ok {
        d.state = DeliveryState::Succeeded;
        d.next_attempt_at = None;
        d.delivered_at = Some(a.at);
    } else if let Some(retry) = a.retry_at {
        d.state = DeliveryState::Pending;
        d.next_attempt_at = Some(retry);
    } else {
        d.state = DeliveryState::Dead;
        d.next_attempt_at = None;
    }
}

/// Apply an attempt's outcome to its subscription: the run of failures, and disabling it
/// when the run reaches `disable_after` (0: never). Answers whether it disabled it now.
pub fn apply_to_webhook(w: &mut Webhook, a: &Attempt, disable_after: u32) -> bool {
    if a.ok {
        w.consecutive_failures = 0;
        return false;
    }
    w.consecutive_failures += 1;
    if disable_after > 0 && w.active && w.consecutive_failures >= disable_after {
        w.active = false;
        w.disabled_reason = Some(format!(
            "disabled after {} failed deliveries in a row",
            w.consecutive_failures
        ));
        w.updated_at = a.at;
        return true;
    }
    false
}

/// Subscriptions and deliveries.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Store a new subscription (its `id` is ignored and assigned).
    async fn create_webhook(&self, webhook: Webhook, audit: Audit) -> Result<Webhook>;
    async fn webhook(&self, id: i64) -> Result<Option<Webhook>>;
    /// An owner's subscriptions, or every one (`None`), oldest first.
    async fn webhooks(&self, owner: Option<&WebhookOwner>) -> Result<Vec<Webhook>>;
    /// Write a subscription's fields (url, filter, state, secrets); `None` when it is gone.
    async fn update_webhook(&self, webhook: Webhook, audit: Audit) -> Result<Option<Webhook>>;
    /// Delete a subscription and its deliveries; `false` when it did not exist.
    async fn delete_webhook(&self, id: i64, audit: Audit) -> Result<bool>;
    /// Add deliveries, pending and due at `at`; one already there for the same
    /// subscription and event key is left as it is. Answers the ids of all of them (new
    /// or already there), in order.
    async fn add_deliveries(&self, new: Vec<NewDelivery>, at: Timestamp) -> Result<Vec<i64>>;
    async fn delivery(&self, id: i64) -> Result<Option<Delivery>>;
    /// A subscription's deliveries, newest first, with ids below `before`.
    async fn deliveries(
        &self,
        webhook_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>>;
    /// Record an attempt on a pending delivery and its subscription's run of failures,
    /// disabling the subscription when the run reaches `disable_after` (with `audit`'s
    /// row, committed with it). Not found when the delivery is gone; a delivery no longer
    /// pending is answered as it is, unchanged.
    async fn record_attempt(
        &self,
        delivery_id: i64,
        attempt: Attempt,
        disable_after: u32,
        audit: Audit,
    ) -> Result<AttemptRecorded>;
    /// [`WebhookStore::record_attempt`] for many deliveries (each with its
    /// `disable_after` and audit row), skipping those that are gone; a backend may write
    /// them in one transaction (SQLite does: one commit for a fan-out's first attempts).
    async fn record_attempts(
        &self,
        attempts: Vec<(i64, Attempt, u32, Audit)>,
    ) -> Result<Vec<AttemptRecorded>> {
        let mut out = Vec::with_capacity(attempts.len());
        for (id, attempt, disable_after, audit) in attempts {
            match self.record_attempt(id, attempt, disable_after, audit).await {
                Ok(r) => out.push(r),
                Err(e) if e.code == quiver_model::ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
}
