//! The seed's files and the pipeline's records: an import of tsuku's data keeps its queue
//! files and failure files as documents (so that an export writes them back as they
//! were); this fills the live records from them, and gives the export the unified queue as
//! the records now stand.
//!
//! - The unified queue (`tsuku.priority_queue`, keyed by recipe name) makes items (id =
//!   its `source`, tier = `priority`, with status, confidence, failure count and retry
//!   time); an item whose queue entry is unchanged since the last import is left alone, so
//!   a re-import does not undo the pipeline's work. The homebrew tiered queue and the
//!   legacy queue add the packages the unified one lacks.
//! - Failure lines make results (history): the per-ecosystem shape (`{ecosystem,
//!   environment, failures[{package_id, category, blocked_by, message, timestamp}]}`) by
//!   package id, the batch shape (`{recipe, platform, exit_code, category, timestamp}`) by
//!   the item of that recipe name. A line already recorded is not recorded twice.
//! - Popularity: a package of the npm or PyPI data set gives its score; others keep 0
//!   (the queue files carry none) until an operator sets it.

use std::collections::{BTreeMap, HashMap};

use jiff::Timestamp;
use quiver_model::{EntryKey, Kind, Result};
use quiver_store::pipeline::{split_id, EnvResult, HistoryRecord, ItemStatus, QueueItem};
use quiver_store::Database;
use serde::Serialize;
use serde_json::{json, Value};

/// The unified queue's documents.
pub const QUEUE_COLLECTION: &str = "tsuku.priority_queue";
const HOMEBREW_QUEUE: &str = "tsuku.homebrew_queue";
const LEGACY_QUEUE: &str = "tsuku.legacy_priority_queue";
const FAILURES: &str = "tsuku.failures";
pub(crate) const DEP_MAPPING: &str = "tsuku.dep_mapping";

/// What a sync did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SyncReport {
    pub items_inserted: u64,
    pub items_updated: u64,
    pub history: u64,
    /// Failure lines naming a recipe no item has.
    pub unmatched: u64,
}

async fn documents(db: &Database, collection: &str) -> Result<Vec<(String, Value)>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = db
            .store
            .list_documents(collection, cursor.as_deref(), 1000)
            .await?;
        out.extend(page.items.into_iter().map(|d| (d.key, d.body)));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

fn time(v: &Value) -> Option<Timestamp> {
    let s = v.as_str()?;
    s.parse().ok().or_else(|| {
        // The seed's file-name style `2026-02-19T08-45-18Z`.
        let (d, t) = s.split_once('T')?;
        format!("{d}T{}", t.replacen('-', ":", 2)).parse().ok()
    })
}

fn status(v: &Value) -> ItemStatus {
    v.as_str()
        .and_then(ItemStatus::parse)
        .unwrap_or(ItemStatus::Pending)
}

/// An item from a unified-queue entry.
fn from_unified(key: &str, e: &Value, at: Timestamp) -> Option<QueueItem> {
    let source = e["source"].as_str()?;
    let (eco, name) = split_id(source)?;
    let tier = e["priority"].as_i64().unwrap_or(3).clamp(1, 3) as i32;
    let mut i = QueueItem::new(eco, name, tier, at);
    i.status = status(&e["status"]);
    if i.status == ItemStatus::InProgress {
        i.status = ItemStatus::Pending;
    }
    i.confidence = e["confidence"].as_str().map(str::to_string);
    i.failure_count = e["failure_count"].as_i64().unwrap_or(0).max(0);
    // Stored to the millisecond: compare as stored.
    i.next_retry_at = time(&e["next_retry_at"])
        .and_then(|t| Timestamp::from_millisecond(t.as_millisecond()).ok());
    i.recipe = Some(e["name"].as_str().unwrap_or(key).to_string());
    i.imported = Some(e.clone());
    Some(i)
}

/// An item from a tiered-queue package (`{id, source, name, tier, status, added_at}`).
fn from_tiered(p: &Value, at: Timestamp) -> Option<QueueItem> {
    let id = p["id"].as_str()?;
    let (eco, name) = split_id(id)?;
    let tier = p["tier"].as_i64().unwrap_or(3).clamp(1, 3) as i32;
    let added = time(&p["added_at"]).unwrap_or(at);
    let mut i = QueueItem::new(eco, name, tier, added);
    i.status = status(&p["status"]);
    if i.status == ItemStatus::InProgress {
        i.status = ItemStatus::Pending;
    }
    i.recipe = p["name"].as_str().map(str::to_string);
    // Where it came from: not the unified queue, so an export leaves it out of it.
    i.imported = Some(json!({"file": "tiered queue", "package": p}));
    Some(i)
}

/// Fill the pipeline's records from the tsuku documents an import wrote.
pub async fn after_import(db: &Database) -> Result<SyncReport> {
    let mut report = SyncReport::default();
    let at = Timestamp::now();
    let unified = documents(db, QUEUE_COLLECTION).await?;
    let tiered = [
        documents(db, HOMEBREW_QUEUE).await?,
        documents(db, LEGACY_QUEUE).await?,
    ];
    let failures = documents(db, FAILURES).await?;
    if unified.is_empty() && tiered.iter().all(Vec::is_empty) && failures.is_empty() {
        return Ok(report);
    }
    // Unified entries whose body changed since their item was made (or new ones).
    let mut changed = Vec::new();
    for (ord, (key, body)) in unified.iter().enumerate() {
        let Some(mut item) = from_unified(key, body, at) else {
            continue;
        };
        item.ord = ord as i64;
        match db.pipeline.item(&item.id).await? {
            Some(before) if before.imported.as_ref() == Some(body) => {}
            Some(_) => changed.push(item),
            None => changed.push(item),
        }
    }
    set_popularity(db, &mut changed).await?;
    for chunk in changed.chunks(5000) {
        let o = db.pipeline.upsert_items(chunk.to_vec(), true).await?;
        report.items_inserted += o.inserted;
        report.items_updated += o.updated;
    }
    let mut extra: Vec<QueueItem> = tiered
        .iter()
        .flatten()
        .filter_map(|(_, p)| from_tiered(p, at))
        .collect();
    set_popularity(db, &mut extra).await?;
    for chunk in extra.chunks(5000) {
        report.items_inserted += db
            .pipeline
            .upsert_items(chunk.to_vec(), false)
            .await?
            .inserted;
    }
    // Failure lines.
    if !failures.is_empty() {
        let mut by_recipe: HashMap<String, String> = HashMap::new();
        for i in db.pipeline.all_items().await? {
            let r = i.recipe.clone().unwrap_or_else(|| i.name.clone());
            // The unified queue's item wins over a tiered one of the same name.
            let unified = i
                .imported
                .as_ref()
                .is_some_and(|v| v.get("source").is_some());
            if unified || !by_recipe.contains_key(&r) {
                by_recipe.insert(r, i.id);
            }
        }
        let mut records = Vec::new();
        for (key, line) in &failures {
            let batch = key.split(':').next().map(str::to_string);
            if let Some(list) = line["failures"].as_array() {
                let env = line["environment"].as_str().unwrap_or("unknown");
                for f in list {
                    let Some(id) = f["package_id"].as_str().filter(|i| split_id(i).is_some())
                    else {
                        continue;
                    };
                    records.push(HistoryRecord {
                        item_id: id.to_string(),
                        batch_id: batch.clone(),
                        result: EnvResult {
                            environment: env.to_string(),
                            passed: false,
                            category: f["category"].as_str().map(str::to_string),
                            exit_code: f["exit_code"].as_i64().map(|c| c as i32),
                            message: f["message"]
                                .as_str()
                                .map(|m| m.chars().take(4096).collect()),
                            blocked_by: f["blocked_by"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .map(str::to_string)
                                .collect(),
                        },
                        at: time(&f["timestamp"])
                            .or_else(|| time(&line["updated_at"]))
                            .unwrap_or(at),
                    });
                }
            } else if let Some(recipe) = line["recipe"].as_str() {
                let Some(id) = by_recipe.get(recipe) else {
                    report.unmatched += 1;
                    continue;
                };
                records.push(HistoryRecord {
                    item_id: id.clone(),
                    batch_id: batch.clone(),
                    result: EnvResult {
                        environment: line["platform"].as_str().unwrap_or("unknown").to_string(),
                        passed: false,
                        category: line["category"].as_str().map(str::to_string),
                        exit_code: line["exit_code"].as_i64().map(|c| c as i32),
                        message: None,
                        blocked_by: vec![],
                    },
                    at: time(&line["timestamp"]).unwrap_or(at),
                });
            }
        }
        // Items the failures name that no queue has.
        let mut missing: BTreeMap<String, QueueItem> = BTreeMap::new();
        for r in &records {
            if !missing.contains_key(&r.item_id) && db.pipeline.item(&r.item_id).await?.is_none() {
                let (eco, name) = split_id(&r.item_id).expect("checked");
                let mut i = QueueItem::new(eco, name, 3, at);
                i.imported = Some(json!({"file": "failure records"}));
                missing.insert(r.item_id.clone(), i);
            }
        }
        if !missing.is_empty() {
            report.items_inserted += db
                .pipeline
                .upsert_items(missing.into_values().collect(), false)
                .await?
                .inserted;
        }
        report.history = records.len() as u64;
        for chunk in records.chunks(5000) {
            db.pipeline.record_history(chunk.to_vec()).await?;
        }
    }
    Ok(report)
}

/// Popularity of items whose ecosystem is a data-set namespace (`npm`, `pypi`): the
/// package entry's score.
async fn set_popularity(db: &Database, items: &mut [QueueItem]) -> Result<()> {
    for i in items.iter_mut() {
        if i.popularity > 0.0 || !matches!(i.ecosystem.as_str(), "npm" | "pypi") {
            continue;
        }
        let key = EntryKey::new(Kind::Package, &i.ecosystem, &i.name);
        if let Ok(Some(e)) = db.store.get_entry(&key).await {
            i.popularity = e.popularity.score;
        }
    }
    Ok(())
}

/// The unified queue's documents as the items now stand, for an export: each imported
/// entry with the live fields of its item (priority, status, confidence, failure count,
/// retry time) written where the item changed them since the import; items added since
/// (requests, the API) as new entries keyed by their recipe name, unless that name is
/// taken. (Two entries of one source share an item.)
pub async fn live_queue(db: &Database) -> Result<Option<Vec<(String, Value)>>> {
    let items: HashMap<String, QueueItem> = db
        .pipeline
        .all_items()
        .await?
        .into_iter()
        .map(|i| (i.id.clone(), i))
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    let docs = documents(db, QUEUE_COLLECTION).await?;
    let mut out: Vec<(String, Value)> = Vec::with_capacity(docs.len());
    let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
    let mut sources: std::collections::HashSet<String> = std::collections::HashSet::new();
    for (key, body) in docs {
        taken.insert(key.clone());
        let source = body["source"].as_str().unwrap_or_default().to_string();
        let mut e = body;
        if let Some(i) = items.get(&source) {
            let was = i
                .imported
                .as_ref()
                .and_then(|orig| from_unified(&key, orig, i.created_at));
            if let Some(o) = e.as_object_mut() {
                live_fields(o, was.as_ref(), i);
            }
        }
        sources.insert(source);
        out.push((key, e));
    }
    // Items made here since (the API, requests), not read from any file.
    let mut fresh: Vec<&QueueItem> = items
        .values()
        .filter(|i| i.imported.is_none() && !sources.contains(&i.id))
        .collect();
    fresh.sort_by(|a, b| (a.ord, &a.id).cmp(&(b.ord, &b.id)));
    for i in fresh {
        let key = i
            .recipe
            .clone()
            .unwrap_or_else(|| i.name.rsplit('/').next().unwrap_or(&i.name).to_string());
        if !taken.insert(key.clone()) {
            continue;
        }
        out.push((
            key.clone(),
            json!({
                "name": key,
                "source": i.id,
                "priority": i.tier,
                "status": i.status.as_str(),
                "confidence": i.confidence,
                "disambiguated_at": null,
                "failure_count": i.failure_count,
                "next_retry_at": i.next_retry_at.map(|t| t.to_string()),
            }),
        ));
    }
    Ok(Some(out))
}

/// Write the item's live fields into a queue entry where they differ from what the
/// item was imported as (`was`; every field when it was not imported).
fn live_fields(o: &mut serde_json::Map<String, Value>, was: Option<&QueueItem>, i: &QueueItem) {
    if was.map(|w| w.tier) != Some(i.tier) {
        o.insert("priority".into(), json!(i.tier));
    }
    if was.map(|w| w.status) != Some(i.status) {
        o.insert("status".into(), json!(i.status.as_str()));
    }
    if was.map(|w| &w.confidence) != Some(&i.confidence) {
        o.insert("confidence".into(), json!(i.confidence));
    }
    if was.map(|w| w.failure_count) != Some(i.failure_count) {
        o.insert("failure_count".into(), json!(i.failure_count));
    }
    if was.map(|w| w.next_retry_at) != Some(i.next_retry_at) {
        o.insert(
            "next_retry_at".into(),
            json!(i.next_retry_at.map(|t| t.to_string())),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_in_both_styles() {
        assert!(time(&json!("2026-02-24T06:13:30.875620816Z")).is_some());
        assert_eq!(
            time(&json!("2026-02-19T08-45-18Z")),
            time(&json!("2026-02-19T08:45:18Z"))
        );
        assert!(time(&json!(null)).is_none());
    }

    #[test]
    fn unified_entries_make_items() {
        let e = json!({"name": "bat", "source": "github:sharkdp/bat", "priority": 1,
            "status": "success", "confidence": "curated", "failure_count": 3,
            "next_retry_at": "2026-02-24T06:13:30.875620816Z"});
        let i = from_unified("bat", &e, Timestamp::now()).unwrap();
        assert_eq!(i.id, "github:sharkdp/bat");
        assert_eq!(
            (i.tier, i.status, i.failure_count),
            (1, ItemStatus::Success, 3)
        );
        assert_eq!(i.recipe.as_deref(), Some("bat"));
        assert!(from_unified("x", &json!({"name": "x"}), Timestamp::now()).is_none());
    }
}
