//! [`WebhookStore`] on SQLite (migration `0025_webhooks`): subscriptions and deliveries
//! whole as JSON, secrets in columns of their own.

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Context, Error, Result};
use quiver_store::webhooks::{
    apply_attempt, apply_to_webhook, Attempt, AttemptRecorded, Delivery, DeliveryState,
    NewDelivery, Webhook, WebhookOwner, WebhookStore,
};
use quiver_store::Audit;
use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};

use super::SqliteStore;
use crate::accounts::commit_audit_change;

const WEBHOOK_COLUMNS: &str = "id, body, secret, previous_secret";

fn bad_json(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
}

fn webhook_row(r: &Row<'_>) -> rusqlite::Result<Webhook> {
    let mut w: Webhook = serde_json::from_str(&r.get::<_, String>(1)?).map_err(bad_json)?;
    w.id = r.get(0)?;
    w.secret = r.get(2)?;
    w.previous_secret = r.get(3)?;
    Ok(w)
}

fn delivery_row(r: &Row<'_>) -> rusqlite::Result<Delivery> {
    let mut d: Delivery = serde_json::from_str(&r.get::<_, String>(1)?).map_err(bad_json)?;
    d.id = r.get(0)?;
    Ok(d)
}

fn read_webhook(c: &Connection, id: i64) -> Result<Option<Webhook>> {
    c.prepare_cached(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], webhook_row).optional())
    .context("reading a webhook")
}

fn read_delivery(c: &Connection, id: i64) -> Result<Option<Delivery>> {
    c.prepare_cached("SELECT id, body FROM webhook_deliveries WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], delivery_row).optional())
        .context("reading a webhook delivery")
}

fn write_webhook(c: &Connection, w: &Webhook) -> Result<()> {
    c.execute(
        "UPDATE webhooks SET body = ?2, secret = ?3, previous_secret = ?4 WHERE id = ?1",
        params![
            w.id,
            serde_json::to_string(w).unwrap_or_default(),
            w.secret,
            w.previous_secret
        ],
    )
    .context("writing a webhook")?;
    Ok(())
}

fn write_delivery(c: &Connection, d: &Delivery) -> Result<()> {
    c.execute(
        "UPDATE webhook_deliveries SET state = ?2, body = ?3 WHERE id = ?1",
        params![
            d.id,
            d.state.as_str(),
            serde_json::to_string(d).unwrap_or_default()
        ],
    )
    .context("writing a webhook delivery")?;
    Ok(())
}

fn owner_columns(o: &WebhookOwner) -> (Option<i64>, Option<String>) {
    match o {
        WebhookOwner::User(id) => (Some(*id), None),
        WebhookOwner::Namespace(ns) => (None, Some(ns.clone())),
    }
}

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn create_webhook(&self, webhook: Webhook, audit: Audit) -> Result<Webhook> {
        self.write(move |tx| {
            let (user, ns) = owner_columns(&webhook.owner);
            tx.execute(
                "INSERT INTO webhooks (owner_user_id, owner_namespace, body, secret, \
                 previous_secret, created_at) VALUES (?1, ?2, '{}', ?3, ?4, ?5)",
                params![
                    user,
                    ns,
                    webhook.secret,
                    webhook.previous_secret,
                    webhook.created_at.as_millisecond()
                ],
            )
            .context("creating a webhook")?;
            let mut w = webhook;
            w.id = tx.last_insert_rowid();
            write_webhook(tx, &w)?;
            commit_audit_change::<Webhook, _>(tx, audit, None, Some(&w))?;
            Ok(w)
        })
        .await
    }

    async fn webhook(&self, id: i64) -> Result<Option<Webhook>> {
        self.read(move |c| read_webhook(c, id)).await
    }

    async fn webhooks(&self, owner: Option<&WebhookOwner>) -> Result<Vec<Webhook>> {
        let owner = owner.cloned();
        self.read(move |c| {
            let (sql, arg): (String, rusqlite::types::Value) = match &owner {
                None => (
                    format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE ?1 IS NULL ORDER BY id"),
                    rusqlite::types::Value::Null,
                ),
                Some(WebhookOwner::User(id)) => (
                    format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE owner_user_id = ?1 ORDER BY id"
                    ),
                    (*id).into(),
                ),
                Some(WebhookOwner::Namespace(ns)) => (
                    format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE owner_namespace = ?1 ORDER BY id"
                    ),
                    ns.clone().into(),
                ),
            };
            c.prepare_cached(&sql)
                .and_then(|mut s| {
                    s.query_map([arg], webhook_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("listing webhooks")
        })
        .await
    }

    async fn update_webhook(&self, webhook: Webhook, audit: Audit) -> Result<Option<Webhook>> {
        self.write(move |tx| {
            let Some(before) = read_webhook(tx, webhook.id)? else {
                return Ok(None);
            };
            let mut w = webhook;
            w.owner = before.owner.clone();
            w.created_at = before.created_at;
            write_webhook(tx, &w)?;
            commit_audit_change(tx, audit, Some(&before), Some(&w))?;
            Ok(Some(w))
        })
        .await
    }

    async fn delete_webhook(&self, id: i64, audit: Audit) -> Result<bool> {
        self.write(move |tx| {
            let Some(before) = read_webhook(tx, id)? else {
                return Ok(false);
            };
            tx.execute("DELETE FROM webhook_deliveries WHERE webhook_id = ?1", [id])
                .context("deleting a webhook's deliveries")?;
            tx.execute("DELETE FROM webhooks WHERE id = ?1", [id])
                .context("deleting a webhook")?;
            commit_audit_change::<_, Webhook>(tx, audit, Some(&before), None)?;
            Ok(true)
        })
        .await
    }

    async fn add_deliveries(&self, new: Vec<NewDelivery>, at: Timestamp) -> Result<Vec<i64>> {
        if new.is_empty() {
            return Ok(vec![]);
        }
        self.write(move |tx| {
            let mut ids = Vec::with_capacity(new.len());
            for n in new {
                let existing: Option<i64> = tx
                    .prepare_cached(
                        "SELECT id FROM webhook_deliveries WHERE webhook_id = ?1 AND event_key = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![n.webhook_id, n.event_key], |r| r.get(0))
                            .optional()
                    })
                    .context("finding a webhook delivery")?;
                if let Some(id) = existing {
                    ids.push(id);
                    continue;
                }
                tx.prepare_cached(
                    "INSERT INTO webhook_deliveries (webhook_id, event_key, state, body, created_at) \
                     VALUES (?1, ?2, 'pending', '{}', ?3)",
                )
                .and_then(|mut s| s.execute(params![n.webhook_id, n.event_key, at.as_millisecond()]))
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        Error::not_found(format!("webhook {}", n.webhook_id))
                    }
                    e => Error::internal("adding a webhook delivery", e.to_string()),
                })?;
                let id = tx.last_insert_rowid();
                write_delivery(tx, &n.into_delivery(id, at))?;
                ids.push(id);
            }
            Ok(ids)
        })
        .await
    }

    async fn delivery(&self, id: i64) -> Result<Option<Delivery>> {
        self.read(move |c| read_delivery(c, id)).await
    }

    async fn deliveries(
        &self,
        webhook_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        self.read(move |c| {
            c.prepare_cached(
                "SELECT id, body FROM webhook_deliveries WHERE webhook_id = ?1 AND id < ?2 \
                 ORDER BY id DESC LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(
                    params![webhook_id, before.unwrap_or(i64::MAX), limit as i64],
                    delivery_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("listing webhook deliveries")
        })
        .await
    }

    async fn record_attempt(
        &self,
        delivery_id: i64,
        attempt: Attempt,
        disable_after: u32,
        audit: Audit,
    ) -> Result<AttemptRecorded> {
        self.write(move |tx| {
            record_in(tx, delivery_id, &attempt, disable_after, audit)?
                .ok_or_else(|| Error::not_found(format!("webhook delivery {delivery_id}")))
        })
        .await
    }

    async fn record_attempts(
        &self,
        attempts: Vec<(i64, Attempt, u32, Audit)>,
    ) -> Result<Vec<AttemptRecorded>> {
        self.write(move |tx| {
            let mut out = Vec::with_capacity(attempts.len());
            for (id, attempt, disable_after, audit) in attempts {
                out.extend(record_in(tx, id, &attempt, disable_after, audit)?);
            }
            Ok(out)
        })
        .await
    }
}

/// One attempt, in the caller's transaction (`None`: the delivery is gone).
fn record_in(
    tx: &Transaction<'_>,
    delivery_id: i64,
    attempt: &Attempt,
    disable_after: u32,
    audit: Audit,
) -> Result<Option<AttemptRecorded>> {
    let Some(mut d) = read_delivery(tx, delivery_id)? else {
        return Ok(None);
    };
    if d.state != DeliveryState::Pending {
        return Ok(Some(AttemptRecorded {
            delivery: d,
            disabled: false,
        }));
    }
    apply_attempt(&mut d, attempt);
    write_delivery(tx, &d)?;
    let mut disabled = false;
    if let Some(mut w) = read_webhook(tx, d.webhook_id)? {
        let before = w.clone();
        disabled = apply_to_webhook(&mut w, attempt, disable_after);
        if w != before {
            write_webhook(tx, &w)?;
        }
        if disabled {
            commit_audit_change(tx, audit, Some(&before), Some(&w))?;
        }
    }
    Ok(Some(AttemptRecorded {
        delivery: d,
        disabled,
    }))
}
