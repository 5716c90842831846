//! The credential throttle: every check of a secret a person types (password login, the
//! device page's form, and any later sign-in form) goes through [`Registry::credential_attempt`]
//! first (an outside provider's callback through [`Registry::throttled`]), so guessing is
//! slowed and then stopped wherever it comes in.
//!
//! Attempts are counted with GCRA ([`quiver_store::throttle`]), charged *before* the
//! secret is checked (so a flood of parallel guesses cannot all pass a check made before
//! any of them failed) and given back on success. Three keys per attempt, all hashed:
//!
//! - **this account from this client** ([`CredentialLimits::pair`]): after
//!   [`CredentialLimits::slow_after`] standing attempts each answer is delayed (doubling
//!   up to [`CredentialLimits::slow_max`]), then the pair is refused (`too_many_attempts`,
//!   429 with `Retry-After`). The owner signing in from another client is a different
//!   pair, so guessing never locks them out;
//! - **this client, whatever the account** ([`CredentialLimits::client`]): refused past
//!   its burst, which stops one client spraying guesses over many accounts;
//! - **this account, whatever the client** ([`CredentialLimits::account`]): never
//!   refused (that would hand a lockout of any account to whoever can guess its name),
//!   but past its burst every attempt on the account is delayed, which slows guessing
//!   spread over many clients.
//!
//! The client is the request's address as the HTTP layer found it (`audit::with_client`);
//! the counts live in the database, so every node shares them. These counts are the
//! credential routes' only rate limit: they do not spend the client's ordinary write
//! budget. Every failure, and every refusal, is in the audit log.

use std::time::Duration;

use quiver_auth::Principal;
use quiver_model::{Error, Result};

use crate::audit::Event;
use crate::Registry;

/// A burst of attempts, then one per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub burst: u32,
    pub period: Duration,
}

/// Settings of the credential throttle (see the module's notes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialLimits {
    /// One account from one client: refused past this.
    pub pair: Rate,
    /// One client over every account: refused past this.
    pub client: Rate,
    /// One account over every client: delayed (never refused) past its burst.
    pub account: Rate,
    /// A pair's answers are delayed once more than this many attempts stand.
    pub slow_after: u32,
    /// The first delay; each further standing attempt doubles it.
    pub slow_step: Duration,
    /// The longest delay.
    pub slow_max: Duration,
}

impl Default for CredentialLimits {
    fn default() -> Self {
        CredentialLimits {
            // 5 tries at once, then one a minute: a person's typos pass, a guesser gets
            // 60 an hour from one address against one account.
            pair: Rate {
                burst: 5,
                period: Duration::from_secs(60),
            },
            // Enough for an office behind one address; a sprayer gets 180 an hour.
            client: Rate {
                burst: 30,
                period: Duration::from_secs(20),
            },
            account: Rate {
                burst: 20,
                period: Duration::from_secs(30),
            },
            slow_after: 2,
            slow_step: Duration::from_millis(250),
            slow_max: Duration::from_secs(3),
        }
    }
}

impl CredentialLimits {
    /// Limits too generous to matter (benchmarks; tests of something else).
    pub fn off() -> Self {
        let lots = Rate {
            burst: 1_000_000,
            period: Duration::from_millis(1),
        };
        CredentialLimits {
            pair: lots,
            client: lots,
            account: lots,
            slow_after: u32::MAX,
            slow_step: Duration::ZERO,
            slow_max: Duration::ZERO,
        }
    }
}

/// One counted attempt: report its outcome with [`Attempt::succeeded`] (a failure needs
/// nothing more: it stays counted).
#[must_use = "a successful check must give its attempt back"]
pub(crate) struct Attempt {
    pair: Option<String>,
    client: String,
    account: Option<String>,
}

fn key(kind: &str, parts: &[&str]) -> String {
    let hash = quiver_auth::secrets::token_hash(&parts.join("\0"));
    format!("cred:{kind}:{}", &hash[..32.min(hash.len())])
}

/// The delay before answering an attempt with `standing` attempts against its pair and
/// `account_excess` over the account's burst.
fn delay(l: &CredentialLimits, standing: u32, account_excess: u32) -> Duration {
    let doubling = |over: u32| {
        if over == 0 {
            Duration::ZERO
        } else {
            l.slow_step
                .saturating_mul(1u32 << (over - 1).min(16))
                .min(l.slow_max)
        }
    };
    doubling(standing.saturating_sub(l.slow_after)).max(doubling(account_excess))
}

impl Registry {
    /// Audit a failed (or refused) credential check of `action` for `account` (when the
    /// form named one) by an anonymous caller.
    pub(crate) async fn record_credential_failure(
        &self,
        action: &'static str,
        account: Option<&str>,
        why: String,
    ) {
        self.record(
            &Principal::Anonymous,
            Event {
                action,
                namespace: None,
                target: account.map_or_else(|| "sign-in".into(), |a| format!("user {a}")),
                denied: Some(why),
                reason: None,
                diff: None,
            },
        )
        .await;
    }

    /// Count an attempt at a credential for `account` (when the form names one) from
    /// the current request's client, or refuse it (`too_many_attempts`, audited as
    /// `action`). May wait before returning (the slow-down).
    pub(crate) async fn credential_attempt(
        &self,
        account: Option<&str>,
        action: &'static str,
    ) -> Result<Attempt> {
        let l = &self.config.credentials;
        let t = &self.db.throttle;
        let client = crate::audit::current_client().unwrap_or_else(|| "unknown".into());
        let attempt = Attempt {
            pair: account.map(|a| key("pair", &[a, &client])),
            client: key("client", &[&client]),
            account: account.map(|a| key("account", &[a])),
        };
        let mut refused = None;
        let mut standing = 0;
        if let Some(pair) = &attempt.pair {
            let c = t.charge(pair, l.pair.period, l.pair.burst).await?;
            standing = c.standing;
            if !c.allowed {
                refused = Some((c.retry_after, "this account from this address"));
            }
        }
        if refused.is_none() {
            let c = t
                .charge(&attempt.client, l.client.period, l.client.burst)
                .await?;
            if !c.allowed {
                refused = Some((c.retry_after, "this address"));
            }
        }
        if let Some((wait, whom)) = refused {
            let secs = wait.as_millis().div_ceil(1000) as u64;
            self.record_credential_failure(
                action,
                account,
                format!("too many failed attempts for {whom}; refused for {secs} s"),
            )
            .await;
            return Err(Error::too_many_attempts(
                format!("too many failed attempts for {whom}; try again in {secs} s"),
                secs,
            ));
        }
        let mut excess = 0;
        if let Some(acct) = &attempt.account {
            let c = t.charge(acct, l.account.period, u32::MAX).await?;
            excess = c.standing.saturating_sub(l.account.burst);
        }
        let wait = delay(l, standing, excess);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(attempt)
    }
}

impl Registry {
    /// Run the credential `check` behind the throttle: counted first (or refused), given
    /// back when it succeeds or fails for a reason that is not a wrong credential, and a
    /// wrong credential (an `unauthorized` answer) audited as a failure of `action`. For
    /// checks made outside the engine, such as an outside provider's callback.
    pub async fn throttled<T>(
        &self,
        account: Option<&str>,
        action: &'static str,
        check: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let attempt = self.credential_attempt(account, action).await?;
        let outcome = check.await;
        match &outcome {
            Err(e) if e.code == quiver_model::ErrorCode::Unauthorized => {
                self.record_credential_failure(action, account, e.message.clone())
                    .await;
            }
            _ => attempt.succeeded(self).await?,
        }
        outcome
    }
}

impl Attempt {
    /// The credential was right: forget the pair's failures and give back this attempt
    /// to the client and the account.
    pub(crate) async fn succeeded(self, registry: &Registry) -> Result<()> {
        let l = &registry.config.credentials;
        let t = &registry.db.throttle;
        if let Some(pair) = &self.pair {
            t.forgive(pair, None).await?;
        }
        t.forgive(&self.client, Some(l.client.period)).await?;
        if let Some(acct) = &self.account {
            t.forgive(acct, Some(l.account.period)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_threshold_up_to_the_cap() {
        let l = CredentialLimits::default();
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(delay(&l, 1, 0)), 0);
        assert_eq!(ms(delay(&l, 2, 0)), 0);
        assert_eq!(ms(delay(&l, 3, 0)), 250);
        assert_eq!(ms(delay(&l, 4, 0)), 500);
        assert_eq!(ms(delay(&l, 5, 0)), 1000);
        assert_eq!(ms(delay(&l, 40, 0)), 3000);
        assert_eq!(ms(delay(&l, 0, 3)), 1000);
        assert_eq!(ms(delay(&CredentialLimits::off(), 40, 0)), 0);
    }

    #[test]
    fn keys_are_hashed_and_distinct() {
        let a = key("pair", &["erin", "10.0.0.1"]);
        assert!(!a.contains("erin") && !a.contains("10.0.0.1"));
        assert_ne!(a, key("pair", &["erin1", "0.0.0.1"]));
        assert_ne!(a, key("client", &["erin", "10.0.0.1"]));
    }
}
