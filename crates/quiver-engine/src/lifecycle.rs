//! The lifecycle of an entry: `draft → review → published → deprecated → archived`.
//!
//! Every status change goes through [`Registry::change_status`] (`POST .../status`, and
//! `POST .../deprecate`, which is a change to `deprecated` whose message is the reason),
//! checked against one table ([`allowed_next`]) and carrying a reason, which the audit log
//! records with the change (`entry.status`, the reason, and the status and deprecation as
//! a diff). `PATCH` edits metadata only: a PATCH that would change the status is refused
//! and names the route to use. The one status change without a request is the store's own
//! `draft → published` when an entry's first version is published, which the table
//! allows.
//!
//! Who: the entry's maintainers and owners make every allowed change except approving an
//! entry in review (`review → published`), which is for moderators and admins. Moderators
//! and admins may make every allowed change to any entry they can see.

use quiver_auth::{Action, Principal, SiteRole};
use quiver_model::{Deprecation, Entry, EntryKey, EntryPatch, Error, Result, Status};
use serde::{Deserialize, Serialize};

use quiver_store::AuditDiff;

use crate::audit::Event;
use crate::{Caller, Registry};

/// The statuses an entry in `from` may move to.
///
/// - `draft`: submitted for `review`, `published` (the first version publishes a draft),
///   or `archived` (abandoned).
/// - `review`: `published` (approved), back to `draft` (withdrawn, or changes asked), or
///   `archived` (rejected).
/// - `published`: `deprecated` or `archived`.
/// - `deprecated`: `published` again (the deprecation is lifted), `deprecated` again (a new
///   message or replacement), or `archived`.
/// - `archived`: only back to `deprecated` (restored, still marked as not for new use).
pub fn allowed_next(from: Status) -> &'static [Status] {
    use Status::*;
    match from {
        Draft => &[Review, Published, Archived],
        Review => &[Published, Draft, Archived],
        Published => &[Deprecated, Archived],
        Deprecated => &[Published, Deprecated, Archived],
        Archived => &[Deprecated],
    }
}

/// Whether `from → to` is in the table.
pub fn is_allowed(from: Status, to: Status) -> bool {
    allowed_next(from).contains(&to)
}

/// Whether only a moderator (or admin) may make this change.
pub fn needs_moderator(from: Status, to: Status) -> bool {
    from == Status::Review && to == Status::Published
}

/// `Ok` for a change in the table, else a conflict that says what is allowed instead.
pub fn check(from: Status, to: Status) -> Result<()> {
    if is_allowed(from, to) {
        return Ok(());
    }
    let next: Vec<&str> = allowed_next(from).iter().map(|s| s.as_str()).collect();
    let msg = if from == to {
        format!("the entry is already {from}")
    } else {
        format!("an entry cannot go from {from} to {to}")
    };
    Err(Error::conflict(
        "status",
        format!(
            "{msg}; from {from} it may go to: {}",
            if next.is_empty() {
                "nothing".to_string()
            } else {
                next.join(", ")
            }
        ),
    ))
}

/// Body of `POST .../status`: the new status and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    pub status: Status,
    /// Why (required, 1 to 1000 bytes); kept in the audit log with the change. (Absent
    /// reads as empty, so that a missing reason is named as the field at fault.)
    #[serde(default)]
    pub reason: String,
    /// For `deprecated`: the message shown to users (defaults to the reason).
    #[serde(default)]
    pub message: Option<String>,
    /// For `deprecated`: what to use instead.
    #[serde(default)]
    pub replacement: Option<String>,
}

const MAX_REASON: usize = 1000;

/// Whether the caller acts as a moderator: the site's moderators and admins (a token
/// needs the `admin` scope for it), the bootstrap admin, and anyone on an open server.
pub fn is_moderator(caller: &Principal) -> bool {
    match caller {
        Principal::Open | Principal::BootstrapAdmin | Principal::Operator => true,
        Principal::User(a) => matches!(a.site_role, Some(SiteRole::Admin | SiteRole::Moderator)),
        Principal::Token {
            account, scopes, ..
        } => {
            matches!(
                account.site_role,
                Some(SiteRole::Admin | SiteRole::Moderator)
            ) && scopes.contains(&quiver_auth::Scope::Admin)
        }
        Principal::Anonymous => false,
    }
}

fn text(field: &str, s: &str, max: usize) -> Result<String> {
    let t = s.trim();
    if t.is_empty() || t.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be 1 to {max} bytes of text"),
        ));
    }
    Ok(t.to_string())
}

impl Registry {
    /// Move an entry to another status, if the lifecycle allows it and the caller may,
    /// recording the reason in the audit log.
    pub async fn change_status(
        &self,
        caller: &Caller,
        key: &EntryKey,
        change: StatusChange,
    ) -> Result<Entry> {
        self.change_status_with(caller, key, change, vec![]).await
    }

    /// [`Registry::change_status`] with the changes a moderator asked for (kept on the
    /// entry's review record).
    pub(crate) async fn change_status_with(
        &self,
        caller: &Caller,
        key: &EntryKey,
        change: StatusChange,
        changes: Vec<String>,
    ) -> Result<Entry> {
        let reason = text("reason", &change.reason, MAX_REASON)?;
        let deprecation = if change.status == Status::Deprecated {
            let message = text(
                "message",
                change.message.as_deref().unwrap_or(&reason),
                MAX_REASON,
            )?;
            let replacement = match &change.replacement {
                Some(r) => Some(text("replacement", r, 300)?),
                None => None,
            };
            Some(Deprecation {
                message,
                replacement,
            })
        } else {
            if change.message.is_some() || change.replacement.is_some() {
                return Err(Error::invalid(
                    "message",
                    "a message and a replacement go only with status deprecated",
                ));
            }
            None
        };

        let moderator = is_moderator(caller);
        let before = if moderator {
            self.visible_entry(caller, key).await?
        } else {
            self.writable_entry(caller, key, Action::Publish).await?
        };
        check(before.status, change.status)?;
        if needs_moderator(before.status, change.status) && !moderator {
            let denied = "only a moderator may approve an entry in review".to_string();
            self.record(
                caller,
                Event {
                    action: "entry.status",
                    namespace: Some(&key.namespace),
                    target: key.to_string(),
                    denied: Some(denied.clone()),
                    reason: None,
                    diff: None,
                },
            )
            .await;
            return Err(Error::forbidden(denied));
        }
        let audit = self
            .draft(
                caller,
                Event {
                    action: "entry.status",
                    namespace: Some(&before.namespace),
                    target: key.to_string(),
                    denied: None,
                    reason: Some(reason.clone()),
                    diff: Some(serde_json::json!({
                        "status": {"before": before.status, "after": change.status},
                        "deprecation": {"before": before.deprecation, "after": deprecation},
                    })),
                },
                AuditDiff::Given,
            )
            .await;
        let patch = EntryPatch {
            status: Some(change.status),
            deprecation,
            ..Default::default()
        };
        let after = self
            .db
            .store
            .update_entry_audited(key, patch, audit)
            .await?;
        self.note_review(caller, key, before.status, after.status, &reason, changes)
            .await?;
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_lifecycle() {
        use Status::*;
        let allowed: Vec<(Status, Status)> = Status::ALL
            .iter()
            .flat_map(|&f| Status::ALL.iter().map(move |&t| (f, t)))
            .filter(|&(f, t)| is_allowed(f, t))
            .collect();
        assert_eq!(
            allowed,
            vec![
                (Draft, Review),
                (Draft, Published),
                (Draft, Archived),
                (Review, Draft),
                (Review, Published),
                (Review, Archived),
                (Published, Deprecated),
                (Published, Archived),
                (Deprecated, Published),
                (Deprecated, Deprecated),
                (Deprecated, Archived),
                (Archived, Deprecated),
            ]
        );
        let e = check(Archived, Published).unwrap_err();
        assert_eq!(e.code, quiver_model::ErrorCode::Conflict);
        assert!(
            e.message.contains("archived to published") && e.message.contains("deprecated"),
            "{}",
            e.message
        );
        assert!(check(Published, Published)
            .unwrap_err()
            .message
            .contains("already published"));
        assert!(needs_moderator(Review, Published));
        assert!(!needs_moderator(Review, Draft));
    }
}
