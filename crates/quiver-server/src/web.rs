//! The website: server-rendered HTML over the same engine calls as the JSON API (no
//! second path to the data, the same authorization: a private entry's page is the same
//! 404 as a missing one). Templates are minijinja's, escaping by default
//! (`templates/web/`); one stylesheet (`static/quiver.css`, light and dark) served from the
//! binary; no script at all, so every page works without JavaScript and the
//! Content-Security-Policy allows none.
//!
//! Pages: home (`/`), search (`/search?q=…&kind=…`, facets as links, "did you mean",
//! pages by cursor), an entry's page per kind (`/{kind}/{namespace}/{name}`, npm scopes
//! as two segments), a namespace's page (`/namespaces/{namespace}`) and the API
//! reference (`/api`). Every page carries an `ETag` of its bytes and answers
//! `If-None-Match` with 304.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use percent_encoding::{utf8_percent_encode, AsciiSet};
use quiver_engine::Caller;
use quiver_model::{Entry, EntryKey, Error, ErrorCode, Kind, Relation, RelationKind, Version};
use quiver_search::{Hit, SearchQuery, SearchResults, Sort};
use quiver_store::Direction;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::reply::{Headed, Page, Stylesheet};
use crate::session::Visitor;
use crate::AppState;

/// Results per search page.
const PAGE: usize = 20;
/// Versions shown on an entry's page (the API pages through the rest).
const VERSIONS: usize = 20;

// ---- rendering ------------------------------------------------------------------------

pub(crate) fn templates() -> &'static minijinja::Environment<'static> {
    static ENV: std::sync::OnceLock<minijinja::Environment<'static>> = std::sync::OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = minijinja::Environment::new();
        // Percent-encoding for a path segment or a query value (the template still
        // HTML-escapes the result).
        env.add_filter("urlencode", |s: String| {
            utf8_percent_encode(&s, QUERY).to_string()
        });
        for (name, source) in [
            ("base.html", include_str!("../templates/web/base.html")),
            ("hit.html", include_str!("../templates/web/hit.html")),
            ("drift.html", include_str!("../templates/web/drift.html")),
            (
                "pattern.html",
                include_str!("../templates/web/pattern.html"),
            ),
            (
                "experiments.html",
                include_str!("../templates/web/experiments.html"),
            ),
            (
                "experiment.html",
                include_str!("../templates/web/experiment.html"),
            ),
            (
                "pipeline.html",
                include_str!("../templates/web/pipeline.html"),
            ),
            (
                "pipeline_item.html",
                include_str!("../templates/web/pipeline_item.html"),
            ),
            (
                "suggest.html",
                include_str!("../templates/web/suggest.html"),
            ),
            (
                "advisories.html",
                include_str!("../templates/web/advisories.html"),
            ),
            (
                "advisory.html",
                include_str!("../templates/web/advisory.html"),
            ),
            ("home.html", include_str!("../templates/web/home.html")),
            ("search.html", include_str!("../templates/web/search.html")),
            ("entry.html", include_str!("../templates/web/entry.html")),
            (
                "namespace.html",
                include_str!("../templates/web/namespace.html"),
            ),
            ("api.html", include_str!("../templates/web/api.html")),
            (
                "mcp_setup.html",
                include_str!("../templates/web/mcp_setup.html"),
            ),
            ("error.html", include_str!("../templates/web/error.html")),
            ("signin.html", include_str!("../templates/web/signin.html")),
            (
                "dashboard.html",
                include_str!("../templates/web/dashboard.html"),
            ),
            ("tokens.html", include_str!("../templates/web/tokens.html")),
            (
                "webhooks.html",
                include_str!("../templates/web/webhooks.html"),
            ),
            (
                "webhook.html",
                include_str!("../templates/web/webhook.html"),
            ),
            (
                "publish.html",
                include_str!("../templates/web/publish.html"),
            ),
            (
                "reviews.html",
                include_str!("../templates/web/reviews.html"),
            ),
            ("audit.html", include_str!("../templates/web/audit.html")),
            ("jobs.html", include_str!("../templates/web/jobs.html")),
            ("users.html", include_str!("../templates/web/users.html")),
            ("device.html", include_str!("../templates/web/device.html")),
            (
                "capabilities.html",
                include_str!("../templates/web/capabilities.html"),
            ),
            ("select.html", include_str!("../templates/web/select.html")),
        ] {
            env.add_template(name, source)
                .expect("the site's templates parse");
        }
        env
    })
}

/// The headers every page carries: no script, no framing, no referrer to other sites.
pub(crate) fn page_headers() -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (
            HeaderName::from_static("content-security-policy"),
            HeaderValue::from_static(
                "default-src 'none'; style-src 'self'; img-src 'self' data:; \
                 form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
            ),
        ),
        (
            HeaderName::from_static("x-frame-options"),
            HeaderValue::from_static("DENY"),
        ),
        (
            HeaderName::from_static("referrer-policy"),
            HeaderValue::from_static("same-origin"),
        ),
        // The page may depend on the caller's token: caches keep it per client, and
        // revalidate it by its ETag.
        (CACHE_CONTROL, HeaderValue::from_static("private, no-cache")),
    ]
}

/// A strong ETag of a page's bytes.
fn etag_of(bytes: &[u8]) -> String {
    format!("\"{}\"", &hex::encode(Sha256::digest(bytes))[..32])
}

/// Render `template` with `view` (and the visitor's name for the header); 304 when the
/// client holds these bytes already.
pub(crate) fn render<T: Serialize>(
    visitor: &Visitor,
    status: StatusCode,
    template: &str,
    view: &T,
) -> Headed<Page> {
    let rendered = templates().get_template(template).and_then(|t| {
        t.render(minijinja::context! {
            me => visitor.name(),
            ..minijinja::Value::from_serialize(view)
        })
    });
    let (status, html) = match rendered {
        Ok(html) => (status, html),
        Err(e) => {
            tracing::error!(error = %e, template, "rendering a page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has the details".to_string(),
            )
        }
    };
    let mut out = page_headers();
    if status == StatusCode::OK {
        let etag = etag_of(html.as_bytes());
        let fresh = visitor
            .if_none_match
            .as_deref()
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        if let Ok(v) = HeaderValue::from_str(&etag) {
            out.push((ETAG, v));
        }
        if fresh {
            return Headed {
                headers: out,
                inner: Page {
                    status: StatusCode::NOT_MODIFIED,
                    html: String::new(),
                },
            };
        }
    }
    Headed {
        headers: out,
        inner: Page { status, html },
    }
}

#[derive(Serialize)]
struct ErrorView<'a> {
    title: &'a str,
    message: String,
}

/// The page of an engine error: its status, and its message (never an internal one).
pub(crate) fn error_page(visitor: &Visitor, e: Error) -> Headed<Page> {
    let status = crate::error::status_of(e.code);
    let (title, message) = match e.code {
        ErrorCode::NotFound => ("Not found", e.message),
        ErrorCode::InvalidInput => ("That did not work", e.message),
        ErrorCode::Internal => {
            tracing::error!(error = %e.message, "internal error");
            (
                "Something went wrong",
                "internal error; the server log has the details".to_string(),
            )
        }
        _ => ("That did not work", e.message),
    };
    let mut page = render(visitor, status, "error.html", &ErrorView { title, message });
    if let Some(secs) = e.retry_after {
        page.headers.push((RETRY_AFTER, HeaderValue::from(secs)));
    }
    page
}

// ---- links ----------------------------------------------------------------------------

/// What one path segment must escape: the API's set, and `/` too (an npm scope is its
/// own segment here).
pub(crate) const SEGMENT: &AsciiSet = &crate::routes::PATH_SEGMENT.add(b'/');

/// What a query value must escape.
pub(crate) const QUERY: &AsciiSet = &SEGMENT.add(b'&').add(b'+').add(b'=').add(b';');

/// An entry page's address: `/{kind}/{namespace}/{name}`, an npm scope as its own
/// segment (`/package/npm/@types/node`).
pub(crate) fn entry_href(kind: Kind, namespace: &str, name: &str) -> String {
    let name: Vec<String> = name
        .split('/')
        .map(|s| utf8_percent_encode(s, SEGMENT).to_string())
        .collect();
    format!(
        "/{kind}/{}/{}",
        utf8_percent_encode(namespace, SEGMENT),
        name.join("/")
    )
}

/// A search address with these parameters (empty values left out).
fn search_href(params: &[(&str, &str)]) -> String {
    let q: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", utf8_percent_encode(v, QUERY)))
        .collect();
    if q.is_empty() {
        "/search".into()
    } else {
        format!("/search?{}", q.join("&"))
    }
}

// ---- hits -----------------------------------------------------------------------------

#[derive(Serialize)]
struct HitView {
    kind: Kind,
    namespace: String,
    name: String,
    href: String,
    latest_version: Option<String>,
    status: String,
    description: String,
    /// HTML made by the index: the description escaped, with `<mark>` around matches.
    highlight: Option<String>,
    /// Why it matched (`exact name`, `matches capability packet_capture`).
    reason: Option<String>,
}

impl From<Hit> for HitView {
    fn from(h: Hit) -> Self {
        HitView {
            href: entry_href(h.kind, &h.namespace, &h.name),
            kind: h.kind,
            namespace: h.namespace,
            name: h.name,
            latest_version: h.latest_version,
            status: h.status.as_str().to_string(),
            description: h.description,
            highlight: h.highlight,
            reason: h.reason,
        }
    }
}

// ---- home -----------------------------------------------------------------------------

#[derive(Serialize)]
struct KindCount {
    value: &'static str,
    label: String,
    count: u64,
}

#[derive(Serialize)]
struct HomeView {
    kinds: Vec<KindCount>,
    recent: Vec<HitView>,
    popular: Vec<HitView>,
    downloaded: Vec<DownloadedView>,
}

/// An entry among the most downloaded here.
#[derive(Serialize)]
struct DownloadedView {
    kind: Kind,
    namespace: String,
    name: String,
    href: String,
    count: u64,
}

fn kind_label(kind: &str, n: u64) -> String {
    match n {
        1 => kind.to_string(),
        _ => format!("{kind}s"),
    }
}

/// `GET /`: a search box, counts per kind, recently published, most used.
pub async fn home(State(state): State<AppState>, v: Visitor) -> Headed<Page> {
    let r = &state.registry;
    let listing = |sort: Sort, facets: bool| SearchQuery {
        sort,
        facets,
        limit: 8,
        ..SearchQuery::default()
    };
    let (all, popular) = match (
        r.search(&v.caller, listing(Sort::Recent, true)),
        r.search(&v.caller, listing(Sort::Popularity, false)),
    ) {
        (Ok(a), Ok(p)) => (a, p),
        (Err(e), _) | (_, Err(e)) => return error_page(&v, e),
    };
    let counts: BTreeMap<String, u64> = all
        .facets
        .as_ref()
        .map(|f| f.kind.iter().map(|c| (c.value.clone(), c.count)).collect())
        .unwrap_or_default();
    let kinds = Kind::ALL
        .iter()
        .map(|k| {
            let count = counts.get(k.as_str()).copied().unwrap_or(0);
            KindCount {
                value: k.as_str(),
                label: kind_label(k.as_str(), count),
                count,
            }
        })
        .collect();
    let downloaded = match r.most_downloaded(&v.caller, 8).await {
        Ok(d) => d
            .into_iter()
            .map(|c| DownloadedView {
                href: entry_href(c.entry.kind, &c.entry.namespace, &c.entry.name),
                kind: c.entry.kind,
                namespace: c.entry.namespace,
                name: c.entry.name,
                count: c.in_window,
            })
            .collect(),
        Err(e) => return error_page(&v, e),
    };
    let view = HomeView {
        downloaded,
        kinds,
        recent: all.hits.into_iter().map(HitView::from).collect(),
        popular: popular.hits.into_iter().map(HitView::from).collect(),
    };
    render(&v, StatusCode::OK, "home.html", &view)
}

// ---- search ---------------------------------------------------------------------------

/// The search page's parameters; unknown ones are ignored (links from elsewhere carry
/// their own).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SearchPageParams {
    /// Free text.
    #[serde(default)]
    q: String,
    /// Only this kind.
    kind: Option<String>,
    /// Only this namespace.
    namespace: Option<String>,
    /// Only this category.
    category: Option<String>,
    /// Only entries with this tag.
    tag: Option<String>,
    /// Only tools and recipes for this platform (`linux`, `darwin`).
    platform: Option<String>,
    /// `relevance` (default), `popularity`, `recent` or `name`.
    sort: Option<String>,
    /// The next page's cursor.
    cursor: Option<String>,
}

#[derive(Serialize)]
struct FacetValue {
    value: String,
    count: u64,
    href: String,
    selected: bool,
}

#[derive(Serialize)]
struct FacetGroup {
    label: &'static str,
    values: Vec<FacetValue>,
}

#[derive(Serialize)]
struct SearchView {
    q: String,
    total: u64,
    hits: Vec<HitView>,
    facets: Vec<FacetGroup>,
    filters: bool,
    clear_href: String,
    suggestion: Option<String>,
    suggestion_href: Option<String>,
    next_href: Option<String>,
    first_href: Option<String>,
}

fn one<T>(v: Option<T>) -> Vec<T> {
    v.into_iter().collect()
}

/// `GET /search`: results with kind badges, highlights, facets as links, "did you
/// mean", and pages; the address is the whole state, so it can be shared.
pub async fn search(
    State(state): State<AppState>,
    v: Visitor,
    Query(p): Query<SearchPageParams>,
) -> Headed<Page> {
    let kinds = match p.kind.as_deref().filter(|k| !k.is_empty()) {
        Some(k) => match k.parse::<Kind>() {
            Ok(k) => vec![k],
            Err(e) => return error_page(&v, e),
        },
        None => vec![],
    };
    let sort = match p.sort.as_deref().unwrap_or("relevance") {
        "relevance" | "" => Sort::Relevance,
        "popularity" => Sort::Popularity,
        "recent" => Sort::Recent,
        "name" => Sort::Name,
        other => {
            return error_page(
                &v,
                Error::invalid(
                    "sort",
                    format!("'{other}' is not one of relevance, popularity, recent, name"),
                ),
            )
        }
    };
    let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let query = SearchQuery {
        q: p.q.clone(),
        kinds,
        namespaces: one(nonempty(&p.namespace)),
        categories: one(nonempty(&p.category)),
        tags: one(nonempty(&p.tag)),
        platforms: one(nonempty(&p.platform).map(|s| s.trim().to_lowercase())),
        sort,
        limit: PAGE,
        cursor: nonempty(&p.cursor),
        facets: true,
        highlight: true,
        ..SearchQuery::default()
    };
    let results = match state.registry.search(&v.caller, query) {
        Ok(r) => r,
        Err(e) => return error_page(&v, e),
    };
    render(&v, StatusCode::OK, "search.html", &search_view(&p, results))
}

fn search_view(p: &SearchPageParams, r: SearchResults) -> SearchView {
    let get = |v: &Option<String>| v.clone().unwrap_or_default();
    let (kind, namespace, category, tag, platform, sort) = (
        get(&p.kind),
        get(&p.namespace),
        get(&p.category),
        get(&p.tag),
        get(&p.platform),
        get(&p.sort),
    );
    let base = [
        ("q", p.q.as_str()),
        ("kind", kind.as_str()),
        ("namespace", namespace.as_str()),
        ("category", category.as_str()),
        ("tag", tag.as_str()),
        ("platform", platform.as_str()),
        ("sort", sort.as_str()),
    ];
    // A facet value's link toggles its filter and keeps the others (and starts over at
    // the first page).
    let toggle = |param: &str, value: &str, current: &str| {
        let next = if value == current { "" } else { value };
        let params: Vec<(&str, &str)> = base
            .iter()
            .map(|&(k, v)| if k == param { (k, next) } else { (k, v) })
            .collect();
        search_href(&params)
    };
    let mut facets = vec![];
    if let Some(f) = &r.facets {
        for (label, param, values, current) in [
            ("Kind", "kind", &f.kind, &kind),
            ("Namespace", "namespace", &f.namespace, &namespace),
            ("Category", "category", &f.category, &category),
            ("Tag", "tag", &f.tags, &tag),
            ("Platform", "platform", &f.platform, &platform),
        ] {
            let values: Vec<FacetValue> = values
                .iter()
                .take(12)
                .map(|c| FacetValue {
                    href: toggle(param, &c.value, current),
                    selected: c.value == *current,
                    value: c.value.clone(),
                    count: c.count,
                })
                .collect();
            if !values.is_empty() {
                facets.push(FacetGroup { label, values });
            }
        }
    }
    let next_href = r.next_cursor.as_ref().map(|c| {
        let mut params = base.to_vec();
        params.push(("cursor", c));
        search_href(&params)
    });
    let suggestion_href = r.suggestion.as_ref().map(|s| {
        let params: Vec<(&str, &str)> = base
            .iter()
            .map(|&(k, v)| if k == "q" { (k, s.as_str()) } else { (k, v) })
            .collect();
        search_href(&params)
    });
    SearchView {
        q: p.q.clone(),
        total: r.total,
        hits: r.hits.into_iter().map(HitView::from).collect(),
        facets,
        filters: [&kind, &namespace, &category, &tag, &platform]
            .iter()
            .any(|v| !v.is_empty()),
        clear_href: search_href(&[("q", p.q.as_str())]),
        suggestion: r.suggestion,
        suggestion_href,
        next_href,
        first_href: p
            .cursor
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|_| search_href(&base)),
    }
}

// ---- namespaces -----------------------------------------------------------------------

#[derive(Debug, Deserialize, JsonSchema)]
pub struct NamespacePath {
    /// The namespace (a user or an organisation).
    namespace: String,
}

#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct CursorParams {
    /// The next page's cursor.
    cursor: Option<String>,
}

#[derive(Serialize)]
struct NamespaceView {
    namespace: String,
    owner_kind: Option<String>,
    total: u64,
    hits: Vec<HitView>,
    next_href: Option<String>,
}

/// `GET /namespaces/{namespace}`: its entries the caller may see, most used first.
pub async fn namespace(
    State(state): State<AppState>,
    v: Visitor,
    Path(NamespacePath { namespace }): Path<NamespacePath>,
    Query(p): Query<CursorParams>,
) -> Headed<Page> {
    let owner = match state.registry.store().get_namespace(&namespace).await {
        Ok(Some(ns)) => ns,
        Ok(None) => return error_page(&v, Error::not_found(format!("namespace {namespace}"))),
        Err(e) => return error_page(&v, e),
    };
    let query = SearchQuery {
        namespaces: vec![namespace.clone()],
        sort: Sort::Popularity,
        limit: PAGE,
        cursor: p.cursor.filter(|c| !c.is_empty()),
        ..SearchQuery::default()
    };
    let r = match state.registry.search(&v.caller, query) {
        Ok(r) => r,
        Err(e) => return error_page(&v, e),
    };
    let base = format!("/namespaces/{}", utf8_percent_encode(&namespace, SEGMENT));
    let view = NamespaceView {
        owner_kind: Some(owner.owner_kind.as_str().to_string()),
        total: r.total,
        next_href: r
            .next_cursor
            .map(|c| format!("{base}?cursor={}", utf8_percent_encode(&c, QUERY))),
        hits: r.hits.into_iter().map(HitView::from).collect(),
        namespace,
    };
    render(&v, StatusCode::OK, "namespace.html", &view)
}

// ---- entries --------------------------------------------------------------------------

/// An entry page's path: the namespace, and the name (an npm scope and its name are two
/// segments).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EntryPagePath {
    /// The entry's namespace.
    namespace: String,
    /// The entry's name (`@scope/name` for a scoped npm package).
    name: String,
}

#[derive(Serialize)]
struct Usage {
    label: &'static str,
    code: String,
}

#[derive(Serialize)]
struct SchemaRow {
    name: String,
    r#type: String,
    required: bool,
    description: String,
}

#[derive(Serialize)]
struct SchemaTable {
    title: &'static str,
    rows: Vec<SchemaRow>,
}

#[derive(Serialize)]
struct PatternView {
    name: String,
    time: String,
    cost: String,
    inputs: String,
    description: String,
}

#[derive(Serialize)]
struct CapabilityView {
    name: String,
    description: String,
    patterns: Vec<PatternView>,
}

#[derive(Serialize)]
struct PlatformView {
    name: String,
    ok: bool,
}

#[derive(Serialize)]
struct GateView {
    gate: String,
    level: String,
    passed: bool,
    findings: String,
}

#[derive(Serialize)]
struct GatesView {
    version: String,
    passed: bool,
    items: Vec<GateView>,
}

#[derive(Serialize)]
struct VersionView {
    version: String,
    published: String,
    yanked: bool,
    reason: Option<String>,
    /// Why its maintainers disabled it, while they have.
    disabled: Option<String>,
    changelog: Option<String>,
    breaking: bool,
    /// The ids of the advisories that affect it.
    advisories: Vec<String>,
}

/// An advisory of the entry, for its banner and list.
#[derive(Serialize)]
struct AdvisoryBanner {
    id: String,
    href: String,
    severity: String,
    summary: String,
    range: String,
    fixed: Vec<String>,
    /// It affects the latest version.
    current: bool,
}

#[derive(Serialize)]
struct RelationView {
    label: &'static str,
    kind: Kind,
    namespace: String,
    name: String,
    href: String,
    note: Option<String>,
}

#[derive(Serialize)]
struct EntryView {
    e: Entry,
    held_back: bool,
    usage: Vec<Usage>,
    schemas: Vec<SchemaTable>,
    capabilities: Vec<CapabilityView>,
    platforms: Vec<PlatformView>,
    steps: Vec<String>,
    gates: Option<GatesView>,
    versions: Vec<VersionView>,
    more_versions: bool,
    outgoing: Vec<RelationView>,
    incoming: Vec<RelationView>,
    advisories: Vec<AdvisoryBanner>,
    downloads: Option<DownloadChart>,
}

/// One day's bar of a downloads chart (coordinates in the SVG's own units).
#[derive(Serialize)]
struct DayBar {
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    date: String,
    count: u64,
}

/// An entry's downloads over the last 30 days, as bars drawn on the server.
#[derive(Serialize)]
struct DownloadChart {
    total: u64,
    last_7: u64,
    last_30: u64,
    peak: u64,
    width: u32,
    height: u32,
    /// The baseline's y.
    base: u32,
    bars: Vec<DayBar>,
    from: String,
    to: String,
}

/// The chart of an entry's statistics, when it has any downloads.
fn download_chart(s: &quiver_engine::downloads::DownloadStats) -> Option<DownloadChart> {
    if s.total == 0 {
        return None;
    }
    const W: u32 = 600;
    const H: u32 = 120;
    const TOP: u32 = 8;
    const BASE: u32 = 104;
    let n = s.daily.len().max(1) as u32;
    let slot = W / n;
    let peak = s.daily.iter().map(|d| d.count).max().unwrap_or(0);
    let bars = s
        .daily
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let h = if peak == 0 {
                0
            } else {
                // At least a pixel for any day with downloads.
                ((d.count as f64 / peak as f64) * f64::from(BASE - TOP))
                    .round()
                    .max(if d.count > 0 { 1.0 } else { 0.0 }) as u32
            };
            DayBar {
                x: i as u32 * slot + 1,
                y: BASE - h,
                w: slot.saturating_sub(2).max(1),
                h,
                date: d.date.clone(),
                count: d.count,
            }
        })
        .collect();
    Some(DownloadChart {
        total: s.total,
        last_7: s.last_7_days,
        last_30: s.last_30_days,
        peak,
        width: W,
        height: H,
        base: BASE,
        bars,
        from: s.from.clone(),
        to: s.to.clone(),
    })
}

/// A scoped npm package's page path: `/package/{namespace}/{scope}/{name}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ScopedPagePath {
    /// The entry's namespace.
    namespace: String,
    /// The npm scope, with its `@`.
    scope: String,
    /// The name within the scope.
    name: String,
}

/// `GET /package/{namespace}/{scope}/{name}`: a scoped npm package's page.
pub async fn scoped_entry(
    state: State<AppState>,
    v: Visitor,
    uri: axum::http::Uri,
    Path(p): Path<ScopedPagePath>,
) -> Headed<Page> {
    if !p.scope.starts_with('@') {
        return error_page(&v, Error::not_found(uri.path()));
    }
    let path = EntryPagePath {
        namespace: p.namespace,
        name: format!("{}/{}", p.scope, p.name),
    };
    entry(state, v, uri, Path(path)).await
}

/// `GET /{kind}/{namespace}/{name}`: one route per kind, so that the site's other
/// top-level paths never collide with an entry's.
pub async fn entry(
    State(state): State<AppState>,
    v: Visitor,
    uri: axum::http::Uri,
    Path(EntryPagePath { namespace, name }): Path<EntryPagePath>,
) -> Headed<Page> {
    let kind = uri
        .path()
        .trim_start_matches('/')
        .split('/')
        .next()
        .and_then(|k| k.parse::<Kind>().ok());
    let Some(kind) = kind else {
        return error_page(&v, Error::not_found(uri.path()));
    };
    let key = EntryKey::new(kind, &namespace, &name);
    match entry_view(&state, &v.caller, &key).await {
        Ok(view) => render(&v, StatusCode::OK, "entry.html", &view),
        Err(e) => error_page(&v, e),
    }
}

async fn entry_view(
    state: &AppState,
    caller: &Caller,
    key: &EntryKey,
) -> quiver_model::Result<EntryView> {
    let r = &state.registry;
    let e = r.get_entry(caller, key).await?;
    let page = r.list_versions(caller, key, None, VERSIONS, false).await?;
    let latest = match &e.latest_version {
        Some(v) => Some(r.get_version(caller, key, v).await?),
        None => None,
    };
    let relations = r.list_relations(caller, key, Direction::Both).await?;
    let manifest = latest.as_ref().map_or(&Value::Null, |v| &v.manifest);
    let held_back =
        e.latest_version.is_none() && !page.items.is_empty() && page.items.iter().all(|v| v.yanked);
    let (platforms, steps) = recipe_platforms(e.kind, manifest);
    let advisories = r
        .advisories(
            caller,
            quiver_engine::store::advisories::AdvisoryFilter {
                entry: Some(e.key()),
                limit: quiver_engine::advisories::MAX_LIST,
                ..Default::default()
            },
        )
        .await?;
    let affecting = |version: &str| -> Vec<String> {
        advisories
            .iter()
            .filter(|a| quiver_engine::advisories::affects(a, &e.key(), version).is_some())
            .map(|a| a.id.clone())
            .collect()
    };
    let mut versions: Vec<VersionView> = page.items.iter().map(version_view).collect();
    for v in &mut versions {
        v.advisories = affecting(&v.version);
    }
    let current = e
        .latest_version
        .as_deref()
        .map(affecting)
        .unwrap_or_default();
    let banners = advisories
        .iter()
        .flat_map(|a| {
            a.affected
                .iter()
                .filter(|x| x.entry == e.key())
                .map(|x| AdvisoryBanner {
                    id: a.id.clone(),
                    href: format!("/advisories/{}", a.id),
                    severity: a.severity.as_str().to_string(),
                    summary: a.summary.clone(),
                    range: x.range.clone(),
                    fixed: x.fixed.clone(),
                    current: current.contains(&a.id),
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let stats = r.entry_download_stats(caller, key, None, None).await?;
    Ok(EntryView {
        downloads: download_chart(&stats),
        advisories: banners,
        usage: usage(&e, manifest),
        schemas: tool_schemas(&e, manifest),
        capabilities: capabilities(manifest),
        platforms,
        steps,
        gates: latest.as_ref().and_then(gates_view),
        more_versions: page.next_cursor.is_some(),
        versions,
        outgoing: relation_views(&relations, key, true),
        incoming: relation_views(&relations, key, false),
        held_back,
        e,
    })
}

/// How to use it, for its kind.
fn usage(e: &Entry, manifest: &Value) -> Vec<Usage> {
    let (ns, name) = (e.namespace.as_str(), e.name.as_str());
    let mut out = vec![];
    match e.kind {
        Kind::Package => match ns {
            "npm" => out.push(Usage {
                label: "Install with npm",
                code: format!("npm install {name}"),
            }),
            "pypi" => out.push(Usage {
                label: "Install with pip",
                code: format!("pip install {name}"),
            }),
            _ => {}
        },
        Kind::Recipe => out.push(Usage {
            label: "Install with tsuku",
            code: format!("tsuku install {name}"),
        }),
        Kind::Module => {
            out.push(Usage {
                label: "Import in mlld",
                code: format!("/import {{ ... }} from @{ns}/{name}"),
            });
            if quiver_engine::content::declared_hash(manifest).is_some() {
                out.push(Usage {
                    label: "Download it, verified by its sha256",
                    code: format!("quiver install module {ns}/{name}"),
                });
            }
        }
        Kind::Skill => {
            let packages: Vec<&str> = manifest["target_packages"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !packages.is_empty() {
                out.push(Usage {
                    label: "Suggested for projects using",
                    code: packages.join(", "),
                });
            }
        }
        Kind::Tool => {}
    }
    if e.kind == Kind::Recipe {
        if let Some(cmd) = manifest["verify"]["command"]
            .as_str()
            .filter(|c| !c.is_empty())
        {
            out.push(Usage {
                label: "Check the install",
                code: cmd.to_string(),
            });
        }
    }
    out.push(Usage {
        label: "Read it with the quiver CLI",
        code: format!("quiver info {} {ns}/{name}", e.kind),
    });
    out
}

fn type_of(schema: &Value) -> String {
    match &schema["type"] {
        Value::String(t) if t == "array" => match schema["items"]["type"].as_str() {
            Some(item) => format!("array of {item}"),
            None => "array".into(),
        },
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" or "),
        _ if schema.get("enum").is_some() => "one of a list".into(),
        _ => "any".into(),
    }
}

/// A JSON Schema object's properties as rows.
fn schema_rows(schema: &Value) -> Vec<SchemaRow> {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    schema["properties"]
        .as_object()
        .map(|props| {
            props
                .iter()
                .map(|(name, s)| SchemaRow {
                    name: name.clone(),
                    r#type: type_of(s),
                    required: required.contains(&name.as_str()),
                    description: s["description"].as_str().unwrap_or("").to_string(),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A list of `{name, type, description, required}` as rows (the ops profiles' inputs).
fn list_rows(list: &Value) -> Vec<SchemaRow> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some(SchemaRow {
                        name: i["name"].as_str()?.to_string(),
                        r#type: i["type"].as_str().unwrap_or("any").to_string(),
                        required: i["required"].as_bool().unwrap_or(false),
                        description: i["description"].as_str().unwrap_or("").to_string(),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A tool's inputs and outputs as tables.
fn tool_schemas(e: &Entry, m: &Value) -> Vec<SchemaTable> {
    if e.kind != Kind::Tool {
        return vec![];
    }
    let mut out = vec![];
    for (title, schema, list) in [
        ("Inputs", &m["input_schema"], &m["inputs"]),
        ("Outputs", &m["output_schema"], &m["outputs"]),
    ] {
        if schema.is_object() {
            out.push(SchemaTable {
                title,
                rows: schema_rows(schema),
            });
        } else if list.is_array() {
            out.push(SchemaTable {
                title,
                rows: list_rows(list),
            });
        }
    }
    out
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// An ops profile's capabilities, each with its patterns and their estimates.
fn capabilities(m: &Value) -> Vec<CapabilityView> {
    let Some(caps) = m["capabilities"].as_object() else {
        return vec![];
    };
    caps.iter()
        .map(|(name, c)| CapabilityView {
            name: name.clone(),
            description: c["description"].as_str().unwrap_or("").to_string(),
            patterns: c["patterns"]
                .as_object()
                .map(|ps| {
                    ps.iter()
                        .map(|(pname, p)| PatternView {
                            name: pname.clone(),
                            time: text_of(&p["time_estimate_ms"]),
                            cost: text_of(&p["cost_estimate"]),
                            inputs: p["required_inputs"]
                                .as_array()
                                .map(|a| {
                                    a.iter()
                                        .filter_map(|i| i["name"].as_str())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                })
                                .unwrap_or_default(),
                            description: p["description"].as_str().unwrap_or("").to_string(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
        .filter(|c| !c.patterns.is_empty())
        .collect()
}

/// The platforms a recipe installs on, over the usual four, and its install steps.
fn recipe_platforms(kind: Kind, m: &Value) -> (Vec<PlatformView>, Vec<String>) {
    if kind != Kind::Recipe {
        return (vec![], vec![]);
    }
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut unsupported = strings(&m["metadata"]["unsupported_platforms"]);
    unsupported.extend(strings(&m["derived"]["unsupported_platforms"]));
    // Steps limited to some operating systems (`when.os`) limit the recipe to them.
    let steps = m["steps"].as_array().cloned().unwrap_or_default();
    let mut only_os: Vec<String> = vec![];
    for s in &steps {
        only_os.extend(strings(&s["when"]["os"]));
    }
    let platforms = ["linux/amd64", "linux/arm64", "darwin/amd64", "darwin/arm64"]
        .iter()
        .map(|p| {
            let os = p.split('/').next().unwrap_or("");
            PlatformView {
                name: (*p).to_string(),
                ok: !unsupported.iter().any(|u| u == p)
                    && (only_os.is_empty() || only_os.iter().any(|o| o == os)),
            }
        })
        .collect();
    let steps = steps
        .iter()
        .filter_map(|s| s["action"].as_str().map(str::to_string))
        .collect();
    (platforms, steps)
}

fn gates_view(v: &Version) -> Option<GatesView> {
    let val = v.validation.as_ref()?;
    Some(GatesView {
        version: v.version.clone(),
        passed: val.passed,
        items: val
            .gates
            .iter()
            .map(|g| {
                let g = serde_json::to_value(g).unwrap_or_default();
                GateView {
                    gate: text_of(&g["gate"]),
                    level: text_of(&g["level"]),
                    passed: g["passed"].as_bool().unwrap_or(false),
                    findings: g["findings"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .collect::<Vec<_>>()
                                .join("; ")
                        })
                        .unwrap_or_default(),
                }
            })
            .collect(),
    })
}

fn version_view(v: &Version) -> VersionView {
    VersionView {
        version: v.version.clone(),
        published: v.published_at.strftime("%Y-%m-%d").to_string(),
        yanked: v.yanked,
        reason: v.yank_reason.clone(),
        disabled: v.disabled.as_ref().map(|d| d.reason.clone()),
        changelog: v.changelog.clone(),
        breaking: v.breaking,
        advisories: vec![],
    }
}

fn relation_views(relations: &[Relation], key: &EntryKey, outgoing: bool) -> Vec<RelationView> {
    relations
        .iter()
        .filter(|r| (r.from == *key) == outgoing)
        .map(|r| {
            let other = if outgoing { &r.to } else { &r.from };
            let label = match r.kind {
                RelationKind::Implements => "implements",
                RelationKind::DependsOn => "depends on",
                RelationKind::MapsTo => "maps to",
                RelationKind::Composes => "composes",
                RelationKind::Alias => "alias of",
            };
            let mut note = vec![];
            if let Some(c) = r.confidence {
                note.push(format!("confidence {c:.2}"));
            }
            if let Some(s) = &r.source {
                note.push(s.clone());
            }
            if let Some(o) = r.step_order {
                note.push(format!("step {o}"));
            }
            RelationView {
                label,
                kind: other.kind,
                namespace: other.namespace.clone(),
                name: other.name.clone(),
                href: entry_href(other.kind, &other.namespace, &other.name),
                note: (!note.is_empty()).then(|| note.join(", ")),
            }
        })
        .collect()
}

// ---- the API reference and the stylesheet ---------------------------------------------

#[derive(Serialize)]
struct OpView {
    method: String,
    path: String,
    summary: String,
}

#[derive(Serialize)]
struct OpGroup {
    tag: String,
    ops: Vec<OpView>,
}

/// `GET /api`: the API's operations, from the OpenAPI document the server serves.
pub async fn api_reference(v: Visitor) -> Headed<Page> {
    let doc = crate::openapi::document();
    let mut groups: BTreeMap<String, Vec<OpView>> = BTreeMap::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            if !path.starts_with("/api/") {
                continue;
            }
            for method in ["get", "post", "put", "patch", "delete"] {
                let op = &item[method];
                if op.is_null() {
                    continue;
                }
                let group = path
                    .trim_start_matches("/api/v1/")
                    .split('/')
                    .next()
                    .unwrap_or("")
                    .to_string();
                groups.entry(group).or_default().push(OpView {
                    method: method.to_uppercase(),
                    path: path.clone(),
                    summary: text_of(&op["summary"]),
                });
            }
        }
    }
    #[derive(Serialize)]
    struct View {
        groups: Vec<OpGroup>,
    }
    let groups = groups
        .into_iter()
        .map(|(tag, ops)| OpGroup { tag, ops })
        .collect();
    render(&v, StatusCode::OK, "api.html", &View { groups })
}

/// `GET /mcp-setup`: how to connect an agent over MCP, with configurations to copy for
/// this server's `/mcp` (by the address the browser reached it at) and for `quiver mcp`.
pub async fn mcp_setup(v: Visitor, headers: axum::http::HeaderMap) -> Headed<Page> {
    #[derive(Serialize)]
    struct ToolView {
        name: String,
        description: String,
    }
    #[derive(Serialize)]
    struct View {
        url: String,
        http_config: String,
        claude_code: String,
        stdio_config: String,
        tools: Vec<ToolView>,
    }
    let url = format!("{}{}", crate::device::own_base(&headers), crate::mcp::PATH);
    // Written out rather than serialized, to keep the keys in the order people read them.
    let json_url = serde_json::to_string(&url).unwrap_or_default();
    let view = View {
        http_config: format!(
            "{{\n  \"mcpServers\": {{\n    \"quiver\": {{\n      \"type\": \"http\",\n      \
             \"url\": {json_url},\n      \"headers\": {{ \"Authorization\": \"Bearer YOUR_QUIVER_TOKEN\" }}\n    \
             }}\n  }}\n}}"
        ),
        claude_code: format!(
            "claude mcp add --transport http quiver {url} --header \"Authorization: Bearer YOUR_QUIVER_TOKEN\""
        ),
        stdio_config: "{\n  \"mcpServers\": {\n    \"quiver\": {\n      \"command\": \"quiver\",\n      \
             \"args\": [\"mcp\", \"--data-dir\", \"/path/to/quiver-data\"],\n      \
             \"env\": { \"QUIVER_TOKEN\": \"an API token of that store (optional)\" }\n    }\n  }\n}"
            .to_string(),
        tools: crate::mcp::tools()
            .into_iter()
            .map(|t| ToolView {
                name: t.name.to_string(),
                description: t.description.map(|d| d.to_string()).unwrap_or_default(),
            })
            .collect(),
        url,
    };
    render(&v, StatusCode::OK, "mcp_setup.html", &view)
}

const STYLESHEET: &str = include_str!("../static/quiver.css");

/// `GET /static/quiver.css`: the one stylesheet, cached a day and revalidated by ETag.
pub async fn stylesheet(headers: HeaderMap) -> Stylesheet {
    static ETAG_VALUE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let etag = ETAG_VALUE.get_or_init(|| etag_of(STYLESHEET.as_bytes()));
    let fresh = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let common = [
        (
            CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=86400"),
        ),
        (
            ETAG,
            HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"css\"")),
        ),
    ];
    if fresh {
        return Stylesheet((StatusCode::NOT_MODIFIED, common).into_response());
    }
    let css = HeaderValue::from_static("text/css; charset=utf-8");
    Stylesheet((StatusCode::OK, common, [(CONTENT_TYPE, css)], STYLESHEET).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            entry_href(Kind::Package, "npm", "@types/node"),
            "/package/npm/@types/node"
        );
        assert_eq!(
            entry_href(Kind::Tool, "acme", "a b?c"),
            "/tool/acme/a%20b%3Fc"
        );
        assert_eq!(
            search_href(&[("q", "a&b c"), ("kind", ""), ("tag", "x")]),
            "/search?q=a%26b%20c&tag=x"
        );
        assert_eq!(search_href(&[("q", "")]), "/search");
    }

    #[test]
    fn recipe_platform_matrix() {
        let m = serde_json::json!({
            "metadata": {"unsupported_platforms": ["darwin/arm64"]},
            "steps": [{"action": "github_archive", "when": {"os": ["linux", "darwin"]}}]
        });
        let (p, steps) = recipe_platforms(Kind::Recipe, &m);
        let ok: Vec<(&str, bool)> = p.iter().map(|p| (p.name.as_str(), p.ok)).collect();
        assert_eq!(
            ok,
            [
                ("linux/amd64", true),
                ("linux/arm64", true),
                ("darwin/amd64", true),
                ("darwin/arm64", false)
            ]
        );
        assert_eq!(steps, ["github_archive"]);
    }
}
