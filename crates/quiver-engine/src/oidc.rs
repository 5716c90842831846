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

use jiff::{SignedDuration, Timestamp};
use quiver_auth::{secrets, Account, Principal, Scope};
use quiver_model::{Error, ErrorCode, Result};
use quiver_store::{NewToken, NewUser};

use crate::accounts::NewTokenSecret;
use crate::audit::{diff_of, Event};
use crate::Registry;

/// An outside provider. URLs come from configuration only.
#[derive(Debug, Clone, PartialEq)]
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

/// What the provider says about the signed-in person (after the code exchange).
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalUser {
    pub subject: String,
    pub login: Option<String>,
    pub email: Option<String>,
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

    /// Sign in the person the provider vouched for: their linked user, or a new one; a
    /// session token (shown once) like a password login's.
    pub async fn external_sign_in(&self, who: ExternalUser) -> Result<NewTokenSecret> {
        let provider = self.oidc()?.provider.clone();
        if who.subject.is_empty() || who.subject.len() > 255 {
            return Err(Error::unauthorized("the provider named no user"));
        }
        let accounts = self
            .accounts
            .clone()
            .ok_or_else(|| Error::internal("accounts", "this store has no accounts"))?;
        let links =
            self.store.clone().external_identities().ok_or_else(|| {
                Error::internal("accounts", "this store has no external identities")
            })?;
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
                    if self.store.get_namespace(&name).await?.is_some() {
                        continue;
                    }
                    match accounts
                        .register_user(NewUser {
                            name,
                            email: who.email.clone().filter(|e| e.len() <= 254),
                            // Not a PHC string: no password ever matches it.
                            password_hash: "!external".into(),
                            site_role: None,
                        })
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
                links.link_external(&provider, &who.subject, u.id).await?;
                self.accounts_exist
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                self.wrote();
                let actor = Principal::User(Account {
                    id: u.id,
                    name: u.name.clone(),
                    ..Default::default()
                });
                self.record(
                    &actor,
                    Event {
                        action: "user.register",
                        namespace: Some(&u.name),
                        target: format!("user {}", u.name),
                        denied: None,
                        reason: Some(format!("signed in through {provider}")),
                        diff: Some(diff_of::<quiver_store::User, _>(None, Some(&u))),
                    },
                )
                .await;
                u
            }
        };
        let ttl = SignedDuration::try_from(self.config.session_ttl)
            .map_err(|e| Error::internal("session lifetime", e))?;
        let token = secrets::generate_token()?;
        let info = accounts
            .create_token(NewToken {
                user_id: user.id,
                name: format!("session ({provider})"),
                token_hash: secrets::token_hash(&token),
                scopes: Scope::ALL.to_vec(),
                pattern: None,
                expires_at: Some(Timestamp::now() + ttl),
            })
            .await?;
        let actor = Principal::User(Account {
            id: user.id,
            name: user.name.clone(),
            ..Default::default()
        });
        self.record(
            &actor,
            Event {
                action: "token.create",
                namespace: None,
                target: format!("token {}", info.id),
                denied: None,
                reason: Some(format!("signed in through {provider}")),
                diff: Some(diff_of::<quiver_store::ApiToken, _>(None, Some(&info))),
            },
        )
        .await;
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
