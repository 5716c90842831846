//! Sign-in through an outside OAuth2/OIDC provider (GitHub-style), by configuration.
//!
//! The HTTP side (the redirect with state and PKCE, the code exchange, the userinfo call)
//! is the server's; the engine holds the configuration and turns the provider's verified
//! answer into a quiver user and a session token ([`Registry::external_sign_in`]):
//! - the provider's stable subject (`sub`, or GitHub's numeric `id`) is linked to one
//!   quiver user; later sign-ins with the same subject are that user;
//! - an unknown subject gets a new user named after the provider's login (sanitized to the
//!   namespace rule; `-2`, `-3`... when taken), with no password (it signs in only
//!   through the provider, or with tokens). Existing accounts are never linked by email:
//!   the provider's email is not proof of owning the quiver account.
//! - a signed-in user links an identity to their own account on purpose
//!   ([`Registry::begin_oidc_link`]): the sign-in's `state` is recorded (hashed, for ten
//!   minutes, in [`LINKS`], so any node can answer the callback) with the user, and the
//!   callback that comes back with that state links the identity instead of signing in.
//!   Only a password session or a token with every scope and no name pattern may start a
//!   link: the identity then signs in with full rights, so a narrower token must not
//!   be able to add one.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use quiver_auth::{secrets, Principal, Scope};
use quiver_model::{Error, ErrorCode, NewDocument, Result};
use quiver_store::{AccountStore, ExternalIdentityStore, NewToken, NewUser};
use serde::Serialize;

use crate::accounts::{named_actor, token_created, user_actor, NewTokenSecret};
use crate::audit::Event;
use crate::Registry;
use quiver_store::AuditDiff;

/// An outside provider. URLs come from configuration only. Its `Debug` hides the client
/// secret.
#[derive(Clone, PartialEq)]
pub struct OidcConfig {
    /// A short name, stored with each linked identity (`github`, `sso`).
    pub provider: String,
    pub authorize_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// Space-separated scopes to ask for (`openid email profile`, `read:user user:email`).
    pub scopes: String,
    /// Where the provider sends the browser back; default
    /// `<the server's own base URL>/api/v1/auth/oidc/callback`.
    pub redirect_uri: Option<String>,
}

impl std::fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so that a new field must be added here to compile.
        let OidcConfig {
            provider,
            authorize_url,
            token_url,
            userinfo_url,
            client_id,
            client_secret: _,
            scopes,
            redirect_uri,
        } = self;
        f.debug_struct("OidcConfig")
            .field("provider", provider)
            .field("authorize_url", authorize_url)
            .field("token_url", token_url)
            .field("userinfo_url", userinfo_url)
            .field("client_id", client_id)
            .field("client_secret", &secrets::Redacted)
            .field("scopes", scopes)
            .field("redirect_uri", redirect_uri)
            .finish()
    }
}

/// What the provider says about the signed-in person (after the code exchange).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalUser {
    pub subject: String,
    pub login: Option<String>,
    pub email: Option<String>,
}

/// Pending links: key the hashed `state` of the sign-in, body the user and the expiry.
pub const LINKS: &str = "quiver.oidc-links";

/// How long a started link waits for the provider's callback.
const LINK_TTL: SignedDuration = SignedDuration::from_secs(600);

/// The end of a callback: a session for the person, or an identity linked to the user who
/// started a link.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    SignedIn(NewTokenSecret),
    Linked(LinkedIdentity),
}

/// An outside identity linked to a quiver user.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct LinkedIdentity {
    pub provider: String,
    pub subject: String,
    pub user: String,
}

/// A user name from a provider's login: lowercase, allowed characters only.
fn base_name(login: Option<&str>, subject: &str) -> String {
    let raw = login.unwrap_or(subject).to_lowercase();
    let mut s: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    s = s.trim_matches(|c| c == '-' || c == '_').to_string();
    s.truncate(32);
    if s.is_empty() || quiver_model::names::validate_namespace(&s).is_err() {
        format!("user-{}", &secrets::token_hash(subject)[..10])
    } else {
        s
    }
}

impl Registry {
    /// The configured provider, or 404 when none is.
    pub fn oidc(&self) -> Result<&OidcConfig> {
        self.config
            .oidc
            .as_ref()
            .ok_or_else(|| Error::not_found("outside sign-in (no provider is configured)"))
    }

    /// Record that the sign-in with this `state` links an identity to the caller's
    /// account (see the module's notes for who may).
    pub async fn begin_oidc_link(&self, caller: &Principal, state: &str) -> Result<()> {
        self.oidc()?;
        let account = match caller {
            Principal::User(a) => a,
            Principal::Token {
                account,
                scopes,
                pattern: None,
                ..
            } if Scope::ALL.iter().all(|s| scopes.contains(s)) => account,
            Principal::Token { .. } => return Err(Error::forbidden(
                "linking a sign-in needs a session or a token with every scope and no name pattern",
            )),
            _ => {
                return Err(Error::unauthorized(
                    "sign in to link an outside account to yours (Authorization: Bearer <token>)",
                ))
            }
        };
        let body = serde_json::json!({
            "user_id": account.id,
            "expires_at": (Timestamp::now() + LINK_TTL).to_string(),
        });
        self.db
            .store
            .put_documents(vec![NewDocument::new(
                LINKS,
                secrets::token_hash(state),
                body,
            )])
            .await?;
        Ok(())
    }

    /// The provider's verified answer for the sign-in with `state`: a link, when a user
    /// started one with that state ([`Self::begin_oidc_link`]), else a sign-in.
    pub async fn external_callback(
        &self,
        who: ExternalUser,
        state: &str,
    ) -> Result<CallbackOutcome> {
        let key = secrets::token_hash(state);
        let Some(pending) = self.db.store.get_document(LINKS, &key).await? else {
            return Ok(CallbackOutcome::SignedIn(self.external_sign_in(who).await?));
        };
        let body = &pending.body;
        if body["used"] == true {
            return Err(Error::unauthorized(
                "outside sign-in failed: this link was completed already",
            ));
        }
        // Used once, whatever happens next.
        self.db
            .store
            .put_documents(vec![NewDocument::new(
                LINKS,
                key,
                serde_json::json!({"used": true}),
            )])
            .await?;
        let expired = body["expires_at"]
            .as_str()
            .and_then(|t| t.parse::<Timestamp>().ok())
            .is_none_or(|t| t < Timestamp::now());
        if expired {
            return Err(Error::unauthorized(
                "outside sign-in failed: the link request expired; start it again",
            ));
        }
        let user_id = body["user_id"]
            .as_i64()
            .ok_or_else(|| Error::internal("a pending link", "it names no user"))?;
        Ok(CallbackOutcome::Linked(
            self.link_identity(user_id, who).await?,
        ))
    }

    /// The store's accounts and its links to outside identities.
    fn identity_stores(&self) -> Result<(Arc<dyn AccountStore>, Arc<dyn ExternalIdentityStore>)> {
        Ok((self.db.accounts.clone(), self.db.identities.clone()))
    }

    /// Link `who` to the user `user_id`; a conflict when it signs in as another user.
    async fn link_identity(&self, user_id: i64, who: ExternalUser) -> Result<LinkedIdentity> {
        let provider = self.oidc()?.provider.clone();
        if who.subject.is_empty() || who.subject.len() > 255 {
            return Err(Error::unauthorized("the provider named no user"));
        }
        let (accounts, links) = self.identity_stores()?;
        let user = accounts
            .get_user_by_id(user_id)
            .await?
            .ok_or_else(|| Error::unauthorized("the user who started the link is gone"))?;
        let linked = LinkedIdentity {
            provider: provider.clone(),
            subject: who.subject.clone(),
            user: user.name.clone(),
        };
        match links.external_user(&provider, &who.subject).await? {
            Some(id) if id == user.id => return Ok(linked),
            Some(other) => {
                let name = accounts
                    .get_user_by_id(other)
                    .await?
                    .map(|u| u.name)
                    .unwrap_or_else(|| format!("#{other}"));
                return Err(Error::conflict(
                    "identity",
                    format!("this {provider} account already signs in as user '{name}'"),
                ));
            }
            None => {}
        }
        let audit = self
            .draft(
                &user_actor(&user),
                Event {
                    action: "user.link",
                    namespace: Some(&user.name),
                    target: format!("user {}", user.name),
                    denied: None,
                    reason: Some(format!("linked a {provider} account")),
                    diff: Some(serde_json::json!({
                        "identity": {"before": null, "after": format!("{provider}:{}", who.subject)}
                    })),
                },
                AuditDiff::Given,
            )
            .await;
        links
            .link_external(&provider, &who.subject, user.id, audit)
            .await?;
        Ok(linked)
    }

    /// Sign in the person the provider vouched for: their linked user, or a new one; a
    /// session token (shown once) like a password login's.
    pub async fn external_sign_in(&self, who: ExternalUser) -> Result<NewTokenSecret> {
        let provider = self.oidc()?.provider.clone();
        if who.subject.is_empty() || who.subject.len() > 255 {
            return Err(Error::unauthorized("the provider named no user"));
        }
        let (accounts, links) = self.identity_stores()?;
        let user = match links.external_user(&provider, &who.subject).await? {
            Some(id) => accounts
                .get_user_by_id(id)
                .await?
                .ok_or_else(|| Error::internal("outside sign-in", "linked user is gone"))?,
            None => {
                let base = base_name(who.login.as_deref(), &who.subject);
                let mut made = None;
                for n in 1..=20 {
                    let name = if n == 1 {
                        base.clone()
                    } else {
                        format!("{base}-{n}")
                    };
                    if self.db.store.get_namespace(&name).await?.is_some() {
                        continue;
                    }
                    let audit = self
                        .draft(
                            &named_actor(&name),
                            Event {
                                action: "user.register",
                                namespace: Some(&name),
                                target: format!("user {name}"),
                                denied: None,
                                reason: Some(format!("signed in through {provider}")),
                                diff: None,
                            },
                            AuditDiff::Created,
                        )
                        .await;
                    match accounts
                        .register_user_audited(
                            NewUser {
                                name,
                                email: who.email.clone().filter(|e| e.len() <= 254),
                                // Not a PHC string: no password ever matches it.
                                password_hash: "!external".into(),
                                site_role: None,
                            },
                            audit,
                        )
                        .await
                    {
                        Ok(u) => {
                            made = Some(u);
                            break;
                        }
                        Err(e) if e.code == ErrorCode::Conflict => continue,
                        Err(e) => return Err(e),
                    }
                }
                let u = made.ok_or_else(|| {
                    Error::conflict("name", format!("no free user name for '{base}'"))
                })?;
                // (The registration's row says it came through the provider.)
                links
                    .link_external(&provider, &who.subject, u.id, None)
                    .await?;
                self.accounts_exist
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                u
            }
        };
        let ttl = SignedDuration::try_from(self.config.session_ttl)
            .map_err(|e| Error::internal("session lifetime", e))?;
        let token = secrets::generate_token()?;
        let audit = self
            .draft(
                &user_actor(&user),
                token_created(Some(format!("signed in through {provider}"))),
                AuditDiff::Created,
            )
            .await;
        let info = accounts
            .create_token_audited(
                NewToken {
                    user_id: user.id,
                    name: format!("session ({provider})"),
                    token_hash: secrets::token_hash(&token),
                    scopes: Scope::ALL.to_vec(),
                    pattern: None,
                    expires_at: Some(Timestamp::now() + ttl),
                },
                audit,
            )
            .await?;
        Ok(NewTokenSecret { token, info })
    }
}

#[cfg(test)]
mod tests {
    use super::base_name;

    #[test]
    fn names_from_logins() {
        assert_eq!(base_name(Some("Octo.Cat"), "1"), "octo-cat");
        assert_eq!(base_name(Some("alice"), "1"), "alice");
        let odd = base_name(Some("!!!"), "99");
        assert!(odd.starts_with("user-"), "{odd}");
        assert_eq!(odd, base_name(Some("???"), "99"), "stable for a subject");
        assert_eq!(base_name(None, "4242"), "4242");
    }
}
