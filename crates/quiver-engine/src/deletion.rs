//! The deletion policy, tombstones, and disabling one version.
//!
//! **Deleting.** Like the large registries, deleting is the exception: what others may
//! already use is yanked, deprecated or archived instead, never made to vanish.
//! - An entry's or version's *owners* (the namespace's `owner` role; a token needs the
//!   `yank` scope) may delete it only while all of these hold, else the answer is a
//!   `delete_refused` conflict (409) that says which rule failed and what to do instead:
//!   - it is inside the grace period ([`DeletionSettings::grace`], 72 hours by default)
//!     after it was published (an entry: after it was created, so an entry whose first
//!     version is older than that cannot go even if a newer version is recent);
//!   - nothing depends on it: no other entry has a `depends_on` or `composes` relation to
//!     the entry (relations name entries, not versions, so a dependent blocks deleting
//!     any of the entry's versions too);
//!   - it has at most [`DeletionSettings::max_downloads`] counted downloads (the entry's,
//!     all versions; a version's own): this node's buffered hits are flushed first; hits
//!     still buffered on other nodes (at most one flush interval's worth) are not counted
//!     yet.
//! - A *site admin* may delete anything at any time (legal or security reasons), with a
//!   reason. The tombstone keeps the name reserved: nobody but an admin may register it
//!   again. An owner's deletion frees the name for the namespace's members.
//! - A deleted version's number is never published again for that name, whoever deleted
//!   it (mirrors and caches may hold the old content under it).
//!
//! **What a deletion does.** One store transaction ([`Store::delete_entry_audited`],
//! [`Store::delete_version_audited`]): the rows go (an entry's versions, relations both
//! ways, tags, dist-tags, download counts, usage events, advisory links; a version's row
//! and its dist-tags), a [`Tombstone`] stays, a feed row (`delete`) tells the search
//! follower (which drops the entry) and the public change feed (which names the deleted
//! entry or version from its tombstone to everyone who could read it), and the audit
//! row (`entry.delete`, `version.delete`, with the reason) commits with it. A deleted
//! version's content is no longer served (the content route reads the version first);
//! the bytes stay in the content store, which is addressed by hash and may share them.
//! Reads of a deleted entry or version answer 404 `not_found`, whose message says it
//! was deleted and why.
//!
//! **Disabling one version** (`POST …/versions/{v}/disable`, its maintainers): the
//! version stays readable by exact version and is marked `disabled` with the reason; no
//! range, dist-tag or `latest` resolves to it (an exact pin does, with a warning), it is
//! never the entry's latest version and so never selected. Audited (`version.disable`,
//! `version.enable`) and on the feed (a version update).
//!
//! [`Store::delete_entry_audited`]: quiver_store::Store::delete_entry_audited
//! [`Store::delete_version_audited`]: quiver_store::Store::delete_version_audited

use std::time::Duration;

use quiver_auth::{Action, Target};
use quiver_model::{EntryKey, Error, ErrorCode, RelationKind, Result, Tombstone, Version};
use quiver_store::{AuditDiff, Direction, NewTombstone};

use crate::audit::Event;
use crate::{Caller, Registry};

/// The deletion policy's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionSettings {
    /// How long after publishing an owner may still delete.
    pub grace: Duration,
    /// The most counted downloads an owner may still delete.
    pub max_downloads: u64,
}

/// The default grace period: 72 hours.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(72 * 3600);
/// The default download threshold.
pub const DEFAULT_MAX_DOWNLOADS: u64 = 100;

impl Default for DeletionSettings {
    fn default() -> Self {
        DeletionSettings {
            grace: DEFAULT_GRACE,
            max_downloads: DEFAULT_MAX_DOWNLOADS,
        }
    }
}

/// The longest reason, in characters.
pub const MAX_REASON: usize = 500;

/// A reason, trimmed: 1 to [`MAX_REASON`] characters, no control or invisible ones.
pub(crate) fn check_reason(reason: &str) -> Result<String> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(Error::invalid(
            "reason",
            format!("say why, in 1 to {MAX_REASON} characters"),
        ));
    }
    if reason.chars().any(quiver_model::validate::is_invisible) {
        return Err(Error::invalid(
            "reason",
            "no control or invisible characters",
        ));
    }
    Ok(reason.to_string())
}

/// `hours` as people say it.
fn span(d: Duration) -> String {
    let h = d.as_secs() / 3600;
    if h >= 1 {
        format!("{h} hours")
    } else {
        format!("{} minutes", d.as_secs() / 60)
    }
}

impl Registry {
    /// Whether the caller is a site admin (who may delete anything, leaving a reserving
    /// tombstone).
    async fn is_site_admin(&self, caller: &Caller) -> Result<bool> {
        Ok(self
            .decide(caller, Action::Administer, &Target::site())
            .await?
            .is_allowed())
    }

    /// Delete an entry under the deletion policy (see the module's notes): its owners
    /// within the grace period with no dependents and few downloads, or a site admin at
    /// any time with a reason. Answers the tombstone.
    pub async fn delete_entry(
        &self,
        caller: &Caller,
        key: &EntryKey,
        reason: Option<&str>,
    ) -> Result<Tombstone> {
        let (key, tombstone, audit) = self.approve_delete(caller, key, None, reason).await?;
        self.db
            .store
            .delete_entry_audited(&key, tombstone, audit)
            .await
    }

    /// Delete one version under the deletion policy (see the module's notes). Its number
    /// is never published again for this name.
    pub async fn delete_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
        reason: Option<&str>,
    ) -> Result<Tombstone> {
        let (key, tombstone, audit) = self
            .approve_delete(caller, key, Some(version), reason)
            .await?;
        self.db
            .store
            .delete_version_audited(&key, version, tombstone, audit)
            .await
    }

    /// What an entry's and a version's deletion share: who may (owners under the policy,
    /// site admins with a reason), the refusal with its audit row, and the tombstone and
    /// audit row the deletion commits with. Answers the entry's stored key.
    async fn approve_delete(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: Option<&str>,
        reason: Option<&str>,
    ) -> Result<(EntryKey, NewTombstone, quiver_store::Audit)> {
        let reason = reason.map(check_reason).transpose()?;
        let admin = self.is_site_admin(caller).await?;
        let entry = if admin {
            self.visible_entry(caller, key).await?
        } else {
            self.writable_entry(caller, key, Action::Delete).await?
        };
        let key = entry.key();
        let published = match version {
            Some(v) => self.existing_version(caller, &key, v).await?.published_at,
            None => entry.created_at,
        };
        if admin {
            if reason.is_none() {
                return Err(Error::invalid(
                    "reason",
                    "an admin's deletion says why (legal or security reasons)",
                ));
            }
        } else {
            self.flush_downloads().await?;
            // The entry's downloads over all versions, or the version's own.
            let downloads = self
                .db
                .downloads
                .download_totals(&key)
                .await?
                .iter()
                .filter(|(v, _)| version.is_none_or(|want| v == want))
                .map(|(_, n)| n)
                .sum();
            if let Some(why) = self.refusal(&key, version, published, downloads).await? {
                return Err(self.refuse(caller, &key, version, why).await);
            }
        }
        let reason = reason.unwrap_or_else(|| "deleted by its owner".to_string());
        let (action, target) = match version {
            Some(v) => ("version.delete", format!("{key}@{v}")),
            None => ("entry.delete", key.to_string()),
        };
        let audit = self
            .draft(
                caller,
                Event {
                    action,
                    namespace: Some(&key.namespace),
                    target,
                    denied: None,
                    reason: Some(reason.clone()),
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        let tombstone = NewTombstone {
            reason,
            actor: caller.actor(),
            by_admin: admin,
        };
        Ok((key, tombstone, audit))
    }

    /// Why the policy refuses an owner's deletion, if it does.
    async fn refusal(
        &self,
        key: &EntryKey,
        version: Option<&str>,
        published: jiff::Timestamp,
        downloads: u64,
    ) -> Result<Option<String>> {
        let what = match version {
            Some(v) => format!("version {v} of {key}"),
            None => key.to_string(),
        };
        let instead = match version {
            Some(_) => "yank the version instead (POST …/versions/{version}/yank), or disable it",
            None => "yank its versions, deprecate it (POST …/deprecate) or archive it (POST …/status) instead",
        };
        let grace = self.config.deletion.grace;
        let age = jiff::Timestamp::now().duration_since(published);
        let age = Duration::try_from(age).unwrap_or_default();
        if age > grace {
            return Ok(Some(format!(
                "{what} cannot be deleted: it was published {} ago, past the {} grace period; \
                 {instead}",
                span(age),
                span(grace)
            )));
        }
        let mut dependents: Vec<String> = self
            .db
            .store
            .list_relations(key, Direction::Incoming)
            .await?
            .into_iter()
            .filter(|r| matches!(r.kind, RelationKind::DependsOn | RelationKind::Composes))
            .filter(|r| r.from != *key)
            .map(|r| r.from.to_string())
            .collect();
        dependents.sort();
        dependents.dedup();
        if !dependents.is_empty() {
            let n = dependents.len();
            dependents.truncate(3);
            return Ok(Some(format!(
                "{what} cannot be deleted: {n} other entr{} depend{} on {key} ({}{}); {instead}",
                if n == 1 { "y" } else { "ies" },
                if n == 1 { "s" } else { "" },
                dependents.join(", "),
                if n > 3 { ", …" } else { "" },
            )));
        }
        let max = self.config.deletion.max_downloads;
        if downloads > max {
            return Ok(Some(format!(
                "{what} cannot be deleted: it has {downloads} counted download{}, more than \
                 the {max} an owner may delete; {instead}",
                if downloads == 1 { "" } else { "s" }
            )));
        }
        Ok(None)
    }

    /// The refusal as an error, with its denied audit row.
    async fn refuse(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: Option<&str>,
        why: String,
    ) -> Error {
        let (action, target) = match version {
            Some(v) => ("version.delete", format!("{key}@{v}")),
            None => ("entry.delete", key.to_string()),
        };
        self.record(
            caller,
            Event {
                action,
                namespace: Some(&key.namespace),
                target,
                denied: Some(why.clone()),
                reason: None,
                diff: None,
            },
        )
        .await;
        Error::delete_refused(why)
    }

    /// A version of a visible entry, or a not-found that says when it was deleted.
    async fn existing_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
    ) -> Result<Version> {
        match self.db.store.get_version(key, version).await? {
            Some(v) => Ok(v),
            None => Err(self.missing_version(caller, key, version).await),
        }
    }

    /// The not-found of an entry that is not there: it says so when the entry was
    /// deleted (and the caller could read it), with the tombstone's reason.
    pub(crate) async fn missing_entry(&self, caller: &Caller, key: &EntryKey) -> Error {
        match self.tombstone_of(caller, key, None).await {
            Some(t) => gone(&key.to_string(), &t),
            None => Error::not_found(key),
        }
    }

    /// [`Registry::missing_entry`] for a version.
    pub(crate) async fn missing_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
    ) -> Error {
        let what = format!("version {version} of {key}");
        match self.tombstone_of(caller, key, Some(version)).await {
            Some(t) => gone(&what, &t),
            None => Error::not_found(what),
        }
    }

    /// The newest tombstone of the entry (`version` `None`) or of one version, if the
    /// caller could have read the entry.
    async fn tombstone_of(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: Option<&str>,
    ) -> Option<Tombstone> {
        let t = self
            .db
            .store
            .tombstones(key)
            .await
            .ok()?
            .into_iter()
            .find(|t| t.version.as_deref() == version)?;
        let target = Target::entry(&t.namespace, &t.name, t.visibility);
        self.decide(caller, Action::Read, &target)
            .await
            .ok()?
            .is_allowed()
            .then_some(t)
    }

    /// Refuse to register a name an admin deleted, unless the caller is an admin.
    pub(crate) async fn check_reserved(&self, caller: &Caller, key: &EntryKey) -> Result<()> {
        let reserved = self
            .db
            .store
            .tombstones(key)
            .await?
            .into_iter()
            .find(|t| t.version.is_none() && t.by_admin);
        if let Some(t) = reserved {
            if !self.is_site_admin(caller).await? {
                return Err(Error::conflict(
                    "name",
                    format!(
                        "{key} was deleted by an administrator ({}) and the name stays \
                         reserved; choose another name",
                        t.reason
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Refuse to publish a version number that was deleted.
    pub(crate) async fn check_version_number(&self, key: &EntryKey, version: &str) -> Result<()> {
        let deleted = self
            .db
            .store
            .tombstones(key)
            .await?
            .into_iter()
            .any(|t| t.version.as_deref() == Some(version));
        if deleted {
            return Err(Error::conflict(
                "version",
                format!(
                    "version {version} of {key} was deleted; a deleted version number is never \
                     published again (publish a new version)"
                ),
            ));
        }
        Ok(())
    }

    /// Disable one version with a reason (the entry's maintainers: those who may publish
    /// it). Disabling a disabled version again replaces the reason.
    pub async fn disable_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
        reason: &str,
    ) -> Result<Version> {
        let reason = check_reason(reason)?;
        let disabled = quiver_model::Disabled {
            reason: reason.clone(),
            since: jiff::Timestamp::now(),
        };
        self.set_version_disabled(caller, key, version, Some(disabled), Some(reason))
            .await
    }

    /// Enable a disabled version again (its maintainers); enabling an enabled version
    /// writes nothing.
    pub async fn enable_version(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
    ) -> Result<Version> {
        self.set_version_disabled(caller, key, version, None, None)
            .await
    }

    async fn set_version_disabled(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
        disabled: Option<quiver_model::Disabled>,
        reason: Option<String>,
    ) -> Result<Version> {
        let entry = self.writable_entry(caller, key, Action::Publish).await?;
        let key = entry.key();
        let before = self.existing_version(caller, &key, version).await?;
        if before.disabled.is_none() && disabled.is_none() {
            return Ok(before);
        }
        let audit = self
            .draft(
                caller,
                Event {
                    action: if disabled.is_some() {
                        "version.disable"
                    } else {
                        "version.enable"
                    },
                    namespace: Some(&key.namespace),
                    target: format!("{key}@{version}"),
                    denied: None,
                    reason,
                    diff: Some(serde_json::json!({
                        "disabled": {
                            "before": before.disabled.as_ref().map(|d| &d.reason),
                            "after": disabled.as_ref().map(|d| &d.reason),
                        }
                    })),
                },
                AuditDiff::Given,
            )
            .await;
        self.db
            .store
            .set_version_disabled_audited(&key, version, disabled, audit)
            .await
    }
}

/// The not-found of something deleted: what, when and why.
fn gone(what: &str, t: &Tombstone) -> Error {
    Error {
        code: ErrorCode::NotFound,
        message: format!(
            "{what} not found: it was deleted on {} ({})",
            t.deleted_at.strftime("%Y-%m-%d"),
            t.reason
        ),
        field: None,
        retry_after: None,
    }
}
