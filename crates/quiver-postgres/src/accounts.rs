//! [`AccountStore`] on PostgreSQL. Writes that create namespaces or change memberships run
//! in a [`Writer`] (the feed lock), which also serializes the last-owner check; token
//! writes need no lock.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use jiff::Timestamp;
use quiver_auth::{NamespaceRole, SiteRole};
use quiver_model::{Context, Error, Namespace, OwnerKind, Result};
use quiver_store::accounts::{
    decode_scopes, encode_scopes, last_owner, name_taken, AccountStore, ApiToken, Membership,
    NewToken, NewUser, User, UserRecord,
};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::store::{ensure_namespace_tx, namespace_by_name, now_ms, BoxError, Writer};
use crate::PostgresStore;
use quiver_store::Audit;

const USER_COLS: &str = "id, name, email, site_role, created_at, password_hash";
const MEMBER_SELECT: &str = "SELECT m.namespace, m.user_id, u.name, m.role, m.created_at \
     FROM memberships m JOIN users u ON u.id = m.user_id";
const TOKEN_COLS: &str = "id, user_id, name, scopes, pattern, expires_at, revoked_at, \
     last_used_at, created_at";

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn parse<T: std::str::FromStr>(s: &str) -> std::result::Result<T, BoxError> {
    s.parse::<T>()
        .map_err(|_| format!("bad enum value {s}").into())
}

fn user_from_row(r: &Row) -> Result<UserRecord> {
    let decode = || -> std::result::Result<UserRecord, BoxError> {
        let role: Option<String> = r.try_get(3)?;
        Ok(UserRecord {
            user: User {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
                email: r.try_get(2)?,
                site_role: role.as_deref().map(parse::<SiteRole>).transpose()?,
                created_at: ts(r.try_get(4)?),
            },
            password_hash: r.try_get(5)?,
        })
    };
    decode().context("decoding a user")
}

fn member_from_row(r: &Row) -> Result<Membership> {
    let decode = || -> std::result::Result<Membership, BoxError> {
        let role: String = r.try_get(3)?;
        Ok(Membership {
            namespace: r.try_get(0)?,
            user_id: r.try_get(1)?,
            user: r.try_get(2)?,
            role: parse(&role)?,
            created_at: ts(r.try_get(4)?),
        })
    };
    decode().context("decoding a membership")
}

fn token_from_row(r: &Row) -> Result<ApiToken> {
    let decode = || -> std::result::Result<ApiToken, BoxError> {
        let scopes: String = r.try_get(3)?;
        Ok(ApiToken {
            id: r.try_get(0)?,
            user_id: r.try_get(1)?,
            name: r.try_get(2)?,
            scopes: decode_scopes(&scopes)?,
            pattern: r.try_get(4)?,
            expires_at: r.try_get::<_, Option<i64>>(5)?.map(ts),
            revoked_at: r.try_get::<_, Option<i64>>(6)?.map(ts),
            last_used_at: r.try_get::<_, Option<i64>>(7)?.map(ts),
            created_at: ts(r.try_get(8)?),
        })
    };
    decode().context("decoding a token")
}

async fn user_by(
    c: &impl GenericClient,
    col: &str,
    key: &(dyn ToSql + Sync),
) -> Result<Option<UserRecord>> {
    let row = c
        .query_opt(
            &format!("SELECT {USER_COLS} FROM users WHERE {col} = $1"),
            &[key],
        )
        .await
        .context("reading a user")?;
    row.as_ref().map(user_from_row).transpose()
}

pub(crate) async fn token_by(
    c: &impl GenericClient,
    col: &str,
    key: &(dyn ToSql + Sync),
) -> Result<Option<ApiToken>> {
    let row = c
        .query_opt(
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE {col} = $1"),
            &[key],
        )
        .await
        .context("reading a token")?;
    row.as_ref().map(token_from_row).transpose()
}

async fn membership(
    c: &impl GenericClient,
    namespace: &str,
    user_id: i64,
) -> Result<Option<Membership>> {
    c.query_opt(
        &format!("{MEMBER_SELECT} WHERE m.namespace = $1 AND m.user_id = $2"),
        &[&namespace, &user_id],
    )
    .await
    .context("reading a membership")?
    .as_ref()
    .map(member_from_row)
    .transpose()
}

async fn namespace_exists(c: &impl GenericClient, name: &str) -> Result<bool> {
    Ok(c.query_one(
        "SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = $1)",
        &[&name],
    )
    .await
    .context("reading a namespace")?
    .get(0))
}

async fn owners(c: &impl GenericClient, namespace: &str) -> Result<i64> {
    Ok(c.query_one(
        "SELECT COUNT(*) FROM memberships WHERE namespace = $1 AND role = 'owner'",
        &[&namespace],
    )
    .await
    .context("counting owners")?
    .get(0))
}

async fn insert_member(
    c: &impl GenericClient,
    namespace: &str,
    user_id: i64,
    role: NamespaceRole,
) -> Result<()> {
    c.execute(
        "INSERT INTO memberships (namespace, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (namespace, user_id) DO UPDATE SET role = excluded.role",
        &[&namespace, &user_id, &role.as_str(), &now_ms()],
    )
    .await
    .context("writing a membership")?;
    Ok(())
}

#[async_trait]
impl AccountStore for PostgresStore {
    async fn register_user_audited(&self, u: NewUser, audit: Audit) -> Result<User> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        // Accounts' checks span rows (a namespace keeps an owner): serialized.
        w.lock_feed().await?;
        if user_by(&w.tx, "name", &u.name).await?.is_some() {
            return Err(name_taken("user name", &u.name));
        }
        if namespace_exists(&w.tx, &u.name).await? {
            return Err(name_taken("namespace", &u.name));
        }
        let id: i64 =
            w.tx.query_one(
                "INSERT INTO users (name, email, password_hash, site_role, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                &[
                    &u.name,
                    &u.email,
                    &u.password_hash,
                    &u.site_role.map(SiteRole::as_str),
                    &now_ms(),
                ],
            )
            .await
            .map_err(|e| {
                if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                    name_taken("user name", &u.name)
                } else {
                    Error::internal("creating a user", e)
                }
            })?
            .get(0);
        ensure_namespace_tx(&mut w, &u.name, OwnerKind::User).await?;
        insert_member(&w.tx, &u.name, id, NamespaceRole::Owner).await?;
        let user = user_by(&w.tx, "id", &id)
            .await?
            .map(|r| r.user)
            .ok_or_else(|| Error::internal("creating a user", "not found after insert"))?;
        commit_audit(&w, audit, &user).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(user)
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let c = self.pooled().await?;
        user_by(&c, "name", &name).await
    }

    async fn get_user_by_id(&self, id: i64) -> Result<Option<User>> {
        let c = self.pooled().await?;
        Ok(user_by(&c, "id", &id).await?.map(|r| r.user))
    }

    async fn count_users(&self) -> Result<u64> {
        let c = self.pooled().await?;
        let n: i64 = c
            .query_one("SELECT COUNT(*) FROM users", &[])
            .await
            .context("counting users")?
            .get(0);
        Ok(n as u64)
    }

    async fn set_site_role_audited(
        &self,
        user_id: i64,
        role: Option<SiteRole>,
        audit: Audit,
    ) -> Result<User> {
        let mut c = self.pooled().await?;
        let c = c.transaction().await.context("beginning a role change")?;
        let before = user_by(&c, "id", &user_id).await?.map(|r| r.user);
        let n = c
            .execute(
                "UPDATE users SET site_role = $1 WHERE id = $2",
                &[&role.map(SiteRole::as_str), &user_id],
            )
            .await
            .context("setting a site role")?;
        if n == 0 {
            return Err(Error::not_found(format!("user {user_id}")));
        }
        let after = user_by(&c, "id", &user_id)
            .await?
            .map(|r| r.user)
            .ok_or_else(|| Error::not_found(format!("user {user_id}")))?;
        commit_audit_change(&c, audit, before.as_ref(), Some(&after)).await?;
        c.commit().await.context("committing a role change")?;
        Ok(after)
    }

    async fn create_org_audited(
        &self,
        namespace: &str,
        owner_id: i64,
        audit: Audit,
    ) -> Result<Namespace> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        // Accounts' checks span rows (a namespace keeps an owner): serialized.
        w.lock_feed().await?;
        if namespace_exists(&w.tx, namespace).await? {
            return Err(name_taken("namespace", namespace));
        }
        if user_by(&w.tx, "id", &owner_id).await?.is_none() {
            return Err(Error::not_found(format!("user {owner_id}")));
        }
        ensure_namespace_tx(&mut w, namespace, OwnerKind::Organisation).await?;
        insert_member(&w.tx, namespace, owner_id, NamespaceRole::Owner).await?;
        let ns = namespace_by_name(&w.tx, namespace)
            .await?
            .ok_or_else(|| Error::internal("creating a namespace", "not found after insert"))?;
        commit_audit(&w, audit, &ns).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(ns)
    }

    async fn set_member_audited(
        &self,
        namespace: &str,
        user_id: i64,
        role: NamespaceRole,
        audit: Audit,
    ) -> Result<Membership> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        // Accounts' checks span rows (a namespace keeps an owner): serialized.
        w.lock_feed().await?;
        if !namespace_exists(&w.tx, namespace).await? {
            return Err(Error::not_found(format!("namespace {namespace}")));
        }
        if user_by(&w.tx, "id", &user_id).await?.is_none() {
            return Err(Error::not_found(format!("user {user_id}")));
        }
        let before = membership(&w.tx, namespace, user_id).await?;
        insert_member(&w.tx, namespace, user_id, role).await?;
        if owners(&w.tx, namespace).await? == 0 {
            return Err(last_owner(namespace));
        }
        let m = membership(&w.tx, namespace, user_id)
            .await?
            .ok_or_else(|| Error::internal("setting a member", "not found after write"))?;
        commit_audit_change(&w.tx, audit, before.as_ref(), Some(&m)).await?;
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(m)
    }

    async fn remove_member_audited(
        &self,
        namespace: &str,
        user_id: i64,
        audit: Audit,
    ) -> Result<bool> {
        let mut client = self.pooled().await?;
        let mut w = Writer::begin(&mut client, self.inner.lock_key).await?;
        // Accounts' checks span rows (a namespace keeps an owner): serialized.
        w.lock_feed().await?;
        let before = membership(&w.tx, namespace, user_id).await?;
        let n =
            w.tx.execute(
                "DELETE FROM memberships WHERE namespace = $1 AND user_id = $2",
                &[&namespace, &user_id],
            )
            .await
            .context("removing a membership")?;
        if n > 0 && owners(&w.tx, namespace).await? == 0 {
            return Err(last_owner(namespace));
        }
        if n > 0 {
            commit_audit_change::<_, _, Membership>(&w.tx, audit, before.as_ref(), None).await?;
        }
        let done = w.commit(&self.inner.channel).await?;
        self.after_commit(&mut client, done).await?;
        Ok(n > 0)
    }

    async fn members(&self, namespace: &str) -> Result<Vec<Membership>> {
        let c = self.pooled().await?;
        c.query(
            &format!("{MEMBER_SELECT} WHERE m.namespace = $1 ORDER BY u.name"),
            &[&namespace],
        )
        .await
        .context("listing members")?
        .iter()
        .map(member_from_row)
        .collect()
    }

    async fn memberships_of(&self, user_id: i64) -> Result<Vec<Membership>> {
        let c = self.pooled().await?;
        c.query(
            &format!("{MEMBER_SELECT} WHERE m.user_id = $1 ORDER BY m.namespace"),
            &[&user_id],
        )
        .await
        .context("listing memberships")?
        .iter()
        .map(member_from_row)
        .collect()
    }

    async fn create_token_audited(&self, t: NewToken, audit: Audit) -> Result<ApiToken> {
        let mut c = self.pooled().await?;
        let c = c.transaction().await.context("beginning a token")?;
        let id: i64 = c
            .query_one(
                "INSERT INTO api_tokens (user_id, name, token_hash, scopes, pattern, expires_at, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
                &[
                    &t.user_id,
                    &t.name,
                    &t.token_hash,
                    &encode_scopes(&t.scopes),
                    &t.pattern,
                    &t.expires_at.map(|e| e.as_millisecond()),
                    &now_ms(),
                ],
            )
            .await
            .map_err(|e| match e.code() {
                Some(c) if *c == SqlState::UNIQUE_VIOLATION => {
                    Error::conflict("token", "a token with this hash exists")
                }
                Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => {
                    Error::not_found(format!("user {}", t.user_id))
                }
                _ => Error::internal("creating a token", e),
            })?
            .get(0);
        let token = token_by(&c, "id", &id)
            .await?
            .ok_or_else(|| Error::internal("creating a token", "not found after insert"))?;
        commit_audit_change::<_, serde_json::Value, _>(&c, audit, None, Some(&token)).await?;
        c.commit().await.context("committing a token")?;
        Ok(token)
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let c = self.pooled().await?;
        token_by(&c, "token_hash", &token_hash).await
    }

    async fn list_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        let c = self.pooled().await?;
        c.query(
            &format!("SELECT {TOKEN_COLS} FROM api_tokens WHERE user_id = $1 ORDER BY id DESC"),
            &[&user_id],
        )
        .await
        .context("listing tokens")?
        .iter()
        .map(token_from_row)
        .collect()
    }

    async fn revoke_token_audited(
        &self,
        user_id: i64,
        id: i64,
        at: Timestamp,
        audit: Audit,
    ) -> Result<ApiToken> {
        let mut c = self.pooled().await?;
        let c = c.transaction().await.context("beginning a revocation")?;
        let before = token_by(&c, "id", &id).await?;
        let n = c
            .execute(
                "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $1) \
                 WHERE id = $2 AND user_id = $3",
                &[&at.as_millisecond(), &id, &user_id],
            )
            .await
            .context("revoking a token")?;
        if n == 0 {
            return Err(Error::not_found(format!("token {id}")));
        }
        let after = token_by(&c, "id", &id)
            .await?
            .ok_or_else(|| Error::not_found(format!("token {id}")))?;
        commit_audit_change(&c, audit, before.as_ref(), Some(&after)).await?;
        c.commit().await.context("committing a revocation")?;
        Ok(after)
    }

    async fn touch_token(&self, id: i64, at: Timestamp) -> Result<()> {
        let c = self.pooled().await?;
        c.execute(
            "UPDATE api_tokens SET last_used_at = $1 WHERE id = $2",
            &[&at.as_millisecond(), &id],
        )
        .await
        .context("recording a token's use")?;
        Ok(())
    }
}

const AUDIT_COLS: &str = "id, at, actor, action, namespace, target, outcome, reason, diff, client";

fn audit_from_row(r: &Row) -> Result<quiver_store::AuditRecord> {
    let decode = || -> std::result::Result<quiver_store::AuditRecord, BoxError> {
        let diff: Option<String> = r.try_get(8)?;
        Ok(quiver_store::AuditRecord {
            id: r.try_get(0)?,
            at: ts(r.try_get(1)?),
            actor: r.try_get(2)?,
            action: r.try_get(3)?,
            namespace: r.try_get(4)?,
            target: r.try_get(5)?,
            outcome: r.try_get(6)?,
            reason: r.try_get(7)?,
            diff: diff.as_deref().map(serde_json::from_str).transpose()?,
            client: r.try_get(9)?,
        })
    };
    decode().context("decoding an audit row")
}

#[async_trait]
impl quiver_store::AuditLog for PostgresStore {
    async fn append_audit(&self, a: quiver_store::NewAuditRecord) -> Result<i64> {
        let c = self.pooled().await?;
        insert_audit(&c, a).await
    }

    async fn list_audit(
        &self,
        filter: &quiver_store::AuditFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<quiver_store::Page<quiver_store::AuditRecord>> {
        let before = cursor
            .map(quiver_store::audit::decode_audit_cursor)
            .transpose()?;
        let w = quiver_store::audit::audit_where(filter, before, |n| format!("${n}"));
        let args: Vec<&(dyn ToSql + Sync)> = w
            .texts
            .iter()
            .map(|v| v as &(dyn ToSql + Sync))
            .chain(w.ints.iter().map(|v| v as &(dyn ToSql + Sync)))
            .collect();
        let c = self.pooled().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {AUDIT_COLS} FROM audit_log {} ORDER BY id DESC LIMIT {}",
                    w.sql,
                    limit + 1
                ),
                &args,
            )
            .await
            .context("listing the audit log")?;
        let items = rows
            .iter()
            .map(audit_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(quiver_store::audit::audit_page(items, limit))
    }
}

/// Append an audit row (inside a write's transaction when `c` is one).
pub(crate) async fn insert_audit<C: GenericClient>(
    c: &C,
    a: quiver_store::NewAuditRecord,
) -> Result<i64> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO audit_log \
             (at, actor, action, namespace, target, outcome, reason, diff, client) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
        )
        .await
        .context("preparing an audit row")?;
    Ok(c.query_one(
        &stmt,
        &[
            &now_ms(),
            &a.actor,
            &a.action,
            &a.namespace,
            &a.target,
            &a.outcome,
            &a.reason,
            &a.diff.map(|d| d.to_string()),
            &a.client,
        ],
    )
    .await
    .context("appending to the audit log")?
    .get(0))
}

/// Append `audit`, finished with what the write stored, inside the writer's transaction.
pub(crate) async fn commit_audit<T: serde::Serialize + Sync>(
    w: &Writer<'_>,
    audit: quiver_store::Audit,
    written: &T,
) -> Result<()> {
    commit_audit_change::<_, serde_json::Value, T>(&w.tx, audit, None, Some(written)).await
}

/// Append `audit`, finished with what the write found and left, inside the transaction
/// `c` is.
pub(crate) async fn commit_audit_change<
    C: GenericClient,
    B: serde::Serialize,
    A: serde::Serialize,
>(
    c: &C,
    audit: quiver_store::Audit,
    before: Option<&B>,
    after: Option<&A>,
) -> Result<()> {
    if let Some(a) = audit {
        insert_audit(c, a.finish_change(before, after)).await?;
    }
    Ok(())
}
