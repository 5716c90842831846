//! The website's pages for signed-in users: sign in (`/signin`) and out (`/signout`), the
//! dashboard (`/dashboard`: their namespaces, entries, drafts and entries in review) and
//! API tokens (`/tokens`: create one, shown once; revoke). Sessions and CSRF are
//! [`crate::session`]'s; every action is the engine call the JSON API makes, with the same
//! authorization, audit rows and throttles (signing in is the API's password login,
//! behind the credential throttle).

use axum::extract::{Form, Path, State};
use axum::http::header::{CACHE_CONTROL, RETRY_AFTER};
use axum::http::{HeaderValue, StatusCode};
use jiff::Timestamp;
use quiver_engine::accounts::{Login, TokenRequest};
use quiver_engine::auth::{NamePattern, Scope};
use quiver_model::{Entry, Error, ErrorCode};
use quiver_store::{ApiToken, EntryFilter};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reply::{Headed, Page, PageOr, SeeOther};
use crate::session::Visitor;
use crate::web::{entry_href, error_page, render};
use crate::AppState;

/// Entries shown on the dashboard (the API lists the rest).
const DASHBOARD_ENTRIES: usize = 100;

/// A page that holds a secret or a form token: never stored by a cache.
pub(crate) fn private(mut page: Headed<Page>) -> Headed<Page> {
    page.headers.retain(|(k, _)| k != CACHE_CONTROL);
    page.headers
        .push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
    page
}

pub(crate) fn redirect_to(to: &'static str) -> PageOr {
    PageOr::Redirect(Headed {
        headers: vec![(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        inner: SeeOther::to(to),
    })
}

/// What the user may read of an error (never an internal one's details).
pub(crate) fn problem_of(e: &Error) -> String {
    if e.code == ErrorCode::Internal {
        tracing::error!(error = %e.message, "internal error");
        "internal error; the server log has the details".into()
    } else {
        e.message.clone()
    }
}

/// A short UTC time for tables.
pub(crate) fn when(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

// ---- signing in and out -----------------------------------------------------------------

/// The sign-in form.
// No `Debug`: it holds a password.
#[derive(Deserialize, JsonSchema)]
pub struct SigninForm {
    /// The form's CSRF token.
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// A form with nothing but its CSRF token (sign out, revoke).
#[derive(Deserialize, JsonSchema)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

#[derive(Serialize)]
struct SigninView<'a> {
    csrf: String,
    name: &'a str,
    problem: Option<String>,
    provider: Option<String>,
}

/// The sign-in form (with the browser's form cookie set when it has none).
fn signin_form(
    state: &AppState,
    v: &mut Visitor,
    status: StatusCode,
    name: &str,
    problem: Option<String>,
) -> Headed<Page> {
    let (cookie, csrf) = match v.form_cookie() {
        Ok(Some((cookie, csrf))) => (Some(cookie), csrf),
        Ok(None) => (None, v.csrf().unwrap_or_default()),
        Err(e) => return error_page(v, e),
    };
    let view = SigninView {
        csrf,
        name,
        problem,
        provider: state.registry.oidc().ok().map(|c| c.provider.clone()),
    };
    let mut page = private(render(v, status, "signin.html", &view));
    if let Some(c) = cookie {
        page.headers.push((axum::http::header::SET_COOKIE, c));
    }
    page
}

/// `GET /signin`: the form (signed-in visitors go to their dashboard).
pub async fn signin_page(State(state): State<AppState>, mut v: Visitor) -> PageOr {
    if v.has_session() {
        return redirect_to("/dashboard");
    }
    signin_form(&state, &mut v, StatusCode::OK, "", None).into()
}

/// `POST /signin`: check the password (the API's login, behind the credential throttle)
/// and put the session in a cookie.
pub async fn signin(
    State(state): State<AppState>,
    mut v: Visitor,
    Form(f): Form<SigninForm>,
) -> PageOr {
    if let Err(e) = v.check_csrf(&f.csrf) {
        let status = crate::error::status_of(e.code);
        return signin_form(&state, &mut v, status, &f.name, Some(e.message)).into();
    }
    let login = Login {
        name: f.name.clone(),
        password: f.password,
    };
    match state.registry.login(login).await {
        Ok(session) => {
            let ttl = state.registry.config().session_ttl.as_secs();
            let mut headers = match v.sign_in_cookies(&session.token, ttl) {
                Ok(h) => h,
                Err(e) => return error_page(&v, e).into(),
            };
            headers.push((CACHE_CONTROL, HeaderValue::from_static("no-store")));
            PageOr::Redirect(Headed {
                headers,
                inner: SeeOther::to("/dashboard"),
            })
        }
        Err(e) => {
            let status = crate::error::status_of(e.code);
            let mut page = signin_form(&state, &mut v, status, &f.name, Some(problem_of(&e)));
            if let Some(secs) = e.retry_after {
                page.headers.push((RETRY_AFTER, HeaderValue::from(secs)));
            }
            page.into()
        }
    }
}

/// `POST /signout`: revoke the session's token and drop the cookie.
pub async fn signout(State(state): State<AppState>, v: Visitor, Form(f): Form<CsrfForm>) -> PageOr {
    let Some(id) = v.session_token_id() else {
        return redirect_to("/");
    };
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    if let Err(e) = state.registry.revoke_token(&v.caller, id).await {
        return error_page(&v, e).into();
    }
    let mut out = match redirect_to("/") {
        PageOr::Redirect(r) => r,
        PageOr::Page(p) => return p.into(),
    };
    match v.sign_out_cookie() {
        Ok(c) => out.headers.push(c),
        Err(e) => return error_page(&v, e).into(),
    }
    PageOr::Redirect(out)
}

// ---- the dashboard ----------------------------------------------------------------------

#[derive(Serialize)]
struct EntryRow {
    href: String,
    kind: String,
    namespace: String,
    name: String,
    status: String,
    visibility: String,
    latest: Option<String>,
    updated: String,
}

impl From<&Entry> for EntryRow {
    fn from(e: &Entry) -> Self {
        EntryRow {
            href: entry_href(e.kind, &e.namespace, &e.name),
            kind: e.kind.to_string(),
            namespace: e.namespace.clone(),
            name: e.name.clone(),
            status: e.status.to_string(),
            visibility: e.visibility.to_string(),
            latest: e.latest_version.clone(),
            updated: when(e.updated_at),
        }
    }
}

#[derive(Serialize)]
struct DashboardView {
    user: quiver_store::User,
    memberships: Vec<quiver_store::Membership>,
    entries: Vec<EntryRow>,
    waiting: Vec<EntryRow>,
    more: bool,
    csrf: Option<String>,
    /// Links to the moderators' and the admins' pages.
    staff: bool,
    admin: bool,
}

/// `GET /dashboard`: the signed-in user's namespaces and entries, drafts and entries in
/// review first.
pub async fn dashboard(State(state): State<AppState>, v: Visitor) -> PageOr {
    if v.name().is_none() {
        return redirect_to("/signin");
    }
    let r = &state.registry;
    let me = match r.whoami(&v.caller).await {
        Ok(me) => me,
        Err(e) => return error_page(&v, e).into(),
    };
    let filter = EntryFilter {
        namespaces: me.memberships.iter().map(|m| m.namespace.clone()).collect(),
        ..EntryFilter::default()
    };
    let page = match r
        .list_entries(&v.caller, filter, None, DASHBOARD_ENTRIES)
        .await
    {
        Ok(p) => p,
        Err(e) => return error_page(&v, e).into(),
    };
    let mut entries = page.items;
    entries.sort_by_key(|e| std::cmp::Reverse(e.updated_at));
    let waiting = entries
        .iter()
        .filter(|e| {
            matches!(
                e.status,
                quiver_model::Status::Draft | quiver_model::Status::Review
            )
        })
        .map(EntryRow::from)
        .collect();
    let admin = me.user.site_role == Some(quiver_engine::auth::SiteRole::Admin);
    let view = DashboardView {
        user: me.user,
        memberships: me.memberships,
        entries: entries.iter().map(EntryRow::from).collect(),
        waiting,
        more: page.next_cursor.is_some(),
        csrf: v.has_session().then(|| v.csrf()).flatten(),
        staff: quiver_engine::lifecycle::is_moderator(&v.caller),
        admin,
    };
    private(render(&v, StatusCode::OK, "dashboard.html", &view)).into()
}

// ---- tokens -----------------------------------------------------------------------------

/// The form that creates a token: a name, a checkbox per scope, an optional name pattern
/// and an optional lifetime in days.
#[derive(Deserialize, JsonSchema)]
pub struct TokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    pattern: String,
    #[serde(default)]
    expires_in_days: String,
    #[serde(default)]
    scope_publish_new: Option<String>,
    #[serde(default)]
    scope_publish_update: Option<String>,
    #[serde(default)]
    scope_yank: Option<String>,
    #[serde(default)]
    scope_manage_owners: Option<String>,
    #[serde(default)]
    scope_read_private: Option<String>,
    #[serde(default)]
    scope_manage_tokens: Option<String>,
    #[serde(default)]
    scope_telemetry: Option<String>,
    #[serde(default)]
    scope_admin: Option<String>,
}

impl TokenForm {
    fn scopes(&self) -> Vec<Scope> {
        [
            (&self.scope_publish_new, Scope::PublishNew),
            (&self.scope_publish_update, Scope::PublishUpdate),
            (&self.scope_yank, Scope::Yank),
            (&self.scope_manage_owners, Scope::ManageOwners),
            (&self.scope_read_private, Scope::ReadPrivate),
            (&self.scope_manage_tokens, Scope::ManageTokens),
            (&self.scope_telemetry, Scope::Telemetry),
            (&self.scope_admin, Scope::Admin),
        ]
        .into_iter()
        .filter(|(on, _)| on.as_deref().is_some_and(|v| !v.is_empty()))
        .map(|(_, s)| s)
        .collect()
    }

    /// The API's request, or the field that is wrong.
    fn request(&self) -> quiver_model::Result<TokenRequest> {
        let pattern = match self.pattern.trim() {
            "" => None,
            p => Some(NamePattern::new(p).map_err(|e| Error::invalid("pattern", e.message))?),
        };
        let expires_in_days = match self.expires_in_days.trim() {
            "" => None,
            d => Some(d.parse::<u32>().map_err(|_| {
                Error::invalid("expires_in_days", "a whole number of days, 1 to 366")
            })?),
        };
        Ok(TokenRequest {
            name: self.name.trim().to_string(),
            scopes: self.scopes(),
            pattern,
            expires_in_days,
        })
    }
}

#[derive(Serialize)]
struct ScopeBox {
    name: &'static str,
    field: String,
    checked: bool,
}

#[derive(Serialize)]
struct TokenRow {
    id: i64,
    name: String,
    scopes: String,
    pattern: Option<String>,
    created: String,
    expires: Option<String>,
    last_used: Option<String>,
    active: bool,
    revoked: bool,
    current: bool,
}

#[derive(Serialize)]
struct Created {
    name: String,
    token: String,
}

#[derive(Serialize)]
struct TokensView {
    tokens: Vec<TokenRow>,
    scopes: Vec<ScopeBox>,
    csrf: Option<String>,
    created: Option<Created>,
    problem: Option<String>,
}

fn token_row(t: &ApiToken, now: Timestamp, current: Option<i64>) -> TokenRow {
    TokenRow {
        id: t.id,
        name: t.name.clone(),
        scopes: t
            .scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        pattern: t.pattern.clone(),
        created: when(t.created_at),
        expires: t.expires_at.map(when),
        last_used: t.last_used_at.map(when),
        active: t.is_active(now),
        revoked: t.revoked_at.is_some(),
        current: current == Some(t.id),
    }
}

/// The tokens page: the list, the form (checked scopes kept after an error), and the
/// token just created or the problem with the form.
async fn tokens_page(
    state: &AppState,
    v: &Visitor,
    status: StatusCode,
    checked: &[Scope],
    created: Option<Created>,
    problem: Option<String>,
) -> PageOr {
    let tokens = match state.registry.list_tokens(&v.caller).await {
        Ok(t) => t,
        Err(e) => return error_page(v, e).into(),
    };
    let now = Timestamp::now();
    let view = TokensView {
        tokens: tokens
            .iter()
            .map(|t| token_row(t, now, v.session_token_id()))
            .collect(),
        scopes: Scope::ALL
            .iter()
            .map(|s| ScopeBox {
                name: s.as_str(),
                field: s.as_str().replace('-', "_"),
                checked: checked.contains(s),
            })
            .collect(),
        csrf: v.csrf(),
        created,
        problem,
    };
    private(render(v, status, "tokens.html", &view)).into()
}

/// `GET /tokens`: the signed-in user's API tokens, and a form to create one.
pub async fn tokens(State(state): State<AppState>, v: Visitor) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    let default = [Scope::PublishNew, Scope::PublishUpdate];
    tokens_page(&state, &v, StatusCode::OK, &default, None, None).await
}

/// `POST /tokens`: create a token (the API's rules: never more scopes than the session
/// has); the page shows it once.
pub async fn create_token(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<TokenForm>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let made = match f.request() {
        Ok(req) => state.registry.create_token(&v.caller, req).await,
        Err(e) => Err(e),
    };
    match made {
        Ok(secret) => {
            let created = Created {
                name: secret.info.name.clone(),
                token: secret.token,
            };
            let status = StatusCode::CREATED;
            tokens_page(&state, &v, status, &[], Some(created), None).await
        }
        Err(e) => {
            let status = crate::error::status_of(e.code);
            // (An invalid field's message names the field.)
            let problem = problem_of(&e);
            tokens_page(&state, &v, status, &f.scopes(), None, Some(problem)).await
        }
    }
}

/// The token a revoke form names.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TokenPath {
    /// The token's id.
    id: i64,
}

/// `POST /tokens/{id}/revoke`: revoke one of the user's tokens.
pub async fn revoke_token(
    State(state): State<AppState>,
    v: Visitor,
    Path(TokenPath { id }): Path<TokenPath>,
    Form(f): Form<CsrfForm>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    match state.registry.revoke_token(&v.caller, id).await {
        Ok(_) => redirect_to("/tokens"),
        Err(e) => error_page(&v, e).into(),
    }
}

/// A redirect to a path made from data (already percent-encoded).
pub(crate) fn redirect_path(v: &Visitor, to: String) -> PageOr {
    match HeaderValue::from_str(&to) {
        Ok(location) => PageOr::Redirect(Headed {
            headers: vec![(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
            inner: crate::reply::Redirect { location },
        }),
        Err(e) => error_page(v, Error::internal("a redirect", e)).into(),
    }
}

// ---- publishing a version ---------------------------------------------------------------

/// The entry a new version is for (the entry page's link fills these in).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct PublishQuery {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// The form that publishes a version: the entry, the version, its manifest as JSON.
#[derive(Deserialize, JsonSchema)]
pub struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    version: String,
    /// The manifest, a JSON object.
    #[serde(default)]
    manifest: String,
    #[serde(default)]
    changelog: String,
    /// `on` when the version breaks its users.
    #[serde(default)]
    breaking: Option<String>,
}

#[derive(Serialize, Default)]
struct PublishView {
    kinds: Vec<(&'static str, bool)>,
    namespace: String,
    name: String,
    version: String,
    manifest: String,
    changelog: String,
    breaking: bool,
    csrf: Option<String>,
    /// Problems by the form field they belong to (`version`, `manifest`, `name`...).
    problems: std::collections::BTreeMap<String, String>,
    /// A problem that belongs to no one field.
    problem: Option<String>,
}

fn kinds_for(chosen: &str) -> Vec<(&'static str, bool)> {
    quiver_model::Kind::ALL
        .iter()
        .map(|k| (k.as_str(), k.as_str() == chosen))
        .collect()
}

/// `GET /publish`: the form.
pub async fn publish_page(
    v: Visitor,
    axum::extract::Query(q): axum::extract::Query<PublishQuery>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    let view = PublishView {
        kinds: kinds_for(q.kind.as_deref().unwrap_or("tool")),
        namespace: q.namespace.unwrap_or_default(),
        name: q.name.unwrap_or_default(),
        manifest: "{\n  \n}".into(),
        csrf: v.csrf(),
        ..PublishView::default()
    };
    private(render(&v, StatusCode::OK, "publish.html", &view)).into()
}

/// `POST /publish`: publish through the API's call; on a problem, the form again with
/// each message next to the field the API names.
pub async fn publish(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<PublishForm>,
) -> PageOr {
    if !v.has_session() {
        return redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let again = |status: StatusCode, e: Error| -> PageOr {
        let mut view = PublishView {
            kinds: kinds_for(&f.kind),
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            version: f.version.clone(),
            manifest: f.manifest.clone(),
            changelog: f.changelog.clone(),
            breaking: f.breaking.is_some(),
            csrf: v.csrf(),
            ..PublishView::default()
        };
        let message = problem_of(&e);
        match e.field.as_deref() {
            Some(field) => {
                // `manifest.inputs[0].name` belongs to the manifest box, and says where.
                let boxed = field.split(['.', '[']).next().unwrap_or(field);
                let known = [
                    "kind",
                    "namespace",
                    "name",
                    "version",
                    "manifest",
                    "changelog",
                ];
                // (The message names the field, `manifest.inputs[0].name: ...`.)
                if known.contains(&boxed) {
                    view.problems.insert(boxed.to_string(), message);
                } else {
                    view.problem = Some(message);
                }
            }
            None => view.problem = Some(message),
        }
        let mut page = private(render(&v, status, "publish.html", &view));
        if let Some(secs) = e.retry_after {
            page.headers.push((RETRY_AFTER, HeaderValue::from(secs)));
        }
        page.into()
    };
    let kind = match f.kind.parse::<quiver_model::Kind>() {
        Ok(k) => k,
        Err(e) => return again(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let manifest: serde_json::Value = match serde_json::from_str(&f.manifest) {
        Ok(m) => m,
        Err(e) => {
            let e = Error::invalid(
                "manifest",
                format!("not JSON (line {}, column {}): {e}", e.line(), e.column()),
            );
            return again(StatusCode::UNPROCESSABLE_ENTITY, e);
        }
    };
    let key = quiver_model::EntryKey::new(kind, &f.namespace, &f.name);
    let version = quiver_model::NewVersion {
        version: f.version.trim().to_string(),
        manifest,
        changelog: Some(f.changelog.trim().to_string()).filter(|c| !c.is_empty()),
        breaking: f.breaking.as_deref().is_some_and(|b| !b.is_empty()),
    };
    match state
        .registry
        .publish_version(&v.caller, &key, version)
        .await
    {
        Ok(_) => redirect_path(&v, entry_href(kind, &f.namespace, &f.name)),
        Err(e) => again(crate::error::status_of(e.code), e),
    }
}
