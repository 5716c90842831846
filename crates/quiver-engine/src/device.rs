//! Device-code sign-in (RFC 8628): how `quiver login` gets a token without a password
//! ever touching the terminal.
//!
//! 1. The client asks for a code ([`Registry::start_device`]): it gets a secret device
//!    code to poll with and a short user code for its user, with the page to type it at.
//! 2. A signed-in user approves or denies the user code ([`Registry::decide_device`]).
//!    Approving needs an account; a token approving cannot grant scopes it lacks.
//! 3. The client polls ([`Registry::poll_device`]) at the interval and gets the RFC's
//!    answers — `authorization_pending`, `slow_down` (the interval grows by 5 s),
//!    `expired_token`, `access_denied` — or, once, the token. A later poll with the same
//!    device code is `invalid_grant`.
//!
//! Both codes are stored only hashed, and the token is minted at the redeeming poll (see
//! `quiver_store::device`), so the database never holds a usable secret.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use quiver_auth::device as codes;
use quiver_auth::{secrets, Principal, Scope};
use quiver_model::{Error, ErrorCode, Result};
use quiver_store::{DeviceCodeStore, DeviceStatus, DeviceToken, NewDeviceCode};
use serde::{Deserialize, Serialize};

use crate::accounts::{token_created, NewTokenSecret};
use crate::audit::Event;
use crate::{Caller, Registry};
use quiver_store::AuditDiff;

/// Settings of the device flow.
#[derive(Debug, Clone)]
pub struct DeviceSettings {
    /// How long a code may wait for approval.
    pub lifetime: Duration,
    /// The polling interval the client is told (whole seconds, at least 1).
    pub interval: Duration,
    /// The page users type their code at; when unset, `<the server's own base URL>/device`.
    pub verification_uri: Option<String>,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            lifetime: Duration::from_secs(600),
            interval: Duration::from_secs(5),
            verification_uri: None,
        }
    }
}

/// How much `slow_down` adds to the interval (RFC 8628 §3.5).
const SLOW_DOWN_STEP: i64 = 5;

/// Scopes a device asks for when it names none: everything a CLI does, short of
/// administration and managing owners.
pub const DEFAULT_DEVICE_SCOPES: &[Scope] = &[
    Scope::PublishNew,
    Scope::PublishUpdate,
    Scope::Yank,
    Scope::ReadPrivate,
];

/// `POST /api/v1/device/code`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceCodeRequest {
    /// What the client calls itself, shown to the approving user and used as the token's
    /// name (1 to 100 characters; default "device").
    #[serde(default)]
    pub client_name: Option<String>,
    /// The scopes the token should have (default: publish-new, publish-update, yank,
    /// read-private).
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
}

/// The answer to a device code request (RFC 8628 §3.2).
// Its `Debug` hides the device code.
#[derive(Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceAuthorization {
    /// The secret the client polls with. Never shown to the user.
    pub device_code: String,
    /// What the user types at `verification_uri` (`BCDF-GHJK`).
    pub user_code: String,
    pub verification_uri: String,
    /// `verification_uri` with the user code filled in.
    pub verification_uri_complete: String,
    /// Seconds until the codes expire.
    pub expires_in: u64,
    /// Seconds the client must wait between polls.
    pub interval: u64,
}

/// `POST /api/v1/device/approve`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceDecision {
    /// The code the device shows (case and dashes do not matter).
    pub user_code: String,
    /// Deny the request instead of approving it.
    #[serde(default)]
    pub deny: bool,
}

/// What was approved or denied.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct DeviceDecided {
    pub client_name: String,
    pub scopes: Vec<Scope>,
    /// `approved` or `denied`.
    pub status: DeviceStatus,
}

/// `POST /api/v1/device/token`.
// Its `Debug` hides the device code.
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
pub struct DeviceTokenRequest {
    pub device_code: String,
    /// `urn:ietf:params:oauth:grant-type:device_code` when given (RFC 8628 §3.4).
    #[serde(default)]
    pub grant_type: Option<String>,
}

impl std::fmt::Debug for DeviceAuthorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let DeviceAuthorization {
            device_code: _,
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_in,
            interval,
        } = self;
        f.debug_struct("DeviceAuthorization")
            .field("device_code", &secrets::Redacted)
            .field("user_code", user_code)
            .field("verification_uri", verification_uri)
            .field("verification_uri_complete", verification_uri_complete)
            .field("expires_in", expires_in)
            .field("interval", interval)
            .finish()
    }
}

impl std::fmt::Debug for DeviceTokenRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let DeviceTokenRequest {
            device_code: _,
            grant_type,
        } = self;
        f.debug_struct("DeviceTokenRequest")
            .field("device_code", &secrets::Redacted)
            .field("grant_type", grant_type)
            .finish()
    }
}

/// The device page's one answer to a code, user name or password that is wrong.
pub const DEVICE_FORM_REFUSAL: &str =
    "no pending request matches this code, user name and password";

/// The grant type of RFC 8628.
pub const DEVICE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// The outcome of a poll.
#[derive(Debug, Clone)]
pub enum DevicePoll {
    /// Approved: the token, handed out this once.
    Token(NewTokenSecret),
    /// `authorization_pending`: nobody has decided yet.
    Pending,
    /// `slow_down`: polled faster than the interval, which is now this many seconds.
    SlowDown { interval: u64 },
    /// `expired_token`: the codes expired before approval.
    Expired,
    /// `access_denied`: the user denied the request.
    Denied,
    /// `invalid_grant`: an unknown device code, or one whose token was handed out.
    InvalidGrant,
}

impl DevicePoll {
    /// The RFC 8628 / RFC 6749 error code of a poll that got no token.
    pub fn error_code(&self) -> Option<&'static str> {
        Some(match self {
            DevicePoll::Token(_) => return None,
            DevicePoll::Pending => "authorization_pending",
            DevicePoll::SlowDown { .. } => "slow_down",
            DevicePoll::Expired => "expired_token",
            DevicePoll::Denied => "access_denied",
            DevicePoll::InvalidGrant => "invalid_grant",
        })
    }
}

fn check_client_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::invalid(
            "client_name",
            "must be 1 to 100 printable characters",
        ));
    }
    Ok(())
}

impl Registry {
    fn device_store(&self) -> &Arc<dyn DeviceCodeStore> {
        &self.db.device_codes
    }

    /// Start a device sign-in. `own_base` is the server's base URL as the client reached
    /// it, for the verification page when none is configured.
    pub async fn start_device(
        &self,
        r: DeviceCodeRequest,
        own_base: &str,
    ) -> Result<DeviceAuthorization> {
        let store = self.device_store();
        let client_name = r.client_name.unwrap_or_else(|| "device".into());
        check_client_name(&client_name)?;
        let mut scopes = r.scopes.unwrap_or_else(|| DEFAULT_DEVICE_SCOPES.to_vec());
        if scopes.is_empty() {
            return Err(Error::invalid("scopes", "name at least one scope"));
        }
        scopes.sort();
        scopes.dedup();
        let settings = &self.config.device;
        let interval = settings.interval.as_secs().max(1);
        let lifetime = settings.lifetime.as_secs().max(1);
        let expires_at = Timestamp::now() + SignedDuration::from_secs(lifetime as i64);
        let verification_uri = settings
            .verification_uri
            .clone()
            .unwrap_or_else(|| format!("{}/device", own_base.trim_end_matches('/')));
        // A user code may collide with a live one (2^34 of them): draw again.
        for _ in 0..5 {
            let device_code = codes::generate_device_code()?;
            let user_code = codes::generate_user_code()?;
            let normalized = codes::normalize_user_code(&user_code, "user_code")?;
            let made = store
                .create_device_code(NewDeviceCode {
                    device_code_hash: codes::code_hash(&device_code),
                    user_code_hash: codes::code_hash(&normalized),
                    client_name: client_name.clone(),
                    scopes: scopes.clone(),
                    interval_secs: interval as i64,
                    expires_at,
                })
                .await;
            match made {
                Ok(_) => {
                    let sep = if verification_uri.contains('?') {
                        '&'
                    } else {
                        '?'
                    };
                    return Ok(DeviceAuthorization {
                        verification_uri_complete: format!(
                            "{verification_uri}{sep}user_code={user_code}"
                        ),
                        device_code,
                        user_code,
                        verification_uri,
                        expires_in: lifetime,
                        interval,
                    });
                }
                Err(e) if e.code == ErrorCode::Conflict => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::internal(
            "device sign-in",
            "could not draw a free user code",
        ))
    }

    /// Approve or deny a device's request as the signed-in caller. The token it gets will
    /// belong to the caller, with the scopes the device asked for — which a token approving
    /// must itself have.
    pub async fn decide_device(&self, caller: &Caller, d: DeviceDecision) -> Result<DeviceDecided> {
        let store = self.device_store();
        let account = match caller {
            Principal::Anonymous | Principal::Open => {
                return Err(Error::unauthorized(
                    "sign in to approve a device (Authorization: Bearer <token>)",
                ))
            }
            Principal::BootstrapAdmin | Principal::Operator => {
                return Err(Error::forbidden(
                    "the admin token has no account; sign in as a user to approve a device",
                ))
            }
            Principal::User(a) | Principal::Token { account: a, .. } => a,
        };
        let normalized = codes::normalize_user_code(&d.user_code, "user_code")?;
        let hash = codes::code_hash(&normalized);
        let missing = || {
            Error::not_found(format!(
                "a pending device request with code {}-{}",
                &normalized[..4],
                &normalized[4..]
            ))
        };
        let pending = store
            .device_code_by_user_code(&hash)
            .await?
            .filter(|c| c.status == DeviceStatus::Pending && Timestamp::now() < c.expires_at)
            .ok_or_else(missing)?;
        // The audit names the request by id: the user code stays out of the database.
        let target = format!("device request {}", pending.id);
        if let (
            false,
            Principal::Token {
                scopes, pattern, ..
            },
        ) = (d.deny, caller)
        {
            let refused = if pattern.is_some() {
                Some("a token limited to a name pattern cannot approve a device".to_string())
            } else if scopes.contains(&Scope::Admin) {
                None
            } else {
                pending
                    .scopes
                    .iter()
                    .find(|s| !scopes.contains(s))
                    .map(|s| format!("this token lacks the '{s}' scope the device asks for"))
            };
            if let Some(why) = refused {
                self.record(
                    caller,
                    Event {
                        action: "device.approve",
                        namespace: None,
                        target,
                        denied: Some(why.clone()),
                        reason: None,
                        diff: None,
                    },
                )
                .await;
                return Err(Error::forbidden(why));
            }
        }
        let status = if d.deny {
            DeviceStatus::Denied
        } else {
            DeviceStatus::Approved
        };
        let audit = self
            .draft(
                caller,
                Event {
                    action: if d.deny {
                        "device.deny"
                    } else {
                        "device.approve"
                    },
                    namespace: None,
                    target,
                    denied: None,
                    reason: None,
                    diff: Some(serde_json::json!({
                        "status": {"before": "pending", "after": status},
                        "scopes": {"before": null, "after": pending.scopes},
                        "client_name": {"before": null, "after": pending.client_name},
                    })),
                },
                AuditDiff::Given,
            )
            .await;
        let decided = store
            .decide_device_code(&hash, account.id, !d.deny, Timestamp::now(), audit)
            .await?
            .ok_or_else(missing)?;
        Ok(DeviceDecided {
            client_name: decided.client_name,
            scopes: decided.scopes,
            status: decided.status,
        })
    }

    /// A device's poll: the token once approved (and only once), else where it stands.
    pub async fn poll_device(&self, r: DeviceTokenRequest) -> Result<DevicePoll> {
        if let Some(g) = &r.grant_type {
            if g != DEVICE_GRANT_TYPE {
                return Err(Error::invalid(
                    "grant_type",
                    format!("must be {DEVICE_GRANT_TYPE}"),
                ));
            }
        }
        if !codes::looks_like_device_code(&r.device_code) {
            return Ok(DevicePoll::InvalidGrant);
        }
        let store = self.device_store();
        let hash = codes::code_hash(&r.device_code);
        let now = Timestamp::now();
        let Some(code) = store.poll_device_code(&hash, now).await? else {
            return Ok(DevicePoll::InvalidGrant);
        };
        match code.status {
            DeviceStatus::Redeemed => return Ok(DevicePoll::InvalidGrant),
            DeviceStatus::Denied => return Ok(DevicePoll::Denied),
            _ if now >= code.expires_at => return Ok(DevicePoll::Expired),
            DeviceStatus::Pending => {
                // A second of slack for network jitter between two polls.
                let too_fast = code.last_polled_at.is_some_and(|prev| {
                    now.duration_since(prev) + SignedDuration::from_secs(1)
                        < SignedDuration::from_secs(code.interval_secs)
                });
                if too_fast {
                    let interval = code.interval_secs + SLOW_DOWN_STEP;
                    store.set_device_interval(code.id, interval).await?;
                    return Ok(DevicePoll::SlowDown {
                        interval: interval as u64,
                    });
                }
                return Ok(DevicePoll::Pending);
            }
            DeviceStatus::Approved => {}
        }
        let ttl = SignedDuration::try_from(self.config.session_ttl)
            .map_err(|e| Error::internal("session lifetime", e))?;
        let token = secrets::generate_token()?;
        let user_id = code.user_id.unwrap_or_default();
        let owner = self.accounts_of_id(user_id).await;
        let owner = Principal::User(quiver_auth::Account {
            id: user_id,
            name: owner.unwrap_or_else(|| format!("user {user_id}")),
            ..Default::default()
        });
        let audit = self
            .draft(
                &owner,
                token_created(Some("device sign-in".into())),
                AuditDiff::Created,
            )
            .await;
        let Some(info) = store
            .redeem_device_code(
                &hash,
                DeviceToken {
                    name: format!("device: {}", code.client_name),
                    token_hash: secrets::token_hash(&token),
                    expires_at: Some(now + ttl),
                },
                audit,
            )
            .await?
        else {
            // Another poll redeemed it first.
            return Ok(DevicePoll::InvalidGrant);
        };
        Ok(DevicePoll::Token(NewTokenSecret { token, info }))
    }

    /// Approve or deny with a user name and password (the verification page's form).
    ///
    /// Behind the credential throttle (`throttle.rs`). The code is looked up before the
    /// password is checked, and whatever is wrong — an unknown or used code, an unknown
    /// user, a wrong password — the answer is the same 401 after the same work, so the
    /// form tells a guesser nothing about the password it cannot also tell about the code.
    pub async fn decide_device_with_password(
        &self,
        name: &str,
        password: &str,
        d: DeviceDecision,
    ) -> Result<DeviceDecided> {
        let attempt = self
            .credential_attempt(Some(name), "device.approve")
            .await?;
        let normalized = codes::normalize_user_code(&d.user_code, "user_code")?;
        let pending = self
            .device_store()
            .device_code_by_user_code(&codes::code_hash(&normalized))
            .await?
            .filter(|c| c.status == DeviceStatus::Pending && Timestamp::now() < c.expires_at);
        let accounts = self.db.accounts.clone();
        let record = accounts.get_user(name).await?;
        let phc = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| secrets::dummy_hash().to_string());
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || secrets::verify_password(&password, &phc))
            .await
            .map_err(|e| Error::internal("checking a password", e))?;
        let user = match record {
            Some(r) if ok && pending.is_some() => r.user,
            _ => {
                self.record_credential_failure(
                    "device.approve",
                    Some(name),
                    DEVICE_FORM_REFUSAL.into(),
                )
                .await;
                return Err(Error::unauthorized(DEVICE_FORM_REFUSAL));
            }
        };
        attempt.succeeded(self).await?;
        let memberships = accounts.memberships_of(user.id).await?;
        let caller = Principal::User(quiver_auth::Account {
            id: user.id,
            name: user.name,
            site_role: user.site_role,
            memberships: memberships
                .into_iter()
                .map(|m| (m.namespace, m.role))
                .collect(),
        });
        self.decide_device(&caller, d).await
    }

    async fn accounts_of_id(&self, id: i64) -> Option<String> {
        self.db
            .accounts
            .get_user_by_id(id)
            .await
            .ok()
            .flatten()
            .map(|u| u.name)
    }
}
