//! Install and use events from clients (the skills CLI's `analytics/track`), and the
//! co-install recommendations they make possible: "projects that installed X also
//! installed Y".
//!
//! Events are batched (1 to 1,000), idempotent by the client's id, and name the project
//! they happened in by an opaque id that quiver hashes before storing (a client's project
//! path or repository never reaches the store). Events for entries the caller may not see
//! are answered as unknown, exactly as for entries that do not exist. A recommendation
//! needs at least [`MIN_PROJECTS`] projects that installed both, so that a handful of
//! events recommends nothing.

use std::collections::HashMap;

use quiver_model::{EntryKey, Error, ErrorCode, Result};
use quiver_store::{CoInstall, EventsOutcome, UsageEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Caller, Registry};

/// Most events in one batch.
pub const MAX_EVENTS: usize = 1_000;
/// Least number of projects behind a co-install recommendation.
pub const MIN_PROJECTS: u64 = 5;

/// One reported event.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// The client's id for it (1 to 100 characters): a second report is a duplicate.
    pub id: String,
    /// `install` or `use`.
    pub kind: String,
    pub entry: EntryKey,
    #[serde(default)]
    pub version: Option<String>,
    /// An opaque id of the project it happened in (hashed before it is stored).
    #[serde(default)]
    pub project: Option<String>,
    /// When (default now; not in the future).
    #[serde(default)]
    pub at: Option<jiff::Timestamp>,
}

/// A batch of events.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    pub events: Vec<NewEvent>,
}

/// Entries installed in the same projects as one, most first.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CoInstalls {
    pub entry: EntryKey,
    /// The least number of projects behind each.
    pub min_projects: u64,
    pub items: Vec<CoInstall>,
}

fn project_hash(p: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"quiver project\0");
    h.update(p.as_bytes());
    format!("{:x}", h.finalize())
}

impl Registry {
    /// Record a batch of events.
    pub async fn record_events(&self, caller: &Caller, batch: EventBatch) -> Result<EventsOutcome> {
        if batch.events.is_empty() || batch.events.len() > MAX_EVENTS {
            return Err(Error::invalid(
                "events",
                format!("1 to {MAX_EVENTS} events a batch"),
            ));
        }
        let now = jiff::Timestamp::now();
        let mut events = Vec::with_capacity(batch.events.len());
        for (i, e) in batch.events.iter().enumerate() {
            let f = |x: &str| format!("events[{i}].{x}");
            if e.id.is_empty() || e.id.len() > 100 || e.id.chars().any(char::is_control) {
                return Err(Error::invalid(f("id"), "1 to 100 printable characters"));
            }
            if !matches!(e.kind.as_str(), "install" | "use") {
                return Err(Error::invalid(f("kind"), "install or use"));
            }
            if let Some(v) = &e.version {
                if semver::Version::parse(v).is_err() {
                    return Err(Error::invalid(
                        f("version"),
                        format!("`{v}` is not a version"),
                    ));
                }
            }
            if e.project
                .as_ref()
                .is_some_and(|p| p.is_empty() || p.len() > 500)
            {
                return Err(Error::invalid(f("project"), "1 to 500 characters"));
            }
            let at = e.at.unwrap_or(now);
            if at > now + jiff::SignedDuration::from_hours(24) {
                return Err(Error::invalid(f("at"), "in the future"));
            }
            events.push(UsageEvent {
                id: e.id.clone(),
                kind: e.kind.clone(),
                entry: e.entry.clone(),
                version: e.version.clone(),
                project: e.project.as_deref().map(project_hash),
                at,
            });
        }
        // What the caller may not see is unknown, as what does not exist.
        let mut visible: HashMap<EntryKey, bool> = HashMap::new();
        let mut hidden = Vec::new();
        let mut kept = Vec::with_capacity(events.len());
        let mut index = Vec::with_capacity(events.len());
        for (i, e) in events.into_iter().enumerate() {
            let ok = match visible.get(&e.entry) {
                Some(ok) => *ok,
                None => {
                    let ok = match self.visible_entry(caller, &e.entry).await {
                        Ok(_) => true,
                        Err(err) if err.code == ErrorCode::NotFound => false,
                        Err(err) => return Err(err),
                    };
                    visible.insert(e.entry.clone(), ok);
                    ok
                }
            };
            if ok {
                index.push(i);
                kept.push(e);
            } else {
                hidden.push(i);
            }
        }
        let mut out = if kept.is_empty() {
            EventsOutcome::default()
        } else {
            self.db.store.record_events(kept).await?
        };
        out.unknown = out
            .unknown
            .iter()
            .map(|&k| index[k])
            .chain(hidden)
            .collect();
        out.unknown.sort_unstable();
        Ok(out)
    }

    /// The entries installed in the same projects as `key` (at least `min_projects` of
    /// them, never fewer than [`MIN_PROJECTS`]), that the caller may see.
    pub async fn co_installed(
        &self,
        caller: &Caller,
        key: &EntryKey,
        min_projects: Option<u64>,
        limit: usize,
    ) -> Result<CoInstalls> {
        let entry = self.visible_entry(caller, key).await?;
        let min = min_projects.unwrap_or(MIN_PROJECTS).max(MIN_PROJECTS);
        // Twice as many as asked, as some may be hidden from the caller.
        let mut items = Vec::new();
        for c in self
            .db
            .store
            .co_installed(&entry.key(), min, limit.saturating_mul(2))
            .await?
        {
            if self.visible_entry(caller, &c.entry).await.is_ok() {
                items.push(c);
            }
            if items.len() == limit {
                break;
            }
        }
        Ok(CoInstalls {
            entry: entry.key(),
            min_projects: min,
            items,
        })
    }
}
