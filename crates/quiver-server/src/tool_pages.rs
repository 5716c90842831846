//! The website's tool-intelligence pages: the capability browser (`/capabilities`, and
//! one capability with its tools and patterns) and the selection playground
//! (`/select?capability=…&var=name=value&…`: the ranked candidates with their estimates,
//! score breakdown and missing inputs, and what was excluded and why). Both are the
//! engine calls the API makes (`GET /api/v1/capabilities`, `POST /api/v1/select`); the
//! playground is a GET form, so a selection can be shared as a link.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use quiver_engine::select::{Constraints, SelectRequest, PREFERENCES};
use quiver_model::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reply::{Headed, Page};
use crate::session::Visitor;
use crate::web::{entry_href, error_page, render};
use crate::AppState;

/// `GET /capabilities`: every capability of the tools the visitor may see.
pub async fn capabilities(State(state): State<AppState>, v: Visitor) -> Headed<Page> {
    match state.registry.capabilities(&v.caller).await {
        Ok(caps) => {
            #[derive(Serialize)]
            struct View {
                caps: Vec<quiver_engine::select::CapabilitySummary>,
            }
            render(&v, StatusCode::OK, "capabilities.html", &View { caps })
        }
        Err(e) => error_page(&v, e),
    }
}

/// The playground's form: a capability, variables, constraints and weights, all as query
/// parameters (`var` and `prefer` as `name=value`, repeatable by separate fields).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct SelectPageParams {
    #[serde(default)]
    capability: Option<String>,
    /// Instead of a capability: what is needed, in words.
    #[serde(default)]
    need: Option<String>,
    /// Variables, one `name=value` per line.
    #[serde(default)]
    vars: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    max_cost: Option<String>,
    #[serde(default)]
    max_time_ms: Option<String>,
    /// `on` to exclude patterns that need approval.
    #[serde(default)]
    no_approval: Option<String>,
    /// `on` to calibrate time estimates by telemetry.
    #[serde(default)]
    calibrated: Option<String>,
    /// The A/B test subject (a user or session id).
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    speed: Option<String>,
    #[serde(default)]
    accuracy: Option<String>,
    #[serde(default)]
    cost: Option<String>,
    #[serde(default)]
    complexity: Option<String>,
    #[serde(default)]
    completeness: Option<String>,
}

#[derive(Serialize, Default)]
struct Row {
    href: String,
    tool: String,
    version: String,
    pattern: String,
    time: String,
    cost: String,
    score: String,
    breakdown: String,
    missing: String,
    notes: String,
    reason: String,
}

#[derive(Serialize, Default)]
struct SelectView {
    capability: String,
    vars: String,
    environment: String,
    max_cost: String,
    max_time_ms: String,
    no_approval: bool,
    calibrated: bool,
    subject: String,
    need: String,
    /// What a need resolved to.
    resolved: Option<String>,
    prefs: Vec<(&'static str, String)>,
    detail: Option<quiver_engine::select::CapabilityDetail>,
    candidates: Vec<Row>,
    excluded: Vec<Row>,
    ran: bool,
    problem: Option<String>,
}

fn number(field: &str, v: &Option<String>) -> quiver_model::Result<Option<f64>> {
    match v.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => s
            .parse::<f64>()
            .map(Some)
            .map_err(|_| Error::invalid(field, format!("'{s}' is not a number"))),
    }
}

fn request(p: &SelectPageParams, capability: String) -> quiver_model::Result<SelectRequest> {
    let mut variables = BTreeMap::new();
    for line in p.vars.as_deref().unwrap_or("").lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| Error::invalid("vars", format!("'{line}': write name=value")))?;
        let x = number("vars", &Some(v.to_string()))?.unwrap_or(0.0);
        variables.insert(k.trim().to_string(), x);
    }
    let mut preferences = BTreeMap::new();
    for (name, value) in [
        ("speed", &p.speed),
        ("accuracy", &p.accuracy),
        ("cost", &p.cost),
        ("complexity", &p.complexity),
        ("completeness", &p.completeness),
    ] {
        if let Some(w) = number(name, value)? {
            preferences.insert(name.to_string(), w);
        }
    }
    Ok(SelectRequest {
        capability: capability.clone(),
        variables,
        environment: p.environment.clone().filter(|e| !e.trim().is_empty()),
        constraints: Constraints {
            max_cost: number("max_cost", &p.max_cost)?,
            max_time_ms: number("max_time_ms", &p.max_time_ms)?,
            approval_allowed: p.no_approval.as_deref().is_none_or(str::is_empty),
            ..Constraints::default()
        },
        preferences,
        limit: Some(50),
        calibrated: p.calibrated.as_deref().is_some_and(|c| !c.is_empty()),
        subject: p.subject.clone().filter(|s| !s.trim().is_empty()),
        need: match capability.is_empty() {
            true => p.need.clone().filter(|n| !n.trim().is_empty()),
            false => None,
        },
    })
}

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "?".into(), |v| format!("{v}"))
}

/// `GET /select`: the playground; with a capability, its tools and the selection.
pub async fn select(
    State(state): State<AppState>,
    v: Visitor,
    Query(p): Query<SelectPageParams>,
) -> Headed<Page> {
    let get = |o: &Option<String>| o.clone().unwrap_or_default();
    let mut view = SelectView {
        capability: get(&p.capability),
        vars: get(&p.vars),
        environment: get(&p.environment),
        max_cost: get(&p.max_cost),
        max_time_ms: get(&p.max_time_ms),
        no_approval: p.no_approval.as_deref().is_some_and(|s| !s.is_empty()),
        calibrated: p.calibrated.as_deref().is_some_and(|s| !s.is_empty()),
        subject: get(&p.subject),
        need: get(&p.need),
        prefs: PREFERENCES
            .iter()
            .map(|name| {
                let value = match *name {
                    "speed" => get(&p.speed),
                    "accuracy" => get(&p.accuracy),
                    "cost" => get(&p.cost),
                    "complexity" => get(&p.complexity),
                    _ => get(&p.completeness),
                };
                (*name, value)
            })
            .collect(),
        ..SelectView::default()
    };
    let capability = view.capability.trim().to_string();
    let mut status = StatusCode::OK;
    if !capability.is_empty() || !view.need.trim().is_empty() {
        let r = &state.registry;
        let outcome = match request(&p, capability.clone()) {
            Ok(req) => r.select(&v.caller, req).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(sel) => {
                view.ran = true;
                if let Some(m) = sel.resolved.first() {
                    view.resolved = Some(format!(
                        "“{}” matched the capability {} (on {})",
                        view.need.trim(),
                        m.capability,
                        m.matched.join(", ")
                    ));
                    view.capability = sel.capability.clone();
                }
                let capability = sel.capability.clone();
                view.candidates = sel
                    .candidates
                    .into_iter()
                    .map(|c| Row {
                        href: entry_href(c.tool.kind, &c.tool.namespace, &c.tool.name),
                        tool: format!("{}/{}", c.tool.namespace, c.tool.name),
                        version: c.version,
                        pattern: c.pattern,
                        time: num(c.time_ms),
                        cost: num(c.cost),
                        score: format!("{:.3}", c.score),
                        breakdown: c
                            .breakdown
                            .iter()
                            .filter(|(_, x)| **x > 0.0)
                            .map(|(k, x)| format!("{k} {x:.3}"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        missing: c.missing_inputs.join(", "),
                        notes: c
                            .notes
                            .iter()
                            .cloned()
                            .chain(c.calibration.as_ref().map(|k| {
                                format!(
                                    "calibrated ×{:.2} from {} runs (the expression says {} ms)",
                                    k.ratio, k.samples, k.uncalibrated_time_ms
                                )
                            }))
                            .chain(
                                c.experiment
                                    .as_ref()
                                    .map(|a| format!("A/B test {}: arm {}", a.experiment, a.arm)),
                            )
                            .collect::<Vec<_>>()
                            .join("; "),
                        ..Row::default()
                    })
                    .collect();
                view.excluded = sel
                    .excluded
                    .into_iter()
                    .map(|e| Row {
                        href: entry_href(e.tool.kind, &e.tool.namespace, &e.tool.name),
                        tool: format!("{}/{}", e.tool.namespace, e.tool.name),
                        version: e.version.unwrap_or_default(),
                        pattern: e.pattern.unwrap_or_default(),
                        reason: e.reason,
                        ..Row::default()
                    })
                    .collect();
                view.detail = r.capability(&v.caller, &capability).await.ok();
            }
            Err(e) => {
                status = crate::error::status_of(e.code);
                view.problem = Some(e.message);
            }
        }
    }
    render(&v, status, "select.html", &view)
}
