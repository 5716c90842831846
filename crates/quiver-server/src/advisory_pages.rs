//! The website's security advisories: the list (`/advisories?severity=…`, newest first)
//! and one advisory (`/advisories/{id}`) with each affected entry, its range and fixes.
//! The same engine calls as `GET /api/v1/advisories`, so a visitor sees only the affected
//! entries they may read. Entry pages carry the banner (`web.rs`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use quiver_engine::store::advisories::{Advisory, AdvisoryFilter, Severity};
use quiver_model::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reply::{Headed, Page};
use crate::session::Visitor;
use crate::web::{entry_href, error_page, render};
use crate::AppState;

/// The list's filters.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct AdvisoryListParams {
    /// The least severity: low, medium, high or critical.
    #[serde(default)]
    severity: Option<String>,
    /// `on`: withdrawn advisories too.
    #[serde(default)]
    withdrawn: Option<String>,
}

#[derive(Serialize)]
struct Affects {
    entry: String,
    href: String,
    range: String,
    fixed: Vec<String>,
}

#[derive(Serialize)]
struct Row {
    id: String,
    href: String,
    severity: &'static str,
    summary: String,
    aliases: Vec<String>,
    published: String,
    withdrawn: Option<String>,
    withdrawn_reason: Option<String>,
    advisory_type: String,
    description: String,
    recommendation: Option<String>,
    cvss: Option<String>,
    verified: bool,
    reporter: Option<String>,
    affects: Vec<Affects>,
}

fn row(a: Advisory) -> Row {
    Row {
        href: format!("/advisories/{}", a.id),
        severity: a.severity.as_str(),
        published: a.published_at.strftime("%Y-%m-%d").to_string(),
        withdrawn: a.withdrawn_at.map(|t| t.strftime("%Y-%m-%d").to_string()),
        withdrawn_reason: a.withdrawn_reason,
        affects: a
            .affected
            .into_iter()
            .map(|x| Affects {
                href: entry_href(x.entry.kind, &x.entry.namespace, &x.entry.name),
                entry: format!("{} {}/{}", x.entry.kind, x.entry.namespace, x.entry.name),
                range: x.range,
                fixed: x.fixed,
            })
            .collect(),
        id: a.id,
        summary: a.summary,
        aliases: a.aliases,
        advisory_type: a.advisory_type,
        description: a.description,
        recommendation: a.recommendation,
        cvss: a.cvss,
        verified: a.verified,
        reporter: a.reporter,
    }
}

/// `GET /advisories`: every advisory the visitor may read, newest first.
pub async fn list(
    State(state): State<AppState>,
    v: Visitor,
    Query(p): Query<AdvisoryListParams>,
) -> Headed<Page> {
    let severity = match p.severity.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(s) => match Severity::parse(s) {
            Some(s) => Some(s),
            None => {
                return error_page(
                    &v,
                    Error::invalid("severity", format!("`{s}`: low, medium, high or critical")),
                )
            }
        },
    };
    let withdrawn = p.withdrawn.as_deref().is_some_and(|w| !w.is_empty());
    let f = AdvisoryFilter {
        entry: None,
        min_severity: severity,
        include_withdrawn: withdrawn,
        limit: quiver_engine::advisories::MAX_LIST,
    };
    match state.registry.advisories(&v.caller, f).await {
        Ok(list) => {
            #[derive(Serialize)]
            struct View {
                rows: Vec<Row>,
                severity: &'static str,
                withdrawn: bool,
            }
            let view = View {
                rows: list.into_iter().map(row).collect(),
                severity: severity.map_or("", Severity::as_str),
                withdrawn,
            };
            render(&v, StatusCode::OK, "advisories.html", &view)
        }
        Err(e) => error_page(&v, e),
    }
}

/// An advisory's id in a page path.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct AdvisoryPagePath {
    /// `QVR-2026-0001`.
    id: String,
}

/// `GET /advisories/{id}`: one advisory.
pub async fn one(
    State(state): State<AppState>,
    v: Visitor,
    Path(p): Path<AdvisoryPagePath>,
) -> Headed<Page> {
    match state.registry.advisory(&v.caller, &p.id).await {
        Ok(a) => {
            #[derive(Serialize)]
            struct View {
                a: Row,
            }
            render(&v, StatusCode::OK, "advisory.html", &View { a: row(a) })
        }
        Err(e) => error_page(&v, e),
    }
}
