//! Route handlers: each takes its typed inputs (caller, path, query, body), calls one
//! engine method, and returns a typed answer. The types are the documentation: the
//! OpenAPI document is generated from these signatures (see [`crate::router`]).

use std::time::Instant;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::NoContent;
use quiver_engine::accounts::{Login, NewTokenSecret, Registered, Registration, TokenRequest};
use quiver_engine::auth::{NamespaceRole, SiteRole};
use quiver_engine::review::{Review, ReviewPage, ReviewState, Trust};
use quiver_engine::Registry;
use quiver_model::{
    Entry, EntryKey, EntryPatch, Error, Kind, Namespace, NewEntry, Relation, RelationKind, Status,
    Version,
};
use quiver_search::{SearchQuery, SearchResults, Sort};
use quiver_store::{ApiToken, AuditRecord, Direction, EntryFilter, Membership, User};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::extract::{Auth, JsonBody, OptionalJsonBody, PathParams, Query};
use crate::params::{
    values, Csv, DirectionParam, Flag, PageSize, Param, ReviewStateParam, SortParam, Time,
};
use crate::reply::{Accepted, Created, Etagged, Json, NdJson};
use crate::AppState;

// ---- parameters --------------------------------------------------------------------

/// The address of an entry.
#[derive(Deserialize, JsonSchema)]
pub struct EntryPath {
    /// tool, recipe, skill, module or package
    pub kind: Param<Kind>,
    /// The owner namespace (for packages: the ecosystem, pypi, npm, ...).
    pub namespace: String,
    /// The entry's name; npm scoped names keep their slash (`@types/node`; `%2F` works too).
    pub name: String,
}

impl EntryPath {
    pub fn key(self) -> EntryKey {
        EntryKey::new(self.kind.0, self.namespace, self.name)
    }
}

/// The address of one version of an entry.
#[derive(Deserialize, JsonSchema)]
pub struct VersionPath {
    /// tool, recipe, skill, module or package
    pub kind: Param<Kind>,
    /// The owner namespace.
    pub namespace: String,
    /// The entry's name.
    pub name: String,
    /// A semantic version.
    pub version: String,
}

impl VersionPath {
    pub fn key(self) -> (EntryKey, String) {
        (
            EntryKey::new(self.kind.0, self.namespace, self.name),
            self.version,
        )
    }
}

/// A kind.
#[derive(Deserialize, JsonSchema)]
pub struct KindPath {
    /// tool, recipe, skill, module or package
    pub kind: Param<Kind>,
}

/// A user.
#[derive(Deserialize, JsonSchema)]
pub struct UserPath {
    /// A user name.
    pub user: String,
}

/// A namespace.
#[derive(Deserialize, JsonSchema)]
pub struct NamespacePath {
    /// A namespace.
    pub namespace: String,
}

/// A member of a namespace.
#[derive(Deserialize, JsonSchema)]
pub struct MemberPath {
    /// A namespace.
    pub namespace: String,
    /// A user name.
    pub user: String,
}

/// A job or a token, by id.
#[derive(Deserialize, JsonSchema)]
pub struct IdPath {
    /// The id (a whole number). Read as text so a bad one gets the route's own message.
    #[schemars(with = "i64")]
    pub id: String,
}

/// No query parameters.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// Filters and the page of `GET /api/v1/entries`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Comma-separated kinds.
    kind: Option<Csv<Kind>>,
    /// Comma-separated namespaces.
    namespace: Option<Csv<String>>,
    /// Comma-separated categories.
    category: Option<Csv<String>>,
    /// Tags the entry must all have (comma-separated).
    tag: Option<Csv<String>>,
    /// Comma-separated statuses.
    status: Option<Csv<Status>>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<PageSize>,
}

/// The query of `GET /api/v1/search`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    /// Free text: names (exact, split, prefix, typos) and descriptions; at most 256 bytes.
    q: Option<String>,
    /// Comma-separated kinds.
    kind: Option<Csv<Kind>>,
    /// Comma-separated namespaces (ecosystems).
    namespace: Option<Csv<String>>,
    /// Comma-separated categories.
    category: Option<Csv<String>>,
    /// Comma-separated tags.
    tag: Option<Csv<String>>,
    /// Comma-separated platforms: a tool's `platform`, a recipe's operating systems
    /// (`linux`, `darwin`).
    platform: Option<Csv<String>>,
    /// Comma-separated statuses (default: published, deprecated).
    status: Option<Csv<Status>>,
    /// relevance (default), popularity, recent or name.
    sort: Option<SortParam>,
    /// 1 to 100, default 20.
    limit: Option<PageSize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// true to count kind/namespace/category/tags/status facets.
    facets: Option<Flag>,
    /// true for highlighted description snippets.
    highlight: Option<Flag>,
    /// true to include entries their maintainers disabled (marked `disabled`).
    include_disabled: Option<Flag>,
}

/// The query of `GET .../relations`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationParams {
    /// outgoing, incoming or both (the default).
    direction: Option<DirectionParam>,
}

/// Filters and the page of `GET /api/v1/jobs`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobParams {
    /// Comma-separated states: queued, running, succeeded, dead.
    state: Option<Csv<quiver_store::JobState>>,
    /// Comma-separated job kinds (validate_version, rebuild_index:<node>).
    kind: Option<Csv<String>>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<PageSize>,
}

/// The query of `GET …/versions`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VersionParams {
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<PageSize>,
    /// `manifest`: include each version's manifest (left out otherwise: `null`).
    include: Option<VersionInclude>,
}

/// What a version list may include beyond each version's summary.
#[derive(Deserialize, JsonSchema, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum VersionInclude {
    Manifest,
}

/// The query of `GET /api/v1/reviews`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewParams {
    /// pending (default), approved, rejected or changes_requested.
    state: Option<ReviewStateParam>,
}

/// The audit log's filters (`GET /api/v1/audit/export` takes these alone).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditFilterParams {
    /// Rows about this namespace (required for namespace owners).
    namespace: Option<String>,
    /// Rows about exactly this target, as rows name it (`tool acme/x`,
    /// `tool acme/x@1.0.0`): one entry's or version's history.
    target: Option<String>,
    /// Rows by this actor.
    actor: Option<String>,
    /// e.g. entry.create, version.publish, member.set.
    action: Option<String>,
    /// allowed or denied.
    outcome: Option<String>,
    /// Rows at or after this RFC 3339 time.
    since: Option<Time>,
    /// Rows before this RFC 3339 time.
    until: Option<Time>,
}

/// The audit log's filters and page (`GET /api/v1/audit`).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditPageParams {
    /// Rows about this namespace (required for namespace owners).
    namespace: Option<String>,
    /// Rows about exactly this target, as rows name it (`tool acme/x`,
    /// `tool acme/x@1.0.0`): one entry's or version's history.
    target: Option<String>,
    /// Rows by this actor.
    actor: Option<String>,
    /// e.g. entry.create, version.publish, member.set.
    action: Option<String>,
    /// allowed or denied.
    outcome: Option<String>,
    /// Rows at or after this RFC 3339 time.
    since: Option<Time>,
    /// Rows before this RFC 3339 time.
    until: Option<Time>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
    /// 1 to 100, default 20.
    limit: Option<PageSize>,
}

fn limit(l: Option<PageSize>) -> usize {
    l.map_or(20, |c| c.0)
}

// ---- answers -----------------------------------------------------------------------

/// A page of results and the cursor that continues after it.
#[derive(Serialize, JsonSchema)]
#[schemars(rename = "{T}Page")]
pub struct Paged<T> {
    pub items: Vec<T>,
    /// Opaque; pass back to get the next page. Null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> From<quiver_store::Page<T>> for Paged<T> {
    fn from(p: quiver_store::Page<T>) -> Self {
        Paged {
            items: p.items,
            next_cursor: p.next_cursor,
        }
    }
}

/// A value whose type has no schema of its own (yet): documented as an object with a
/// description.
pub struct Described<T>(pub T);

impl<T: Serialize> Serialize for Described<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

macro_rules! described {
    ($t:ty, $name:literal, $description:literal) => {
        impl JsonSchema for Described<$t> {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({"type": "object", "description": $description})
            }
        }
    };
}

described!(
    quiver_engine::EngineStatus,
    "EngineStatus",
    "Store and index statistics: backend, store counts and size, index position, docs and size, index lag, jobs by state."
);
described!(
    quiver_engine::transfer::ImportAnswer,
    "ImportReport",
    "What an import did (or, with dry_run, would do), as `quiver import --json` prints it: `report` (dry_run, files: each with path, format, records, created, updated, unchanged, rejected_count, rejected (file, line, name, field, reason), relations and documents (created, updated, unchanged, rejected), warnings, counts; unread files; totals; elapsed_secs) and `gates_queued`."
);
described!(
    quiver_engine::transfer::ImportJobStatus,
    "ImportJob",
    "A queued import: `job` (the durable job: id, state, attempts, last_error, ...) and `report`, once it ran: `{submitter, report, gates_queued}` as an import answers, or `{submitter, error: {code, message, field}}` when the import was refused."
);
described!(
    quiver_store::Job,
    "Job",
    "A durable job: id, kind, payload, priority, dedup_key, state (queued, running, succeeded, dead), attempts, max_attempts, run_at, locked_by, locked_until, last_error, created_at, updated_at, finished_at."
);
described!(
    Paged<quiver_store::Job>,
    "JobPage",
    "A page of jobs (items, next_cursor); each item as Job."
);

/// `{"status": "ok"}` or `{"status": "ready"}`.
#[derive(Serialize, JsonSchema)]
pub struct Health {
    pub status: &'static str,
}

/// A search answer: the results and how long the engine took.
#[derive(Serialize, JsonSchema)]
pub struct SearchResponse {
    #[serde(flatten)]
    pub results: SearchResults,
    /// Time spent in the engine, microseconds.
    pub took_us: u64,
}

/// A kind and the JSON Schema its manifests are validated against.
#[derive(Serialize, JsonSchema)]
pub struct KindInfo {
    pub kind: Kind,
    pub schema: serde_json::Value,
}

// ---- entries -----------------------------------------------------------------------

pub(crate) fn entry_location(key: &EntryKey) -> String {
    let name = percent_encoding::utf8_percent_encode(&key.name, PATH_SEGMENT);
    format!("/api/v1/entries/{}/{}/{name}", key.kind, key.namespace)
}

/// What a path segment must escape: controls, space and the characters with a meaning in
/// URLs (`/` stays: npm scoped names keep their slash in paths).
pub(crate) const PATH_SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

pub async fn list_entries(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ListParams>,
    headers: HeaderMap,
) -> ApiResult<Etagged<Paged<Entry>>> {
    let filter = EntryFilter {
        kinds: values(p.kind),
        namespaces: values(p.namespace),
        categories: values(p.category),
        tags: values(p.tag),
        statuses: values(p.status),
        visibilities: vec![],
        private_namespaces: None,
    };
    let page = state
        .registry
        .list_entries(&caller, filter, p.cursor.as_deref(), limit(p.limit))
        .await?;
    Ok(Etagged::new(&headers, page.into()))
}

pub async fn create_entry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(entry): JsonBody<NewEntry>,
) -> ApiResult<Created<Entry>> {
    let e = state.registry.create_entry(&caller, entry).await?;
    Ok(Created::at(entry_location(&e.key()), e))
}

pub async fn get_entry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    Query(NoParams {}): Query<NoParams>,
    headers: HeaderMap,
) -> ApiResult<Etagged<Entry>> {
    let e = state.registry.get_entry(&caller, &path.key()).await?;
    Ok(Etagged::new(&headers, e))
}

pub async fn update_entry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(patch): JsonBody<EntryPatch>,
) -> ApiResult<Json<Entry>> {
    let e = state
        .registry
        .update_entry(&caller, &path.key(), patch)
        .await?;
    Ok(Json::ok(e))
}

pub async fn list_versions(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    Query(p): Query<VersionParams>,
    headers: HeaderMap,
) -> ApiResult<Etagged<Paged<Version>>> {
    let manifests = matches!(p.include, Some(VersionInclude::Manifest));
    let page = state
        .registry
        .list_versions(
            &caller,
            &path.key(),
            p.cursor.as_deref(),
            limit(p.limit),
            manifests,
        )
        .await?;
    let answer = Etagged::new(&headers, Paged::from(page));
    if manifests {
        return answer.encode_apart().await;
    }
    Ok(answer)
}

pub async fn get_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<VersionPath>,
    Query(NoParams {}): Query<NoParams>,
    headers: HeaderMap,
) -> ApiResult<Etagged<Version>> {
    let (key, version) = path.key();
    let v = state.registry.get_version(&caller, &key, &version).await?;
    Ok(Etagged::new(&headers, v))
}

/// Body of `POST .../versions/{version}/yank`.
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn yank(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<VersionPath>,
    OptionalJsonBody(body): OptionalJsonBody<YankRequest>,
) -> ApiResult<Json<Version>> {
    let (key, version) = path.key();
    let v = state
        .registry
        .yank(&caller, &key, &version, body.reason)
        .await?;
    Ok(Json::ok(v))
}

pub async fn unyank(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<VersionPath>,
) -> ApiResult<Json<Version>> {
    let (key, version) = path.key();
    Ok(Json::ok(
        state.registry.unyank(&caller, &key, &version).await?,
    ))
}

/// Body of `POST .../deprecate`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeprecateRequest {
    pub message: String,
    #[serde(default)]
    pub replacement: Option<String>,
}

pub async fn deprecate(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(d): JsonBody<DeprecateRequest>,
) -> ApiResult<Json<Entry>> {
    let e = state
        .registry
        .deprecate(&caller, &path.key(), d.message, d.replacement)
        .await?;
    Ok(Json::ok(e))
}

pub async fn change_status(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(c): JsonBody<quiver_engine::lifecycle::StatusChange>,
) -> ApiResult<Json<Entry>> {
    let e = state
        .registry
        .change_status(&caller, &path.key(), c)
        .await?;
    Ok(Json::ok(e))
}

pub async fn get_review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    Query(NoParams {}): Query<NoParams>,
) -> ApiResult<Json<Review>> {
    Ok(Json::ok(
        state.registry.get_review(&caller, &path.key()).await?,
    ))
}

pub async fn review(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(a): JsonBody<quiver_engine::review::ReviewAction>,
) -> ApiResult<Json<Review>> {
    Ok(Json::ok(
        state.registry.review(&caller, &path.key(), a).await?,
    ))
}

pub async fn list_relations(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    Query(p): Query<RelationParams>,
    headers: HeaderMap,
) -> ApiResult<Etagged<Vec<Relation>>> {
    let direction = match p.direction.unwrap_or(DirectionParam::Both) {
        DirectionParam::Outgoing => Direction::Outgoing,
        DirectionParam::Incoming => Direction::Incoming,
        DirectionParam::Both => Direction::Both,
    };
    let r = state
        .registry
        .list_relations(&caller, &path.key(), direction)
        .await?;
    Ok(Etagged::new(&headers, r))
}

/// Body of `POST .../relations`: an edge from this entry.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationRequest {
    pub kind: RelationKind,
    pub to: EntryKey,
    #[serde(default)]
    pub confidence: Option<f64>,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub step_order: Option<i32>,
}

pub async fn add_relation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(b): JsonBody<RelationRequest>,
) -> ApiResult<Created<Relation>> {
    let rel = Relation {
        kind: b.kind,
        from: path.key(),
        to: b.to,
        confidence: b.confidence,
        source: b.source,
        step_order: b.step_order,
    };
    Ok(Created::created(
        state.registry.add_relation(&caller, rel).await?,
    ))
}

// ---- search, kinds, status -----------------------------------------------------------

pub async fn search(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<SearchParams>,
) -> ApiResult<Json<SearchResponse>> {
    let q = p.q.unwrap_or_default();
    if q.len() > 256 {
        return Err(Error::invalid("q", "must be at most 256 bytes").into());
    }
    let sort = match p.sort.unwrap_or(SortParam::Relevance) {
        SortParam::Relevance => Sort::Relevance,
        SortParam::Popularity => Sort::Popularity,
        SortParam::Recent => Sort::Recent,
        SortParam::Name => Sort::Name,
    };
    let query = SearchQuery {
        q,
        kinds: values(p.kind),
        namespaces: values(p.namespace),
        categories: values(p.category),
        tags: values(p.tag),
        platforms: values(p.platform)
            .into_iter()
            .map(|p| p.trim().to_lowercase())
            .collect(),
        statuses: values(p.status),
        sort,
        limit: limit(p.limit),
        cursor: p.cursor,
        facets: p.facets.is_some_and(|f| f.0),
        highlight: p.highlight.is_some_and(|f| f.0),
        private_namespaces: vec![],
        all_private: false,
        include_disabled: p.include_disabled.is_some_and(|f| f.0),
    };
    let started = Instant::now();
    let results = state.registry.search(&caller, query)?;
    let took_us = started.elapsed().as_micros() as u64;
    Ok(Json::ok(SearchResponse { results, took_us }))
}

pub async fn kinds(headers: HeaderMap) -> Etagged<Vec<KindInfo>> {
    let all: Vec<KindInfo> = Kind::ALL
        .iter()
        .map(|k| KindInfo {
            kind: *k,
            schema: Registry::kind_schema(*k).clone(),
        })
        .collect();
    Etagged::new(&headers, all)
}

pub async fn kind_schema(
    PathParams(p): PathParams<KindPath>,
    headers: HeaderMap,
) -> Etagged<&'static serde_json::Value> {
    Etagged::new(&headers, Registry::kind_schema(p.kind.0))
}

pub async fn status(
    State(state): State<AppState>,
) -> ApiResult<Json<Described<quiver_engine::EngineStatus>>> {
    Ok(Json::ok(Described(state.registry.status().await?)))
}

pub async fn healthz() -> Json<Health> {
    Json::ok(Health { status: "ok" })
}

pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Health>> {
    state.registry.ready().await?;
    Ok(Json::ok(Health { status: "ready" }))
}

/// The OpenAPI document (this one).
pub async fn openapi(headers: HeaderMap) -> Etagged<&'static serde_json::Value> {
    Etagged::new(&headers, crate::openapi::document())
}

pub async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

// ---- jobs ----------------------------------------------------------------------------

pub async fn list_jobs(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<JobParams>,
) -> ApiResult<Json<Described<Paged<quiver_store::Job>>>> {
    let filter = quiver_store::JobFilter {
        states: values(p.state),
        kinds: values(p.kind),
    };
    let page = state
        .registry
        .list_jobs(&caller, filter, p.cursor.as_deref(), limit(p.limit))
        .await?;
    Ok(Json::ok(Described(page.into())))
}

pub(crate) fn job_id(id: &str) -> ApiResult<quiver_store::JobId> {
    id.parse()
        .map_err(|_| Error::invalid("id", format!("'{id}' is not a job id")).into())
}

pub async fn get_job(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<IdPath>,
) -> ApiResult<Json<Described<quiver_store::Job>>> {
    let job = state.registry.get_job(&caller, job_id(&p.id)?).await?;
    Ok(Json::ok(Described(job)))
}

pub async fn retry_job(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<IdPath>,
) -> ApiResult<Json<Described<quiver_store::Job>>> {
    let job = state.registry.retry_job(&caller, job_id(&p.id)?).await?;
    Ok(Json::ok(Described(job)))
}

/// Queue a rebuild of this node's search index; answers 202 with the job to poll.
pub async fn rebuild_index(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Accepted<Described<quiver_store::Job>>> {
    let job = state.registry.request_index_rebuild(&caller).await?;
    let loc = format!("/api/v1/jobs/{}", job.id);
    Ok(Accepted::at(loc, Described(job)))
}

// ---- accounts ------------------------------------------------------------------------

/// Register a user (and their user namespace).
pub async fn register(
    State(state): State<AppState>,
    JsonBody(r): JsonBody<Registration>,
) -> ApiResult<Created<User>> {
    Ok(Created::created(state.registry.register(r).await?))
}

/// The signed-in user and their memberships.
pub async fn whoami(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Registered>> {
    Ok(Json::ok(state.registry.whoami(&caller).await?))
}

/// Body of `PUT /api/v1/users/{user}/role`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteRoleRequest {
    /// `admin`, `moderator`, or null for none.
    pub site_role: Option<SiteRole>,
}

pub async fn set_site_role(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<UserPath>,
    JsonBody(b): JsonBody<SiteRoleRequest>,
) -> ApiResult<Json<User>> {
    let user = state
        .registry
        .set_site_role(&caller, &p.user, b.site_role)
        .await?;
    Ok(Json::ok(user))
}

/// `PUT /users/{user}/trust`: a publisher's trust level (moderators and admins).
pub async fn set_trust(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<UserPath>,
    JsonBody(b): JsonBody<quiver_engine::review::TrustRequest>,
) -> ApiResult<Json<Trust>> {
    Ok(Json::ok(
        state.registry.set_trust(&caller, &p.user, b.level).await?,
    ))
}

/// `GET /reviews?state=pending`: the moderation queue (moderators and admins).
pub async fn list_reviews(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ReviewParams>,
) -> ApiResult<Json<ReviewPage>> {
    let st = p.state.map(|s| match s {
        ReviewStateParam::Pending => ReviewState::Pending,
        ReviewStateParam::Approved => ReviewState::Approved,
        ReviewStateParam::Rejected => ReviewState::Rejected,
        ReviewStateParam::ChangesRequested => ReviewState::ChangesRequested,
    });
    Ok(Json::ok(state.registry.list_reviews(&caller, st).await?))
}

/// Report tool executions (`quiver_engine::telemetry`).
pub async fn record_telemetry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<quiver_engine::telemetry::TelemetryBatch>,
) -> ApiResult<Json<quiver_store::IngestOutcome>> {
    Ok(Json::ok(state.registry.record_telemetry(&caller, b).await?))
}

/// Turn a drift recommendation into a new version of the tool.
pub async fn apply_recommendation(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<quiver_engine::telemetry::ApplyRecommendation>,
) -> ApiResult<Created<quiver_engine::telemetry::AppliedRecommendation>> {
    Ok(Created::created(
        state.registry.apply_recommendation(&caller, b).await?,
    ))
}

/// A pattern of a tool.
#[derive(Deserialize, JsonSchema)]
pub struct PatternPath {
    /// The tool's namespace.
    pub namespace: String,
    /// The tool's name.
    pub name: String,
    pub capability: String,
    pub pattern: String,
}

/// A window of time.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// From this RFC 3339 time (default: a day before `until`), by the hour.
    since: Option<Time>,
    /// Until this RFC 3339 time (default: now).
    until: Option<Time>,
    /// Drift only: the fewest executions with an estimate that count (default 30).
    min_count: Option<Param<u64>>,
}

/// One pattern's telemetry over a window.
pub async fn pattern_report(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<PatternPath>,
    Query(w): Query<WindowParams>,
) -> ApiResult<Json<quiver_engine::telemetry::PatternReport>> {
    let tool = EntryKey::new(Kind::Tool, &p.namespace, &p.name);
    Ok(Json::ok(
        state
            .registry
            .pattern_report(
                &caller,
                &tool,
                &p.capability,
                &p.pattern,
                w.since.map(|t| t.0),
                w.until.map(|t| t.0),
            )
            .await?,
    ))
}

/// Patterns whose estimates drift from what happens.
pub async fn drift(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(w): Query<WindowParams>,
) -> ApiResult<Json<Vec<quiver_engine::telemetry::Drift>>> {
    Ok(Json::ok(
        state
            .registry
            .drift(
                &caller,
                w.since.map(|t| t.0),
                w.until.map(|t| t.0),
                w.min_count.map_or(30, |m| m.0),
            )
            .await?,
    ))
}

/// A capability, by name.
#[derive(Deserialize, JsonSchema)]
pub struct CapabilityPath {
    /// The capability (`packet_capture`).
    pub name: String,
}

/// The capabilities of the tools the caller may see.
pub async fn capabilities(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<quiver_engine::select::CapabilitySummary>>> {
    Ok(Json::ok(state.registry.capabilities(&caller).await?))
}

/// One capability with its tools and patterns.
pub async fn capability(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<CapabilityPath>,
) -> ApiResult<Json<quiver_engine::select::CapabilityDetail>> {
    Ok(Json::ok(state.registry.capability(&caller, &p.name).await?))
}

/// Which A/B tests to list.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExperimentParams {
    /// Tests of this tool (`namespace/name`).
    tool: Option<String>,
    capability: Option<String>,
    /// draft, active, completed or cancelled
    status: Option<Param<quiver_store::ExperimentStatus>>,
}

/// The A/B tests of the tools the caller may read.
pub async fn list_experiments(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ExperimentParams>,
) -> ApiResult<Json<Vec<quiver_store::Experiment>>> {
    let tool = match p.tool {
        Some(t) => {
            let k = quiver_engine::telemetry::tool_key("tool", &t)?;
            Some((k.namespace, k.name))
        }
        None => None,
    };
    let filter = quiver_store::ExperimentFilter {
        tool,
        capability: p.capability,
        status: p.status.map(|s| s.0),
    };
    Ok(Json::ok(state.registry.experiments(&caller, filter).await?))
}

/// Create an A/B test.
pub async fn create_experiment(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<quiver_engine::experiments::NewExperiment>,
) -> ApiResult<Created<quiver_store::Experiment>> {
    Ok(Created::created(
        state.registry.create_experiment(&caller, b).await?,
    ))
}

/// An A/B test, by name.
#[derive(Deserialize, JsonSchema)]
pub struct ExperimentPath {
    pub name: String,
}

/// A test with its arms' figures and significance tests.
pub async fn experiment_results(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<ExperimentPath>,
) -> ApiResult<Json<quiver_engine::experiments::ExperimentResults>> {
    Ok(Json::ok(
        state.registry.experiment_results(&caller, &p.name).await?,
    ))
}

/// Body of `POST /api/v1/experiments/{name}/complete` (optional).
#[derive(Debug, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The winning arm; when absent, the winner the results declare (if any).
    #[serde(default)]
    pub winner: Option<String>,
}

pub async fn start_experiment(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<ExperimentPath>,
) -> ApiResult<Json<quiver_store::Experiment>> {
    use quiver_engine::experiments::ExperimentAction;
    Ok(Json::ok(
        state
            .registry
            .change_experiment(&caller, &p.name, ExperimentAction::Start)
            .await?,
    ))
}

pub async fn complete_experiment(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<ExperimentPath>,
    OptionalJsonBody(b): OptionalJsonBody<CompleteRequest>,
) -> ApiResult<Json<quiver_store::Experiment>> {
    use quiver_engine::experiments::ExperimentAction;
    let action = ExperimentAction::Complete { winner: b.winner };
    Ok(Json::ok(
        state
            .registry
            .change_experiment(&caller, &p.name, action)
            .await?,
    ))
}

pub async fn cancel_experiment(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<ExperimentPath>,
) -> ApiResult<Json<quiver_store::Experiment>> {
    use quiver_engine::experiments::ExperimentAction;
    Ok(Json::ok(
        state
            .registry
            .change_experiment(&caller, &p.name, ExperimentAction::Cancel)
            .await?,
    ))
}

/// Tool selection (`quiver_engine::select`).
pub async fn select(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(r): JsonBody<quiver_engine::select::SelectRequest>,
) -> ApiResult<Json<quiver_engine::select::Selection>> {
    Ok(Json::ok(state.registry.select(&caller, r).await?))
}

/// Password login: answers a session token (shown once).
pub async fn login(
    State(state): State<AppState>,
    JsonBody(l): JsonBody<Login>,
) -> ApiResult<Created<NewTokenSecret>> {
    Ok(Created::created(state.registry.login(l).await?))
}

pub async fn list_tokens(
    State(state): State<AppState>,
    Auth(caller): Auth,
) -> ApiResult<Json<Vec<ApiToken>>> {
    Ok(Json::ok(state.registry.list_tokens(&caller).await?))
}

pub async fn create_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(r): JsonBody<TokenRequest>,
) -> ApiResult<Created<NewTokenSecret>> {
    Ok(Created::created(
        state.registry.create_token(&caller, r).await?,
    ))
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<IdPath>,
) -> ApiResult<Json<ApiToken>> {
    let id: i64 =
        p.id.parse()
            .map_err(|_| Error::invalid("id", format!("'{}' is not a token id", p.id)))?;
    Ok(Json::ok(state.registry.revoke_token(&caller, id).await?))
}

/// Body of `POST /api/v1/namespaces`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceRequest {
    /// Lowercase letters, digits, `-` and `_`.
    pub name: String,
}

pub async fn create_namespace(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(b): JsonBody<NamespaceRequest>,
) -> ApiResult<Created<Namespace>> {
    let ns = state.registry.create_namespace(&caller, &b.name).await?;
    let loc = format!("/api/v1/namespaces/{}/members", ns.name);
    Ok(Created::at(loc, ns))
}

pub async fn list_members(
    State(state): State<AppState>,
    PathParams(p): PathParams<NamespacePath>,
) -> ApiResult<Json<Vec<Membership>>> {
    Ok(Json::ok(state.registry.members(&p.namespace).await?))
}

/// Body of `PUT /api/v1/namespaces/{namespace}/members/{user}`.
#[derive(Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRequest {
    /// `owner`, `maintainer` or `viewer`.
    pub role: NamespaceRole,
}

pub async fn set_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<MemberPath>,
    JsonBody(b): JsonBody<MemberRequest>,
) -> ApiResult<Json<Membership>> {
    let m = state
        .registry
        .set_member(&caller, &p.namespace, &p.user, b.role)
        .await?;
    Ok(Json::ok(m))
}

pub async fn remove_member(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<MemberPath>,
) -> ApiResult<NoContent> {
    state
        .registry
        .remove_member(&caller, &p.namespace, &p.user)
        .await?;
    Ok(NoContent)
}

// ---- audit ---------------------------------------------------------------------------

#[allow(clippy::too_many_arguments)] // one per query parameter
fn audit_filter(
    namespace: Option<String>,
    target: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    outcome: Option<String>,
    since: Option<Time>,
    until: Option<Time>,
) -> quiver_store::AuditFilter {
    quiver_store::AuditFilter {
        namespace,
        target,
        actor,
        action,
        outcome,
        since: since.map(|t| t.0),
        until: until.map(|t| t.0),
    }
}

/// The audit log: admins read all of it, a namespace's owners read theirs.
pub async fn list_audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<AuditPageParams>,
) -> ApiResult<Json<Paged<AuditRecord>>> {
    let filter = audit_filter(
        p.namespace,
        p.target,
        p.actor,
        p.action,
        p.outcome,
        p.since,
        p.until,
    );
    let page = state
        .registry
        .list_audit(&caller, filter, p.cursor.as_deref(), limit(p.limit))
        .await?;
    Ok(Json::ok(page.into()))
}

/// The whole audit log (the same filters and rights as the listing), newest first, as
/// JSON lines, streamed: one row per line, read from the store a page at a time.
pub async fn export_audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<AuditFilterParams>,
) -> ApiResult<NdJson<AuditRecord>> {
    let filter = audit_filter(
        p.namespace,
        p.target,
        p.actor,
        p.action,
        p.outcome,
        p.since,
        p.until,
    );
    let export = state.registry.export_audit(&caller, filter)?;
    let lines = futures_util::stream::unfold(Some(export), |export| async move {
        let mut export = export?;
        match export.next_page().await {
            Ok(Some(rows)) => {
                let mut buf = Vec::with_capacity(rows.len() * 256);
                for r in &rows {
                    // A row is plain data: serializing it cannot fail.
                    serde_json::to_writer(&mut buf, r).unwrap_or_default();
                    buf.push(b'\n');
                }
                Some((Ok(axum::body::Bytes::from(buf)), Some(export)))
            }
            Ok(None) => None,
            // A failure mid-stream can no longer change the status: the body ends early
            // (the client sees a truncated transfer) and the error is logged.
            Err(e) => {
                tracing::error!(error = %e, "audit export failed");
                Some((Err(std::io::Error::other(e.to_string())), None))
            }
        }
    });
    Ok(NdJson::new(axum::body::Body::from_stream(lines)))
}

/// `405` in the envelope, for a path served with other methods.
pub async fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed()
}
