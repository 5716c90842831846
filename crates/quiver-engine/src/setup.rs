//! Safe defaults: how a registry without an admin token gets its first admin, and which
//! namespaces belong to a package ecosystem rather than to whoever registers first.
//!
//! - **The setup code.** A server started without an admin token draws a one-time code
//!   ([`Registry::setup_code`]; the binary prints it at start). Registering with it
//!   (`POST /api/v1/users` with `setup_code`) makes that user the site admin; registering
//!   without it never does. The code works once across every node and restart: it is
//!   redeemed through the database's durable counters (one hit allowed, ever), and a
//!   redeemed code leaves a document behind so that later starts draw none. A wrong code
//!   is a failed credential check (`throttle.rs`).
//! - **Ecosystem namespaces** ([`EngineConfig::ecosystem_namespaces`], `npm` and `pypi`
//!   by default) hold an outside registry's packages: only site admins (and bulk imports,
//!   which run as the command-line operator, a site admin) write to them, not even an open server's anonymous
//!   callers, and no user or organisation may take their names.

use std::time::Duration;

use quiver_auth::{secrets, Decision, Principal};
use quiver_model::{Error, NewDocument, Result};

use crate::{EngineConfig, Registry};

/// The documents collection that records the redeemed setup code.
const SETUP: &str = "quiver.setup";
/// The durable counter that lets one redemption through, ever (a window of ~1000 years).
const REDEEM_WINDOW: Duration = Duration::from_secs(1000 * 365 * 86_400);

/// The default of [`EngineConfig::ecosystem_namespaces`].
pub const DEFAULT_ECOSYSTEMS: &[&str] = &["npm", "pypi"];

const WRONG_CODE: &str = "the setup code is wrong, or the first admin was set up already";

impl EngineConfig {
    /// Whether `namespace` holds an ecosystem's packages.
    pub fn is_ecosystem(&self, namespace: &str) -> bool {
        self.ecosystem_namespaces.iter().any(|n| n == namespace)
    }
}

/// A one-time setup code, when the server has no admin token and no admin was set up yet.
pub(crate) async fn draw_setup_code(
    db: &quiver_store::Database,
    config: &EngineConfig,
) -> Result<Option<String>> {
    if !config.open_writes {
        return Ok(None);
    }
    if db.store.get_document(SETUP, "first-admin").await?.is_some() {
        return Ok(None);
    }
    Ok(Some(format!("qvs_{}", &secrets::generate_token()?[4..])))
}

/// Whether `p` is a site admin (the ecosystem rule's exception).
pub(crate) fn site_admin(p: &Principal) -> bool {
    match p {
        Principal::BootstrapAdmin | Principal::Operator => true,
        Principal::User(a) | Principal::Token { account: a, .. } => a.is_admin(),
        Principal::Anonymous | Principal::Open => false,
    }
}

/// The policy's decision, narrowed by the ecosystem rule for writes.
pub(crate) fn ecosystem_rule(
    config: &EngineConfig,
    p: &Principal,
    write: bool,
    namespace: &str,
    decision: Decision,
) -> Decision {
    if write && decision.is_allowed() && config.is_ecosystem(namespace) && !site_admin(p) {
        return Decision::Forbidden(format!(
            "namespace '{namespace}' holds an ecosystem's packages: only admins and imports write to it"
        ));
    }
    decision
}

impl Registry {
    /// The one-time code that registers the first site admin, while there is one to use
    /// (the binary prints it at start).
    pub fn setup_code(&self) -> Option<String> {
        self.setup.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Check `code` and use it up (once across every node): the caller registering now
    /// becomes the site admin.
    pub(crate) async fn redeem_setup_code(&self, code: &str) -> Result<()> {
        let expected = self.setup_code();
        let matches = expected
            .as_deref()
            .is_some_and(|want| secrets::constant_time_eq(code, want));
        if !matches {
            return Err(Error::unauthorized(WRONG_CODE));
        }
        let verdict = self
            .db
            .counters
            .hit("setup:first-admin", "setup", REDEEM_WINDOW, 1)
            .await?;
        if !verdict.is_allowed() {
            return Err(Error::unauthorized(WRONG_CODE));
        }
        *self.setup.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(())
    }

    /// Remember that the setup code was used (later starts draw none).
    pub(crate) async fn setup_done(&self, admin: &str) -> Result<()> {
        self.db
            .store
            .put_documents(vec![NewDocument::new(
                SETUP,
                "first-admin",
                serde_json::json!({"user": admin}),
            )])
            .await?;
        Ok(())
    }

    /// Refuse a user or organisation name that is an ecosystem's namespace (site admins
    /// may still create the organisation).
    pub(crate) fn check_not_ecosystem(&self, name: &str, caller: Option<&Principal>) -> Result<()> {
        if self.config.is_ecosystem(name) && !caller.is_some_and(site_admin) {
            return Err(Error::conflict(
                "name",
                format!("'{name}' is reserved for an ecosystem's packages"),
            ));
        }
        Ok(())
    }
}
