//! Signed webhooks: subscriptions owned by a user or a namespace, deliveries derived from
//! the change feed, sent by the durable job queue.
//!
//! - **Fan-out is a feed consumer** ([`fan_out`], cursor `webhooks` in `feed_cursors`, run
//!   by the follower after the gates): for each event after its position, the active
//!   subscriptions whose filter passes and whose owner may read the entry *now* (the
//!   change feed's visibility rule: a private entry's events reach its namespace's
//!   subscriptions and users who may read it, nobody else) get a delivery row, unique by
//!   subscription and `<seq>:<event>`, and a `deliver_webhook` job. A crash before the
//!   cursor moves repeats the round, which adds nothing twice.
//! - **One job per attempt.** [`DeliverWebhook`] sends one attempt and records it
//!   ([`WebhookStore::record_attempt`]); a failure with attempts left queues the next
//!   attempt as a job due after `backoff_base × 2^(n-1)` (capped at an hour), so the
//!   backoff is the webhook settings' own, whatever the queue's; after the last attempt the
//!   delivery is `dead` (redeliver to try again). Every failure adds to the subscription's
//!   run; a run of `disable_after` disables it, with an audit row committed with it.
//!   A job whose delivery is no longer pending does nothing; one found early re-queues
//!   itself for the due time: the handler is idempotent.
//! - **Signatures.** `Quiver-Signature: t=<unix seconds>,v1=<hex>` where the hex is
//!   HMAC-SHA256 of `"<t>.<body>"` keyed with the subscription's secret; during a
//!   rotation's overlap a second `v1=` is signed with the previous secret.
//! - **Targets.** http or https, no credentials in the URL; every address the host
//!   resolves to must be public (not loopback, private, link-local, unique-local,
//!   carrier-grade NAT, multicast or unspecified) unless `allow_private`, checked when the
//!   subscription is written *and* at each attempt, which connects to the address it
//!   checked (a name that re-resolves to an inside address between the check and the
//!   connection is not followed).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use quiver_auth::{authorize, Account, Action, Principal, Target};
use quiver_model::{Entry, Error, FeedEntity, FeedOp, Kind, Result};
use quiver_store::webhooks::{
    Attempt, Delivery, DeliveryState, NewDelivery, Webhook, WebhookFilter, WebhookOwner, PING,
};
use quiver_store::worker::Handler;
use quiver_store::{AuditDiff, AuditDraft, Database, Job, NewAuditRecord, NewJob};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::audit::Event;
use crate::{entry_target, Caller, Registry};

/// The job kind of one delivery attempt.
pub const DELIVER_WEBHOOK: &str = "deliver_webhook";
/// The feed consumer that adds deliveries.
pub const WEBHOOKS_CONSUMER: &str = "webhooks";
/// The actor of the audit row of a subscription the server disabled.
pub const WEBHOOKS_ACTOR: &str = "quiver (webhooks)";
/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "Quiver-Signature";
/// The most subscriptions one owner may have.
pub const MAX_PER_OWNER: usize = 100;
/// Feed events read per round of [`fan_out`].
const WINDOW: usize = 1_000;

/// How webhooks are delivered.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Let targets resolve to loopback and private addresses (tests, a closed network).
    pub allow_private: bool,
    /// The wait after the first failed attempt; doubled after each further one.
    pub backoff_base: Duration,
    /// Attempts per delivery before it is dead.
    pub max_attempts: u32,
    /// Failed attempts in a row that disable a subscription (0: never).
    pub disable_after: u32,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// How long a rotated-out secret still signs.
    pub secret_overlap: Duration,
    /// Workers sending deliveries (on each node).
    pub workers: usize,
    /// How often an idle delivery worker looks for due attempts.
    pub poll_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            backoff_base: Duration::from_secs(10),
            max_attempts: 8,
            disable_after: 20,
            timeout: Duration::from_secs(10),
            secret_overlap: Duration::from_secs(24 * 3600),
            workers: 4,
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl WebhookSettings {
    /// The wait before attempt `n + 1` after `n` failed ones.
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32 << failed.saturating_sub(1).min(20);
        self.backoff_base
            .saturating_mul(factor)
            .min(Duration::from_secs(3600))
    }
}

// ---- signatures ---------------------------------------------------------------------

/// HMAC-SHA256 (RFC 2104) of `msg` keyed with `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // A key of any length is valid for HMAC (a long one is hashed first).
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `v1` signature of a body sent at `t` (unix seconds): hex HMAC-SHA256 of
/// `"<t>.<body>"`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut msg = format!("{t}.").into_bytes();
    msg.extend_from_slice(body);
    to_hex(&hmac_sha256(secret.as_bytes(), &msg))
}

/// The `Quiver-Signature` header's value: `t=<t>,v1=<hex>[,v1=<hex>…]`, one `v1` per
/// secret.
pub fn signature_header(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut out = format!("t={t}");
    for s in secrets {
        out.push_str(",v1=");
        out.push_str(&sign(s, t, body));
    }
    out
}

/// Whether a `Quiver-Signature` value signs `body` with `secret` and is at most
/// `tolerance` old at `now` (a receiver's check; the README shows the same in a few
/// lines).
pub fn verify_signature(header: &str, secret: &str, body: &[u8], now: i64, tolerance: i64) -> bool {
    let mut t = None;
    let mut sigs = vec![];
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => sigs.push(v),
            _ => {}
        }
    }
    let Some(t) = t else { return false };
    if (now - t).abs() > tolerance {
        return false;
    }
    let expected = sign(secret, t, body);
    sigs.iter()
        .any(|s| quiver_auth::secrets::constant_time_eq(s, &expected))
}

/// A new signing secret: `whsec_` and 64 hex digits (256 random bits).
fn new_secret() -> Result<String> {
    Ok(format!("whsec_{}", quiver_auth::secrets::generate_salt()?))
}

// ---- targets ----------------------------------------------------------------------

/// Whether an address is inside a private network, this host, or not routable.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            a.is_loopback()
                || a.is_private()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || a.to_ipv4_mapped()
                    .is_some_and(|v4| is_private(IpAddr::V4(v4)))
                || (s[0] == 0x64 && s[1] == 0xff9b)
        }
    }
}

/// Check a target URL's form (http or https, a host, no credentials).
pub fn check_url_form(raw: &str) -> Result<url::Url> {
    let bad = |why: &str| Error::invalid("url", why.to_string());
    if raw.len() > 2000 {
        return Err(bad("at most 2000 characters"));
    }
    let u = url::Url::parse(raw).map_err(|e| bad(&format!("not a URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("must be http or https"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("must name a host"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not carry credentials"));
    }
    if u.fragment().is_some() {
        return Err(bad("must not have a fragment"));
    }
    Ok(u)
}

/// The address to connect to for `u`: every address its host resolves to must be public
/// unless `allow_private` (so that a name with one inside address among outside ones is
/// refused too). Errors name the field `url`.
pub async fn resolve_target(u: &url::Url, allow_private: bool) -> Result<SocketAddr> {
    let port = u
        .port_or_known_default()
        .ok_or_else(|| Error::invalid("url", "has no port"))?;
    let addrs: Vec<SocketAddr> = match u.host() {
        Some(url::Host::Ipv4(a)) => vec![SocketAddr::new(IpAddr::V4(a), port)],
        Some(url::Host::Ipv6(a)) => vec![SocketAddr::new(IpAddr::V6(a), port)],
        Some(url::Host::Domain(d)) => tokio::net::lookup_host((d, port))
            .await
            .map_err(|_| Error::invalid("url", format!("the host {d} does not resolve")))?
            .collect(),
        None => vec![],
    };
    let first = *addrs
        .first()
        .ok_or_else(|| Error::invalid("url", "the host has no address"))?;
    if !allow_private {
        if let Some(a) = addrs.iter().find(|a| is_private(a.ip())) {
            return Err(Error::invalid(
                "url",
                format!(
                    "resolves to {}, a loopback, private or reserved address; webhooks go to public addresses only",
                    a.ip()
                ),
            ));
        }
    }
    Ok(first)
}

// ---- the API's shapes -----------------------------------------------------------------

/// A subscription to create.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// Where deliveries are POSTed: http or https, a public address.
    pub url: String,
    /// Owned by this namespace (its owners manage it) instead of by the caller.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Event types to receive (`version.published`, `version.yanked`,
    /// `version.deleted`, `entry.deprecated`, `entry.deleted`); empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// Kinds to receive events of; empty: all.
    #[serde(default)]
    pub kinds: Vec<Kind>,
    /// Namespaces to receive events of; empty: all.
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// Entries (`kind/namespace/name`) to receive events of; empty: all.
    #[serde(default)]
    pub entries: Vec<String>,
}

/// Changes to a subscription; absent fields stay.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookPatch {
    #[serde(default)]
    pub url: Option<String>,
    /// `true` re-enables a disabled subscription (and resets its run of failures).
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub events: Option<Vec<String>>,
    #[serde(default)]
    pub kinds: Option<Vec<Kind>>,
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    #[serde(default)]
    pub entries: Option<Vec<String>>,
}

/// A subscription as its owner sees it (never with a secret).
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WebhookView {
    pub id: i64,
    pub owner: WebhookOwner,
    pub url: String,
    pub filter: WebhookFilter,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    pub consecutive_failures: u32,
    /// While set, the previous secret still signs (a second `v1=`) until then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        WebhookView {
            id: w.id,
            owner: w.owner.clone(),
            url: w.url.clone(),
            filter: w.filter.clone(),
            active: w.active,
            disabled_reason: w.disabled_reason.clone(),
            consecutive_failures: w.consecutive_failures,
            previous_secret_until: w.previous_secret_until.filter(|t| *t > Timestamp::now()),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A subscription with its secret: answered once, when it is created or rotated.
// (Its `Debug` hides the secret.)
#[derive(Clone, Serialize, schemars::JsonSchema)]
pub struct WebhookWithSecret {
    pub webhook: WebhookView,
    /// The signing secret: shown this once.
    pub secret: String,
}

impl std::fmt::Debug for WebhookWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let WebhookWithSecret { webhook, secret: _ } = self;
        f.debug_struct("WebhookWithSecret")
            .field("webhook", webhook)
            .field("secret", &quiver_auth::secrets::Redacted)
            .finish()
    }
}

/// A page of a subscription's deliveries, newest first.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DeliveryPage {
    pub items: Vec<Delivery>,
    /// Pass as `before` for older ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

fn webhook_target(w: &Webhook) -> String {
    format!("webhook {}", w.id)
}

fn owner_namespace(o: &WebhookOwner) -> Option<&str> {
    match o {
        WebhookOwner::Namespace(ns) => Some(ns),
        WebhookOwner::User(_) => None,
    }
}

// ---- the service ------------------------------------------------------------------

impl Registry {
    fn webhook_settings(&self) -> &WebhookSettings {
        &self.config.webhooks
    }

    /// Whether the caller manages subscriptions of `owner`: the user themself, a
    /// namespace's owners, site admins.
    fn manages(&self, caller: &Caller, owner: &WebhookOwner) -> bool {
        if authorize(caller, Action::Administer, &Target::site()).is_allowed() {
            return true;
        }
        match owner {
            WebhookOwner::User(id) => caller.account().is_some_and(|a| a.id == *id),
            WebhookOwner::Namespace(ns) => {
                authorize(caller, Action::ManageMembers, &Target::namespace(ns)).is_allowed()
            }
        }
    }

    /// The owner a list or a creation is about: the namespace named, or the caller.
    fn owner_for(&self, caller: &Caller, namespace: Option<&str>) -> Result<WebhookOwner> {
        let owner =
            match namespace {
                Some(ns) => WebhookOwner::Namespace(ns.to_string()),
                None => match caller {
                    Principal::User(a) | Principal::Token { account: a, .. } => {
                        WebhookOwner::User(a.id)
                    }
                    Principal::Anonymous | Principal::Open => {
                        return Err(Error::unauthorized(
                            "sign in first (Authorization: Bearer <token>)",
                        ))
                    }
                    Principal::BootstrapAdmin | Principal::Operator => return Err(Error::invalid(
                        "namespace",
                        "the admin token has no account: name the namespace that owns the webhook",
                    )),
                },
            };
        if matches!(caller, Principal::Anonymous | Principal::Open) {
            return Err(Error::unauthorized(
                "sign in first (Authorization: Bearer <token>)",
            ));
        }
        if !self.manages(caller, &owner) {
            return Err(Error::forbidden(
                "only the namespace's owners manage its webhooks",
            ));
        }
        Ok(owner)
    }

    /// A subscription the caller manages (not found otherwise: others' ids are not told).
    async fn managed_webhook(&self, caller: &Caller, id: i64) -> Result<Webhook> {
        if matches!(caller, Principal::Anonymous | Principal::Open) {
            return Err(Error::unauthorized(
                "sign in first (Authorization: Bearer <token>)",
            ));
        }
        match self.db.webhooks.webhook(id).await? {
            Some(w) if self.manages(caller, &w.owner) => Ok(w),
            _ => Err(Error::not_found(format!("webhook {id}"))),
        }
    }

    async fn check_target(&self, raw: &str) -> Result<()> {
        let u = check_url_form(raw)?;
        resolve_target(&u, self.webhook_settings().allow_private).await?;
        Ok(())
    }

    /// Create a subscription; answers it with its secret (shown this once).
    pub async fn create_webhook(
        &self,
        caller: &Caller,
        new: NewWebhook,
    ) -> Result<WebhookWithSecret> {
        let owner = self.owner_for(caller, new.namespace.as_deref())?;
        let filter = WebhookFilter {
            events: new.events,
            kinds: new.kinds,
            namespaces: new.namespaces,
            entries: new.entries,
        };
        filter.validate()?;
        self.check_target(&new.url).await?;
        if self.db.webhooks.webhooks(Some(&owner)).await?.len() >= MAX_PER_OWNER {
            return Err(Error::conflict(
                "url",
                format!("an owner has at most {MAX_PER_OWNER} webhooks"),
            ));
        }
        let now = Timestamp::now();
        let secret = new_secret()?;
        let draft = Webhook {
            id: 0,
            owner: owner.clone(),
            url: new.url,
            filter,
            active: true,
            disabled_reason: None,
            consecutive_failures: 0,
            secret: secret.clone(),
            previous_secret: None,
            previous_secret_until: None,
            created_at: now,
            updated_at: now,
        };
        let audit = self
            .draft(
                caller,
                Event {
                    action: "webhook.create",
                    namespace: owner_namespace(&owner),
                    target: "webhook".into(),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        let w = self.db.webhooks.create_webhook(draft, audit).await?;
        Ok(WebhookWithSecret {
            webhook: WebhookView::from(&w),
            secret,
        })
    }

    /// The subscriptions of the namespace named, or the caller's own.
    pub async fn list_webhooks(
        &self,
        caller: &Caller,
        namespace: Option<&str>,
    ) -> Result<Vec<WebhookView>> {
        let owner = self.owner_for(caller, namespace)?;
        Ok(self
            .db
            .webhooks
            .webhooks(Some(&owner))
            .await?
            .iter()
            .map(WebhookView::from)
            .collect())
    }

    pub async fn get_webhook(&self, caller: &Caller, id: i64) -> Result<WebhookView> {
        Ok(WebhookView::from(&self.managed_webhook(caller, id).await?))
    }

    async fn write_webhook(&self, caller: &Caller, action: &str, w: Webhook) -> Result<Webhook> {
        let audit = self
            .draft(
                caller,
                Event {
                    action,
                    namespace: owner_namespace(&w.owner),
                    target: webhook_target(&w),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        let id = w.id;
        self.db
            .webhooks
            .update_webhook(w, audit)
            .await?
            .ok_or_else(|| Error::not_found(format!("webhook {id}")))
    }

    /// Change a subscription's target, filter or state.
    pub async fn update_webhook(
        &self,
        caller: &Caller,
        id: i64,
        patch: WebhookPatch,
    ) -> Result<WebhookView> {
        let mut w = self.managed_webhook(caller, id).await?;
        if let Some(url) = patch.url {
            self.check_target(&url).await?;
            w.url = url;
        }
        if let Some(v) = patch.events {
            w.filter.events = v;
        }
        if let Some(v) = patch.kinds {
            w.filter.kinds = v;
        }
        if let Some(v) = patch.namespaces {
            w.filter.namespaces = v;
        }
        if let Some(v) = patch.entries {
            w.filter.entries = v;
        }
        w.filter.validate()?;
        if let Some(active) = patch.active {
            if active && !w.active {
                w.consecutive_failures = 0;
                w.disabled_reason = None;
            }
            w.active = active;
        }
        w.updated_at = Timestamp::now();
        let w = self.write_webhook(caller, "webhook.update", w).await?;
        Ok(WebhookView::from(&w))
    }

    pub async fn delete_webhook(&self, caller: &Caller, id: i64) -> Result<()> {
        let w = self.managed_webhook(caller, id).await?;
        let audit = self
            .draft(
                caller,
                Event {
                    action: "webhook.delete",
                    namespace: owner_namespace(&w.owner),
                    target: webhook_target(&w),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        if !self.db.webhooks.delete_webhook(id, audit).await? {
            return Err(Error::not_found(format!("webhook {id}")));
        }
        Ok(())
    }

    /// A new secret, answered once; the previous one still signs (a second `v1=`) for
    /// the overlap window, so receivers can switch without losing a delivery.
    pub async fn rotate_webhook_secret(
        &self,
        caller: &Caller,
        id: i64,
    ) -> Result<WebhookWithSecret> {
        let mut w = self.managed_webhook(caller, id).await?;
        let secret = new_secret()?;
        let now = Timestamp::now();
        let overlap = SignedDuration::try_from(self.webhook_settings().secret_overlap)
            .unwrap_or(SignedDuration::from_hours(24));
        w.previous_secret = Some(std::mem::replace(&mut w.secret, secret.clone()));
        w.previous_secret_until = Some(now.saturating_add(overlap).unwrap_or(now));
        w.updated_at = now;
        let w = self
            .write_webhook(caller, "webhook.rotate_secret", w)
            .await?;
        Ok(WebhookWithSecret {
            webhook: WebhookView::from(&w),
            secret,
        })
    }

    /// A subscription's deliveries, newest first.
    pub async fn list_webhook_deliveries(
        &self,
        caller: &Caller,
        id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<DeliveryPage> {
        crate::check_limit(limit)?;
        let w = self.managed_webhook(caller, id).await?;
        let items = self.db.webhooks.deliveries(w.id, before, limit).await?;
        let next_before = (items.len() == limit)
            .then(|| items.last().map(|d| d.id))
            .flatten();
        Ok(DeliveryPage { items, next_before })
    }

    async fn queue_delivery(&self, d: NewDelivery) -> Result<Delivery> {
        let ids = self
            .db
            .webhooks
            .add_deliveries(vec![d], Timestamp::now())
            .await?;
        self.db
            .jobs
            .enqueue_many(ids.iter().map(|id| deliver_job(*id, 0, None)).collect())
            .await?;
        self.wake_webhook_workers();
        self.db
            .webhooks
            .delivery(ids[0])
            .await?
            .ok_or_else(|| Error::internal("queueing a delivery", "it vanished"))
    }

    /// Send a delivery's event again, as a new delivery (the log keeps both).
    pub async fn redeliver_webhook(
        &self,
        caller: &Caller,
        id: i64,
        delivery_id: i64,
    ) -> Result<Delivery> {
        let w = self.managed_webhook(caller, id).await?;
        let d = self
            .db
            .webhooks
            .delivery(delivery_id)
            .await?
            .filter(|d| d.webhook_id == w.id)
            .ok_or_else(|| Error::not_found(format!("delivery {delivery_id}")))?;
        self.record(
            caller,
            Event {
                action: "webhook.redeliver",
                namespace: owner_namespace(&w.owner),
                target: format!("webhook {} delivery {}", w.id, d.id),
                denied: None,
                reason: None,
                diff: None,
            },
        )
        .await;
        self.queue_delivery(NewDelivery {
            webhook_id: w.id,
            event_key: format!("redelivery:{}:{}", d.id, Timestamp::now().as_nanosecond()),
            event: d.event,
            payload: d.payload,
            redelivery_of: Some(d.id),
        })
        .await
    }

    /// Send a `ping` event now (whatever the filter).
    pub async fn ping_webhook(&self, caller: &Caller, id: i64) -> Result<Delivery> {
        let w = self.managed_webhook(caller, id).await?;
        let now = Timestamp::now();
        let key = format!("ping:{}", now.as_nanosecond());
        self.queue_delivery(NewDelivery {
            webhook_id: w.id,
            payload: serde_json::json!({
                "id": key,
                "event": PING,
                "at": now,
                "webhook": w.id,
            }),
            event_key: key,
            event: PING.into(),
            redelivery_of: None,
        })
        .await
    }

    /// Add the deliveries of the feed's new events ([`fan_out`]) and wake this node's
    /// delivery workers if any were added.
    pub async fn fan_out_webhooks(&self) -> Result<u64> {
        let n = fan_out(&self.db).await?;
        if n > 0 {
            self.wake_webhook_workers();
        }
        Ok(n)
    }

    pub(crate) fn wake_webhook_workers(&self) {
        for n in self
            .webhook_wake
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            n.notify_one();
        }
    }

    /// Start this node's delivery workers (after taking back the attempts its earlier
    /// runs held when they died).
    pub(crate) fn spawn_webhook_workers(&self) {
        use quiver_store::worker::{Worker, WorkerOptions};
        let s = self.webhook_settings().clone();
        let prefix = format!("webhooks@{}:", self.node);
        let pid = std::process::id();
        let mut workers = vec![];
        let mut wakes = vec![];
        // One client for targets named by address (nothing to resolve, so nothing to pin):
        // its connections are kept alive and shared by every worker.
        let literal = client_builder(&s).build().ok();
        for i in 0..s.workers.max(1) {
            let opts = WorkerOptions::new(format!("{prefix}{pid}:{i}"))
                .poll_interval(s.poll_interval)
                .lease(s.timeout + Duration::from_secs(30));
            let w = Worker::new(self.db.jobs.clone(), opts).handler(DeliverWebhook {
                db: self.db.clone(),
                settings: s.clone(),
                literal: literal.clone(),
            });
            wakes.push(w.notifier());
            workers.push(w);
        }
        *self.webhook_wake.lock().unwrap_or_else(|e| e.into_inner()) = wakes;
        let queue = self.db.jobs.clone();
        tokio::spawn(async move {
            match queue.reclaim(&prefix, "").await {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    jobs = n,
                    "took back the webhook attempts of this node's last run"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "could not take back the last run's webhook attempts")
                }
            }
            let handles: Vec<_> = workers.into_iter().map(|w| w.spawn()).collect();
            // The workers live as long as the process (their handles are kept here).
            std::future::pending::<()>().await;
            drop(handles);
        });
    }
}

/// First attempts of the deliveries one event fans out to, per job at most (sent
/// concurrently by the job's worker: a write with many subscribers costs one job, not one
/// per subscriber; retries are jobs of their own).
const BATCH: usize = 50;

/// The job of the first attempts of these deliveries.
fn first_attempts(ids: &[i64]) -> NewJob {
    NewJob::new(DELIVER_WEBHOOK, serde_json::json!({"deliveries": ids}))
        .dedup_key(format!(
            "webhooks:{}-{}:{}",
            ids[0],
            ids[ids.len() - 1],
            ids.len()
        ))
        .max_attempts(3)
        .priority(1)
}

/// The job of attempt `attempt + 1` of delivery `id`, due at `at` (now when `None`).
fn deliver_job(id: i64, attempt: u32, at: Option<Timestamp>) -> NewJob {
    let job = NewJob::new(DELIVER_WEBHOOK, serde_json::json!({"delivery": id}))
        .dedup_key(format!("webhook:{id}:{attempt}"))
        .max_attempts(3)
        .priority(1);
    match at {
        Some(at) => job.run_at(at),
        None => job,
    }
}

// ---- fan-out ----------------------------------------------------------------------

/// Whether a subscription's owner may read `e` now.
fn owner_reads(owner: &OwnerView, e: &Entry) -> bool {
    let target = entry_target(e);
    match owner {
        OwnerView::User(p) => authorize(p, Action::Read, &target).is_allowed(),
        OwnerView::Namespace(ns) => {
            *ns == e.namespace
                || authorize(&Principal::Anonymous, Action::Read, &target).is_allowed()
        }
        OwnerView::Nobody => false,
    }
}

enum OwnerView {
    User(Principal),
    Namespace(String),
    Nobody,
}

async fn owner_view(db: &Database, owner: &WebhookOwner) -> Result<OwnerView> {
    Ok(match owner {
        WebhookOwner::Namespace(ns) => OwnerView::Namespace(ns.clone()),
        WebhookOwner::User(id) => match db.accounts.get_user_by_id(*id).await? {
            None => OwnerView::Nobody,
            Some(u) => {
                let memberships = db.accounts.memberships_of(u.id).await?;
                OwnerView::User(Principal::User(Account {
                    id: u.id,
                    name: u.name,
                    site_role: u.site_role,
                    memberships: memberships
                        .into_iter()
                        .map(|m| (m.namespace, m.role))
                        .collect(),
                }))
            }
        },
    })
}

/// Add a delivery (and its job) for every active subscription that wants one of the
/// feed's events after this consumer's position and whose owner may read its entry, and
/// move the position. Answers how many deliveries were added (or found already there).
pub async fn fan_out(db: &Database) -> Result<u64> {
    let mut added = 0;
    let head = db.store.feed_head().await?;
    loop {
        let from = db.cursors.cursor(WEBHOOKS_CONSUMER).await?;
        if from >= head {
            return Ok(added);
        }
        let hooks: Vec<Webhook> = db
            .webhooks
            .webhooks(None)
            .await?
            .into_iter()
            .filter(|w| w.active)
            .collect();
        if hooks.is_empty() {
            // Nobody listens: nothing to read (a large import is skipped at once).
            db.cursors
                .advance_cursor(WEBHOOKS_CONSUMER, from, head)
                .await?;
            continue;
        }
        let events = db.store.feed_since(from, WINDOW).await?;
        let Some(through) = events.last().map(|e| e.seq) else {
            return Ok(added);
        };
        let mut new = vec![];
        {
            let mut owners = HashMap::new();
            for w in &hooks {
                owners.insert(w.id, owner_view(db, &w.owner).await?);
            }
            let mut ids: Vec<i64> = events
                .iter()
                .filter(|e| matches!(e.entity, FeedEntity::Version | FeedEntity::Entry))
                .filter_map(|e| e.entry_id)
                .collect();
            ids.sort_unstable();
            ids.dedup();
            let mut entries: HashMap<i64, Entry> = db
                .store
                .get_entries_by_id(&ids)
                .await?
                .into_iter()
                .map(|e| (e.id, e))
                .collect();
            // Deletions are named from their tombstones: a deleted entry stands in with
            // the key and visibility it had, so filters and owners' rights apply as
            // before it went.
            let gone: Vec<i64> = events
                .iter()
                .filter(|e| e.op == FeedOp::Delete)
                .filter(|e| matches!(e.entity, FeedEntity::Version | FeedEntity::Entry))
                .filter_map(|e| e.entry_id)
                .collect();
            let tombstones = if gone.is_empty() {
                Vec::new()
            } else {
                db.store.tombstones_of_entries(&gone).await?
            };
            for t in &tombstones {
                if t.version_id.is_none() {
                    entries
                        .entry(t.entry_id)
                        .or_insert_with(|| crate::changes::tombstone_entry(t));
                }
            }
            let version_ids: Vec<i64> = events
                .iter()
                .filter(|e| e.entity == FeedEntity::Version)
                .map(|e| e.entity_id)
                .collect();
            let names: HashMap<i64, String> = db
                .store
                .version_names_by_id(&version_ids)
                .await?
                .into_iter()
                .collect();
            for ev in &events {
                let Some(entry) = ev.entry_id.and_then(|id| entries.get(&id)) else {
                    continue;
                };
                let (event, extra) = match (ev.entity, ev.op) {
                    (FeedEntity::Version, FeedOp::Create) => {
                        let Some(v) = names.get(&ev.entity_id) else {
                            continue;
                        };
                        ("version.published", serde_json::json!({"version": v}))
                    }
                    (FeedEntity::Version, FeedOp::Update) => {
                        let Some(v) = names.get(&ev.entity_id) else {
                            continue;
                        };
                        let yanked = db
                            .store
                            .get_version(&entry.key(), v)
                            .await?
                            .is_some_and(|v| v.yanked);
                        if !yanked {
                            continue;
                        }
                        ("version.yanked", serde_json::json!({"version": v}))
                    }
                    (FeedEntity::Version, FeedOp::Delete) => {
                        let Some(t) = tombstones
                            .iter()
                            .find(|t| t.version_id == Some(ev.entity_id))
                        else {
                            continue;
                        };
                        (
                            "version.deleted",
                            serde_json::json!({
                                "version": t.version,
                                "reason": t.reason,
                                "by_admin": t.by_admin,
                            }),
                        )
                    }
                    (FeedEntity::Entry, FeedOp::Delete) => {
                        let Some(t) = tombstones
                            .iter()
                            .find(|t| t.entry_id == entry.id && t.version_id.is_none())
                        else {
                            continue;
                        };
                        (
                            "entry.deleted",
                            serde_json::json!({"reason": t.reason, "by_admin": t.by_admin}),
                        )
                    }
                    (FeedEntity::Entry, FeedOp::Update) => {
                        let Some(dep) = &entry.deprecation else {
                            continue;
                        };
                        ("entry.deprecated", serde_json::json!({"deprecation": dep}))
                    }
                    _ => continue,
                };
                // A deprecation is one event per entry and message, whatever else
                // changes the entry later; the others are one per feed position.
                let key = match event {
                    "entry.deprecated" => format!(
                        "{event}:{}:{}",
                        entry.id,
                        quiver_model::manifest::sha256_hex(&extra.to_string())
                    ),
                    _ => format!("{}:{event}", ev.seq),
                };
                for w in &hooks {
                    // Events from before a subscription existed are not its own.
                    if ev.at < w.created_at {
                        continue;
                    }
                    if !w
                        .filter
                        .matches(event, entry.kind, &entry.namespace, &entry.name)
                    {
                        continue;
                    }
                    if !owners.get(&w.id).is_some_and(|o| owner_reads(o, entry)) {
                        continue;
                    }
                    let mut payload = serde_json::json!({
                        "id": key,
                        "event": event,
                        "seq": ev.seq,
                        "at": ev.at,
                        "entry": {
                            "kind": entry.kind,
                            "namespace": entry.namespace,
                            "name": entry.name,
                            "visibility": entry.visibility,
                        },
                    });
                    if let (Some(p), Some(x)) = (payload.as_object_mut(), extra.as_object()) {
                        p.extend(x.clone());
                    }
                    new.push(NewDelivery {
                        webhook_id: w.id,
                        event_key: key.clone(),
                        event: event.to_string(),
                        payload,
                        redelivery_of: None,
                    });
                }
            }
        }
        let n = new.len() as u64;
        if !new.is_empty() {
            let ids = db.webhooks.add_deliveries(new, Timestamp::now()).await?;
            db.jobs
                .enqueue_many(ids.chunks(BATCH).map(first_attempts).collect())
                .await?;
        }
        if db
            .cursors
            .advance_cursor(WEBHOOKS_CONSUMER, from, through)
            .await?
        {
            added += n;
        }
    }
}

// ---- delivery -------------------------------------------------------------------

/// Runs `deliver_webhook` jobs: one attempt of one delivery.
pub(crate) struct DeliverWebhook {
    pub db: Database,
    pub settings: WebhookSettings,
    /// The shared client for targets named by address.
    pub literal: Option<reqwest::Client>,
}

fn client_builder(settings: &WebhookSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.timeout)
        .user_agent(concat!("quiver-webhooks/", env!("CARGO_PKG_VERSION")))
}

/// What one attempt's request got.
struct Sent {
    ok: bool,
    status: Option<u16>,
    error: Option<String>,
}

async fn send(
    settings: &WebhookSettings,
    literal: Option<&reqwest::Client>,
    w: &Webhook,
    d: &Delivery,
    body: Vec<u8>,
    now: Timestamp,
) -> Sent {
    let fail = |e: String| Sent {
        ok: false,
        status: None,
        error: Some(e),
    };
    let u = match check_url_form(&w.url) {
        Ok(u) => u,
        Err(e) => return fail(e.message),
    };
    // Checked again now (the name may resolve elsewhere than when it was written), and
    // the request goes to the address checked.
    let addr = match resolve_target(&u, settings.allow_private).await {
        Ok(a) => a,
        Err(e) => return fail(format!("refused: {}", e.message)),
    };
    // A name: a client of its own that connects to the address checked, whatever DNS
    // says by then. An address: the shared client.
    let client = match (u.host(), literal) {
        (Some(url::Host::Domain(d)), _) => {
            match client_builder(settings).resolve(d, addr).build() {
                Ok(c) => c,
                Err(e) => return fail(format!("building the request: {e}")),
            }
        }
        (_, Some(c)) => c.clone(),
        (_, None) => match client_builder(settings).build() {
            Ok(c) => c,
            Err(e) => return fail(format!("building the request: {e}")),
        },
    };
    let t = now.as_second();
    let sig = signature_header(&w.signing_secrets(now), t, &body);
    let res = client
        .post(u)
        .header("Content-Type", "application/json")
        .header(SIGNATURE_HEADER, sig)
        .header("Quiver-Event", &d.event)
        .header("Quiver-Delivery", d.id.to_string())
        .body(body)
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status();
            Sent {
                ok: status.is_success(),
                status: Some(status.as_u16()),
                error: (!status.is_success()).then(|| format!("HTTP {}", status.as_u16())),
            }
        }
        Err(e) => fail(if e.is_timeout() {
            "timed out".to_string()
        } else {
            format!("could not send: {e}")
        }),
    }
}

#[async_trait::async_trait]
impl Handler for DeliverWebhook {
    fn kind(&self) -> &str {
        DELIVER_WEBHOOK
    }

    async fn run(&self, job: &Job) -> std::result::Result<(), String> {
        if let Some(ids) = job.payload["deliveries"].as_array() {
            return self.first_attempts(ids).await.map_err(|e| e.to_string());
        }
        let Some(id) = job.payload["delivery"].as_i64() else {
            return Err("the job names no delivery".into());
        };
        let result: Result<()> = async {
            if let Some((id, attempt, disable_after, audit)) = self.try_one(id).await? {
                let rec = self
                    .db
                    .webhooks
                    .record_attempt(id, attempt, disable_after, audit)
                    .await?;
                self.after(vec![rec]).await?;
            }
            Ok(())
        }
        .await;
        result.map_err(|e| e.to_string())
    }
}

/// An attempt made, to record.
type Made = (i64, Attempt, u32, quiver_store::Audit);

impl DeliverWebhook {
    /// The first attempts of a fan-out's deliveries: sent concurrently, recorded together.
    async fn first_attempts(&self, ids: &[serde_json::Value]) -> Result<()> {
        let mut set = tokio::task::JoinSet::new();
        for id in ids.iter().filter_map(serde_json::Value::as_i64) {
            let me = DeliverWebhook {
                db: self.db.clone(),
                settings: self.settings.clone(),
                literal: self.literal.clone(),
            };
            set.spawn(async move { me.try_one(id).await });
        }
        let mut made = vec![];
        let mut failed = None;
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(Some(m))) => made.push(m),
                Ok(Ok(None)) => {}
                Ok(Err(e)) => failed = Some(e),
                Err(e) => failed = Some(Error::internal("a delivery attempt", e)),
            }
        }
        if !made.is_empty() {
            let recs = self.db.webhooks.record_attempts(made).await?;
            self.after(recs).await?;
        }
        // Run again on a failure: the deliveries already done are skipped.
        failed.map_or(Ok(()), Err)
    }

    /// Queue the next attempts of the deliveries still pending.
    async fn after(&self, recs: Vec<quiver_store::webhooks::AttemptRecorded>) -> Result<()> {
        let mut jobs = vec![];
        for rec in recs {
            if rec.disabled {
                tracing::warn!(
                    webhook = rec.delivery.webhook_id,
                    "webhook disabled after a run of failed deliveries"
                );
            }
            if rec.delivery.state == DeliveryState::Pending {
                if let Some(next) = rec.delivery.next_attempt_at {
                    jobs.push(deliver_job(
                        rec.delivery.id,
                        rec.delivery.attempts,
                        Some(next),
                    ));
                }
            }
        }
        if !jobs.is_empty() {
            self.db.jobs.enqueue_many(jobs).await?;
        }
        Ok(())
    }

    /// One attempt of delivery `id` if it is pending and due, not yet recorded.
    async fn try_one(&self, id: i64) -> Result<Option<Made>> {
        let hooks = &self.db.webhooks;
        let Some(d) = hooks.delivery(id).await? else {
            return Ok(None); // its subscription was deleted
        };
        if d.state != DeliveryState::Pending {
            return Ok(None); // done already (a job run twice)
        }
        let now = Timestamp::now();
        if let Some(next) = d.next_attempt_at {
            if next > now + SignedDuration::from_millis(50) {
                // Taken early (a repeated job): queue the attempt for its time.
                self.db
                    .jobs
                    .enqueue(deliver_job(id, d.attempts, Some(next)))
                    .await?;
                return Ok(None);
            }
        }
        let Some(w) = hooks.webhook(d.webhook_id).await? else {
            return Ok(None);
        };
        let started = Instant::now();
        let sent = if w.active || d.event == PING {
            let body = serde_json::to_vec(&d.payload).unwrap_or_default();
            send(&self.settings, self.literal.as_ref(), &w, &d, body, now).await
        } else {
            Sent {
                ok: false,
                status: None,
                error: Some("the webhook is disabled".into()),
            }
        };
        let at = Timestamp::now();
        let attempt_no = d.attempts + 1;
        // No retry after the last attempt, nor after the failure that disables the
        // subscription (its delivery is dead at once).
        let disables = w.active
            && self.settings.disable_after > 0
            && w.consecutive_failures + 1 >= self.settings.disable_after;
        let retry_at =
            (!sent.ok && w.active && !disables && attempt_no < self.settings.max_attempts).then(
                || {
                    let wait = SignedDuration::try_from(self.settings.backoff(attempt_no))
                        .unwrap_or(SignedDuration::from_secs(1));
                    at.saturating_add(wait).unwrap_or(at)
                },
            );
        let audit = Some(AuditDraft {
            record: NewAuditRecord {
                actor: WEBHOOKS_ACTOR.into(),
                action: "webhook.disable".into(),
                namespace: owner_namespace(&w.owner).map(str::to_string),
                target: webhook_target(&w),
                outcome: "allowed".into(),
                reason: Some(format!(
                    "{} failed delivery attempts in a row (last: {})",
                    self.settings.disable_after,
                    sent.error.as_deref().unwrap_or("failed")
                )),
                diff: None,
                client: None,
            },
            diff: AuditDiff::Stored,
        });
        let disable_after = if w.active {
            self.settings.disable_after
        } else {
            0
        };
        Ok(Some((
            id,
            Attempt {
                at,
                ok: sent.ok,
                status: sent.status,
                duration_ms: started.elapsed().as_millis() as u64,
                error: sent.error,
                retry_at,
            },
            disable_after,
            audit,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        assert_eq!(
            to_hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            to_hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let now = Timestamp::now();
        let w = Webhook {
            id: 1,
            owner: WebhookOwner::User(1),
            url: "http://hooks.invalid/x".into(),
            filter: WebhookFilter::default(),
            active: true,
            disabled_reason: None,
            consecutive_failures: 0,
            secret: "whsec_current".into(),
            previous_secret: Some("whsec_previous".into()),
            previous_secret_until: Some(now),
            created_at: now,
            updated_at: now,
        };
        let shown = WebhookWithSecret {
            webhook: WebhookView::from(&w),
            secret: w.secret.clone(),
        };
        for text in [format!("{w:?}"), format!("{shown:?}")] {
            assert!(!text.contains("whsec_"), "{text}");
        }
    }

    #[test]
    fn the_readme_example_signs_as_shown() {
        assert_eq!(
            signature_header(&["whsec_example"], 1764950400, br#"{"event":"ping"}"#),
            "t=1764950400,v1=c684a3cefcaa2fa6e4ca5aaa926fc93f899105b4a47c13463804a1a9c89d9dbf"
        );
    }

    #[test]
    fn signatures_verify_and_expire() {
        let body = br#"{"event":"ping"}"#;
        let h = signature_header(&["new", "old"], 1_700_000_000, body);
        assert!(h.starts_with("t=1700000000,v1="));
        assert!(verify_signature(&h, "new", body, 1_700_000_010, 300));
        assert!(verify_signature(&h, "old", body, 1_700_000_010, 300));
        assert!(!verify_signature(&h, "other", body, 1_700_000_010, 300));
        assert!(!verify_signature(&h, "new", b"{}", 1_700_000_010, 300));
        assert!(!verify_signature(&h, "new", body, 1_700_001_000, 300));
    }

    #[test]
    fn private_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::",
        ] {
            assert!(is_private(a.parse().unwrap()), "{a}");
        }
        for a in ["1.1.1.1", "8.8.8.8", "2a00:1450:4001::1"] {
            assert!(!is_private(a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn backoff_doubles() {
        let s = WebhookSettings {
            backoff_base: Duration::from_millis(100),
            ..WebhookSettings::default()
        };
        assert_eq!(s.backoff(1), Duration::from_millis(100));
        assert_eq!(s.backoff(2), Duration::from_millis(200));
        assert_eq!(s.backoff(3), Duration::from_millis(400));
        assert_eq!(s.backoff(60), Duration::from_secs(3600));
    }

    #[test]
    fn url_forms() {
        assert!(check_url_form("https://hooks.invalid/x").is_ok());
        for bad in [
            "ftp://a/x",
            "http://u:p@a/x",
            "not a url",
            "file:///etc/passwd",
        ] {
            let e = check_url_form(bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("url"), "{bad}");
        }
    }
}
