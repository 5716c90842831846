//! The website's pages for moderators and admins: the review queue (approve, reject with a
//! reason, request changes, comment), the audit log with its filters, jobs (dead ones
//! retryable) and users' site roles and trust levels. Each is the engine call the JSON
//! API makes, so who may do what is decided in one place: a visitor who may not gets the
//! API's 401 or 403 as a page.

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use percent_encoding::utf8_percent_encode;
use quiver_engine::auth::SiteRole;
use quiver_engine::review::{ReviewAction, ReviewState, ReviewVerb, TrustLevel};
use quiver_model::{EntryKey, Error, Kind};
use quiver_store::{AuditFilter, JobFilter, JobId, JobState};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::account_pages::{private, redirect_path, redirect_to, when};
use crate::reply::PageOr;
use crate::session::Visitor;
use crate::web::{entry_href, error_page, render, QUERY};
use crate::AppState;

/// Rows per page of the audit log and the jobs list.
const ROWS: usize = 50;

fn nonempty(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// `?k=v&...` of the non-empty pairs (for "next page" links that keep the filters).
fn query_of(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| format!("{k}={}", utf8_percent_encode(v, QUERY)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A visitor who must be signed in for a page: to the sign-in form otherwise.
fn signed_in(v: &Visitor) -> Option<PageOr> {
    v.name().is_none().then(|| redirect_to("/signin"))
}

// ---- reviews ----------------------------------------------------------------------------

/// Which reviews to list.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ReviewsQuery {
    /// `pending` (the default), `approved`, `rejected` or `changes_requested`.
    #[serde(default)]
    state: Option<String>,
}

#[derive(Serialize)]
struct ReviewView {
    href: String,
    kind: String,
    namespace: String,
    name: String,
    state: String,
    submitted_by: String,
    why: String,
    changes: Vec<String>,
    events: Vec<EventView>,
}

#[derive(Serialize)]
struct EventView {
    at: String,
    actor: String,
    event: String,
    text: String,
}

#[derive(Serialize)]
struct ReviewsView {
    state: String,
    states: Vec<(&'static str, bool)>,
    reviews: Vec<ReviewView>,
    csrf: Option<String>,
}

const REVIEW_STATES: [&str; 4] = ["pending", "changes_requested", "approved", "rejected"];

/// `GET /reviews`: the moderation queue.
pub async fn reviews(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<ReviewsQuery>,
) -> PageOr {
    if let Some(r) = signed_in(&v) {
        return r;
    }
    let want = nonempty(&q.state).unwrap_or_else(|| "pending".into());
    let parsed: ReviewState = match serde_json::from_value(serde_json::Value::String(want.clone()))
    {
        Ok(s) => s,
        Err(_) => {
            let e = Error::invalid(
                "state",
                format!("'{want}' is not one of {}", REVIEW_STATES.join(", ")),
            );
            return error_page(&v, e).into();
        }
    };
    let page = match state.registry.list_reviews(&v.caller, Some(parsed)).await {
        Ok(p) => p,
        Err(e) => return error_page(&v, e).into(),
    };
    let reviews = page
        .items
        .into_iter()
        .map(|r| ReviewView {
            href: entry_href(r.entry.kind, &r.entry.namespace, &r.entry.name),
            kind: r.entry.kind.to_string(),
            namespace: r.entry.namespace.clone(),
            name: r.entry.name.clone(),
            state: serde_json::to_value(r.state)
                .ok()
                .and_then(|s| s.as_str().map(str::to_string))
                .unwrap_or_default(),
            submitted_by: r.submitted_by,
            why: r.why,
            changes: r.changes,
            events: r
                .events
                .into_iter()
                .map(|e| EventView {
                    at: when(e.at),
                    actor: e.actor,
                    event: e.event.replace('_', " "),
                    text: [
                        e.reason,
                        e.comment,
                        (!e.changes.is_empty()).then(|| e.changes.join("; ")),
                    ]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" · "),
                })
                .collect(),
        })
        .collect();
    let view = ReviewsView {
        states: REVIEW_STATES.iter().map(|s| (*s, *s == want)).collect(),
        state: want,
        reviews,
        csrf: v.csrf(),
    };
    private(render(&v, StatusCode::OK, "reviews.html", &view)).into()
}

/// A moderator's decision or comment on one entry's review.
#[derive(Deserialize, JsonSchema)]
pub struct ReviewForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    name: String,
    /// `approve`, `reject`, `request_changes` or `comment` (the button pressed).
    #[serde(default)]
    action: String,
    /// Why (required to reject).
    #[serde(default)]
    reason: String,
    /// The changes asked for, one per line (with `request_changes`).
    #[serde(default)]
    changes: String,
    /// A comment (with `comment`).
    #[serde(default)]
    comment: String,
}

/// `POST /reviews`: act on a review; back to the queue.
pub async fn review(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<ReviewForm>,
) -> PageOr {
    if let Some(r) = signed_in(&v) {
        return r;
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let kind = match f.kind.parse::<Kind>() {
        Ok(k) => k,
        Err(e) => return error_page(&v, e).into(),
    };
    let verb = match f.action.as_str() {
        "approve" => ReviewVerb::Approve,
        "reject" => ReviewVerb::Reject,
        "request_changes" => ReviewVerb::RequestChanges,
        "comment" => ReviewVerb::Comment,
        other => {
            let e = Error::invalid(
                "action",
                format!("'{other}' is not one of approve, reject, request_changes, comment"),
            );
            return error_page(&v, e).into();
        }
    };
    let text = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    let act = ReviewAction {
        action: verb,
        reason: text(&f.reason),
        changes: f
            .changes
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        comment: text(&f.comment),
    };
    let key = EntryKey::new(kind, &f.namespace, &f.name);
    match state.registry.review(&v.caller, &key, act).await {
        Ok(_) => redirect_to("/reviews"),
        Err(e) => error_page(&v, e).into(),
    }
}

// ---- the audit log ----------------------------------------------------------------------

/// The audit log's filters, as on `GET /api/v1/audit`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AuditQuery {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    target: Option<String>,
    /// `allowed` or `denied`.
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Serialize)]
struct AuditRow {
    at: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
    reason: String,
    diff: String,
}

#[derive(Serialize)]
struct AuditView {
    f: AuditFields,
    rows: Vec<AuditRow>,
    next_href: Option<String>,
}

#[derive(Serialize)]
struct AuditFields {
    namespace: String,
    actor: String,
    action: String,
    target: String,
    outcome: String,
}

/// `GET /audit`: the audit log, newest first, with the API's filters (admins see every
/// row, a namespace's owners their namespace's).
pub async fn audit(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<AuditQuery>,
) -> PageOr {
    if let Some(r) = signed_in(&v) {
        return r;
    }
    let filter = AuditFilter {
        namespace: nonempty(&q.namespace),
        target: nonempty(&q.target),
        actor: nonempty(&q.actor),
        action: nonempty(&q.action),
        outcome: nonempty(&q.outcome),
        since: None,
        until: None,
    };
    let page = match state
        .registry
        .list_audit(
            &v.caller,
            filter.clone(),
            nonempty(&q.cursor).as_deref(),
            ROWS,
        )
        .await
    {
        Ok(p) => p,
        Err(e) => return error_page(&v, e).into(),
    };
    let next_href = page.next_cursor.map(|c| {
        let q = query_of(&[
            ("namespace", filter.namespace.clone()),
            ("actor", filter.actor.clone()),
            ("action", filter.action.clone()),
            ("target", filter.target.clone()),
            ("outcome", filter.outcome.clone()),
            ("cursor", Some(c)),
        ]);
        format!("/audit?{q}")
    });
    let rows = page
        .items
        .into_iter()
        .map(|r| AuditRow {
            at: when(r.at),
            actor: r.actor,
            action: r.action,
            target: r.target,
            outcome: r.outcome,
            reason: r.reason.unwrap_or_default(),
            diff: r
                .diff
                .filter(|d| d.as_object().is_none_or(|o| !o.is_empty()))
                .map(|d| d.to_string())
                .unwrap_or_default(),
        })
        .collect();
    let get = |o: Option<String>| o.unwrap_or_default();
    let view = AuditView {
        f: AuditFields {
            namespace: get(filter.namespace),
            actor: get(filter.actor),
            action: get(filter.action),
            target: get(filter.target),
            outcome: get(filter.outcome),
        },
        rows,
        next_href,
    };
    private(render(&v, StatusCode::OK, "audit.html", &view)).into()
}

// ---- jobs -------------------------------------------------------------------------------

/// Which jobs to list.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct JobsQuery {
    /// `queued`, `running`, `succeeded` or `dead`; any when empty.
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Serialize)]
struct JobRow {
    id: String,
    kind: String,
    state: String,
    attempts: String,
    run_at: String,
    last_error: String,
    dead: bool,
}

#[derive(Serialize)]
struct JobsView {
    state: String,
    states: Vec<(&'static str, bool)>,
    rows: Vec<JobRow>,
    next_href: Option<String>,
    csrf: Option<String>,
}

/// `GET /jobs`: the job queue (admins).
pub async fn jobs(State(state): State<AppState>, v: Visitor, Query(q): Query<JobsQuery>) -> PageOr {
    if let Some(r) = signed_in(&v) {
        return r;
    }
    let want = nonempty(&q.state);
    let states = match want.as_deref().map(str::parse::<JobState>).transpose() {
        Ok(s) => s.into_iter().collect(),
        Err(_) => {
            let e = Error::invalid("state", "one of queued, running, succeeded, dead");
            return error_page(&v, e).into();
        }
    };
    let filter = JobFilter {
        states,
        kinds: vec![],
    };
    let page = match state
        .registry
        .list_jobs(&v.caller, filter, nonempty(&q.cursor).as_deref(), ROWS)
        .await
    {
        Ok(p) => p,
        Err(e) => return error_page(&v, e).into(),
    };
    let next_href = page.next_cursor.map(|c| {
        format!(
            "/jobs?{}",
            query_of(&[("state", want.clone()), ("cursor", Some(c))])
        )
    });
    let rows = page
        .items
        .into_iter()
        .map(|j| JobRow {
            id: j.id.to_string(),
            kind: j.kind,
            state: j.state.to_string(),
            attempts: format!("{} of {}", j.attempts, j.max_attempts),
            run_at: when(j.run_at),
            last_error: j.last_error.unwrap_or_default(),
            dead: j.state == JobState::Dead,
        })
        .collect();
    let view = JobsView {
        states: JobState::ALL
            .iter()
            .map(|s| (s.as_str(), want.as_deref() == Some(s.as_str())))
            .collect(),
        state: want.unwrap_or_default(),
        rows,
        next_href,
        csrf: v.csrf(),
    };
    private(render(&v, StatusCode::OK, "jobs.html", &view)).into()
}

/// A job to retry.
#[derive(Deserialize, JsonSchema)]
pub struct RetryForm {
    #[serde(default)]
    csrf: String,
    /// The job's id.
    #[serde(default)]
    id: String,
}

/// `POST /jobs/retry`: queue a dead job again (admins).
pub async fn retry_job(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<RetryForm>,
) -> PageOr {
    if let Some(r) = signed_in(&v) {
        return r;
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let id = match f.id.parse::<JobId>() {
        Ok(id) => id,
        Err(_) => return error_page(&v, Error::invalid("id", "a job id")).into(),
    };
    match state.registry.retry_job(&v.caller, id).await {
        Ok(_) => redirect_to("/jobs?state=dead"),
        Err(e) => error_page(&v, e).into(),
    }
}

// ---- users ------------------------------------------------------------------------------

/// The user to show.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct UsersQuery {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Serialize)]
struct UsersView {
    name: String,
    found: Option<FoundUser>,
    csrf: Option<String>,
    roles: Vec<(&'static str, bool)>,
    levels: Vec<(&'static str, bool)>,
}

#[derive(Serialize)]
struct FoundUser {
    name: String,
    email: Option<String>,
    role: String,
    trust: String,
    created: String,
    namespaces: Vec<String>,
}

const ROLES: [&str; 3] = ["none", "moderator", "admin"];
const LEVELS: [&str; 4] = ["new", "standard", "trusted", "core"];

/// `GET /users?name=…`: a user's site role and trust level, with forms to change them
/// (moderators set trust, admins roles).
pub async fn users(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<UsersQuery>,
) -> PageOr {
    if let Some(r) = signed_in(&v) {
        return r;
    }
    let name = nonempty(&q.name).unwrap_or_default();
    let r = &state.registry;
    let found = if name.is_empty() {
        None
    } else {
        let p = match r.user_profile(&v.caller, &name).await {
            Ok(p) => p,
            Err(e) => return error_page(&v, e).into(),
        };
        let (user, trust) = (p.user, p.trust);
        let namespaces = p
            .memberships
            .into_iter()
            .map(|m| format!("{} ({})", m.namespace, m.role))
            .collect();
        Some(FoundUser {
            role: user.site_role.map_or("none".into(), |r| r.to_string()),
            trust: serde_json::to_value(trust)
                .ok()
                .and_then(|t| t.as_str().map(str::to_string))
                .unwrap_or_default(),
            created: when(user.created_at),
            name: user.name,
            email: user.email,
            namespaces,
        })
    };
    let role = found.as_ref().map(|f| f.role.clone()).unwrap_or_default();
    let trust = found.as_ref().map(|f| f.trust.clone()).unwrap_or_default();
    let view = UsersView {
        name,
        roles: ROLES.iter().map(|r| (*r, *r == role)).collect(),
        levels: LEVELS.iter().map(|l| (*l, *l == trust)).collect(),
        found,
        csrf: v.csrf(),
    };
    private(render(&v, StatusCode::OK, "users.html", &view)).into()
}

/// A change to a user: `role` (admins) or `trust` (moderators), whichever is given.
#[derive(Deserialize, JsonSchema)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// `none`, `moderator` or `admin`.
    #[serde(default)]
    role: Option<String>,
    /// `new`, `standard`, `trusted` or `core`.
    #[serde(default)]
    trust: Option<String>,
}

/// `POST /users`: set a user's site role or trust level; back to their page.
pub async fn set_user(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<UserForm>,
) -> PageOr {
    if let Some(r) = signed_in(&v) {
        return r;
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let r = &state.registry;
    let done = match (nonempty(&f.role), nonempty(&f.trust)) {
        (Some(role), None) => {
            let role = match role.as_str() {
                "none" => Ok(None),
                other => other.parse::<SiteRole>().map(Some),
            };
            match role {
                Ok(role) => r.set_site_role(&v.caller, &f.name, role).await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        (None, Some(level)) => {
            match serde_json::from_value::<TrustLevel>(serde_json::Value::String(level.clone())) {
                Ok(level) => r.set_trust(&v.caller, &f.name, level).await.map(|_| ()),
                Err(_) => Err(Error::invalid(
                    "trust",
                    format!("'{level}' is not one of {}", LEVELS.join(", ")),
                )),
            }
        }
        _ => Err(Error::invalid("role", "give a role or a trust level")),
    };
    match done {
        Ok(()) => redirect_path(
            &v,
            format!("/users?name={}", utf8_percent_encode(&f.name, QUERY)),
        ),
        Err(e) => error_page(&v, e).into(),
    }
}
