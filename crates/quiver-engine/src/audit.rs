//! The audit trail: every write and every denied write leaves a row (actor, action,
//! target, outcome, reason, the change as a diff). Rows are appended after the write
//! commits, in a statement of their own: a crash between the two loses the row (the
//! write itself is in the change feed). Readable by admins, and by a namespace's owners
//! for their namespace.

use quiver_auth::{authorize, Action, Principal, Target};
use quiver_model::{Error, Result};
use quiver_store::{AuditFilter, AuditRecord, NewAuditRecord, Page};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{check_limit, Caller, Registry};

/// The changed top-level fields of two JSON objects: `{"field": {"before", "after"}}`.
/// Timestamps of the change itself (`updated_at`) are left out.
pub fn diff(before: &Value, after: &Value) -> Value {
    let empty = Map::new();
    let b = before.as_object().unwrap_or(&empty);
    let a = after.as_object().unwrap_or(&empty);
    let mut out = Map::new();
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if k == "updated_at" {
            continue;
        }
        let (bv, av) = (
            b.get(k).cloned().unwrap_or(Value::Null),
            a.get(k).cloned().unwrap_or(Value::Null),
        );
        if bv != av {
            out.insert(k.clone(), serde_json::json!({"before": bv, "after": av}));
        }
    }
    Value::Object(out)
}

/// `diff` of two serializable values.
pub fn diff_of<B: Serialize, A: Serialize>(before: Option<&B>, after: Option<&A>) -> Value {
    let to = |v: Option<Value>| v.unwrap_or(Value::Null);
    diff(
        &to(before.and_then(|b| serde_json::to_value(b).ok())),
        &to(after.and_then(|a| serde_json::to_value(a).ok())),
    )
}

/// The audit name of a policy action.
pub(crate) fn action_name(a: Action) -> &'static str {
    match a {
        Action::Read => "entry.read",
        Action::List => "entry.list",
        Action::CreateEntry => "entry.create",
        Action::Publish => "entry.publish",
        Action::Yank => "version.yank",
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
    pub diff: Option<Value>,
}

impl Registry {
    /// Append a row; a failure is logged, never returned (the write already happened).
    pub(crate) async fn record(&self, caller: &Caller, e: Event<'_>) {
        let Some(log) = &self.audit else { return };
        let row = NewAuditRecord {
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
        };
        if let Err(err) = log.append_audit(row).await {
            tracing::error!(error = %err, "could not append to the audit log");
        }
    }

    /// The audit log, newest first: everything for admins; one namespace's rows for its
    /// owners (the filter must name it).
    pub async fn list_audit(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditRecord>> {
        check_limit(limit)?;
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
        let log = self
            .audit
            .as_ref()
            .ok_or_else(|| Error::internal("audit", "this store has no audit log"))?;
        log.list_audit(&filter, cursor, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
