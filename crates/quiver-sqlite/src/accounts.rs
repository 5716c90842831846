//! [`AccountStore`] on SQLite: every write in the single writer's transaction.

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_auth::{NamespaceRole, SiteRole};
use quiver_model::{Context, Error, Namespace, OwnerKind, Result};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{ensure_namespace_tx, is_unique_violation, now_ms, parse_enum, ts, SqliteStore};
use quiver_store::accounts::{
    decode_scopes, encode_scopes, last_owner, name_taken, AccountStore, ApiToken, Membership,
    NewToken, NewUser, User, UserRecord,
};
use quiver_store::Audit;

const USER_COLS: &str = "id, name, email, site_role, created_at, password_hash";
const MEMBER_SELECT: &str = "SELECT m.namespace, m.user_id, u.name, m.role, m.created_at \
     FROM memberships m JOIN users u ON u.id = m.user_id";
const TOKEN_COLS: &str = "id, user_id, name, scopes, pattern, expires_at, revoked_at, \
     last_used_at, created_at";

fn user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        user: User {
            id: r.get(0)?,
            name: r.get(1)?,
            email: r.get(2)?,
            site_role: r
                .get::<_, Option<String>>(3)?
                .map(parse_enum::<SiteRole>)
                .transpose()?,
            created_at: ts(r.get(4)?),
        },
        password_hash: r.get(5)?,
    })
}

fn member_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Membership> {
    Ok(Membership {
        namespace: r.get(0)?,
        user_id: r.get(1)?,
        user: r.get(2)?,
        role: parse_enum(r.get(3)?)?,
        created_at: ts(r.get(4)?),
    })
}

fn token_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiToken> {
    let scopes: String = r.get(3)?;
    Ok(ApiToken {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        scopes: decode_scopes(&scopes).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(3, rusqlite::types::Type::Text, e.into())
        })?,
        pattern: r.get(4)?,
        expires_at: r.get::<_, Option<i64>>(5)?.map(ts),
        revoked_at: r.get::<_, Option<i64>>(6)?.map(ts),
        last_used_at: r.get::<_, Option<i64>>(7)?.map(ts),
        created_at: ts(r.get(8)?),
    })
}

fn user_by(conn: &Connection, col: &str, key: &dyn rusqlite::ToSql) -> Result<Option<UserRecord>> {
    conn.prepare_cached(&format!("SELECT {USER_COLS} FROM users WHERE {col} = ?1"))
        .and_then(|mut s| s.query_row([key], user_from_row).optional())
        .context("reading a user")
}

pub(crate) fn token_by_id(conn: &Connection, id: i64) -> Result<Option<ApiToken>> {
    conn.prepare_cached(&format!(
        "SELECT {TOKEN_COLS} FROM api_tokens WHERE id = ?1"
    ))
    .and_then(|mut s| s.query_row([id], token_from_row).optional())
    .context("reading a token")
}

fn namespace_exists(tx: &Transaction<'_>, name: &str) -> Result<bool> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM namespaces WHERE name = ?1)",
        [name],
        |r| r.get(0),
    )
    .context("reading a namespace")
}

fn owners(tx: &Transaction<'_>, namespace: &str) -> Result<i64> {
    tx.query_row(
        "SELECT COUNT(*) FROM memberships WHERE namespace = ?1 AND role = 'owner'",
        [namespace],
        |r| r.get(0),
    )
    .context("counting owners")
}

fn insert_member(
    tx: &Transaction<'_>,
    namespace: &str,
    user_id: i64,
    role: NamespaceRole,
) -> Result<()> {
    tx.execute(
        "INSERT INTO memberships (namespace, user_id, role, created_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (namespace, user_id) DO UPDATE SET role = excluded.role",
        params![namespace, user_id, role.as_str(), now_ms()],
    )
    .context("writing a membership")?;
    Ok(())
}

fn membership(tx: &Transaction<'_>, namespace: &str, user_id: i64) -> Result<Option<Membership>> {
    tx.prepare_cached(&format!(
        "{MEMBER_SELECT} WHERE m.namespace = ?1 AND m.user_id = ?2"
    ))
    .and_then(|mut s| {
        s.query_row(params![namespace, user_id], member_from_row)
            .optional()
    })
    .context("reading a membership")
}

fn read_namespace(tx: &Transaction<'_>, name: &str) -> Result<Namespace> {
    tx.query_row(
        "SELECT name, owner_kind, display_name, created_at FROM namespaces WHERE name = ?1",
        [name],
        |r| {
            Ok(Namespace {
                name: r.get(0)?,
                owner_kind: parse_enum(r.get(1)?)?,
                display_name: r.get(2)?,
                created_at: ts(r.get(3)?),
            })
        },
    )
    .context("reading a namespace")
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn register_user_audited(&self, u: NewUser, audit: Audit) -> Result<User> {
        self.write(move |tx| {
            if user_by(tx, "name", &u.name)?.is_some() {
                return Err(name_taken("user name", &u.name));
            }
            if namespace_exists(tx, &u.name)? {
                return Err(name_taken("namespace", &u.name));
            }
            tx.execute(
                "INSERT INTO users (name, email, password_hash, site_role, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    u.name,
                    u.email,
                    u.password_hash,
                    u.site_role.map(SiteRole::as_str),
                    now_ms()
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    name_taken("user name", &u.name)
                } else {
                    Error::internal("creating a user", e)
                }
            })?;
            let id = tx.last_insert_rowid();
            ensure_namespace_tx(tx, &u.name, OwnerKind::User)?;
            insert_member(tx, &u.name, id, NamespaceRole::Owner)?;
            let user = user_by(tx, "id", &id)?
                .map(|r| r.user)
                .ok_or_else(|| Error::internal("creating a user", "not found after insert"))?;
            commit_audit(tx, audit, &user)?;
            Ok(user)
        })
        .await
    }

    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>> {
        let name = name.to_string();
        self.read(move |c| user_by(c, "name", &name)).await
    }

    async fn get_user_by_id(&self, id: i64) -> Result<Option<User>> {
        self.read(move |c| Ok(user_by(c, "id", &id)?.map(|r| r.user)))
            .await
    }

    async fn count_users(&self) -> Result<u64> {
        self.read(|c| {
            c.query_row("SELECT COUNT(*) FROM users", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .context("counting users")
        })
        .await
    }

    async fn set_site_role_audited(
        &self,
        user_id: i64,
        role: Option<SiteRole>,
        audit: Audit,
    ) -> Result<User> {
        self.write(move |tx| {
            let before = user_by(tx, "id", &user_id)?.map(|r| r.user);
            let n = tx
                .execute(
                    "UPDATE users SET site_role = ?1 WHERE id = ?2",
                    params![role.map(SiteRole::as_str), user_id],
                )
                .context("setting a site role")?;
            if n == 0 {
                return Err(Error::not_found(format!("user {user_id}")));
            }
            let after = user_by(tx, "id", &user_id)?
                .map(|r| r.user)
                .ok_or_else(|| Error::not_found(format!("user {user_id}")))?;
            commit_audit_change(tx, audit, before.as_ref(), Some(&after))?;
            Ok(after)
        })
        .await
    }

    async fn create_org_audited(
        &self,
        namespace: &str,
        owner_id: i64,
        audit: Audit,
    ) -> Result<Namespace> {
        let namespace = namespace.to_string();
        self.write(move |tx| {
            if namespace_exists(tx, &namespace)? {
                return Err(name_taken("namespace", &namespace));
            }
            if user_by(tx, "id", &owner_id)?.is_none() {
                return Err(Error::not_found(format!("user {owner_id}")));
            }
            ensure_namespace_tx(tx, &namespace, OwnerKind::Organisation)?;
            insert_member(tx, &namespace, owner_id, NamespaceRole::Owner)?;
            let ns = read_namespace(tx, &namespace)?;
            commit_audit(tx, audit, &ns)?;
            Ok(ns)
        })
        .await
    }

    async fn set_member_audited(
        &self,
        namespace: &str,
        user_id: i64,
        role: NamespaceRole,
        audit: Audit,
    ) -> Result<Membership> {
        let namespace = namespace.to_string();
        self.write(move |tx| {
            if !namespace_exists(tx, &namespace)? {
                return Err(Error::not_found(format!("namespace {namespace}")));
            }
            if user_by(tx, "id", &user_id)?.is_none() {
                return Err(Error::not_found(format!("user {user_id}")));
            }
            let before = membership(tx, &namespace, user_id)?;
            insert_member(tx, &namespace, user_id, role)?;
            if owners(tx, &namespace)? == 0 {
                return Err(last_owner(&namespace));
            }
            let after = membership(tx, &namespace, user_id)?
                .ok_or_else(|| Error::internal("setting a member", "not found after write"))?;
            commit_audit_change(tx, audit, before.as_ref(), Some(&after))?;
            Ok(after)
        })
        .await
    }

    async fn remove_member_audited(
        &self,
        namespace: &str,
        user_id: i64,
        audit: Audit,
    ) -> Result<bool> {
        let namespace = namespace.to_string();
        self.write(move |tx| {
            let before = membership(tx, &namespace, user_id)?;
            let n = tx
                .execute(
                    "DELETE FROM memberships WHERE namespace = ?1 AND user_id = ?2",
                    params![namespace, user_id],
                )
                .context("removing a membership")?;
            if n > 0 && owners(tx, &namespace)? == 0 {
                return Err(last_owner(&namespace));
            }
            if n > 0 {
                commit_audit_change::<_, Membership>(tx, audit, before.as_ref(), None)?;
            }
            Ok(n > 0)
        })
        .await
    }

    async fn members(&self, namespace: &str) -> Result<Vec<Membership>> {
        let namespace = namespace.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "{MEMBER_SELECT} WHERE m.namespace = ?1 ORDER BY u.name"
            ))
            .and_then(|mut s| {
                s.query_map([namespace], member_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("listing members")
        })
        .await
    }

    async fn memberships_of(&self, user_id: i64) -> Result<Vec<Membership>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "{MEMBER_SELECT} WHERE m.user_id = ?1 ORDER BY m.namespace"
            ))
            .and_then(|mut s| {
                s.query_map([user_id], member_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("listing memberships")
        })
        .await
    }

    async fn create_token_audited(&self, t: NewToken, audit: Audit) -> Result<ApiToken> {
        self.write(move |tx| {
            tx.execute(
                "INSERT INTO api_tokens (user_id, name, token_hash, scopes, pattern, expires_at, \
                 created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.user_id,
                    t.name,
                    t.token_hash,
                    encode_scopes(&t.scopes),
                    t.pattern,
                    t.expires_at.map(|e| e.as_millisecond()),
                    now_ms()
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict("token", "a token with this hash exists")
                } else if matches!(&e, rusqlite::Error::SqliteFailure(f, _)
                    if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
                {
                    Error::not_found(format!("user {}", t.user_id))
                } else {
                    Error::internal("creating a token", e)
                }
            })?;
            let token = token_by_id(tx, tx.last_insert_rowid())?
                .ok_or_else(|| Error::internal("creating a token", "not found after insert"))?;
            commit_audit(tx, audit, &token)?;
            Ok(token)
        })
        .await
    }

    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>> {
        let h = token_hash.to_string();
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens WHERE token_hash = ?1"
            ))
            .and_then(|mut s| s.query_row([h], token_from_row).optional())
            .context("reading a token")
        })
        .await
    }

    async fn list_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>> {
        self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLS} FROM api_tokens WHERE user_id = ?1 ORDER BY id DESC"
            ))
            .and_then(|mut s| {
                s.query_map([user_id], token_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .context("listing tokens")
        })
        .await
    }

    async fn revoke_token_audited(
        &self,
        user_id: i64,
        id: i64,
        at: Timestamp,
        audit: Audit,
    ) -> Result<ApiToken> {
        self.write(move |tx| {
            let before = token_by_id(tx, id)?;
            let n = tx
                .execute(
                    "UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?1) \
                     WHERE id = ?2 AND user_id = ?3",
                    params![at.as_millisecond(), id, user_id],
                )
                .context("revoking a token")?;
            if n == 0 {
                return Err(Error::not_found(format!("token {id}")));
            }
            let after =
                token_by_id(tx, id)?.ok_or_else(|| Error::not_found(format!("token {id}")))?;
            commit_audit_change(tx, audit, before.as_ref(), Some(&after))?;
            Ok(after)
        })
        .await
    }

    async fn touch_token(&self, id: i64, at: Timestamp) -> Result<()> {
        self.write(move |tx| {
            tx.execute(
                "UPDATE api_tokens SET last_used_at = ?1 WHERE id = ?2",
                params![at.as_millisecond(), id],
            )
            .context("recording a token's use")?;
            Ok(())
        })
        .await
    }
}

const AUDIT_COLS: &str = "id, at, actor, action, namespace, target, outcome, reason, diff, client";

fn audit_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<quiver_store::AuditRecord> {
    let diff: Option<String> = r.get(8)?;
    Ok(quiver_store::AuditRecord {
        id: r.get(0)?,
        at: ts(r.get(1)?),
        actor: r.get(2)?,
        action: r.get(3)?,
        namespace: r.get(4)?,
        target: r.get(5)?,
        outcome: r.get(6)?,
        reason: r.get(7)?,
        diff: diff.as_deref().map(super::json_col).transpose()?,
        client: r.get(9)?,
    })
}

#[async_trait]
impl quiver_store::AuditLog for SqliteStore {
    async fn append_audit(&self, a: quiver_store::NewAuditRecord) -> Result<i64> {
        self.write(move |tx| insert_audit(tx, a)).await
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
        let w = quiver_store::audit::audit_where(filter, before, |n| format!("?{n}"));
        self.read(move |c| {
            let sql = format!(
                "SELECT {AUDIT_COLS} FROM audit_log {} ORDER BY id DESC LIMIT {}",
                w.sql,
                limit + 1
            );
            let args: Vec<Box<dyn rusqlite::ToSql>> = w
                .texts
                .into_iter()
                .map(|v| Box::new(v) as Box<dyn rusqlite::ToSql>)
                .chain(
                    w.ints
                        .into_iter()
                        .map(|v| Box::new(v) as Box<dyn rusqlite::ToSql>),
                )
                .collect();
            let rows = c
                .prepare(&sql)
                .and_then(|mut s| {
                    s.query_map(rusqlite::params_from_iter(args.iter()), audit_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("listing the audit log")?;
            Ok(quiver_store::audit::audit_page(rows, limit))
        })
        .await
    }
}

/// Append an audit row inside a write transaction (a write's own row commits with it).
pub(crate) fn insert_audit(tx: &Transaction<'_>, a: quiver_store::NewAuditRecord) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO audit_log \
         (at, actor, action, namespace, target, outcome, reason, diff, client) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut s| {
        s.execute(params![
            now_ms(),
            a.actor,
            a.action,
            a.namespace,
            a.target,
            a.outcome,
            a.reason,
            a.diff.map(|d| d.to_string()),
            a.client
        ])
    })
    .context("appending to the audit log")?;
    Ok(tx.last_insert_rowid())
}

/// Append `audit`, finished with what the write stored, inside its transaction.
pub(crate) fn commit_audit<T: serde::Serialize>(
    tx: &Transaction<'_>,
    audit: quiver_store::Audit,
    written: &T,
) -> Result<()> {
    commit_audit_change::<serde_json::Value, T>(tx, audit, None, Some(written))
}

/// Append `audit`, finished with what the write found and left, inside its transaction.
pub(crate) fn commit_audit_change<B: serde::Serialize, A: serde::Serialize>(
    tx: &Transaction<'_>,
    audit: quiver_store::Audit,
    before: Option<&B>,
    after: Option<&A>,
) -> Result<()> {
    if let Some(a) = audit {
        insert_audit(tx, a.finish_change(before, after))?;
    }
    Ok(())
}
