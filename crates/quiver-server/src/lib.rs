//! quiver's HTTP API: thin axum routes over the engine.
//!
//! Each handler takes typed inputs, calls one [`Registry`] method and returns a typed
//! answer. The routes are declared once, in [`api`]: each with its handler (whose
//! signature — path, query and body types, answer — is what the OpenAPI document says
//! about it, through `aide`), a summary, and the rate-limit class of its group (a layer on
//! the group, and `x-rate-limit-class` in the document). Errors from the engine become
//! HTTP statuses in one place ([`error`]) and leave as one JSON envelope. The caller is
//! an extractor ([`extract::Auth`]) that every route takes, so a route cannot forget to
//! pass it to the engine.

use std::future::Future;
use std::sync::Arc;

use aide::axum::routing::{delete_with, get_with, patch_with, post_with, put_with};
use aide::axum::ApiRouter;
use aide::transform::TransformOperation;
use axum::extract::Request;
use axum::Router;
use quiver_engine::Registry;
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;

use limits::RouteClass;

mod account_pages;
mod advisory_pages;
mod authoring_routes;
mod changes_routes;
pub mod conn;
mod device;
mod download_routes;
pub mod error;
pub mod extract;
pub mod guard;
pub mod http_policy;
mod intel_pages;
pub mod limits;
pub mod mcp;
pub mod metrics;
mod oidc;
pub mod openapi;
pub mod params;
mod pipeline_pages;
mod pipeline_routes;
pub mod reply;
mod resolve_routes;
mod routes;
pub mod session;
mod staff_pages;
mod suggest_pages;
mod suggest_routes;
mod tool_pages;
mod transfer_routes;
mod web;
mod webhook_pages;
mod webhook_routes;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Bearer token of the bootstrap admin (no account; may do everything). Other bearer
    /// tokens are API tokens of user accounts, resolved by the engine.
    pub admin_token: Option<String>,
    /// Caching and cross-origin rules ([`http_policy`]).
    pub http: Arc<http_policy::HttpPolicy>,
}

impl AppState {
    /// Whether `token` is the bootstrap admin's, compared in constant time (the one place
    /// the server compares it).
    pub fn is_admin_token(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        self.admin_token
            .as_ref()
            .is_some_and(|admin| bool::from(admin.as_bytes().ct_eq(token.as_bytes())))
    }
}

/// The operation's summary in the document.
fn doc(summary: &'static str) -> impl FnOnce(TransformOperation) -> TransformOperation {
    move |op| op.summary(summary)
}

/// [`doc`], and error statuses that the route's extractors do not declare themselves
/// (axum's form extractor, for one).
fn doc_with_errors(
    summary: &'static str,
    codes: &'static [error::Code],
) -> impl FnOnce(TransformOperation) -> TransformOperation {
    move |op| {
        let mut op = op.summary(summary);
        aide::generate::in_context(|ctx| error::document_errors(ctx, op.inner_mut(), codes));
        op
    }
}

/// A page's errors: the page again with the error shown (HTML), or the envelope (JSON)
/// when the request could not be read at all.
fn html_errors(op: &mut aide::openapi::Operation) {
    let Some(responses) = op.responses.as_mut() else {
        return;
    };
    for r in responses.responses.values_mut() {
        if let aide::openapi::ReferenceOr::Item(r) = r {
            r.content
                .insert("text/html".into(), aide::openapi::MediaType::default());
        }
    }
}

/// A website form post: its page again (HTML) on a problem, a redirect when it worked,
/// or the envelope when the form could not be read.
fn form_page(summary: &'static str) -> impl FnOnce(TransformOperation) -> TransformOperation {
    move |op| {
        let mut op = doc_with_errors(
            summary,
            &[
                error::Code::MalformedRequest,
                error::Code::InvalidInput,
                error::Code::Unauthorized,
                error::Code::Forbidden,
                error::Code::NotFound,
                error::Code::PayloadTooLarge,
                error::Code::TooManyAttempts,
            ],
        )(op);
        html_errors(op.inner_mut());
        // A redirect has no body: it documents no media type.
        if let Some(r) = op.inner_mut().responses.as_mut() {
            for (status, resp) in r.responses.iter_mut() {
                if matches!(status, aide::openapi::StatusCode::Code(303)) {
                    if let aide::openapi::ReferenceOr::Item(resp) = resp {
                        resp.content.clear();
                    }
                }
            }
        }
        op
    }
}

const ENTRY: &str = "/api/v1/entries/{kind}/{namespace}/{name}";

fn entry(sub: &str) -> String {
    format!("{ENTRY}{sub}")
}

/// Routes of one rate-limit class (`None`: never limited): the class's layer (when
/// limits are on) and its name on each operation of the document.
fn group(
    class: Option<RouteClass>,
    limiting: Option<&limits::Limiting>,
    routes: ApiRouter<AppState>,
) -> ApiRouter<AppState> {
    let name = class.map_or("none", RouteClass::as_str);
    let routes = routes.with_path_items(|item| {
        item.with(|mut item| {
            let p = item.inner_mut();
            for op in [
                &mut p.get,
                &mut p.post,
                &mut p.put,
                &mut p.patch,
                &mut p.delete,
            ]
            .into_iter()
            .flatten()
            {
                op.extensions
                    .insert("x-rate-limit-class".into(), serde_json::json!(name));
            }
            item
        })
    });
    match (class, limiting) {
        (Some(class), Some(l)) => routes.route_layer(axum::middleware::from_fn_with_state(
            (l.clone(), limits::Classify::Fixed(class)),
            limits::limit,
        )),
        _ => routes,
    }
}

/// Every route, once: path, method, handler, summary, rate-limit class.
pub(crate) fn api(limiting: Option<&limits::Limiting>) -> ApiRouter<AppState> {
    use pipeline_routes as pl;
    use routes as r;
    use suggest_routes as sg;
    let read = ApiRouter::new()
        .api_route(
            "/api/v1/entries",
            get_with(r::list_entries, doc("List entries with filters and cursor pagination")),
        )
        .api_route(
            ENTRY,
            get_with(r::get_entry, doc("Read one entry (exact lookup, no search index)")),
        )
        .api_route(&entry("/versions"), get_with(r::list_versions, doc("List versions, newest first")))
        .api_route(&entry("/versions/validate"), post_with(authoring_routes::validate_version, doc("Check a version before publishing it, writing nothing: the same rules, expression checks, content hash, manifest budget, quality gates and review rule a publish runs, each finding with its field, and the outcome a publish would have (accepted, review, held_back or refused). For a name not created yet, give the entry's fields in `entry`. Counted as a read")))
        .api_route(&entry("/co-installed"), get_with(sg::co_installed, doc("Entries installed in the same projects as this one (from reported install events), most first, each behind at least min_projects projects (never fewer than 5)")))
        .api_route(&entry("/stats"), get_with(download_routes::entry_stats, doc("An entry's counted downloads and resolutions: all time, the last 7 and 30 UTC days, a daily series over a window (from, to: UTC days, at most 366; default the last 30) and per version; as of the last flush (about a second behind)")))
        .api_route("/api/v1/namespaces/{namespace}/stats", get_with(download_routes::namespace_stats, doc("A namespace's counted downloads and resolutions over the entries the caller may see: totals, a daily series over a window and per entry")))
        .api_route("/api/v1/changes", get_with(changes_routes::changes, doc("The public change feed: the changes after a position (since, default 0) that the caller may see, oldest first in commit order, at most limit (default 100), with the position to resume from (next) and the feed's head; wait=N (up to 60 s) long-polls until a change arrives. Positions are the same for every caller; hidden events are skipped, never renumbered")))
        .api_route("/api/v1/changes/stream", get_with(changes_routes::stream, doc("The change feed as Server-Sent Events (event `change`, id = feed position, data = the change as JSON), from since or Last-Event-ID, live after catching up; keep-alive comments every 15 s")))
        .api_route("/api/v1/stats/agents", get_with(download_routes::agent_stats, doc("Downloads and resolutions per client program (a user agent's product and major.minor version, the only part kept) and UTC day (site admins)")))
        .api_route(&entry("/dist-tags"), get_with(resolve_routes::dist_tags, doc("An entry's dist-tags, and what latest resolves to (the tag when set, else the highest release)")))
        .api_route(
            &entry("/relations"),
            get_with(r::list_relations, doc("Relations of an entry (direction: outgoing, incoming, both)")),
        )
        .api_route(
            &entry("/review"),
            get_with(r::get_review, doc("An entry's review: state, changes asked, decisions and comments (its writers and moderators)")),
        )
        .api_route("/api/v1/kinds", get_with(r::kinds, doc("The built-in kinds and their manifest JSON Schemas")))
        .api_route(
            "/api/v1/kinds/{kind}/schema",
            get_with(r::kind_schema, doc("The manifest JSON Schema of one kind")),
        )
        .api_route("/api/v1/status", get_with(r::status, doc("Store and index statistics")))
        .api_route("/api/v1/openapi.json", get_with(r::openapi, doc("This document")))
        .api_route("/api/v1/jobs", get_with(r::list_jobs, doc("Durable jobs, newest first (admins)")))
        .api_route("/api/v1/jobs/{id}", get_with(r::get_job, doc("One job (admins)")))
        .api_route("/api/v1/reviews", get_with(r::list_reviews, doc("The moderation queue (moderators and admins)")))
        .api_route("/api/v1/user", get_with(r::whoami, doc("The signed-in user and their namespace memberships")))
        .api_route(
            "/api/v1/audit",
            get_with(r::list_audit, doc("The audit log, newest first: writes and denied writes with diffs (admins; owners with namespace=theirs)")),
        )
        .api_route(
            "/api/v1/audit/export",
            get_with(r::export_audit, doc("Every audit row the filters select, newest first, streamed as JSON lines; the same rights as the listing")),
        )
        .api_route(
            "/api/v1/export",
            get_with(transfer_routes::export, doc("Export as `quiver export` does, streamed: quiver JSONL of the entries the caller may read (kind, namespace, status filters; a site admin's unfiltered export is the full backup with documents), or a source system's own files (site admins): blocks.yml, or a tar archive for ops-tools, recipes, skills, modules")),
        )
        .api_route(
            "/api/v1/import/{id}",
            get_with(transfer_routes::import_job, doc("A queued import (202 of POST /api/v1/import): its job and, once it ran, its report (the submitter and admins)")),
        )
        .api_route("/api/v1/tokens", get_with(r::list_tokens, doc("The caller's API tokens, newest first (never the secrets)")))
        .api_route("/api/v1/webhooks", get_with(webhook_routes::list, doc("The caller's webhooks, or a namespace's (namespace=, its owners); never the secrets")))
        .api_route("/api/v1/webhooks/{id}", get_with(webhook_routes::get, doc("One webhook (its owner)")))
        .api_route("/api/v1/webhooks/{id}/deliveries", get_with(webhook_routes::deliveries, doc("A webhook's delivery log, newest first: each delivery's event, state (pending, succeeded, dead), attempts, last response code, duration and error (its owner)")))
        .api_route(
            "/api/v1/namespaces/{namespace}/members",
            get_with(r::list_members, doc("A namespace's members and their roles")),
        )
        .api_route(
            "/api/v1/auth/oidc/start",
            get_with(oidc::start, doc("Sign in through the configured outside provider: a redirect with state and PKCE (404 when none is configured)")),
        )
        .api_route(
            "/api/v1/auth/oidc/callback",
            get_with(oidc::callback, doc_with_errors("The provider's redirect back: checks the state, exchanges the code, links or creates the user, answers a session token (201); after a link started with POST /api/v1/auth/oidc/link, answers {\"linked\": {provider, subject, user}} (200). Behind the credential throttle", &[error::Code::Unauthorized, error::Code::TooManyAttempts, error::Code::NotFound])),
        );
    let search = ApiRouter::new()
        .api_route("/api/v1/search", get_with(r::search, doc("Search entries")))
        .api_route(
            "/api/v1/telemetry/patterns/{namespace}/{name}/{capability}/{pattern}",
            get_with(r::pattern_report, doc("One pattern's executions over a window (from hourly roll-ups): counts, success rate, time, cost, actual/estimate; per version and environment")),
        )
        .api_route(
            "/api/v1/telemetry/drift",
            get_with(r::drift, doc("Patterns whose median actual/estimate is outside [0.67, 1.5] over at least min_count executions in the window")),
        )
        .api_route(
            "/api/v1/capabilities",
            get_with(r::capabilities, doc("The capabilities of the tools the caller may see: tools, patterns and platforms of each")),
        )
        .api_route(
            "/api/v1/capabilities/{name}",
            get_with(r::capability, doc("One capability: its tools and their patterns with their estimates")),
        )
        .api_route(
            "/api/v1/select",
            post_with(r::select, doc("Select tools for a capability: ranked patterns with evaluated time and cost, the score and its breakdown, missing inputs, and what was excluded and why")),
        )
        .api_route(
            "/api/v1/experiments",
            get_with(r::list_experiments, doc("The A/B tests of the tools the caller may read, by name; filters: tool, capability, status")),
        )
        .api_route(
            "/api/v1/experiments/{name}",
            get_with(r::experiment_results, doc("An A/B test with each arm's figures (count, success rate, time mean and quantiles, cost), a two-proportion z-test of success, Welch's t-test of time, and the winner once each arm has min_samples executions and a difference is significant")),
        )
        .api_route("/api/v1/resolve/{kind}/{namespace}/{name}", get_with(resolve_routes::resolve_one, doc("Resolve an entry to one version by a semver range, an exact version or latest: the version, its manifest hash, the content hash and source it declares, and warnings (a pinned yanked version, a deprecated entry, a newer version outside the range). Yanked versions are skipped unless pinned exactly; prereleases only when the range names one")))
        .api_route("/api/v1/resolve", post_with(resolve_routes::resolve_batch, doc("Resolve a lock set (1 to 1,000 references) in one call: each reference answers on its own, with its resolution or why it has none (not_found, no_match)")))
        .api_route("/api/v1/skills/suggest", get_with(sg::suggest_get, doc("Skills that fit a project's packages (packages=react&packages=pypi:requests), ranked, each with its reasons: the packages it matched, each mapping's confidence and source; packages the registry does not hold are listed as unknown")))
        .api_route("/api/v1/skills/suggest", post_with(sg::suggest_post, doc("Skills that fit a project: packages by name and/or a manifest uploaded as text (package.json, requirements.txt, pyproject.toml, Cargo.toml; dependencies and dev-dependencies with their ranges), ranked with their reasons")))
        .api_route("/api/v1/advisories", get_with(resolve_routes::advisories, doc("Security advisories, newest first; filters: an entry (kind, namespace, name), the least severity, include_withdrawn; only the affected entries the caller may read")))
        .api_route("/api/v1/advisories/{id}", get_with(resolve_routes::advisory, doc("One security advisory")))
        .api_route("/api/v1/user/skill-preferences", get_with(sg::preferences, doc("The caller's skill preferences: pinned and hidden skills per package")))
        .api_route("/api/v1/skills/bulk-suggest", post_with(sg::bulk_suggest, doc("Skills grouped by package, for many packages at once (up to 2,000)")))
        .api_route("/api/v1/packages/{ecosystem}/{name}/skills", get_with(sg::package_skills, doc("The skills that map to one package, ranked by the mapping's confidence and the skill's popularity (a scoped npm name's `/` as is or as %2F)")))
        .api_route("/api/v1/pipeline/status", get_with(pl::status, doc("The recipe pipeline at a glance: queue depth by status and ecosystem, each ecosystem's valves (pause, circuit breaker, hourly claims), claims and results per hour over 48 hours")))
        .api_route("/api/v1/pipeline/items", get_with(pl::list_items, doc("Queue items by id; filters: status, ecosystem; pages with after")))
        .api_route("/api/v1/pipeline/items/{id}", get_with(pl::get_item, doc("A queue item (`homebrew:node`; a `/` in the id percent-encoded): its history newest first, its latest result per environment, and what blocks it on each")))
        .api_route("/api/v1/pipeline/failures", get_with(pl::failures, doc("Failure records newest first; filters: ecosystem, environment, category, since; pages with before")))
        .api_route("/api/v1/pipeline/blockers", get_with(pl::blockers, doc("Missing dependencies ranked by the summed popularity of the items they block, directly and transitively, each with the items")))
        .api_route("/api/v1/pipeline/gaps", get_with(pl::gaps, doc("Capability gaps: per failure category and environment, the items whose latest result there failed that way, by popularity")))
        .api_route("/api/v1/pipeline/checksums/alerts", get_with(pl::checksum_alerts, doc("Checksum drift alerts, newest first: an asset whose checksum changed for the same recipe version and environment")));
    let download = ApiRouter::new()
        .api_route(
            &entry("/versions/{version}"),
            get_with(r::get_version, doc("Read one version")),
        )
        .api_route(
            &entry("/versions/{version}/content"),
            get_with(download_routes::download, doc("Download a version's content (counted: a client once per entry, version and hour): its bytes with the sha256 as a strong ETag and X-Content-SHA256, cacheable for a year (immutable); 404 when the version has no content held by this registry")),
        );
    let registration = ApiRouter::new()
        .api_route("/api/v1/entries", post_with(r::create_entry, doc("Create an entry")))
        .api_route(
            "/api/v1/namespaces",
            post_with(r::create_namespace, doc("Create an organisation namespace owned by the caller (409 names the owner of a taken one)")),
        )
        .api_route(
            "/api/v1/users",
            post_with(
                r::register,
                doc_with_errors(
                    "Register a user (claims the user namespace of the same name); with the server's one-time setup code, the site admin",
                    &[error::Code::Unauthorized, error::Code::TooManyAttempts, error::Code::Conflict],
                ),
            ),
        );
    let write = ApiRouter::new()
        .api_route(ENTRY, patch_with(r::update_entry, doc("Update an entry's fields")))
        .api_route("/api/v1/import", post_with(transfer_routes::import, doc("Import a file or archive as `quiver import` does (admins anywhere; owners and maintainers into their namespaces, no documents, 403 naming a namespace outside their rights), with dry_run; all or nothing unless partial=true (a rejected record: 422 with its field and reason, nothing written). Answers the import's report, or, for bodies over 1 MiB, 202 and the job to poll")))
        .api_route("/api/v1/entries", patch_with(authoring_routes::bulk_update, doc("Update many entries at once (maintainers in their namespace; moderators and admins anywhere): tags added or removed, the category, a lifecycle status with its reason, over the entries a filter (namespace, kind, category, tag) matches, at most 1,000. dry_run answers the list of changes without writing; the applied run answers the same list, one audit row per entry")))
        .api_route(
            "/api/v1/telemetry",
            post_with(r::record_telemetry, doc("Report tool executions (1 to 1,000; each once by its idempotency_key); signed-in callers, tokens with the telemetry scope")),
        )
        .api_route(
            "/api/v1/telemetry/recommendations",
            post_with(r::apply_recommendation, doc("Publish a new version of a tool (default: the next patch) whose pattern's time estimate is refitted to the window's executions of the latest version; the publish rights, gates and review apply")),
        )
        .api_route(
            "/api/v1/experiments",
            post_with(r::create_experiment, doc("Create an A/B test between two versions of a tool or two patterns of a capability (maintainers of the tool's namespace); a draft unless start is true")),
        )
        .api_route(
            "/api/v1/experiments/{name}/start",
            post_with(r::start_experiment, doc("Start a draft A/B test (one active test per tool and capability)")),
        )
        .api_route(
            "/api/v1/experiments/{name}/complete",
            post_with(r::complete_experiment, doc("Complete an active A/B test with the given winner, or the one its results declare")),
        )
        .api_route(
            "/api/v1/experiments/{name}/cancel",
            post_with(r::cancel_experiment, doc("Cancel a draft or active A/B test")),
        )
        .api_route("/api/v1/pipeline/items", post_with(pl::add_items, doc("Add queue items (1 to 10,000), or replace existing ones with replace=true (pipeline operators: maintainers of the recipes' namespace)")))
        .api_route("/api/v1/pipeline/claim", post_with(pl::claim, doc("Claim up to limit items for a worker, in priority order (tier, popularity plus requests, age), with a lease; paused ecosystems, open breakers and spent hourly limits are held back and named (operators)")))
        .api_route("/api/v1/pipeline/results", post_with(pl::report, doc("Report a batch: per item and environment, pass or fail with category, exit code, message and blocked_by; passing items get recipes with derived platform constraints, transient failures retry with backoff (operators)")))
        .api_route("/api/v1/pipeline/failures", post_with(pl::record_failures, doc("Record failure records of runs outside a claim (history: results and blocks only) (operators)")))
        .api_route("/api/v1/pipeline/requeue", post_with(pl::requeue, doc("Put blocked or failed items back to pending: by ids, ecosystem and status, or dependency; audited (operators)")))
        .api_route("/api/v1/pipeline/ecosystems/{ecosystem}", post_with(pl::valve, doc("Pause, resume, set the hourly claim limit of, or reset the breaker of an ecosystem; audited (operators)")))
        .api_route("/api/v1/pipeline/stop", post_with(pl::stop, doc("Emergency stop: no claim gives anything until start; audited (operators)")))
        .api_route("/api/v1/pipeline/start", post_with(pl::start, doc("Lift the emergency stop; audited (operators)")))
        .api_route("/api/v1/pipeline/checksums", post_with(pl::record_checksum, doc("Record an asset's observed checksum for a recipe version and environment; a change is a drift alert (audited) (operators)")))
        .api_route("/api/v1/pipeline/requests", post_with(pl::request, doc("Ask for a package that has no recipe (anyone; counted once per client and day); requests raise its priority")))
        // The website's account forms (a session cookie and the form's CSRF token).
        .api_route("/signout", post_with(account_pages::signout, form_page("The website's sign-out (revokes the session)")))
        .api_route("/tokens", post_with(account_pages::create_token, form_page("The website's form that creates an API token (shown once)")))
        .api_route("/tokens/{id}/revoke", post_with(account_pages::revoke_token, form_page("The website's form that revokes an API token")))
        .api_route("/webhooks", post_with(webhook_pages::create_webhook, form_page("The website's form that adds a webhook (its signing secret shown once)")))
        .api_route("/webhooks/{id}/test", post_with(webhook_pages::ping, form_page("The website's form that sends a webhook a ping")))
        .api_route("/webhooks/{id}/deliveries/{delivery_id}/redeliver", post_with(webhook_pages::redeliver, form_page("The website's form that sends a webhook delivery again")))
        .api_route("/publish", post_with(account_pages::publish, form_page("The website's form that publishes a version (problems shown next to their field)")))
        .api_route("/reviews", post_with(staff_pages::review, form_page("The website's form that acts on an entry's review (moderators)")))
        .api_route("/pipeline/ecosystems/{ecosystem}", post_with(pipeline_pages::ecosystem_action, form_page("The website's form that pauses, resumes, rate-limits or resets the breaker of an ecosystem (the pipeline's operators)")))
        .api_route("/pipeline/stop", post_with(pipeline_pages::stop, form_page("The website's form that stops the whole recipe pipeline, with a reason (its operators)")))
        .api_route("/pipeline/start", post_with(pipeline_pages::start, form_page("The website's form that starts the recipe pipeline again after an emergency stop (its operators)")))
        .api_route("/experiments", post_with(intel_pages::create_experiment, form_page("The website's form that creates an A/B test (the tool's maintainers); a refused one shows the form again with the problem")))
        .api_route("/experiments/{name}", post_with(intel_pages::experiment_action, form_page("The website's form that starts, completes or cancels an A/B test (the tool's maintainers)")))
        .api_route("/skills/suggest", post_with(suggest_pages::suggest_manifest, form_page("The website's form that suggests skills for a pasted manifest (package.json, requirements.txt, pyproject.toml, Cargo.toml); it changes nothing")))
        .api_route("/jobs/retry", post_with(staff_pages::retry_job, form_page("The website's form that retries a dead job (admins)")))
        .api_route("/users", post_with(staff_pages::set_user, form_page("The website's form that sets a user's site role (admins) or trust level (moderators)")))
        .api_route(
            &entry("/versions"),
            post_with(download_routes::publish_version, doc("Publish a version (immutable once published), optionally with its content (`content` as text or `content_base64`): quiver hashes it (sha256), refuses a declared `source.content_hash` that disagrees (422), keeps it in its content store and records the hash in the manifest")),
        )
        .api_route(
            &entry("/versions/{version}/yank"),
            post_with(r::yank, doc("Yank a version, with a reason")),
        )
        .api_route(&entry("/versions/{version}/unyank"), post_with(r::unyank, doc("Undo a yank")))
        .api_route("/api/v1/events", post_with(sg::record_events, doc("Report install and use events from a client, 1 to 1,000 a batch, idempotent by the client's event id; the project id is hashed before it is stored; events for entries the caller may not see are answered as unknown")))
        .api_route("/api/v1/advisories", post_with(resolve_routes::create_advisory, doc("Publish a security advisory (moderators and admins; audited): summary, description, severity, CVSS vector, type, recommendation, aliases (CVE, GHSA-style ids), the affected entries with a semver range and the fixed versions; numbered QVR-<year>-<n>")))
        .api_route("/api/v1/advisories/{id}/withdraw", post_with(resolve_routes::withdraw_advisory, doc("Withdraw an advisory with a reason (moderators and admins; audited); it stays readable and is listed with include_withdrawn")))
        .api_route("/api/v1/user/skill-preferences", post_with(sg::set_preference, doc("Pin (always first), hide (never suggested) or clear a skill for a package (`*`: every package) in the caller's own suggestions (signed-in users and their tokens)")))
        .api_route(&entry("/dist-tags/{tag}"), put_with(resolve_routes::set_dist_tag, doc("Point a dist-tag (stable, beta, latest, ...) at an existing version (those who may publish the entry; audited); `latest` set here overrides the highest release")).delete_with(resolve_routes::remove_dist_tag, doc("Remove a dist-tag (audited)")))
        .api_route(&entry("/disable"), post_with(authoring_routes::disable, doc("Disable an entry with a reason (its maintainers; audited, on the feed): it stays readable by name and keeps its versions, but is marked disabled, never selected, suggested or resolved by a range (an exact pin still resolves, with a warning), and left out of search unless include_disabled")))
        .api_route(&entry("/enable"), post_with(authoring_routes::enable, doc("Enable a disabled entry again (its maintainers; audited)")))
        .api_route(&entry("/versions/{version}/disable"), post_with(authoring_routes::disable_version, doc("Disable one version with a reason (its maintainers; audited, on the feed): it stays readable by exact version and is marked disabled, but no range, dist-tag or latest resolves to it (an exact pin still does, with a warning), it is never the entry's latest version and never selected")))
        .api_route(&entry("/versions/{version}/enable"), post_with(authoring_routes::enable_version, doc("Enable a disabled version again (its maintainers; audited)")))
        .api_route(ENTRY, delete_with(authoring_routes::delete_entry, doc("Delete an entry under the deletion policy (audited, on the feed as a delete; answers the tombstone). Its owners may delete it only within the grace period after it was created (72 hours by default), while no other entry depends on it and it has few downloads; otherwise 409 delete_refused, which says why and to yank, deprecate or archive instead. Site admins may delete any entry with a reason (legal or security): the name stays reserved for admins. Versions, relations, tags, dist-tags and download counts go; reading the name answers 404 saying it was deleted")))
        .api_route(&entry("/versions/{version}"), delete_with(authoring_routes::delete_version, doc("Delete one version under the deletion policy (audited, on the feed as a delete; answers the tombstone): its owners within the grace period after it was published, while nothing depends on the entry and the version has few downloads (else 409 delete_refused: yank or disable it instead); site admins at any time with a reason. Its dist-tags go, its content is no longer served, and its number is never published again")))
        .api_route(
            &entry("/deprecate"),
            post_with(r::deprecate, doc("Deprecate an entry with a message and an optional replacement")),
        )
        .api_route(
            &entry("/status"),
            post_with(r::change_status, doc("Move an entry along its lifecycle (draft, review, published, deprecated, archived) with a reason")),
        )
        .api_route(
            &entry("/review"),
            post_with(r::review, doc("Approve, reject (with a reason), request changes (with a list), resubmit, or comment")),
        )
        .api_route(&entry("/relations"), post_with(r::add_relation, doc("Add a relation from this entry")))
        .api_route("/api/v1/jobs/{id}/retry", post_with(r::retry_job, doc("Retry a dead job (admins)")))
        .api_route(
            "/api/v1/index/rebuild",
            post_with(r::rebuild_index, doc("Queue a rebuild of this node's search index (202 and the job to poll)")),
        )
        .api_route("/api/v1/users/{user}/role", put_with(r::set_site_role, doc("Set a user's site role (admins only)")))
        .api_route(
            "/api/v1/users/{user}/trust",
            put_with(r::set_trust, doc("Set a publisher's trust level: new, standard, trusted or core (moderators and admins)")),
        )
        .api_route(
            "/api/v1/tokens",
            post_with(r::create_token, doc("Create an API token (shown once) within the calling token's scopes")),
        )
        .api_route("/api/v1/tokens/{id}", delete_with(r::revoke_token, doc("Revoke one of the caller's tokens")))
        .api_route(
            "/api/v1/webhooks",
            post_with(webhook_routes::create, doc("Subscribe a URL to events (version.published, version.yanked, entry.deprecated) filtered by kind, namespace and entry, owned by the caller or by a namespace they own; the target must be http or https at a public address; answers the signing secret once (audited)")),
        )
        .api_route(
            "/api/v1/webhooks/{id}",
            patch_with(webhook_routes::update, doc("Change a webhook's URL, filter or state; active=true re-enables a disabled one (audited)"))
                .delete_with(webhook_routes::delete, doc("Delete a webhook and its delivery log (audited)")),
        )
        .api_route("/api/v1/webhooks/{id}/rotate-secret", post_with(webhook_routes::rotate_secret, doc("A new signing secret, answered once; the previous one still signs (a second v1=) for the overlap window (audited)")))
        .api_route("/api/v1/webhooks/{id}/test", post_with(webhook_routes::ping, doc("Send a ping event to the webhook now (202 and the delivery)")))
        .api_route("/api/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", post_with(webhook_routes::redeliver, doc("Send a delivery's event again as a new delivery (202 and the delivery; audited)")))
        .api_route(
            "/api/v1/namespaces/{namespace}/members/{user}",
            put_with(r::set_member, doc("Add a member or change their role (owners and admins)"))
                .delete_with(r::remove_member, doc("Remove a member (owners and admins; a namespace keeps at least one owner)")),
        )
        .api_route(
            "/api/v1/device/code",
            post_with(device::device_code, doc("Device sign-in (RFC 8628): a device code to poll with and a user code to approve")),
        )
        .api_route(
            "/api/v1/device/approve",
            post_with(device::device_approve, doc("Approve (or deny) a device's user code as the signed-in user")),
        )
        .api_route(
            "/api/v1/device/token",
            post_with(device::device_token, doc("A device's poll: the token once approved (once only), else 400 with the RFC 8628 error code")),
        )
        .api_route(
            "/api/v1/auth/oidc/link",
            post_with(oidc::link, doc("A signed-in user (a session, or a token with every scope) starts a sign-in at the outside provider that links that identity to their account: answers {\"authorize_url\"} and sets the sign-in cookie")),
        );
    let unlimited = ApiRouter::new()
        .api_route("/healthz", get_with(r::healthz, doc("Liveness")))
        // Limited by the credential throttle instead of the write class (quiver_engine::throttle).
        .api_route(
            "/api/v1/session",
            post_with(
                r::login,
                doc_with_errors(
                    "Password login: answers a session token, shown once (behind the credential throttle, not the write limit)",
                    &[error::Code::TooManyAttempts, error::Code::Unauthorized],
                ),
            ),
        )
        .api_route(
            "/signin",
            post_with(
                account_pages::signin,
                form_page("The website's password sign-in: sets the session cookie (behind the credential throttle, not the write limit)"),
            ),
        )
        .api_route(
            "/readyz",
            get_with(r::readyz, doc("Readiness (the store answers)")),
        )
        .api_route(
            "/metrics",
            get_with(metrics::render, doc("Prometheus metrics")),
        )
        .api_route(
            "/static/quiver.css",
            get_with(web::stylesheet, doc("The website's stylesheet")),
        )
        .api_route(
            "/device",
            get_with(
                device::page,
                doc("The device sign-in page: enter the code a device shows"),
            )
            .post_with(device::page_submit, |op| {
                let mut op = doc_with_errors(
                    "Approve or deny a device's code with a user name and password",
                    &[
                        error::Code::MalformedRequest,
                        error::Code::Unauthorized,
                        error::Code::NotFound,
                        error::Code::InvalidInput,
                        error::Code::PayloadTooLarge,
                        error::Code::TooManyAttempts,
                    ],
                )(op);
                html_errors(op.inner_mut());
                op
            }),
        );
    // The website: pages over the same engine calls, rate-limited as the API's reads and
    // searches.
    let mut site = ApiRouter::new()
        .api_route("/", get_with(web::home, doc("The website's home page")))
        .api_route(
            "/signin",
            get_with(
                account_pages::signin_page,
                doc("The website's sign-in page"),
            ),
        )
        .api_route("/signin/oidc", get_with(oidc::site_start, doc("The website's sign-in at the configured outside provider (a redirect there; 404 without one)")))
        .api_route(
            "/dashboard",
            get_with(
                account_pages::dashboard,
                doc("The website's dashboard of the signed-in user"),
            ),
        )
        .api_route(
            "/tokens",
            get_with(
                account_pages::tokens,
                doc("The website's page of the signed-in user's API tokens"),
            ),
        )
        .api_route("/webhooks", get_with(webhook_pages::webhooks, doc("The website's page of the signed-in user's webhooks, with a form to add one")))
        .api_route("/webhooks/{id}", get_with(webhook_pages::webhook_log, doc("The website's page of a webhook's delivery log, with redelivery and a ping")))
        .api_route(
            "/publish",
            get_with(
                account_pages::publish_page,
                doc("The website's form that publishes a version"),
            ),
        )
        .api_route(
            "/reviews",
            get_with(
                staff_pages::reviews,
                doc("The website's review queue (moderators)"),
            ),
        )
        .api_route(
            "/audit",
            get_with(
                staff_pages::audit,
                doc("The website's audit log (admins; a namespace's owners with namespace=)"),
            ),
        )
        .api_route(
            "/jobs",
            get_with(staff_pages::jobs, doc("The website's job queue (admins)")),
        )
        .api_route(
            "/users",
            get_with(
                staff_pages::users,
                doc("The website's page of a user's role and trust level (moderators and admins)"),
            ),
        )
        .api_route(
            "/api",
            get_with(web::api_reference, doc("The website's API reference page")),
        )
        .api_route(
            "/mcp-setup",
            get_with(web::mcp_setup, doc("The website's page on connecting an AI agent over MCP: the /mcp endpoint, quiver mcp, client configurations to copy, the tools and resources")),
        )
        .api_route("/capabilities", get_with(tool_pages::capabilities, doc("The website's capability browser")))
        .api_route("/telemetry/drift", get_with(intel_pages::drift, doc("The website's drift list: patterns whose estimates are off, with refitted expressions")))
        .api_route(
            "/telemetry/{namespace}/{name}/{capability}/{pattern}",
            get_with(intel_pages::pattern, doc("The website's page of a pattern's executions: figures per version, environment and hour, and a chart of actual against estimated time")),
        )
        .api_route("/experiments", get_with(intel_pages::experiments, doc("The website's list of A/B tests")))
        .api_route("/pipeline", get_with(pipeline_pages::dashboard, doc("The website's recipe pipeline dashboard: queue depth, activity chart, valves and the emergency stop, blockers, gaps, checksum alerts, recent failures (filters: ecosystem, environment, category; pages with before)")))
        .api_route("/pipeline/items/{id}", get_with(pipeline_pages::item, doc("The website's page of a pipeline queue item: what blocks it, its latest result per environment, its history")))
        .api_route("/experiments/{name}", get_with(intel_pages::experiment, doc("The website's page of an A/B test: each arm's figures, the significance tests, the verdict, and its buttons")))
        .api_route("/advisories", get_with(advisory_pages::list, doc("The website's list of security advisories (filters: severity, withdrawn)")))
        .api_route("/advisories/{id}", get_with(advisory_pages::one, doc("The website's page of one security advisory: what it affects and what fixes it")))
        .api_route("/skills/suggest", get_with(suggest_pages::suggest, doc("The website's \"which skills fit my project\" page: packages in a GET form, the ranked skills with the packages each matched")))
        .api_route("/select", get_with(tool_pages::select, doc("The website's selection playground: a capability, variables, constraints and weights; the ranked tools")))
        .api_route(
            "/namespaces/{namespace}",
            get_with(web::namespace, doc("The website's page of a namespace")),
        )
        .api_route(
            "/package/{namespace}/{scope}/{name}",
            get_with(
                web::scoped_entry,
                doc("The website's page of a scoped npm package"),
            ),
        );
    for kind in quiver_model::Kind::ALL {
        site = site.api_route(
            &format!("/{kind}/{{namespace}}/{{name}}"),
            get_with(web::entry, doc("The website's page of an entry")),
        );
    }
    let search = search.api_route(
        "/search",
        get_with(web::search, doc("The website's search page")),
    );
    ApiRouter::new()
        .merge(group(Some(RouteClass::Read), limiting, site))
        .merge(group(Some(RouteClass::Read), limiting, read))
        .merge(group(Some(RouteClass::Search), limiting, search))
        .merge(group(Some(RouteClass::Download), limiting, download))
        .merge(group(
            Some(RouteClass::Registration),
            limiting,
            registration,
        ))
        .merge(group(Some(RouteClass::Write), limiting, write))
        .merge(group(None, limiting, unlimited))
}

/// The routes as an axum router (without state, layers or the path rewrite): what the
/// OpenAPI document describes, for tests that compare the two.
pub fn routes() -> Router<AppState> {
    let mut doc = aide::openapi::OpenApi::default();
    api(None).finish_api(&mut doc)
}

/// The whole HTTP surface, without rate limits.
pub fn router(state: AppState) -> Router {
    router_with(state, limits::RateLimits::off())
}

/// The whole HTTP surface with `limits` (see [`limits`]). Client addresses are known only
/// when served with connect info (as [`serve_with`] does); without it, anonymous callers
/// share one count.
/// MCP over Streamable HTTP at [`mcp::PATH`]: not a REST route (one JSON-RPC endpoint), so
/// outside the OpenAPI document; authenticated with the API's bearer tokens, and counted
/// as reads by the rate limits.
fn mcp_route(state: &AppState, limiting: Option<&limits::Limiting>) -> Router<AppState> {
    let route = Router::new()
        .route_service(mcp::PATH, mcp::http_service(state))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            mcp::authenticate,
        ));
    match limiting {
        Some(l) => route.layer(axum::middleware::from_fn_with_state(
            (l.clone(), limits::Classify::Fixed(limits::RouteClass::Read)),
            limits::limit,
        )),
        None => route,
    }
}

pub fn router_with(state: AppState, limits: limits::RateLimits) -> Router {
    let policy = state.http.clone();
    let trust_forwarded_for = limits.trust_forwarded_for;
    let limiting = limits::Limiting::new(&state, limits);
    let mut doc = aide::openapi::OpenApi::default();
    let mut app = api(limiting.as_ref())
        .finish_api(&mut doc)
        .merge(mcp_route(&state, limiting.as_ref()))
        .method_not_allowed_fallback(routes::method_not_allowed);
    app = match limiting {
        // An unknown path under /api/v1 still counts (as a read or a write).
        Some(l) => app.fallback_service(Router::new().fallback(routes::not_found).layer(
            axum::middleware::from_fn_with_state((l, limits::Classify::Unmatched), limits::limit),
        )),
        None => app.fallback(routes::not_found),
    };
    let app = app
        .layer(axum::middleware::from_fn_with_state(
            trust_forwarded_for,
            limits::client_context,
        ))
        .layer(axum::middleware::from_fn(metrics::track))
        .layer(TraceLayer::new_for_http())
        .layer(axum::extract::DefaultBodyLimit::max(4 * 1024 * 1024))
        .with_state(state);
    // Scoped npm names keep their slash in paths: joined into one segment before routing.
    let app = Router::new()
        .fallback_service(app.map_request(|mut req: Request| {
            if let Some(uri) = paths::join_scoped_name(req.uri()) {
                *req.uri_mut() = uri;
            }
            req
        }))
        .layer(axum::middleware::from_fn(guard::guard))
        .layer(axum::middleware::from_fn_with_state(
            policy.clone(),
            http_policy::cache_headers,
        ));
    // Preflights are answered before anything else looks at the request.
    match policy.cors() {
        Some(cors) => app.layer(cors),
        None => app,
    }
}

pub mod paths {
    //! The one path rewrite: npm scoped names (`@scope/name`) carry a slash, so the
    //! segment after an entry's namespace (or a package's ecosystem) that starts with `@` takes the next one with it
    //! (as `%2F`) before routing. The routes then see one `{name}` segment, which the path
    //! extractor decodes back to `@scope/name`. A trailing slash on an entry path is
    //! dropped, as the entry routes always allowed.

    use axum::http::Uri;

    /// Paths that name a package or entry, with how many segments come before its name
    /// (an entry's kind and namespace; a package's ecosystem).
    const PREFIXES: &[(&str, usize)] = &[
        ("/api/v1/entries/", 2),
        ("/api/v1/resolve/", 2),
        ("/api/v1/packages/", 1),
    ];

    /// The rewritten URI, or `None` when `uri` needs none.
    pub fn join_scoped_name(uri: &Uri) -> Option<Uri> {
        let (prefix, at, rest) = PREFIXES.iter().find_map(|(prefix, at)| {
            uri.path()
                .strip_prefix(prefix)
                .map(|rest| (*prefix, *at, rest))
        })?;
        let segs: Vec<&str> = rest.split('/').collect();
        let name = segs.get(at).copied().unwrap_or("");
        let scoped = segs.len() > at + 1
            && (name.starts_with('@') || name.starts_with("%40"))
            && !name.to_ascii_lowercase().contains("%2f")
            && !segs[at + 1].is_empty();
        let trailing = segs.len() > at + 1 && rest.ends_with('/');
        if !scoped && !trailing {
            return None;
        }
        let mut out: Vec<String> = segs[..at].iter().map(|s| s.to_string()).collect();
        let tail = if scoped {
            out.push(format!("{}%2F{}", segs[at], segs[at + 1]));
            &segs[at + 2..]
        } else {
            &segs[at..]
        };
        out.extend(tail.iter().filter(|s| !s.is_empty()).map(|s| s.to_string()));
        let mut path = format!("{prefix}{}", out.join("/"));
        if let Some(q) = uri.query() {
            path.push('?');
            path.push_str(q);
        }
        let mut parts = uri.clone().into_parts();
        parts.path_and_query = Some(path.parse().ok()?);
        Uri::from_parts(parts).ok()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn rw(p: &str) -> String {
            let uri: Uri = p.parse().unwrap();
            join_scoped_name(&uri).map_or_else(|| p.to_string(), |u| u.to_string())
        }

        #[test]
        fn scoped_names_become_one_segment() {
            assert_eq!(
                rw("/api/v1/entries/package/npm/@types/node/versions/1.0.0/yank"),
                "/api/v1/entries/package/npm/@types%2Fnode/versions/1.0.0/yank"
            );
            assert_eq!(
                rw("/api/v1/entries/package/npm/@types/node?x=1"),
                "/api/v1/entries/package/npm/@types%2Fnode?x=1"
            );
            assert_eq!(
                rw("/api/v1/entries/tool/tpmjs/text.csvParse"),
                "/api/v1/entries/tool/tpmjs/text.csvParse"
            );
            assert_eq!(
                rw("/api/v1/entries/tool/tpmjs/x/relations/"),
                "/api/v1/entries/tool/tpmjs/x/relations"
            );
            assert_eq!(
                rw("/api/v1/entries/package/npm/@types%2Fnode"),
                "/api/v1/entries/package/npm/@types%2Fnode"
            );
            assert_eq!(
                rw("/api/v1/entries/package/npm/@types%2fnode/versions/1.0.0"),
                "/api/v1/entries/package/npm/@types%2fnode/versions/1.0.0"
            );
            assert_eq!(
                rw("/api/v1/entries/package/npm/%40types/node"),
                "/api/v1/entries/package/npm/%40types%2Fnode"
            );
            assert_eq!(rw("/api/v1/entries"), "/api/v1/entries");
            assert_eq!(
                rw("/api/v1/packages/npm/@types/node/skills"),
                "/api/v1/packages/npm/@types%2Fnode/skills"
            );
            assert_eq!(
                rw("/api/v1/packages/pypi/requests/skills"),
                "/api/v1/packages/pypi/requests/skills"
            );
        }
    }
}

/// Serve until `shutdown` resolves, then finish in-flight requests. No rate limits: see
/// [`serve_with`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, state, limits::RateLimits::off(), shutdown).await
}

/// [`serve`] with rate limits, counted per token or per client address, and the default
/// [`conn::ConnectionLimits`].
pub async fn serve_with(
    listener: TcpListener,
    state: AppState,
    limits: limits::RateLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_limited(
        listener,
        state,
        limits,
        conn::ConnectionLimits::default(),
        shutdown,
    )
    .await
}

/// [`serve_with`] under `connections` (see [`conn`]).
pub async fn serve_limited(
    listener: TcpListener,
    state: AppState,
    limits: limits::RateLimits,
    connections: conn::ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    metrics::handle();
    conn::serve(listener, router_with(state, limits), connections, shutdown).await
}

/// Serve `GET /metrics` to anyone on `listener` (the separate metrics address), until the
/// task is dropped.
pub async fn serve_metrics(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    metrics::handle();
    axum::serve(listener, metrics::router(state)).await
}
