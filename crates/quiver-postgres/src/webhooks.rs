//! [`WebhookStore`] on PostgreSQL (migration `0025_webhooks`): subscriptions and
//! deliveries whole as JSON, secrets in columns of their own. Read on the primary (the
//! worker reads what it has just written); an attempt locks its delivery's row, so two
//! workers never record one attempt twice.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use quiver_model::{Context, Error, Result};
use quiver_store::webhooks::{
    apply_attempt, apply_to_webhook, Attempt, AttemptRecorded, Delivery, DeliveryState,
    NewDelivery, Webhook, WebhookOwner, WebhookStore,
};
use quiver_store::Audit;
use tokio_postgres::Row;

use crate::accounts::commit_audit_change;
use crate::PostgresStore;

const WEBHOOK_COLUMNS: &str = "id, body, secret, previous_secret";

fn webhook_row(r: &Row) -> Result<Webhook> {
    let body: String = r.try_get(1).context("reading a webhook")?;
    let mut w: Webhook = serde_json::from_str(&body).context("decoding a webhook")?;
    w.id = r.try_get(0).context("reading a webhook")?;
    w.secret = r.try_get(2).context("reading a webhook")?;
    w.previous_secret = r.try_get(3).context("reading a webhook")?;
    Ok(w)
}

fn delivery_row(r: &Row) -> Result<Delivery> {
    let body: String = r.try_get(1).context("reading a webhook delivery")?;
    let mut d: Delivery = serde_json::from_str(&body).context("decoding a webhook delivery")?;
    d.id = r.try_get(0).context("reading a webhook delivery")?;
    Ok(d)
}

async fn read_webhook<C: GenericClient>(c: &C, id: i64, lock: bool) -> Result<Option<Webhook>> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&id])
        .await
        .context("reading a webhook")?
        .map(|r| webhook_row(&r))
        .transpose()
}

async fn read_delivery<C: GenericClient>(c: &C, id: i64, lock: bool) -> Result<Option<Delivery>> {
    let sql = format!(
        "SELECT id, body FROM webhook_deliveries WHERE id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[&id])
        .await
        .context("reading a webhook delivery")?
        .map(|r| delivery_row(&r))
        .transpose()
}

async fn write_webhook<C: GenericClient>(c: &C, w: &Webhook) -> Result<()> {
    let body = serde_json::to_string(w).unwrap_or_default();
    c.execute(
        "UPDATE webhooks SET body = $2, secret = $3, previous_secret = $4 WHERE id = $1",
        &[&w.id, &body, &w.secret, &w.previous_secret],
    )
    .await
    .context("writing a webhook")?;
    Ok(())
}

async fn write_delivery<C: GenericClient>(c: &C, d: &Delivery) -> Result<()> {
    let body = serde_json::to_string(d).unwrap_or_default();
    c.execute(
        "UPDATE webhook_deliveries SET state = $2, body = $3 WHERE id = $1",
        &[&d.id, &d.state.as_str(), &body],
    )
    .await
    .context("writing a webhook delivery")?;
    Ok(())
}

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn create_webhook(&self, webhook: Webhook, audit: Audit) -> Result<Webhook> {
        let mut client = self.pooled().await?;
        let tx = client.transaction().await.context("beginning a webhook")?;
        let (user, ns) = match &webhook.owner {
            WebhookOwner::User(id) => (Some(*id), None),
            WebhookOwner::Namespace(ns) => (None, Some(ns.clone())),
        };
        let ms = webhook.created_at.as_millisecond();
        let id: i64 = tx
            .query_one(
                "INSERT INTO webhooks (owner_user_id, owner_namespace, body, secret, \
                 previous_secret, created_at) VALUES ($1, $2, '{}', $3, $4, $5) RETURNING id",
                &[&user, &ns, &webhook.secret, &webhook.previous_secret, &ms],
            )
            .await
            .context("creating a webhook")?
            .try_get(0)
            .context("creating a webhook")?;
        let mut w = webhook;
        w.id = id;
        write_webhook(&tx, &w).await?;
        commit_audit_change::<_, Webhook, _>(&tx, audit, None, Some(&w)).await?;
        tx.commit().await.context("committing a webhook")?;
        Ok(w)
    }

    async fn webhook(&self, id: i64) -> Result<Option<Webhook>> {
        let c = self.pooled().await?;
        read_webhook(&c, id, false).await
    }

    async fn webhooks(&self, owner: Option<&WebhookOwner>) -> Result<Vec<Webhook>> {
        let c = self.pooled().await?;
        let rows = match owner {
            None => {
                c.query(
                    &format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks ORDER BY id"),
                    &[],
                )
                .await
            }
            Some(WebhookOwner::User(id)) => {
                c.query(
                    &format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE owner_user_id = $1 ORDER BY id"
                    ),
                    &[id],
                )
                .await
            }
            Some(WebhookOwner::Namespace(ns)) => {
                c.query(
                    &format!(
                        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE owner_namespace = $1 ORDER BY id"
                    ),
                    &[ns],
                )
                .await
            }
        }
        .context("listing webhooks")?;
        rows.iter().map(webhook_row).collect()
    }

    async fn update_webhook(&self, webhook: Webhook, audit: Audit) -> Result<Option<Webhook>> {
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning a webhook update")?;
        let Some(before) = read_webhook(&tx, webhook.id, true).await? else {
            return Ok(None);
        };
        let mut w = webhook;
        w.owner = before.owner.clone();
        w.created_at = before.created_at;
        write_webhook(&tx, &w).await?;
        commit_audit_change(&tx, audit, Some(&before), Some(&w)).await?;
        tx.commit().await.context("committing a webhook update")?;
        Ok(Some(w))
    }

    async fn delete_webhook(&self, id: i64, audit: Audit) -> Result<bool> {
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning a webhook deletion")?;
        let Some(before) = read_webhook(&tx, id, true).await? else {
            return Ok(false);
        };
        tx.execute(
            "DELETE FROM webhook_deliveries WHERE webhook_id = $1",
            &[&id],
        )
        .await
        .context("deleting a webhook's deliveries")?;
        tx.execute("DELETE FROM webhooks WHERE id = $1", &[&id])
            .await
            .context("deleting a webhook")?;
        commit_audit_change::<_, _, Webhook>(&tx, audit, Some(&before), None).await?;
        tx.commit().await.context("committing a webhook deletion")?;
        Ok(true)
    }

    async fn add_deliveries(&self, new: Vec<NewDelivery>, at: Timestamp) -> Result<Vec<i64>> {
        if new.is_empty() {
            return Ok(vec![]);
        }
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning webhook deliveries")?;
        let ms = at.as_millisecond();
        let mut ids = Vec::with_capacity(new.len());
        for n in new {
            let inserted = tx
                .query_opt(
                    "INSERT INTO webhook_deliveries (webhook_id, event_key, state, body, created_at) \
                     VALUES ($1, $2, 'pending', '{}', $3) \
                     ON CONFLICT (webhook_id, event_key) DO NOTHING RETURNING id",
                    &[&n.webhook_id, &n.event_key, &ms],
                )
                .await
                .map_err(|e| {
                    if e.code() == Some(&tokio_postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                        Error::not_found(format!("webhook {}", n.webhook_id))
                    } else {
                        Error::internal("adding a webhook delivery", e)
                    }
                })?;
            let id: i64 = match inserted {
                Some(r) => {
                    let id: i64 = r.try_get(0).context("adding a webhook delivery")?;
                    write_delivery(&tx, &n.into_delivery(id, at)).await?;
                    id
                }
                None => tx
                    .query_one(
                        "SELECT id FROM webhook_deliveries WHERE webhook_id = $1 AND event_key = $2",
                        &[&n.webhook_id, &n.event_key],
                    )
                    .await
                    .context("finding a webhook delivery")?
                    .try_get(0)
                    .context("finding a webhook delivery")?,
            };
            ids.push(id);
        }
        tx.commit().await.context("committing webhook deliveries")?;
        Ok(ids)
    }

    async fn delivery(&self, id: i64) -> Result<Option<Delivery>> {
        let c = self.pooled().await?;
        read_delivery(&c, id, false).await
    }

    async fn deliveries(
        &self,
        webhook_id: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        let c = self.pooled().await?;
        let before = before.unwrap_or(i64::MAX);
        let limit = limit as i64;
        c.query(
            "SELECT id, body FROM webhook_deliveries WHERE webhook_id = $1 AND id < $2 \
             ORDER BY id DESC LIMIT $3",
            &[&webhook_id, &before, &limit],
        )
        .await
        .context("listing webhook deliveries")?
        .iter()
        .map(delivery_row)
        .collect()
    }

    async fn record_attempt(
        &self,
        delivery_id: i64,
        attempt: Attempt,
        disable_after: u32,
        audit: Audit,
    ) -> Result<AttemptRecorded> {
        let mut client = self.pooled().await?;
        let tx = client
            .transaction()
            .await
            .context("beginning a webhook attempt")?;
        let mut d = read_delivery(&tx, delivery_id, true)
            .await?
            .ok_or_else(|| Error::not_found(format!("webhook delivery {delivery_id}")))?;
        if d.state != DeliveryState::Pending {
            return Ok(AttemptRecorded {
                delivery: d,
                disabled: false,
            });
        }
        apply_attempt(&mut d, &attempt);
        write_delivery(&tx, &d).await?;
        let mut disabled = false;
        if let Some(mut w) = read_webhook(&tx, d.webhook_id, true).await? {
            let before = w.clone();
            disabled = apply_to_webhook(&mut w, &attempt, disable_after);
            write_webhook(&tx, &w).await?;
            if disabled {
                commit_audit_change(&tx, audit, Some(&before), Some(&w)).await?;
            }
        }
        tx.commit().await.context("committing a webhook attempt")?;
        Ok(AttemptRecorded {
            delivery: d,
            disabled,
        })
    }
}
