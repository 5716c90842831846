//! [`DeviceCodeStore`] on PostgreSQL. Polls and redeems lock their row (`FOR UPDATE`), so
//! two nodes answering the same client's polls hand its token out once.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::{SignedDuration, Timestamp};
use quiver_model::{Context, Error, Result};
use quiver_store::accounts::{decode_scopes, encode_scopes, ApiToken};
use quiver_store::device::{DeviceCode, DeviceCodeStore, DeviceStatus, DeviceToken, NewDeviceCode};
use quiver_store::Audit;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::accounts::{commit_audit_change, token_by};
use crate::store::{now_ms, BoxError};
use crate::PostgresStore;

const COLS: &str = "id, client_name, scopes, status, user_id, token_id, interval_secs, \
     expires_at, last_polled_at, created_at";

/// Requests expired longer ago than this are deleted when a new one is made.
const KEEP_EXPIRED: SignedDuration = SignedDuration::from_hours(24);

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn from_row(r: &Row) -> Result<DeviceCode> {
    let decode = || -> std::result::Result<DeviceCode, BoxError> {
        let scopes: String = r.try_get(2)?;
        let status: String = r.try_get(3)?;
        Ok(DeviceCode {
            id: r.try_get(0)?,
            client_name: r.try_get(1)?,
            scopes: decode_scopes(&scopes)?,
            status: status.parse::<DeviceStatus>().map_err(|e| e.message)?,
            user_id: r.try_get(4)?,
            token_id: r.try_get(5)?,
            interval_secs: r.try_get(6)?,
            expires_at: ts(r.try_get(7)?),
            last_polled_at: r.try_get::<_, Option<i64>>(8)?.map(ts),
            created_at: ts(r.try_get(9)?),
        })
    };
    decode().context("decoding a device request")
}

async fn by(
    c: &impl GenericClient,
    col: &str,
    key: &(dyn ToSql + Sync),
    lock: bool,
) -> Result<Option<DeviceCode>> {
    let sql = format!(
        "SELECT {COLS} FROM device_codes WHERE {col} = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    c.query_opt(&sql, &[key])
        .await
        .context("reading a device request")?
        .as_ref()
        .map(from_row)
        .transpose()
}

#[async_trait]
impl DeviceCodeStore for PostgresStore {
    async fn create_device_code(&self, d: NewDeviceCode) -> Result<DeviceCode> {
        let c = self.pooled().await?;
        let stale = (Timestamp::now() - KEEP_EXPIRED).as_millisecond();
        c.execute("DELETE FROM device_codes WHERE expires_at < $1", &[&stale])
            .await
            .context("deleting old device requests")?;
        let id: i64 = c
            .query_one(
                "INSERT INTO device_codes (device_code_hash, user_code_hash, client_name, scopes, \
                 status, interval_secs, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, 'pending', $5, $6, $7) RETURNING id",
                &[
                    &d.device_code_hash,
                    &d.user_code_hash,
                    &d.client_name,
                    &encode_scopes(&d.scopes),
                    &d.interval_secs,
                    &d.expires_at.as_millisecond(),
                    &now_ms(),
                ],
            )
            .await
            .map_err(|e| match e.code() {
                Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
                    Error::conflict("user_code", "a device request with this code exists")
                }
                _ => Error::internal("creating a device request", e),
            })?
            .get(0);
        by(&c, "id", &id, false)
            .await?
            .ok_or_else(|| Error::internal("creating a device request", "not found after insert"))
    }

    async fn device_code_by_user_code(&self, user_code_hash: &str) -> Result<Option<DeviceCode>> {
        let c = self.pooled().await?;
        by(&c, "user_code_hash", &user_code_hash, false).await
    }

    async fn decide_device_code(
        &self,
        user_code_hash: &str,
        user_id: i64,
        approve: bool,
        now: Timestamp,
        audit: Audit,
    ) -> Result<Option<DeviceCode>> {
        let status = if approve {
            DeviceStatus::Approved
        } else {
            DeviceStatus::Denied
        };
        let mut c = self.pooled().await?;
        let c = c
            .transaction()
            .await
            .context("beginning a device decision")?;
        let n = c
            .execute(
                "UPDATE device_codes SET status = $1, user_id = $2 \
                 WHERE user_code_hash = $3 AND status = 'pending' AND expires_at > $4",
                &[
                    &status.as_str(),
                    &user_id,
                    &user_code_hash,
                    &now.as_millisecond(),
                ],
            )
            .await
            .context("deciding a device request")?;
        if n == 0 {
            return Ok(None);
        }
        let decided = by(&c, "user_code_hash", &user_code_hash, false).await?;
        if let Some(d) = &decided {
            commit_audit_change::<_, serde_json::Value, _>(&c, audit, None, Some(d)).await?;
        }
        c.commit().await.context("committing a device decision")?;
        Ok(decided)
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: Timestamp,
    ) -> Result<Option<DeviceCode>> {
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a device poll")?;
        let before = by(&tx, "device_code_hash", &device_code_hash, true).await?;
        if before.is_some() {
            tx.execute(
                "UPDATE device_codes SET last_polled_at = $1 WHERE device_code_hash = $2",
                &[&now.as_millisecond(), &device_code_hash],
            )
            .await
            .context("recording a device poll")?;
        }
        tx.commit().await.context("committing a device poll")?;
        Ok(before)
    }

    async fn set_device_interval(&self, id: i64, interval_secs: i64) -> Result<()> {
        let c = self.pooled().await?;
        c.execute(
            "UPDATE device_codes SET interval_secs = $1 WHERE id = $2",
            &[&interval_secs, &id],
        )
        .await
        .context("slowing a device request down")?;
        Ok(())
    }

    async fn redeem_device_code(
        &self,
        device_code_hash: &str,
        token: DeviceToken,
        audit: Audit,
    ) -> Result<Option<ApiToken>> {
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a device redeem")?;
        let code = by(&tx, "device_code_hash", &device_code_hash, true).await?;
        match code {
            Some(DeviceCode {
                id,
                status: DeviceStatus::Approved,
                user_id: Some(user_id),
                scopes,
                ..
            }) => {
                let token_id: i64 = tx
                    .query_one(
                        "INSERT INTO api_tokens (user_id, name, token_hash, scopes, pattern, \
                             expires_at, created_at) VALUES ($1, $2, $3, $4, NULL, $5, $6) \
                             RETURNING id",
                        &[
                            &user_id,
                            &token.name,
                            &token.token_hash,
                            &encode_scopes(&scopes),
                            &token.expires_at.map(|e| e.as_millisecond()),
                            &now_ms(),
                        ],
                    )
                    .await
                    .context("creating a device token")?
                    .get(0);
                tx.execute(
                    "UPDATE device_codes SET status = 'redeemed', token_id = $1 WHERE id = $2",
                    &[&token_id, &id],
                )
                .await
                .context("redeeming a device request")?;
                let minted = token_by(&tx, "id", &token_id).await?.ok_or_else(|| {
                    Error::internal("creating a device token", "not found after insert")
                })?;
                commit_audit_change::<_, serde_json::Value, _>(&tx, audit, None, Some(&minted))
                    .await?;
                tx.commit().await.context("committing a device redeem")?;
                Ok(Some(minted))
            }
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl quiver_store::ExternalIdentityStore for PostgresStore {
    async fn external_user(&self, provider: &str, subject: &str) -> Result<Option<i64>> {
        let c = self.pooled().await?;
        Ok(c.query_opt(
            "SELECT user_id FROM external_identities WHERE provider = $1 AND subject = $2",
            &[&provider, &subject],
        )
        .await
        .context("reading an external identity")?
        .map(|r| r.get(0)))
    }

    async fn link_external(
        &self,
        provider: &str,
        subject: &str,
        user_id: i64,
        audit: Audit,
    ) -> Result<()> {
        let mut c = self.pooled().await?;
        let c = c.transaction().await.context("beginning a link")?;
        c.execute(
            "INSERT INTO external_identities (provider, subject, user_id, created_at) \
             VALUES ($1, $2, $3, $4)",
            &[&provider, &subject, &user_id, &now_ms()],
        )
        .await
        .map_err(|e| match e.code() {
            Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
                Error::conflict("subject", "this outside identity is linked already")
            }
            _ => Error::internal("linking an external identity", e),
        })?;
        commit_audit_change::<_, serde_json::Value, serde_json::Value>(&c, audit, None, None)
            .await?;
        c.commit().await.context("committing a link")?;
        Ok(())
    }
}
