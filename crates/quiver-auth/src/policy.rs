//! Who may do what: scopes, roles, name patterns, principals, and [`authorize`].
//!
//! The rules, in one place:
//! - **Seeing comes first.** Public and unlisted entries are readable by everyone by
//!   name; unlisted ones are never listed. A private entry is readable only by those with
//!   rights in its namespace (any membership, a moderator or admin site role; a token
//!   also needs the `read-private` scope and a matching pattern). To everyone else it is
//!   [`Decision::Hidden`]: the engine answers exactly as for a missing entry, for reads
//!   and for writes alike.
//! - **Writes need rights in the namespace.** Creating a name (`publish-new`), publishing
//!   versions and editing metadata (`publish-update`) and yanking (`yank`) need a
//!   maintainer or owner membership; managing members (`manage-owners`) needs an owner.
//!   Moderators may also yank. Site admins may do everything.
//! - **A token is its user's rights ∩ its scopes ∩ its pattern.** `admin` scope stands for
//!   every scope (still bounded by the user's rights). A pattern limits the entry names the
//!   token acts on; a patterned token cannot act on a namespace as a whole.
//! - **Anonymous callers** read what is public or unlisted; a write is
//!   [`Decision::Unauthenticated`] (401). On a server with no admin token and no accounts
//!   (the laptop demo) the caller is [`Principal::Open`], which writes like an admin but
//!   reads like anyone else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use quiver_model::{Error, Visibility};
use serde::{Deserialize, Serialize};

quiver_model::string_enum!(
    /// What a token may be used for.
    Scope, "scope" {
        PublishNew => "publish-new",
        PublishUpdate => "publish-update",
        Yank => "yank",
        ManageOwners => "manage-owners",
        ReadPrivate => "read-private",
        ManageTokens => "manage-tokens",
        Telemetry => "telemetry",
        Admin => "admin",
    }
);

quiver_model::string_enum!(
    /// A member's role in a namespace, weakest first (so `>=` compares rights).
    NamespaceRole, "role" {
        Viewer => "viewer",
        Maintainer => "maintainer",
        Owner => "owner",
    }
);

quiver_model::string_enum!(
    /// A user's role across the whole registry.
    SiteRole, "site_role" {
        Moderator => "moderator",
        Admin => "admin",
    }
);

/// An entry-name pattern on a token: `*` matches any run of characters (also none), `?`
/// exactly one; everything else matches itself. `text.*` matches `text.csvParse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct NamePattern(String);

impl NamePattern {
    pub fn new(p: impl Into<String>) -> Result<Self, Error> {
        let p = p.into();
        if p.is_empty() || p.len() > 200 {
            return Err(Error::invalid("pattern", "must be 1 to 200 characters"));
        }
        if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "pattern",
                "must not contain spaces or control characters",
            ));
        }
        Ok(NamePattern(p))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `name` matches (iterative glob with backtracking to the last `*`).
    pub fn matches(&self, name: &str) -> bool {
        let p: Vec<char> = self.0.chars().collect();
        let s: Vec<char> = name.chars().collect();
        let (mut pi, mut si) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while si < s.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, si));
                pi += 1;
            } else if let Some((sp, ss)) = star {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }
}

impl TryFrom<String> for NamePattern {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        NamePattern::new(s)
    }
}

impl From<NamePattern> for String {
    fn from(p: NamePattern) -> String {
        p.0
    }
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A signed-in user's rights: site role and namespace memberships.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub id: i64,
    pub name: String,
    pub site_role: Option<SiteRole>,
    /// Namespace name → role.
    pub memberships: BTreeMap<String, NamespaceRole>,
}

impl Account {
    pub fn is_admin(&self) -> bool {
        self.site_role == Some(SiteRole::Admin)
    }

    pub fn role_in(&self, namespace: &str) -> Option<NamespaceRole> {
        self.memberships.get(namespace).copied()
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credentials.
    Anonymous,
    /// No credentials, on a server without accounts or admin token: may write anything,
    /// reads like [`Principal::Anonymous`].
    Open,
    /// The server's configured admin token (the bootstrap admin, no account).
    BootstrapAdmin,
    /// Whoever runs quiver's own commands against the database directly (`quiver
    /// import`, `quiver export`, the demo load): they hold the database itself, so they
    /// act as a site admin, and the audit log names them apart.
    Operator,
    /// A user signed in with a password session.
    User(Account),
    /// An API token: its user's rights, narrowed by scopes and an optional name pattern.
    Token {
        account: Account,
        token_id: i64,
        scopes: BTreeSet<Scope>,
        pattern: Option<NamePattern>,
    },
}

impl Principal {
    /// The account behind the principal, if any.
    pub fn account(&self) -> Option<&Account> {
        match self {
            Principal::User(a) | Principal::Token { account: a, .. } => Some(a),
            _ => None,
        }
    }

    /// The name to record as the actor of a write.
    pub fn actor(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Open => "open".into(),
            Principal::BootstrapAdmin => "admin-token".into(),
            Principal::Operator => "operator (command line)".into(),
            Principal::User(a) => a.name.clone(),
            Principal::Token {
                account, token_id, ..
            } => format!("{} (token {token_id})", account.name),
        }
    }

    /// Namespaces in which this principal may read every private entry (the grant of
    /// search and of listings; a patterned token gets none, it could see only some names).
    pub fn private_namespaces(&self) -> Vec<String> {
        let account = match self {
            Principal::User(a) => a,
            Principal::Token {
                account,
                scopes,
                pattern: None,
                ..
            } if has_scope(scopes, Scope::ReadPrivate) => account,
            _ => return vec![],
        };
        account.memberships.keys().cloned().collect()
    }

    /// Whether this principal reads every private entry (admins, moderators).
    pub fn reads_all_private(&self) -> bool {
        match self {
            Principal::BootstrapAdmin | Principal::Operator => true,
            Principal::User(a) => a.site_role.is_some(),
            Principal::Token {
                account,
                scopes,
                pattern: None,
                ..
            } => account.site_role.is_some() && has_scope(scopes, Scope::ReadPrivate),
            _ => false,
        }
    }
}

/// What the principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read an entry by name (and its versions and relations).
    Read,
    /// See an entry in a list or a search hit.
    List,
    /// Register a new name in a namespace.
    CreateEntry,
    /// Publish a version, or change an entry's metadata.
    Publish,
    /// Yank or unyank a version.
    Yank,
    /// Delete an entry or a version under the deletion policy (the engine adds the grace
    /// period, dependents and downloads rules): the namespace's owners.
    Delete,
    /// Add, change or remove members of a namespace.
    ManageMembers,
    /// Site operations (jobs, index rebuilds).
    Administer,
}

impl Action {
    /// The token scope the action needs (`None`: no scope, e.g. reading public entries).
    pub fn scope(self, visibility: Visibility) -> Option<Scope> {
        match self {
            Action::Read | Action::List => {
                (visibility == Visibility::Private).then_some(Scope::ReadPrivate)
            }
            Action::CreateEntry => Some(Scope::PublishNew),
            Action::Publish => Some(Scope::PublishUpdate),
            Action::Yank | Action::Delete => Some(Scope::Yank),
            Action::ManageMembers => Some(Scope::ManageOwners),
            Action::Administer => Some(Scope::Admin),
        }
    }

    pub fn is_write(self) -> bool {
        !matches!(self, Action::Read | Action::List)
    }
}

/// What the action is done to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Empty for site operations.
    pub namespace: String,
    /// The entry's name; `None` for the namespace as a whole (or the site).
    pub name: Option<String>,
    pub visibility: Visibility,
}

impl Target {
    pub fn entry(namespace: &str, name: &str, visibility: Visibility) -> Target {
        Target {
            namespace: namespace.to_string(),
            name: Some(name.to_string()),
            visibility,
        }
    }

    pub fn namespace(namespace: &str) -> Target {
        Target {
            namespace: namespace.to_string(),
            name: None,
            visibility: Visibility::Public,
        }
    }

    pub fn site() -> Target {
        Target::namespace("")
    }
}

/// The answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// The target must look as if it did not exist (404).
    Hidden,
    /// Credentials are needed (401).
    Unauthenticated(String),
    /// Known caller, not allowed (403).
    Forbidden(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        *self == Decision::Allow
    }

    /// As an engine result; `what` names the target in a not-found message exactly as a
    /// missing one would be named.
    pub fn check(self, what: &dyn fmt::Display) -> Result<(), Error> {
        match self {
            Decision::Allow => Ok(()),
            Decision::Hidden => Err(Error::not_found(what)),
            Decision::Unauthenticated(m) => Err(Error::unauthorized(m)),
            Decision::Forbidden(m) => Err(Error::forbidden(m)),
        }
    }
}

/// Whether the principal may report tool executions (`POST /api/v1/telemetry`): a signed-in
/// user, a token with the `telemetry` scope, the bootstrap admin, the operator, and anyone
/// on an open server (which lets anyone write).
pub fn may_report_telemetry(p: &Principal) -> bool {
    match p {
        Principal::Anonymous => false,
        Principal::Open | Principal::BootstrapAdmin | Principal::Operator | Principal::User(_) => {
            true
        }
        Principal::Token { scopes, .. } => has_scope(scopes, Scope::Telemetry),
    }
}

fn has_scope(scopes: &BTreeSet<Scope>, s: Scope) -> bool {
    scopes.contains(&s) || scopes.contains(&Scope::Admin)
}

/// Whether an account's own rights allow `action` in `namespace` (scopes aside).
fn account_may(a: &Account, action: Action, namespace: &str) -> bool {
    if a.is_admin() {
        return true;
    }
    let moderator = a.site_role == Some(SiteRole::Moderator);
    let role = a.role_in(namespace);
    match action {
        Action::Read | Action::List => role.is_some() || moderator,
        Action::CreateEntry | Action::Publish => role >= Some(NamespaceRole::Maintainer),
        Action::Yank => role >= Some(NamespaceRole::Maintainer) || moderator,
        Action::ManageMembers | Action::Delete => role == Some(NamespaceRole::Owner),
        Action::Administer => false,
    }
}

/// Whether the principal may see the target at all (public and unlisted: everyone).
fn sees(p: &Principal, t: &Target) -> bool {
    if t.visibility != Visibility::Private {
        return true;
    }
    match p {
        Principal::Anonymous | Principal::Open => false,
        Principal::BootstrapAdmin | Principal::Operator => true,
        Principal::User(a) => account_may(a, Action::Read, &t.namespace),
        Principal::Token {
            account,
            scopes,
            pattern,
            ..
        } => {
            account_may(account, Action::Read, &t.namespace)
                && has_scope(scopes, Scope::ReadPrivate)
                && pattern_ok(pattern, t)
        }
    }
}

fn pattern_ok(pattern: &Option<NamePattern>, t: &Target) -> bool {
    match (pattern, &t.name) {
        (None, _) => true,
        (Some(p), Some(name)) => p.matches(name),
        (Some(_), None) => false,
    }
}

/// The one policy decision: may `p` do `action` to `t`?
pub fn authorize(p: &Principal, action: Action, t: &Target) -> Decision {
    // Unlisted entries never appear in lists or search, whoever asks.
    if action == Action::List && t.visibility == Visibility::Unlisted {
        return Decision::Hidden;
    }
    // A new name has nothing to hide yet; everything else must be visible first.
    if action != Action::CreateEntry && !sees(p, t) {
        return Decision::Hidden;
    }
    if !action.is_write() {
        return Decision::Allow;
    }
    let what = match action {
        Action::CreateEntry => "create entries in",
        Action::Publish => "publish to",
        Action::Yank => "yank versions in",
        Action::Delete => "delete entries or versions in",
        Action::ManageMembers => "manage the members of",
        _ => "administer",
    };
    let place = if t.namespace.is_empty() {
        "this registry".to_string()
    } else {
        format!("namespace '{}'", t.namespace)
    };
    match p {
        Principal::Anonymous => Decision::Unauthenticated(format!(
            "sign in to {what} {place} (Authorization: Bearer <token>)"
        )),
        Principal::Open | Principal::BootstrapAdmin | Principal::Operator => Decision::Allow,
        Principal::User(a) => {
            if account_may(a, action, &t.namespace) {
                Decision::Allow
            } else {
                Decision::Forbidden(format!("{} may not {what} {place}", a.name))
            }
        }
        Principal::Token {
            account,
            scopes,
            pattern,
            ..
        } => {
            if !account_may(account, action, &t.namespace) {
                return Decision::Forbidden(format!("{} may not {what} {place}", account.name));
            }
            if let Some(s) = action.scope(t.visibility) {
                if !has_scope(scopes, s) {
                    return Decision::Forbidden(format!(
                        "this token lacks the '{s}' scope needed to {what} {place}"
                    ));
                }
            }
            if !pattern_ok(pattern, t) {
                let p = pattern.as_ref().map(NamePattern::as_str).unwrap_or("");
                return Decision::Forbidden(match &t.name {
                    Some(n) => format!("this token is limited to names matching '{p}'; '{n}' does not match"),
                    None => format!("this token is limited to names matching '{p}' and cannot {what} {place} as a whole"),
                });
            }
            Decision::Allow
        }
    }
}
