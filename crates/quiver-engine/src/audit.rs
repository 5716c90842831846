//! The audit trail: every write and every denied write leaves a row (actor, action,
//! target, outcome, reason, the change as a diff, the hashed client address). Readable
//! by admins, and by a namespace's owners for their namespace; listed a page at a time
//! or exported whole ([`Registry::export_audit`]).
//!
//! **When rows are written.** The row of a write to entries, versions and relations is
//! committed in the write's own transaction ([`Registry::draft`], the store's `*_audited`
//! methods): a write without its row, or a row without its write, cannot be committed, on
//! either backend, whatever crashes when. Denied writes, and writes outside the store
//! (accounts, tokens, documents), append their row in a statement of their own after the
//! write and before the answer ([`Registry::record`]).
//!
//! **Client addresses.** The HTTP layer runs each request inside [`with_client`], which
//! puts the client's address in a task-local for the request's duration. The engine's
//! methods keep their signatures (the caller is the principal); only [`Registry::record`]
//! reads the address, and stores it hashed with a salt that the registry keeps in its
//! store ([`SALT_COLLECTION`]), so every node hashes alike and the log holds no address.

use std::future::Future;
use std::sync::Arc;

use quiver_auth::{authorize, Action, Principal, Target};
use quiver_model::{Error, NewDocument, Result};
use quiver_store::{
    Audit, AuditDiff, AuditDraft, AuditFilter, AuditLog, AuditRecord, NewAuditRecord, Page,
};

use crate::{check_limit, Caller, Registry};

/// Where the registry keeps its secrets (documents not served by any route).
pub const SALT_COLLECTION: &str = "quiver.secrets";
const SALT_KEY: &str = "audit-address-salt";

tokio::task_local! {
    /// The client address of the request being served, if known.
    static CLIENT: Option<String>;
}

/// Run `fut` (one request) with `address` as its client address for the audit log.
pub async fn with_client<F: Future>(address: Option<String>, fut: F) -> F::Output {
    CLIENT.scope(address, fut).await
}

/// The client address of the current request, if any.
pub(crate) fn current_client() -> Option<String> {
    CLIENT.try_with(|c| c.clone()).ok().flatten()
}

pub use quiver_store::audit::{diff, diff_of};

/// The audit name of a policy action.
pub(crate) fn action_name(a: Action) -> &'static str {
    match a {
        Action::Read => "entry.read",
        Action::List => "entry.list",
        Action::CreateEntry => "entry.create",
        Action::Publish => "entry.publish",
        Action::Yank => "version.yank",
        Action::Delete => "entry.delete",
        Action::ManageMembers => "namespace.members",
        Action::Administer => "site.administer",
    }
}

/// What an audit row records about one event.
pub(crate) struct Event<'a> {
    pub action: &'a str,
    pub namespace: Option<&'a str>,
    pub target: String,
    pub denied: Option<String>,
    pub reason: Option<String>,
    pub diff: Option<serde_json::Value>,
}

impl Registry {
    /// The salt of client-address hashes: read from the store, or made and stored on
    /// first use. (Two nodes making one at the same instant both re-read the stored one,
    /// so they agree unless a write lands between one's write and the other's read.)
    async fn audit_salt(&self) -> Result<&str> {
        let salt = self
            .audit_salt
            .get_or_try_init(|| async {
                if let Some(d) = self
                    .db
                    .store
                    .get_document(SALT_COLLECTION, SALT_KEY)
                    .await?
                {
                    if let Some(s) = d.body["salt"].as_str() {
                        return Ok(s.to_string());
                    }
                }
                let salt = quiver_auth::secrets::generate_salt()?;
                self.db
                    .store
                    .put_documents(vec![NewDocument::new(
                        SALT_COLLECTION,
                        SALT_KEY,
                        serde_json::json!({ "salt": salt }),
                    )])
                    .await?;
                let stored = self
                    .db
                    .store
                    .get_document(SALT_COLLECTION, SALT_KEY)
                    .await?;
                Ok::<_, Error>(
                    stored
                        .and_then(|d| d.body["salt"].as_str().map(str::to_string))
                        .unwrap_or(salt),
                )
            })
            .await?;
        Ok(salt)
    }

    /// The current request's client address, hashed (`None` outside a request).
    pub(crate) async fn client_hash(&self) -> Option<String> {
        let address = current_client()?;
        match self.audit_salt().await {
            Ok(salt) => Some(quiver_auth::secrets::address_hash(salt, &address)),
            Err(err) => {
                tracing::error!(error = %err, "no audit salt; the client address is not recorded");
                None
            }
        }
    }

    /// The row of an event, with the current request's hashed client address.
    async fn row(&self, caller: &Caller, e: Event<'_>) -> NewAuditRecord {
        NewAuditRecord {
            client: self.client_hash().await,
            actor: caller.actor(),
            action: e.action.to_string(),
            namespace: e.namespace.filter(|n| !n.is_empty()).map(str::to_string),
            target: e.target,
            outcome: if e.denied.is_some() {
                "denied"
            } else {
                "allowed"
            }
            .to_string(),
            reason: e.denied.or(e.reason),
            diff: e.diff,
        }
    }

    /// The row a store write commits with (see [`AuditDraft`]): an entry, version or
    /// relation and its audit row are committed in one transaction, on every backend.
    pub(crate) async fn draft(&self, caller: &Caller, e: Event<'_>, diff: AuditDiff) -> Audit {
        Some(AuditDraft {
            record: self.row(caller, e).await,
            diff,
        })
    }

    /// Append a row of its own: a denied write, or a write outside the store's entry
    /// writes (accounts, documents). A failure is logged, never returned (the write
    /// already happened).
    pub(crate) async fn record(&self, caller: &Caller, e: Event<'_>) {
        let row = self.row(caller, e).await;
        if let Err(err) = self.db.audit.append_audit(row).await {
            tracing::error!(error = %err, "could not append to the audit log");
        }
    }

    /// Whether `caller` may read the audit rows `filter` selects: admins everything,
    /// a namespace's owners that namespace's rows (the filter must name it).
    fn may_read_audit(&self, caller: &Caller, filter: &AuditFilter) -> Result<Arc<dyn AuditLog>> {
        let admin = authorize(caller, Action::Administer, &Target::site()).is_allowed();
        if !admin {
            if matches!(caller, Principal::Anonymous | Principal::Open) {
                return Err(Error::unauthorized(
                    "sign in to read the audit log (Authorization: Bearer <token>)",
                ));
            }
            let owner = filter.namespace.as_deref().is_some_and(|ns| {
                authorize(caller, Action::ManageMembers, &Target::namespace(ns)).is_allowed()
            });
            if !owner {
                return Err(Error::forbidden(
                    "the audit log is for admins, and for owners of a namespace with namespace=<theirs>",
                ));
            }
        }
        if let (Some(since), Some(until)) = (filter.since, filter.until) {
            if since >= until {
                return Err(Error::invalid("until", "must be later than since"));
            }
        }
        Ok(self.db.audit.clone())
    }

    /// The audit log, newest first, a page at a time (see [`Self::may_read_audit`]).
    pub async fn list_audit(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditRecord>> {
        check_limit(limit)?;
        let log = self.may_read_audit(caller, &filter)?;
        log.list_audit(&filter, cursor, limit).await
    }

    /// Every audit row the filter selects, newest first, read a page at a time as the
    /// export is consumed (the same rights as [`Self::list_audit`], checked once here).
    pub fn export_audit(&self, caller: &Caller, filter: AuditFilter) -> Result<AuditExport> {
        let log = self.may_read_audit(caller, &filter)?;
        Ok(AuditExport {
            log,
            filter,
            cursor: None,
            done: false,
        })
    }
}

/// An audit export in progress: [`AuditExport::next_page`] until it gives `None`.
pub struct AuditExport {
    log: Arc<dyn AuditLog>,
    filter: AuditFilter,
    cursor: Option<String>,
    done: bool,
}

impl AuditExport {
    /// Rows read per page.
    pub const PAGE: usize = 500;

    /// The next rows, or `None` when all have been given.
    pub async fn next_page(&mut self) -> Result<Option<Vec<AuditRecord>>> {
        if self.done {
            return Ok(None);
        }
        let page = self
            .log
            .list_audit(&self.filter, self.cursor.as_deref(), Self::PAGE)
            .await?;
        self.cursor = page.next_cursor;
        self.done = self.cursor.is_none();
        if page.items.is_empty() {
            return Ok(None);
        }
        Ok(Some(page.items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn diffs_name_changed_fields_only() {
        let d = diff(
            &json!({"a": 1, "b": "x", "updated_at": 1, "gone": true}),
            &json!({"a": 1, "b": "y", "updated_at": 2, "new": [1]}),
        );
        assert_eq!(
            d,
            json!({
                "b": {"before": "x", "after": "y"},
                "gone": {"before": true, "after": null},
                "new": {"before": null, "after": [1]}
            })
        );
        assert_eq!(diff(&json!({"a": 1}), &json!({"a": 1})), json!({}));
        assert_eq!(
            diff_of::<Value, _>(None, Some(&json!({"k": 2}))),
            json!({"k": {"before": null, "after": 2}})
        );
    }
}
