//! Accounts in the store: users, namespace memberships and API tokens (migration
//! `0005_accounts` on both backends), behind the [`AccountStore`] trait reached through
//! [`Database::accounts`](crate::Database::accounts).
//!
//! Design decisions:
//! - **No secret in clear.** Users carry an argon2id PHC string, tokens a sha256 of the
//!   token; both are made by `quiver_auth::secrets` before they reach the store, and the
//!   store never sees the secret itself. [`User`] and [`ApiToken`] (what callers get back)
//!   do not even carry the hashes; only [`UserRecord`] (for password checks) does.
//! - **A user owns the namespace of their name.** [`AccountStore::register_user`] creates
//!   the user, the user namespace (with its feed row) and the owner membership in one
//!   transaction; a taken user name or namespace is a `conflict` and writes nothing.
//! - **Every namespace with members keeps an owner.** Demoting or removing the last owner
//!   is a `conflict`, checked inside the writing transaction.
//! - **A write and its audit row commit together.** The `*_audited` forms append the
//!   row in the write's transaction (see [`crate::audit::AuditDraft`]).
//! - Account writes are not in the change feed (nothing derived follows them), except the
//!   namespace rows they create.

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_auth::{NamespaceRole, Scope, SiteRole};

use crate::Audit;
use quiver_model::{Error, Namespace, Result};
use serde::{Deserialize, Serialize};

/// A user account, as callers see it (no password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: Option<String>,
    pub site_role: Option<SiteRole>,
    pub created_at: Timestamp,
}

/// A user with the stored password hash, for verifying a login. Its `Debug` hides the
/// hash (one that leaked could be attacked offline).
#[derive(Clone, PartialEq)]
pub struct UserRecord {
    pub user: User,
    pub password_hash: String,
}

/// A user to register. `password_hash` is a PHC string, never the password; its `Debug`
/// hides it.
#[derive(Clone, PartialEq)]
pub struct NewUser {
    pub name: String,
    pub email: Option<String>,
    pub password_hash: String,
    pub site_role: Option<SiteRole>,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let UserRecord {
            user,
            password_hash: _,
        } = self;
        f.debug_struct("UserRecord")
            .field("user", user)
            .field("password_hash", &quiver_auth::secrets::Redacted)
            .finish()
    }
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NewUser {
            name,
            email,
            password_hash: _,
            site_role,
        } = self;
        f.debug_struct("NewUser")
            .field("name", name)
            .field("email", email)
            .field("password_hash", &quiver_auth::secrets::Redacted)
            .field("site_role", site_role)
            .finish()
    }
}

/// A user's role in a namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Membership {
    pub namespace: String,
    pub user_id: i64,
    /// The member's user name.
    pub user: String,
    pub role: NamespaceRole,
    pub created_at: Timestamp,
}

/// A token to store. `token_hash` is `quiver_auth::secrets::token_hash` of the token.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToken {
    pub user_id: i64,
    pub name: String,
    pub token_hash: String,
    pub scopes: Vec<Scope>,
    pub pattern: Option<String>,
    pub expires_at: Option<Timestamp>,
}

/// A stored token, as its owner sees it (no hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiToken {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub pattern: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

impl ApiToken {
    /// Usable at `now`: not revoked, not expired.
    pub fn is_active(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

/// The store's accounts. Every write has an `*_audited` form taking the audit row that
/// commits with it, in the same transaction ([`Audit`]); the plain forms write no row.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Create a user, the user namespace of the same name and the owner membership, in one
    /// transaction. Conflict (field `name`) if the user name or the namespace is taken.
    async fn register_user(&self, user: NewUser) -> Result<User> {
        self.register_user_audited(user, None).await
    }
    async fn register_user_audited(&self, user: NewUser, audit: Audit) -> Result<User>;
    async fn get_user(&self, name: &str) -> Result<Option<UserRecord>>;
    async fn get_user_by_id(&self, id: i64) -> Result<Option<User>>;
    async fn count_users(&self) -> Result<u64>;
    async fn set_site_role(&self, user_id: i64, role: Option<SiteRole>) -> Result<User> {
        self.set_site_role_audited(user_id, role, None).await
    }
    /// (An [`AuditDiff::Stored`](crate::audit::AuditDiff::Stored) diff compares the user
    /// before and after.)
    async fn set_site_role_audited(
        &self,
        user_id: i64,
        role: Option<SiteRole>,
        audit: Audit,
    ) -> Result<User>;

    /// Create an organisation namespace with `owner_id` as its owner. Conflict (field
    /// `name`) if the namespace exists.
    async fn create_org(&self, namespace: &str, owner_id: i64) -> Result<Namespace> {
        self.create_org_audited(namespace, owner_id, None).await
    }
    async fn create_org_audited(
        &self,
        namespace: &str,
        owner_id: i64,
        audit: Audit,
    ) -> Result<Namespace>;
    /// Add a member or change their role. Not found if the namespace or user does not
    /// exist; conflict if it would leave the namespace without an owner.
    async fn set_member(
        &self,
        namespace: &str,
        user_id: i64,
        role: NamespaceRole,
    ) -> Result<Membership> {
        self.set_member_audited(namespace, user_id, role, None)
            .await
    }
    /// (A `Stored` diff compares the membership before, if any, and after.)
    async fn set_member_audited(
        &self,
        namespace: &str,
        user_id: i64,
        role: NamespaceRole,
        audit: Audit,
    ) -> Result<Membership>;
    /// Remove a member; `false` if they were not one. Conflict if it would leave the
    /// namespace without an owner.
    async fn remove_member(&self, namespace: &str, user_id: i64) -> Result<bool> {
        self.remove_member_audited(namespace, user_id, None).await
    }
    /// (The row is written only when a membership was removed; a `Stored` diff has the
    /// membership as it was.)
    async fn remove_member_audited(
        &self,
        namespace: &str,
        user_id: i64,
        audit: Audit,
    ) -> Result<bool>;
    /// A namespace's members by user name.
    async fn members(&self, namespace: &str) -> Result<Vec<Membership>>;
    /// A user's memberships by namespace.
    async fn memberships_of(&self, user_id: i64) -> Result<Vec<Membership>>;

    async fn create_token(&self, token: NewToken) -> Result<ApiToken> {
        self.create_token_audited(token, None).await
    }
    /// (The row's target may name the new token by [`WRITTEN_ID`](crate::audit::WRITTEN_ID).)
    async fn create_token_audited(&self, token: NewToken, audit: Audit) -> Result<ApiToken>;
    /// The token with this hash, active or not (the caller checks expiry and revocation).
    async fn token_by_hash(&self, token_hash: &str) -> Result<Option<ApiToken>>;
    /// A user's tokens, newest first, revoked ones included.
    async fn list_tokens(&self, user_id: i64) -> Result<Vec<ApiToken>>;
    /// Revoke a token of this user (idempotent: a revoked token keeps its first
    /// revocation time). Not found if the user has no such token.
    async fn revoke_token(&self, user_id: i64, id: i64, at: Timestamp) -> Result<ApiToken> {
        self.revoke_token_audited(user_id, id, at, None).await
    }
    /// (A `Stored` diff compares the token before and after.)
    async fn revoke_token_audited(
        &self,
        user_id: i64,
        id: i64,
        at: Timestamp,
        audit: Audit,
    ) -> Result<ApiToken>;
    /// Record a use of the token.
    async fn touch_token(&self, id: i64, at: Timestamp) -> Result<()>;
}

/// The conflict a taken name answers with (both backends say the same).
pub fn name_taken(what: &str, name: &str) -> Error {
    Error::conflict("name", format!("{what} '{name}' is already taken"))
}

/// The conflict for a change that would leave a namespace without owners.
pub fn last_owner(namespace: &str) -> Error {
    Error::conflict(
        "role",
        format!("namespace '{namespace}' must keep at least one owner"),
    )
}

/// Scopes as stored: a JSON array of their names.
pub fn encode_scopes(scopes: &[Scope]) -> String {
    let mut v: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    v.sort_unstable();
    v.dedup();
    serde_json::to_string(&v).unwrap_or_else(|_| "[]".into())
}

pub fn decode_scopes(s: &str) -> std::result::Result<Vec<Scope>, String> {
    let names: Vec<String> = serde_json::from_str(s).map_err(|e| e.to_string())?;
    names
        .iter()
        .map(|n| n.parse::<Scope>().map_err(|e| e.message))
        .collect()
}
