//! Accounts in the engine: registration, password login, API tokens, organisations and
//! their members, and turning a bearer token into a [`Caller`].
//!
//! - A user registers with a name, an optional email and a password (argon2id-hashed
//!   here; the store never sees the password). Registering claims the user namespace of
//!   the same name; on a server without an admin token the first user to register also
//!   becomes the site admin (someone must be able to administer the registry).
//! - A password login returns a session token: an API token named `session` with every
//!   scope, expiring after `EngineConfig::session_ttl`. Further tokens are made with a
//!   token, never with more scopes than it has (nor a wider name pattern).
//! - A token is shown once, at creation; the store keeps its sha256. Resolving a token
//!   checks revocation and expiry, loads the user's site role and memberships, and
//!   records the use (at most once a minute per token, to keep reads read-only).
//! - A taken name is a conflict that names the namespace's owners.

use std::collections::BTreeSet;

use jiff::{SignedDuration, Timestamp};
use quiver_auth::secrets;
use quiver_auth::{
    Account, Action, NamePattern, NamespaceRole, Principal, Scope, SiteRole, Target,
};
use quiver_model::{Error, Namespace, Result};
use quiver_store::{AccountStore, ApiToken, Membership, NewToken, NewUser, User};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::audit::Event;
use crate::{Caller, Registry};
use quiver_store::audit::{AuditDiff, WRITTEN_ID};

/// Uses of a token closer together than this are recorded once.
const TOUCH_EVERY: SignedDuration = SignedDuration::from_secs(60);

/// A registration.
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The user name, also the user's namespace: lowercase letters, digits, `-` and `_`.
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    /// At least 10 characters.
    pub password: String,
    /// The one-time code the server printed at start (when it has no admin token):
    /// makes this user the site admin. Used once; a wrong one is a failed sign-in.
    #[serde(default)]
    pub setup_code: Option<String>,
}

/// A password login.
#[derive(Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub name: String,
    pub password: String,
}

/// A token to create.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A label for the token (1 to 100 characters), e.g. "ci" or "laptop".
    pub name: String,
    /// What the token may do; never more than the token creating it.
    pub scopes: Vec<Scope>,
    /// Limit the token to entry names matching this glob (`text.*`).
    #[serde(default)]
    pub pattern: Option<NamePattern>,
    /// Days until the token expires (1 to 366); none: it does not expire.
    #[serde(default)]
    pub expires_in_days: Option<u32>,
}

/// A token just created: the secret is in this answer and nowhere else.
// Its `Debug` hides the secret.
#[derive(Clone, Serialize, schemars::JsonSchema)]
pub struct NewTokenSecret {
    /// The bearer token. Shown once: quiver keeps only its hash.
    pub token: String,
    #[serde(flatten)]
    pub info: ApiToken,
}

// Hand-written `Debug`s: the password or token shows as `<redacted>`.

impl std::fmt::Debug for Registration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Registration {
            name,
            email,
            password: _,
            setup_code,
        } = self;
        f.debug_struct("Registration")
            .field("name", name)
            .field("email", email)
            .field("password", &secrets::Redacted)
            .field(
                "setup_code",
                &setup_code.as_ref().map(|_| secrets::Redacted),
            )
            .finish()
    }
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Login { name, password: _ } = self;
        f.debug_struct("Login")
            .field("name", name)
            .field("password", &secrets::Redacted)
            .finish()
    }
}

impl std::fmt::Debug for NewTokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let NewTokenSecret { token: _, info } = self;
        f.debug_struct("NewTokenSecret")
            .field("token", &secrets::Redacted)
            .field("info", info)
            .finish()
    }
}

/// Who the caller is, with their memberships.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Registered {
    #[serde(flatten)]
    pub user: User,
    pub memberships: Vec<Membership>,
}

fn unauthorized_token() -> Error {
    Error::unauthorized("the token is not valid")
}

fn check_email(email: &str) -> Result<()> {
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid("email", "is not an email address"))
    }
}

/// User and namespace names follow the namespace rule; the error names the `name` field.
fn check_name(name: &str) -> Result<()> {
    quiver_model::names::validate_namespace(name).map_err(|mut e| {
        e.field = Some("name".into());
        e
    })
}

fn check_token_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 100 {
        return Err(Error::invalid("name", "must be 1 to 100 characters"));
    }
    Ok(())
}

/// A user as the actor of an audit row, for writes the user made before holding a token
/// (registering, signing in).
pub(crate) fn user_actor(user: &User) -> Principal {
    Principal::User(Account {
        id: user.id,
        name: user.name.clone(),
        ..Default::default()
    })
}

/// The actor of a user's own registration (the row is drafted before the user has an id;
/// a row names its actor by name).
pub(crate) fn named_actor(name: &str) -> Principal {
    Principal::User(Account {
        name: name.to_string(),
        ..Default::default()
    })
}

/// The row of a new token, named by the id the store gives it (`reason`: how it was got,
/// when not through the tokens API).
pub(crate) fn token_created(reason: Option<String>) -> Event<'static> {
    Event {
        action: "token.create",
        namespace: None,
        target: format!("token {WRITTEN_ID}"),
        denied: None,
        reason,
        diff: None,
    }
}

fn member_event<'a>(action: &'static str, namespace: &'a str, user: &str) -> Event<'a> {
    Event {
        action,
        namespace: Some(namespace),
        target: format!("{user} in namespace {namespace}"),
        denied: None,
        reason: None,
        diff: None,
    }
}

impl Registry {
    /// The conflict for a taken namespace, naming its owners.
    async fn namespace_taken(&self, name: &str) -> Error {
        let owners: Vec<String> = self
            .db
            .accounts
            .members(name)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.role == NamespaceRole::Owner)
            .map(|m| m.user)
            .collect();
        let owner = if owners.is_empty() {
            "the registry (no members; ask an admin)".to_string()
        } else {
            owners.join(", ")
        };
        Error::conflict(
            "name",
            format!("namespace '{name}' is already taken; it is owned by {owner}"),
        )
    }

    /// Register a user: the account, the user namespace of the same name, its owner.
    pub async fn register(&self, r: Registration) -> Result<User> {
        let accounts = self.db.accounts.clone();
        check_name(&r.name)?;
        self.check_not_ecosystem(&r.name, None)?;
        if let Some(e) = &r.email {
            check_email(e)?;
        }
        secrets::check_password(&r.password)?;
        if accounts.get_user(&r.name).await?.is_some() {
            return Err(Error::conflict(
                "name",
                format!("user name '{}' is already taken", r.name),
            ));
        }
        if self.db.store.get_namespace(&r.name).await?.is_some() {
            return Err(self.namespace_taken(&r.name).await);
        }
        let password = r.password;
        let hash = tokio::task::spawn_blocking(move || secrets::hash_password(&password))
            .await
            .map_err(|e| Error::internal("hashing a password", e))??;
        // The setup code (a server without an admin token prints it) makes the first admin.
        let first_admin = match r.setup_code.as_deref() {
            None => false,
            Some(code) => {
                self.throttled(None, "user.register", self.redeem_setup_code(code))
                    .await?;
                true
            }
        };
        let audit = self
            .draft(
                &named_actor(&r.name),
                Event {
                    action: "user.register",
                    namespace: Some(&r.name),
                    target: format!("user {}", r.name),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Created,
            )
            .await;
        let user = accounts
            .register_user_audited(
                NewUser {
                    name: r.name.clone(),
                    email: r.email,
                    password_hash: hash,
                    site_role: first_admin.then_some(SiteRole::Admin),
                },
                audit,
            )
            .await;
        let user = match user {
            Err(e) if e.code == quiver_model::ErrorCode::Conflict => {
                return Err(
                    if self.db.store.get_namespace(&r.name).await?.is_some()
                        && accounts.get_user(&r.name).await?.is_none()
                    {
                        self.namespace_taken(&r.name).await
                    } else {
                        e
                    },
                );
            }
            other => other?,
        };
        self.accounts_exist.store(true, Ordering::Relaxed);
        if first_admin {
            self.setup_done(&user.name).await?;
        }
        Ok(user)
    }

    /// Check a password and return a session token (shown once).
    /// Behind the credential throttle (`throttle.rs`).
    pub async fn login(&self, l: Login) -> Result<NewTokenSecret> {
        let attempt = self
            .credential_attempt(Some(&l.name), "session.login")
            .await?;
        let accounts = self.db.accounts.clone();
        let record = accounts.get_user(&l.name).await?;
        let phc = record
            .as_ref()
            .map(|r| r.password_hash.clone())
            .unwrap_or_else(|| secrets::dummy_hash().to_string());
        let password = l.password;
        let ok = tokio::task::spawn_blocking(move || secrets::verify_password(&password, &phc))
            .await
            .map_err(|e| Error::internal("checking a password", e))?;
        let user = match record {
            Some(r) if ok => r.user,
            _ => {
                let why = "wrong user name or password";
                self.record_credential_failure("session.login", Some(&l.name), why.into())
                    .await;
                return Err(Error::unauthorized(why));
            }
        };
        attempt.succeeded(self).await?;
        let ttl = SignedDuration::try_from(self.config.session_ttl)
            .map_err(|e| Error::internal("session lifetime", e))?;
        let actor = user_actor(&user);
        self.issue_token(
            &actor,
            &accounts,
            user.id,
            "session".into(),
            Scope::ALL.to_vec(),
            None,
            Some(Timestamp::now() + ttl),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn issue_token(
        &self,
        actor: &Caller,
        accounts: &Arc<dyn AccountStore>,
        user_id: i64,
        name: String,
        scopes: Vec<Scope>,
        pattern: Option<String>,
        expires_at: Option<Timestamp>,
    ) -> Result<NewTokenSecret> {
        let token = secrets::generate_token()?;
        // The metadata only goes in the row: the store never sees the secret.
        let audit = self
            .draft(actor, token_created(None), AuditDiff::Created)
            .await;
        let info = accounts
            .create_token_audited(
                NewToken {
                    user_id,
                    name,
                    token_hash: secrets::token_hash(&token),
                    scopes,
                    pattern,
                    expires_at,
                },
                audit,
            )
            .await?;
        Ok(NewTokenSecret { token, info })
    }

    /// The caller a bearer token stands for: 401 unless it is a live token of ours.
    pub async fn resolve_token(&self, bearer: &str) -> Result<Caller> {
        if !secrets::looks_like_token(bearer) {
            return Err(unauthorized_token());
        }
        let accounts = &self.db.accounts;
        let t = accounts
            .token_by_hash(&secrets::token_hash(bearer))
            .await?
            .ok_or_else(unauthorized_token)?;
        let now = Timestamp::now();
        if t.revoked_at.is_some() {
            return Err(Error::unauthorized("the token has been revoked"));
        }
        if t.expires_at.is_some_and(|e| now >= e) {
            return Err(Error::unauthorized("the token has expired"));
        }
        let user = accounts
            .get_user_by_id(t.user_id)
            .await?
            .ok_or_else(unauthorized_token)?;
        let memberships = accounts.memberships_of(user.id).await?;
        if t.last_used_at
            .is_none_or(|u| now.duration_since(u) >= TOUCH_EVERY)
        {
            accounts.touch_token(t.id, now).await?;
        }
        let pattern = t.pattern.map(NamePattern::new).transpose()?;
        Ok(Principal::Token {
            account: Account {
                id: user.id,
                name: user.name,
                site_role: user.site_role,
                memberships: memberships
                    .into_iter()
                    .map(|m| (m.namespace, m.role))
                    .collect(),
            },
            token_id: t.id,
            scopes: t.scopes.into_iter().collect(),
            pattern,
        })
    }

    /// The signed-in account, or 401 (anonymous) / 403 (the admin token has no account).
    fn account_of<'c>(&self, caller: &'c Caller) -> Result<&'c Account> {
        match caller {
            Principal::Anonymous | Principal::Open => Err(Error::unauthorized(
                "sign in first (Authorization: Bearer <token>)",
            )),
            Principal::BootstrapAdmin | Principal::Operator => Err(Error::forbidden(
                "the admin token has no account; sign in as a user",
            )),
            Principal::User(a) | Principal::Token { account: a, .. } => Ok(a),
        }
    }

    /// The caller's account, if it may manage its tokens: a password session, or a token
    /// with the `manage-tokens` (or `admin`) scope and no name pattern. A token limited
    /// to a few names or scopes (a CI token, a device's) cannot list, mint or revoke its
    /// owner's other tokens; it may still revoke itself (`token_id` names it).
    fn token_manager<'c>(&self, caller: &'c Caller, token_id: Option<i64>) -> Result<&'c Account> {
        let a = self.account_of(caller)?;
        if let Principal::Token {
            token_id: own,
            scopes,
            pattern,
            ..
        } = caller
        {
            if token_id == Some(*own) {
                return Ok(a);
            }
            let scoped = scopes.contains(&Scope::ManageTokens) || scopes.contains(&Scope::Admin);
            if pattern.is_some() || !scoped {
                return Err(Error::forbidden(
                    "managing tokens needs a session or a token with the 'manage-tokens' scope and no name pattern",
                ));
            }
        }
        Ok(a)
    }

    /// The caller's account and memberships.
    pub async fn whoami(&self, caller: &Caller) -> Result<Registered> {
        let a = self.account_of(caller)?;
        let accounts = &self.db.accounts;
        let user = accounts
            .get_user_by_id(a.id)
            .await?
            .ok_or_else(unauthorized_token)?;
        Ok(Registered {
            memberships: accounts.memberships_of(user.id).await?,
            user,
        })
    }

    /// Create a token for the caller's account, within the calling token's scopes and
    /// pattern.
    pub async fn create_token(&self, caller: &Caller, r: TokenRequest) -> Result<NewTokenSecret> {
        let a = self.token_manager(caller, None)?;
        check_token_name(&r.name)?;
        if r.scopes.is_empty() {
            return Err(Error::invalid("scopes", "name at least one scope"));
        }
        // (A token with a name pattern cannot get here: `token_manager` refuses it.)
        if let Principal::Token { scopes, .. } = caller {
            if !scopes.contains(&Scope::Admin) {
                if let Some(s) = r.scopes.iter().find(|s| !scopes.contains(s)) {
                    return Err(Error::forbidden(format!(
                        "this token lacks the '{s}' scope, so it cannot grant it"
                    )));
                }
            }
        }
        let expires_at = match r.expires_in_days {
            None => None,
            Some(d) if (1..=366).contains(&d) => {
                Some(Timestamp::now() + SignedDuration::from_hours(24 * i64::from(d)))
            }
            Some(_) => {
                return Err(Error::invalid(
                    "expires_in_days",
                    "must be between 1 and 366",
                ))
            }
        };
        let accounts = self.db.accounts.clone();
        let scopes: BTreeSet<Scope> = r.scopes.into_iter().collect();
        self.issue_token(
            caller,
            &accounts,
            a.id,
            r.name,
            scopes.into_iter().collect(),
            r.pattern.map(String::from),
            expires_at,
        )
        .await
    }

    /// The caller's tokens, newest first (revoked and expired ones too).
    pub async fn list_tokens(&self, caller: &Caller) -> Result<Vec<ApiToken>> {
        let a = self.token_manager(caller, None)?;
        self.db.accounts.list_tokens(a.id).await
    }

    /// Revoke one of the caller's tokens (404 for anyone else's).
    pub async fn revoke_token(&self, caller: &Caller, id: i64) -> Result<ApiToken> {
        let a = self.token_manager(caller, Some(id))?;
        let audit = self
            .draft(
                caller,
                Event {
                    action: "token.revoke",
                    namespace: None,
                    target: format!("token {id}"),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        self.db
            .accounts
            .revoke_token_audited(a.id, id, Timestamp::now(), audit)
            .await
    }

    /// Create an organisation namespace owned by the caller.
    pub async fn create_namespace(&self, caller: &Caller, name: &str) -> Result<Namespace> {
        let a = self.account_of(caller)?;
        if let Principal::Token {
            pattern: Some(_), ..
        } = caller
        {
            return Err(Error::forbidden(
                "a token limited to a name pattern cannot create namespaces",
            ));
        }
        check_name(name)?;
        self.check_not_ecosystem(name, Some(caller))?;
        if self.db.store.get_namespace(name).await?.is_some() {
            return Err(self.namespace_taken(name).await);
        }
        let audit = self
            .draft(
                caller,
                Event {
                    action: "namespace.create",
                    namespace: Some(name),
                    target: format!("namespace {name}"),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Created,
            )
            .await;
        match self.db.accounts.create_org_audited(name, a.id, audit).await {
            Err(e) if e.code == quiver_model::ErrorCode::Conflict => {
                Err(self.namespace_taken(name).await)
            }
            other => other,
        }
    }

    async fn member_target(&self, caller: &Caller, namespace: &str) -> Result<()> {
        if self.db.store.get_namespace(namespace).await?.is_none() {
            return Err(Error::not_found(format!("namespace {namespace}")));
        }
        self.require(
            caller,
            Action::ManageMembers,
            &Target::namespace(namespace),
            &format!("namespace {namespace}"),
        )
        .await
    }

    async fn user_id(&self, name: &str) -> Result<i64> {
        Ok(self
            .db
            .accounts
            .get_user(name)
            .await?
            .ok_or_else(|| Error::not_found(format!("user {name}")))?
            .user
            .id)
    }

    /// Add a member to a namespace or change their role (owners and admins).
    pub async fn set_member(
        &self,
        caller: &Caller,
        namespace: &str,
        user: &str,
        role: NamespaceRole,
    ) -> Result<Membership> {
        self.member_target(caller, namespace).await?;
        let id = self.user_id(user).await?;
        let audit = self
            .draft(
                caller,
                member_event("member.set", namespace, user),
                AuditDiff::Stored,
            )
            .await;
        self.db
            .accounts
            .set_member_audited(namespace, id, role, audit)
            .await
    }

    /// Remove a member from a namespace (owners and admins).
    pub async fn remove_member(&self, caller: &Caller, namespace: &str, user: &str) -> Result<()> {
        self.member_target(caller, namespace).await?;
        let id = self.user_id(user).await?;
        let audit = self
            .draft(
                caller,
                member_event("member.remove", namespace, user),
                AuditDiff::Stored,
            )
            .await;
        if self
            .db
            .accounts
            .remove_member_audited(namespace, id, audit)
            .await?
        {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "{user} as a member of namespace {namespace}"
            )))
        }
    }

    /// A namespace's members (anyone may read who owns a namespace).
    pub async fn members(&self, namespace: &str) -> Result<Vec<Membership>> {
        if self.db.store.get_namespace(namespace).await?.is_none() {
            return Err(Error::not_found(format!("namespace {namespace}")));
        }
        self.db.accounts.members(namespace).await
    }

    /// Set a user's site role (admins only).
    pub async fn set_site_role(
        &self,
        caller: &Caller,
        user: &str,
        role: Option<SiteRole>,
    ) -> Result<User> {
        self.require_admin(caller).await?;
        let id = self.user_id(user).await?;
        let audit = self
            .draft(
                caller,
                Event {
                    action: "user.site_role",
                    namespace: None,
                    target: format!("user {user}"),
                    denied: None,
                    reason: None,
                    diff: None,
                },
                AuditDiff::Stored,
            )
            .await;
        self.db
            .accounts
            .set_site_role_audited(id, role, audit)
            .await
    }
}
