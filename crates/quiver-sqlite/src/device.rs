//! [`DeviceCodeStore`] on SQLite: each step in the single writer's transaction.

use async_trait::async_trait;
use jiff::{SignedDuration, Timestamp};
use quiver_model::{Context, Error, Result};
use rusqlite::{params, Connection, OptionalExtension};

use super::{is_unique_violation, now_ms, parse_enum, ts, SqliteStore};
use crate::accounts::{commit_audit, token_by_id};
use quiver_store::accounts::{decode_scopes, encode_scopes, ApiToken};
use quiver_store::device::{DeviceCode, DeviceCodeStore, DeviceStatus, DeviceToken, NewDeviceCode};
use quiver_store::Audit;

const COLS: &str = "id, client_name, scopes, status, user_id, token_id, interval_secs, \
     expires_at, last_polled_at, created_at";

/// Requests expired longer ago than this are deleted when a new one is made.
const KEEP_EXPIRED: SignedDuration = SignedDuration::from_hours(24);

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceCode> {
    let scopes: String = r.get(2)?;
    Ok(DeviceCode {
        id: r.get(0)?,
        client_name: r.get(1)?,
        scopes: decode_scopes(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, e.into())
        })?,
        status: parse_enum::<DeviceStatus>(r.get(3)?)?,
        user_id: r.get(4)?,
        token_id: r.get(5)?,
        interval_secs: r.get(6)?,
        expires_at: ts(r.get(7)?),
        last_polled_at: r.get::<_, Option<i64>>(8)?.map(ts),
        created_at: ts(r.get(9)?),
    })
}

fn by(conn: &Connection, col: &str, key: &dyn rusqlite::ToSql) -> Result<Option<DeviceCode>> {
    conn.prepare_cached(&format!("SELECT {COLS} FROM device_codes WHERE {col} = ?1"))
        .and_then(|mut s| s.query_row([key], from_row).optional())
        .context("reading a device request")
}

#[async_trait]
impl DeviceCodeStore for SqliteStore {
    async fn create_device_code(&self, c: NewDeviceCode) -> Result<DeviceCode> {
        self.write(move |tx| {
            let stale = (Timestamp::now() - KEEP_EXPIRED).as_millisecond();
            tx.execute("DELETE FROM device_codes WHERE expires_at < ?1", [stale])
                .context("deleting old device requests")?;
            tx.execute(
                "INSERT INTO device_codes (device_code_hash, user_code_hash, client_name, scopes, \
                 status, interval_secs, expires_at, created_at) \
                 VALUES (?1, ?2, ?3, ?4, 'pending', ?5, ?6, ?7)",
                params![
                    c.device_code_hash,
                    c.user_code_hash,
                    c.client_name,
                    encode_scopes(&c.scopes),
                    c.interval_secs,
                    c.expires_at.as_millisecond(),
                    now_ms()
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict("user_code", "a device request with this code exists")
                } else {
                    Error::internal("creating a device request", e)
                }
            })?;
            by(tx, "id", &tx.last_insert_rowid())?.ok_or_else(|| {
                Error::internal("creating a device request", "not found after insert")
            })
        })
        .await
    }

    async fn device_code_by_user_code(&self, user_code_hash: &str) -> Result<Option<DeviceCode>> {
        let h = user_code_hash.to_string();
        self.read(move |c| by(c, "user_code_hash", &h)).await
    }

    async fn decide_device_code(
        &self,
        user_code_hash: &str,
        user_id: i64,
        approve: bool,
        now: Timestamp,
        audit: Audit,
    ) -> Result<Option<DeviceCode>> {
        let h = user_code_hash.to_string();
        let status = if approve {
            DeviceStatus::Approved
        } else {
            DeviceStatus::Denied
        };
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE device_codes SET status = ?1, user_id = ?2 \
                     WHERE user_code_hash = ?3 AND status = 'pending' AND expires_at > ?4",
                    params![status.as_str(), user_id, h, now.as_millisecond()],
                )
                .context("deciding a device request")?;
            if n == 0 {
                return Ok(None);
            }
            let decided = by(tx, "user_code_hash", &h)?;
            if let Some(d) = &decided {
                commit_audit(tx, audit, d)?;
            }
            Ok(decided)
        })
        .await
    }

    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: Timestamp,
    ) -> Result<Option<DeviceCode>> {
        let h = device_code_hash.to_string();
        self.write(move |tx| {
            let before = by(tx, "device_code_hash", &h)?;
            if before.is_some() {
                tx.execute(
                    "UPDATE device_codes SET last_polled_at = ?1 WHERE device_code_hash = ?2",
                    params![now.as_millisecond(), h],
                )
                .context("recording a device poll")?;
            }
            Ok(before)
        })
        .await
    }

    async fn set_device_interval(&self, id: i64, interval_secs: i64) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE device_codes SET interval_secs = ?1 WHERE id = ?2",
                params![interval_secs, id],
            )
            .context("slowing a device request down")?;
            Ok(())
        })
        .await
    }

    async fn redeem_device_code(
        &self,
        device_code_hash: &str,
        token: DeviceToken,
        audit: Audit,
    ) -> Result<Option<ApiToken>> {
        let h = device_code_hash.to_string();
        self.write(move |tx| {
            let Some(code) = by(tx, "device_code_hash", &h)? else {
                return Ok(None);
            };
            let (DeviceStatus::Approved, Some(user_id)) = (code.status, code.user_id) else {
                return Ok(None);
            };
            tx.execute(
                "INSERT INTO api_tokens (user_id, name, token_hash, scopes, pattern, \
                     expires_at, created_at) VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?6)",
                params![
                    user_id,
                    token.name,
                    token.token_hash,
                    encode_scopes(&code.scopes),
                    token.expires_at.map(|e| e.as_millisecond()),
                    now_ms()
                ],
            )
            .context("creating a device token")?;
            let token_id = tx.last_insert_rowid();
            tx.execute(
                "UPDATE device_codes SET status = 'redeemed', token_id = ?1 \
                     WHERE id = ?2 AND status = 'approved'",
                params![token_id, code.id],
            )
            .context("redeeming a device request")?;
            let minted = token_by_id(tx, token_id)?.ok_or_else(|| {
                Error::internal("creating a device token", "not found after insert")
            })?;
            commit_audit(tx, audit, &minted)?;
            Ok(Some(minted))
        })
        .await
    }
}

#[async_trait]
impl quiver_store::device::ExternalIdentityStore for SqliteStore {
    async fn external_user(&self, provider: &str, subject: &str) -> Result<Option<i64>> {
        let (p, s) = (provider.to_string(), subject.to_string());
        self.read(move |c| {
            c.query_row(
                "SELECT user_id FROM external_identities WHERE provider = ?1 AND subject = ?2",
                params![p, s],
                |r| r.get(0),
            )
            .optional()
            .context("reading an external identity")
        })
        .await
    }

    async fn link_external(
        &self,
        provider: &str,
        subject: &str,
        user_id: i64,
        audit: Audit,
    ) -> Result<()> {
        let (p, s) = (provider.to_string(), subject.to_string());
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO external_identities (provider, subject, user_id, created_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![p, s, user_id, now_ms()],
            )
            .map_err(|e| {
                if is_unique_violation(&e)
                    || matches!(&e, rusqlite::Error::SqliteFailure(f, _)
                        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
                {
                    Error::conflict("subject", "this outside identity is linked already")
                } else {
                    Error::internal("linking an external identity", e)
                }
            })?;
            commit_audit(tx, audit, &serde_json::Value::Null)?;
            Ok(())
        })
        .await
    }
}
