//! The audit log (migrations `0006_audit` and `0010_audit_client` on both backends): one
//! row per write and per denied write — actor, action, target, outcome, reason, the change
//! as a diff and the hashed client address — newest first, filterable by namespace, actor,
//! action, outcome and time, cursor-paginated. Reached through
//! [`Database::audit`](crate::Database::audit).

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::Page;

/// A row to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAuditRecord {
    /// Who (a user name, `name (token N)`, `admin-token`, `anonymous`, `open`).
    pub actor: String,
    /// What, as `thing.verb`: `entry.create`, `version.publish`, `member.set`, ...
    pub action: String,
    /// The namespace the target is in, when there is one (owners read their namespace's log).
    pub namespace: Option<String>,
    /// The target (`tool/acme/text.csv@1.0.0`, `token 7`, `namespace acme`).
    pub target: String,
    /// `allowed` or `denied`.
    pub outcome: String,
    /// Why it was denied, or the reason given for the change (a yank's reason).
    pub reason: Option<String>,
    /// Changed fields: `{"field": {"before": ..., "after": ...}}`.
    pub diff: Option<serde_json::Value>,
    /// The client's address, hashed with a salt of this registry (never the address):
    /// the same client gives the same value, and the value does not give the address.
    /// `None` for writes with no client (jobs, imports).
    pub client: Option<String>,
}

/// A stored row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub namespace: Option<String>,
    pub target: String,
    pub outcome: String,
    pub reason: Option<String>,
    pub diff: Option<serde_json::Value>,
    /// The hashed client address (see [`NewAuditRecord::client`]).
    pub client: Option<String>,
}

/// Which rows to list; `None` means any.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditFilter {
    pub namespace: Option<String>,
    /// Rows about exactly this target (`tool acme/x`, `tool acme/x@1.0.0`).
    #[serde(default)]
    pub target: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    /// Rows at or after this time.
    pub since: Option<Timestamp>,
    /// Rows before this time.
    pub until: Option<Timestamp>,
}

/// The audit row a write commits with, in its own transaction: the store appends it
/// before the commit, so a write and its row are committed together or not at all
/// (the `Store` methods that take an `Option<AuditDraft>`). The diff may need what the
/// write stored (an id, a timestamp, a field the store derives), so it is given as a rule
/// that the store applies to the written value.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    /// The row; its `diff` is replaced by the rule's unless the rule is [`AuditDiff::Given`].
    pub record: NewAuditRecord,
    pub diff: AuditDiff,
}

/// How the diff of an [`AuditDraft`] is made from the written value.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditDiff {
    /// The record's own `diff`, as given.
    Given,
    /// Something new: every field of the written value, from nothing.
    Created,
    /// A change: the fields that differ between this value (as JSON) and the written one.
    Changed(Value),
    /// A change the store sees whole: the fields that differ between what it read in
    /// the write's transaction before writing (nothing, for something new) and what it
    /// wrote (nothing, for a removal). For writes whose "before" only the store can
    /// read without a race (a membership, a token's revocation, a site role).
    Stored,
}

/// In an [`AuditDraft`]'s target, stands for the `id` of the written value: for rows
/// about something whose id the write makes (`token {id}`).
pub const WRITTEN_ID: &str = "{id}";

impl AuditDraft {
    /// The row to append for a write that stored `after`.
    pub fn finish<T: Serialize>(self, after: &T) -> NewAuditRecord {
        self.finish_change::<Value, T>(None, Some(after))
    }

    /// The row to append for a write that found `before` and left `after` (either may
    /// be nothing: a creation, a removal).
    pub fn finish_change<B: Serialize, A: Serialize>(
        self,
        before: Option<&B>,
        after: Option<&A>,
    ) -> NewAuditRecord {
        let mut record = self.record;
        let to_json = |v: Option<Value>| v.unwrap_or(Value::Null);
        let after = to_json(after.and_then(|a| serde_json::to_value(a).ok()));
        if record.target.contains(WRITTEN_ID) {
            if let Some(id) = after.get("id").and_then(Value::as_i64) {
                record.target = record.target.replace(WRITTEN_ID, &id.to_string());
            }
        }
        match self.diff {
            AuditDiff::Given => {}
            AuditDiff::Created => record.diff = Some(diff(&Value::Null, &after)),
            AuditDiff::Changed(b) => record.diff = Some(diff(&b, &after)),
            AuditDiff::Stored => {
                let b = to_json(before.and_then(|b| serde_json::to_value(b).ok()));
                record.diff = Some(diff(&b, &after));
            }
        }
        record
    }
}

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

#[async_trait]
pub trait AuditLog: Send + Sync + 'static {
    async fn append_audit(&self, record: NewAuditRecord) -> Result<i64>;
    /// Rows matching the filter, newest first, `limit` at a time.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<AuditRecord>>;
}

pub fn encode_audit_cursor(id: i64) -> String {
    quiver_model::cursor::encode("audit", &id)
}

pub fn decode_audit_cursor(c: &str) -> Result<i64> {
    quiver_model::cursor::decode("audit", c)
}

/// A page from `limit + 1` rows read newest first.
pub fn audit_page(mut items: Vec<AuditRecord>, limit: usize) -> Page<AuditRecord> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| encode_audit_cursor(r.id))
    } else {
        None
    };
    Page { items, next_cursor }
}

/// The WHERE clause of a listing, shared by both backends so that they filter alike.
pub struct AuditWhere {
    /// `WHERE ...`, or empty. Placeholders come from the `placeholder` function: the
    /// [`texts`](Self::texts) first (1..), then the [`ints`](Self::ints).
    pub sql: String,
    pub texts: Vec<String>,
    pub ints: Vec<i64>,
}

/// The WHERE clause of a listing: the filter, and `id < before` for a cursor.
pub fn audit_where(
    filter: &AuditFilter,
    before: Option<i64>,
    placeholder: impl Fn(usize) -> String,
) -> AuditWhere {
    let mut clauses = vec![];
    let mut texts = vec![];
    for (col, v) in [
        ("namespace", &filter.namespace),
        ("target", &filter.target),
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("outcome", &filter.outcome),
    ] {
        if let Some(v) = v {
            texts.push(v.clone());
            clauses.push(format!("{col} = {}", placeholder(texts.len())));
        }
    }
    let mut ints = vec![];
    let ms = |t: &Timestamp| t.as_millisecond();
    for (cond, v) in [
        ("at >=", filter.since.as_ref().map(ms)),
        ("at <", filter.until.as_ref().map(ms)),
        ("id <", before),
    ] {
        if let Some(v) = v {
            ints.push(v);
            clauses.push(format!("{cond} {}", placeholder(texts.len() + ints.len())));
        }
    }
    let sql = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    AuditWhere { sql, texts, ints }
}
