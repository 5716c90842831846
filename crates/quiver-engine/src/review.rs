//! Review and trust: the moderation queue and publisher trust levels.
//!
//! When review is on ([`ReviewSettings::enabled`]), the first version published to a draft
//! entry asks [`Registry::publish_decision`] whether the entry goes live or into review:
//!
//! | publisher's level | first publish of a new entry |
//! |---|---|
//! | `new` (every account without a level) | review |
//! | `standard` | review |
//! | `trusted` | published, up to `daily_limit` a day (UTC), then review |
//! | `core` (and the bootstrap admin) | published |
//!
//! and a recipe with a `run_command` step always goes to review, whoever publishes it.
//! Entries are created as drafts (only moderators may create them in another status), so
//! nothing skips this.
//!
//! Moderators work the queue with `POST .../review`: `approve` (review → published),
//! `reject` with a reason (review → archived), `request_changes` with a list of changes
//! (review → draft); the publisher answers with `resubmit` (draft → review), and either
//! side may `comment`. Each decision is a lifecycle change (so it has a reason and an
//! audit row) and an event on the entry's review record, which keeps the comments, the
//! changes asked and every decision.
//!
//! Storage: review records and trust levels are documents (collections `quiver.reviews`,
//! `quiver.trust`) in the same store, so both backends keep them with no table of their
//! own. The daily auto-publish count is the store's durable counters
//! ([`quiver_store::Database::counters`], the `rate_limits` table): one atomic hit per
//! auto-publish, class `auto-publish`, subject the user's id, window the UTC day, so
//! concurrent publishes by one trusted publisher (on any node) never both take the last
//! slot.

use quiver_auth::Principal;
use quiver_model::{gates::has_run_command, EntryKey, Error, Kind, NewDocument, Result, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::Event;
use crate::lifecycle::{is_moderator, StatusChange};
use crate::{Caller, Registry};
use quiver_store::AuditDiff;

pub const REVIEWS: &str = "quiver.reviews";
pub const TRUST: &str = "quiver.trust";
/// The counter class of a trusted publisher's auto-publishes ([`Database::counters`]).
///
/// [`Database::counters`]: quiver_store::Database::counters
pub const AUTOPUBLISH: &str = "auto-publish";
/// The auto-publish window: a day, aligned to the epoch (the UTC day).
const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 60 * 60);

/// Settings of review and trust.
#[derive(Debug, Clone, PartialEq)]
pub struct ReviewSettings {
    /// Whether first publishes are decided by trust level (off: they publish, as before).
    pub enabled: bool,
    /// How many new entries a `trusted` publisher may publish a day without review.
    pub daily_limit: u64,
}

impl Default for ReviewSettings {
    fn default() -> Self {
        ReviewSettings {
            enabled: false,
            daily_limit: 10,
        }
    }
}

/// A publisher's trust level, weakest first.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrustLevel {
    New,
    Standard,
    Trusted,
    Core,
}

/// Body of `PUT /api/v1/users/{name}/trust`.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrustRequest {
    pub level: TrustLevel,
}

/// A user's trust level.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Trust {
    pub user: String,
    pub level: TrustLevel,
}

/// What a moderator or publisher does to an entry's review (`POST .../review`).
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewAction {
    /// `approve`, `reject`, `request_changes`, `resubmit` or `comment`.
    pub action: ReviewVerb,
    /// Why (required to reject; optional otherwise).
    #[serde(default)]
    pub reason: Option<String>,
    /// The changes asked for (required, non-empty, with `request_changes`).
    #[serde(default)]
    pub changes: Vec<String>,
    /// A comment kept on the review (required with `comment`).
    #[serde(default)]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerb {
    Approve,
    Reject,
    RequestChanges,
    Resubmit,
    Comment,
}

/// The state of a review.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Pending,
    Approved,
    Rejected,
    ChangesRequested,
}

/// One thing that happened in a review.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewEvent {
    pub at: jiff::Timestamp,
    pub actor: String,
    /// `submitted`, `approved`, `rejected`, `changes_requested`, `resubmitted`, `commented`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An entry's review record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Review {
    pub entry: EntryKey,
    pub state: ReviewState,
    /// Who submitted it, and why it needs review.
    pub submitted_by: String,
    pub why: String,
    /// The changes asked for by the latest `request_changes`.
    #[serde(default)]
    pub changes: Vec<String>,
    /// Every submission, decision and comment, oldest first.
    pub events: Vec<ReviewEvent>,
}

/// A user as moderators see them.
#[derive(Debug, Clone, Serialize)]
pub struct UserProfile {
    pub user: quiver_store::User,
    pub memberships: Vec<quiver_store::Membership>,
    pub trust: TrustLevel,
}

/// A page of the queue.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ReviewPage {
    pub items: Vec<Review>,
}

fn review_key(k: &EntryKey) -> String {
    format!("{}/{}/{}", k.kind, k.namespace, k.name)
}

fn text(field: &str, s: Option<&str>, max: usize) -> Result<Option<String>> {
    match s.map(str::trim) {
        None => Ok(None),
        Some(t) if t.is_empty() || t.len() > max => Err(Error::invalid(
            field,
            format!("must be 1 to {max} bytes of text"),
        )),
        Some(t) => Ok(Some(t.to_string())),
    }
}

impl Registry {
    fn review_settings(&self) -> &ReviewSettings {
        &self.config.review
    }

    async fn put_doc(
        &self,
        collection: &str,
        key: String,
        body: Value,
        audit: quiver_store::Audit,
    ) -> Result<()> {
        let out = self
            .db
            .store
            .put_documents_audited(vec![NewDocument::new(collection, key, body)], audit)
            .await?;
        if let Some(quiver_store::ImportOutcome::Rejected(e)) = out.into_iter().next() {
            return Err(e);
        }
        Ok(())
    }

    /// An entry's review record, if it has one.
    async fn review_of(&self, key: &EntryKey) -> Result<Option<Review>> {
        match self
            .db
            .store
            .get_document(REVIEWS, &review_key(key))
            .await?
        {
            Some(d) => serde_json::from_value(d.body)
                .map(Some)
                .map_err(|e| Error::internal("reading a review", e)),
            None => Ok(None),
        }
    }

    async fn save_review(&self, r: &Review) -> Result<()> {
        let body = serde_json::to_value(r).map_err(|e| Error::internal("saving a review", e))?;
        self.put_doc(REVIEWS, review_key(&r.entry), body, None)
            .await
    }

    /// A user's trust level (`new` when none was set).
    pub async fn trust_level(&self, user: &str) -> Result<TrustLevel> {
        Ok(match self.db.store.get_document(TRUST, user).await? {
            Some(d) => serde_json::from_value(d.body["level"].clone()).unwrap_or(TrustLevel::New),
            None => TrustLevel::New,
        })
    }

    /// What moderators see of a user: the account, its memberships and its trust level
    /// (moderators and admins).
    pub async fn user_profile(&self, caller: &Caller, user: &str) -> Result<UserProfile> {
        self.require_moderator(caller, &format!("user {user}"), "user.read")
            .await?;
        let accounts = &self.db.accounts;
        let found = accounts
            .get_user(user)
            .await?
            .ok_or_else(|| Error::not_found(format!("user {user}")))?
            .user;
        Ok(UserProfile {
            memberships: accounts.memberships_of(found.id).await?,
            trust: self.trust_level(user).await?,
            user: found,
        })
    }

    /// Set a user's trust level (moderators and admins).
    pub async fn set_trust(&self, caller: &Caller, user: &str, level: TrustLevel) -> Result<Trust> {
        self.require_moderator(caller, &format!("user {user}"), "user.trust")
            .await?;
        let accounts = &self.db.accounts;
        if accounts.get_user(user).await?.is_none() {
            return Err(Error::not_found(format!("user {user}")));
        }
        let before = self.trust_level(user).await?;
        let audit = self
            .draft(
                caller,
                Event {
                    action: "user.trust",
                    namespace: None,
                    target: format!("user {user}"),
                    denied: None,
                    reason: None,
                    diff: Some(serde_json::json!({"trust": {"before": before, "after": level}})),
                },
                AuditDiff::Given,
            )
            .await;
        self.put_doc(
            TRUST,
            user.to_string(),
            serde_json::json!({"level": level, "set_by": caller.actor()}),
            audit,
        )
        .await?;
        Ok(Trust {
            user: user.to_string(),
            level,
        })
    }

    pub(crate) async fn require_moderator(
        &self,
        caller: &Caller,
        target: &str,
        action: &str,
    ) -> Result<()> {
        if is_moderator(caller) {
            return Ok(());
        }
        if matches!(caller, Principal::Anonymous) {
            return Err(Error::unauthorized(
                "sign in as a moderator (Authorization: Bearer <token>)",
            ));
        }
        let denied = "only moderators and admins may do this".to_string();
        self.record(
            caller,
            Event {
                action,
                namespace: None,
                target: target.to_string(),
                denied: Some(denied.clone()),
                reason: None,
                diff: None,
            },
        )
        .await;
        Err(Error::forbidden(denied))
    }

    /// Whether a non-moderator may create an entry in `status` (only drafts when review
    /// is on).
    pub(crate) fn check_initial_status(
        &self,
        caller: &Caller,
        status: Option<Status>,
    ) -> Result<()> {
        if self.review_settings().enabled
            && !is_moderator(caller)
            && status.is_some_and(|s| s != Status::Draft)
        {
            return Err(Error::invalid(
                "status",
                "new entries start as drafts; publishing the first version publishes them or sends them to review",
            ));
        }
        Ok(())
    }

    /// Before the first version of a draft entry is stored: `Some(why)` when the entry
    /// must go to review instead of being published. Counts a trusted publisher's
    /// auto-publish when it is allowed.
    pub(crate) async fn publish_decision(
        &self,
        caller: &Caller,
        kind: Kind,
        manifest: &Value,
    ) -> Result<Option<String>> {
        self.review_rule(caller, kind, manifest, true).await
    }

    /// [`Registry::publish_decision`] without spending a trusted publisher's daily
    /// auto-publish allowance: the answer a check before publishing gives.
    pub(crate) async fn review_preview(
        &self,
        caller: &Caller,
        kind: Kind,
        manifest: &Value,
    ) -> Result<Option<String>> {
        self.review_rule(caller, kind, manifest, false).await
    }

    async fn review_rule(
        &self,
        caller: &Caller,
        kind: Kind,
        manifest: &Value,
        spend: bool,
    ) -> Result<Option<String>> {
        let settings = self.review_settings();
        if !settings.enabled {
            return Ok(None);
        }
        if kind == Kind::Recipe && has_run_command(manifest) {
            return Ok(Some(
                "the recipe runs arbitrary commands (run_command)".into(),
            ));
        }
        let Some(account) = caller.account() else {
            // The bootstrap admin and the open mode publish as core.
            return Ok(None);
        };
        let level = self.trust_level(&account.name).await?;
        match level {
            TrustLevel::Core => Ok(None),
            TrustLevel::New => Ok(Some(format!("{} is a new publisher", account.name))),
            TrustLevel::Standard => Ok(Some(format!(
                "new entries of standard publishers ({}) are reviewed",
                account.name
            ))),
            TrustLevel::Trusted if !spend => Ok(None),
            TrustLevel::Trusted => {
                // One atomic hit per auto-publish in the store's shared counters: the
                // 24 h window is aligned to the epoch, so it is the UTC day.
                let verdict = self
                    .db
                    .counters
                    .hit(
                        &format!("user:{}", account.id),
                        AUTOPUBLISH,
                        DAY,
                        settings.daily_limit,
                    )
                    .await?;
                if !verdict.is_allowed() {
                    return Ok(Some(format!(
                        "{} reached the daily auto-publish limit of {}",
                        account.name, settings.daily_limit
                    )));
                }
                Ok(None)
            }
        }
    }

    /// Send a draft entry to review (before its first version is stored).
    pub(crate) async fn submit_for_review(
        &self,
        caller: &Caller,
        key: &EntryKey,
        why: String,
    ) -> Result<()> {
        let change = StatusChange {
            status: Status::Review,
            reason: why,
            message: None,
            replacement: None,
        };
        self.change_status_with(caller, key, change, vec![])
            .await
            .map(|_| ())
    }

    /// Keep the review record in step with a status change into or out of review.
    pub(crate) async fn note_review(
        &self,
        caller: &Caller,
        key: &EntryKey,
        from: Status,
        to: Status,
        reason: &str,
        changes: Vec<String>,
    ) -> Result<()> {
        let (event, state) = match (from, to) {
            (_, Status::Review) => ("submitted", ReviewState::Pending),
            (Status::Review, Status::Published) => ("approved", ReviewState::Approved),
            (Status::Review, Status::Archived) => ("rejected", ReviewState::Rejected),
            (Status::Review, Status::Draft) if !changes.is_empty() => {
                ("changes_requested", ReviewState::ChangesRequested)
            }
            (Status::Review, _) => ("withdrawn", ReviewState::ChangesRequested),
            _ => return Ok(()),
        };
        let mut r = self.review_of(key).await?.unwrap_or(Review {
            entry: key.clone(),
            state,
            submitted_by: caller.actor(),
            why: reason.to_string(),
            changes: vec![],
            events: vec![],
        });
        r.state = state;
        if !changes.is_empty() {
            r.changes = changes.clone();
        }
        r.events.push(ReviewEvent {
            at: jiff::Timestamp::now(),
            actor: caller.actor(),
            event: event.into(),
            reason: Some(reason.to_string()),
            changes,
            comment: None,
        });
        self.save_review(&r).await
    }

    /// The review record of an entry: for its writers and moderators.
    pub async fn get_review(&self, caller: &Caller, key: &EntryKey) -> Result<Review> {
        if !is_moderator(caller) {
            self.writable_entry(caller, key, quiver_auth::Action::Publish)
                .await?;
        } else {
            self.visible_entry(caller, key).await?;
        }
        self.review_of(key)
            .await?
            .ok_or_else(|| Error::not_found(format!("a review of {key}")))
    }

    /// The moderation queue: reviews in `state` (default pending), for moderators.
    pub async fn list_reviews(
        &self,
        caller: &Caller,
        state: Option<ReviewState>,
    ) -> Result<ReviewPage> {
        self.require_moderator(caller, "reviews", "review.list")
            .await?;
        let want = state.unwrap_or(ReviewState::Pending);
        let mut items = vec![];
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .db
                .store
                .list_documents(REVIEWS, cursor.as_deref(), 100)
                .await?;
            for d in page.items {
                if let Ok(r) = serde_json::from_value::<Review>(d.body) {
                    if r.state == want {
                        items.push(r);
                    }
                }
            }
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(ReviewPage { items })
    }

    /// Act on an entry's review: decisions and resubmissions are lifecycle changes
    /// (recorded on the review by [`Registry::note_review`]); comments are kept on it.
    pub async fn review(
        &self,
        caller: &Caller,
        key: &EntryKey,
        act: ReviewAction,
    ) -> Result<Review> {
        let reason = text("reason", act.reason.as_deref(), 1000)?;
        let comment = text("comment", act.comment.as_deref(), 4000)?;
        let changes: Vec<String> = act
            .changes
            .iter()
            .map(|c| text("changes", Some(c), 1000).map(Option::unwrap_or_default))
            .collect::<Result<_>>()?;
        let change = |status: Status, why: String| StatusChange {
            status,
            reason: why,
            message: None,
            replacement: None,
        };
        let decision = match act.action {
            ReviewVerb::Approve => Some((
                Status::Published,
                reason.clone().unwrap_or_else(|| "approved".into()),
            )),
            ReviewVerb::Reject => Some((
                Status::Archived,
                reason
                    .clone()
                    .ok_or_else(|| Error::invalid("reason", "a rejection needs a reason"))?,
            )),
            ReviewVerb::RequestChanges => {
                if changes.is_empty() {
                    return Err(Error::invalid(
                        "changes",
                        "list the changes to make (at least one)",
                    ));
                }
                Some((
                    Status::Draft,
                    reason
                        .clone()
                        .unwrap_or_else(|| format!("changes requested: {}", changes.join("; "))),
                ))
            }
            _ => None,
        };
        if let Some((status, why)) = decision {
            self.require_moderator(caller, &key.to_string(), "review.decide")
                .await?;
            let e = self.visible_entry(caller, key).await?;
            if e.status != Status::Review {
                return Err(Error::conflict(
                    "status",
                    format!("the entry is {}, not in review", e.status),
                ));
            }
            self.change_status_with(caller, key, change(status, why), changes)
                .await?;
        } else if act.action == ReviewVerb::Resubmit {
            let why = reason.unwrap_or_else(|| "resubmitted".into());
            self.change_status_with(caller, key, change(Status::Review, why), vec![])
                .await?;
        } else {
            let Some(comment) = comment else {
                return Err(Error::invalid("comment", "a comment needs text"));
            };
            if is_moderator(caller) {
                self.visible_entry(caller, key).await?;
            } else {
                self.writable_entry(caller, key, quiver_auth::Action::Publish)
                    .await?;
            }
            let mut r = self
                .review_of(key)
                .await?
                .ok_or_else(|| Error::not_found(format!("a review of {key}")))?;
            r.events.push(ReviewEvent {
                at: jiff::Timestamp::now(),
                actor: caller.actor(),
                event: "commented".into(),
                reason: None,
                changes: vec![],
                comment: Some(comment),
            });
            self.save_review(&r).await?;
            return Ok(r);
        }
        self.review_of(key)
            .await?
            .ok_or_else(|| Error::internal("review", "the review record is missing"))
    }
}
