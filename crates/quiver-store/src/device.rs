//! Device authorization requests (RFC 8628, migration `0009_device_codes` on both
//! backends), behind the [`DeviceCodeStore`] trait reached through
//! [`Database::device_codes`](crate::Database::device_codes).
//!
//! Design decisions:
//! - **Codes stored hashed.** The device code and the user code are kept only as sha256
//!   digests (made by `quiver_auth::device`); the store never sees either in clear.
//! - **No token at rest.** Approval records who approved and keeps the requested scopes;
//!   the API token is minted by [`DeviceCodeStore::redeem_device_code`], in the same
//!   transaction that marks the request redeemed. So the secret exists only in the one
//!   poll answer that carries it, and a second redeem finds nothing (exactly once).
//! - The engine owns the protocol (expiry, `slow_down`, who may approve); the store only
//!   makes each step atomic.

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_auth::Scope;
use quiver_model::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::accounts::ApiToken;
use crate::Audit;

/// Where a device authorization request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Waiting for a user to approve or deny it.
    Pending,
    /// Approved; the next poll receives the token.
    Approved,
    /// Denied by the user.
    Denied,
    /// Approved and its token handed out.
    Redeemed,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Pending => "pending",
            DeviceStatus::Approved => "approved",
            DeviceStatus::Denied => "denied",
            DeviceStatus::Redeemed => "redeemed",
        }
    }
}

impl std::str::FromStr for DeviceStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "pending" => DeviceStatus::Pending,
            "approved" => DeviceStatus::Approved,
            "denied" => DeviceStatus::Denied,
            "redeemed" => DeviceStatus::Redeemed,
            _ => {
                return Err(Error::invalid(
                    "status",
                    format!("unknown device status '{s}'"),
                ))
            }
        })
    }
}

/// A request to store. Both codes are sha256 digests, never the codes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeviceCode {
    pub device_code_hash: String,
    pub user_code_hash: String,
    /// What the client calls itself (the token's name on approval).
    pub client_name: String,
    pub scopes: Vec<Scope>,
    pub interval_secs: i64,
    pub expires_at: Timestamp,
}

/// A stored request (no hashes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceCode {
    pub id: i64,
    pub client_name: String,
    pub scopes: Vec<Scope>,
    pub status: DeviceStatus,
    /// Who approved or denied it.
    pub user_id: Option<i64>,
    /// The token handed out, once redeemed.
    pub token_id: Option<i64>,
    /// The polling interval the client must keep (grows on `slow_down`).
    pub interval_secs: i64,
    pub expires_at: Timestamp,
    /// The poll before the current one (what [`DeviceCodeStore::poll_device_code`]
    /// returns), or the last poll.
    pub last_polled_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

/// The token a redeem mints: its owner and scopes come from the approved request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceToken {
    pub name: String,
    pub token_hash: String,
    pub expires_at: Option<Timestamp>,
}

#[async_trait]
pub trait DeviceCodeStore: Send + Sync + 'static {
    /// Store a new pending request. Conflict (field `user_code`) if a request with this
    /// user code exists (the engine draws another).
    async fn create_device_code(&self, code: NewDeviceCode) -> Result<DeviceCode>;
    /// The request with this user code, whatever its state.
    async fn device_code_by_user_code(&self, user_code_hash: &str) -> Result<Option<DeviceCode>>;
    /// Approve (`approve`) or deny a request that is still pending and not expired at
    /// `now`, recording `user_id`. `None` if there is no such pending request.
    /// The audit row, if any, commits with the decision (none when nothing was decided).
    async fn decide_device_code(
        &self,
        user_code_hash: &str,
        user_id: i64,
        approve: bool,
        now: Timestamp,
        audit: Audit,
    ) -> Result<Option<DeviceCode>>;
    /// Record a poll at `now`; answers the request as it was before this poll (so
    /// `last_polled_at` is the previous poll), `None` for an unknown device code.
    async fn poll_device_code(
        &self,
        device_code_hash: &str,
        now: Timestamp,
    ) -> Result<Option<DeviceCode>>;
    /// Set the polling interval of a request (on `slow_down`).
    async fn set_device_interval(&self, id: i64, interval_secs: i64) -> Result<()>;
    /// If the request is approved: in one transaction, create the token for the approving
    /// user with the request's scopes and mark the request redeemed. `None` if it is not
    /// (or no longer) approved — a token is handed out once.
    /// The audit row, if any, commits with the token (its target may name the token by
    /// [`WRITTEN_ID`](crate::audit::WRITTEN_ID)); none when no token was minted.
    async fn redeem_device_code(
        &self,
        device_code_hash: &str,
        token: DeviceToken,
        audit: Audit,
    ) -> Result<Option<ApiToken>>;
}

/// Users signed in through an outside OAuth2/OIDC provider (same migration): the
/// provider's stable subject linked to the quiver user made for it.
#[async_trait]
pub trait ExternalIdentityStore: Send + Sync + 'static {
    /// The user linked to `(provider, subject)`.
    async fn external_user(&self, provider: &str, subject: &str) -> Result<Option<i64>>;
    /// Link `(provider, subject)` to a user, with its audit row. Conflict if it is linked
    /// already.
    async fn link_external(
        &self,
        provider: &str,
        subject: &str,
        user_id: i64,
        audit: Audit,
    ) -> Result<()>;
}
