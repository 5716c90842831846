//! The recipe pipeline's operator dashboard (`/pipeline`) and item pages
//! (`/pipeline/items/{id}`), over the same engine calls as `/api/v1/pipeline/…`; the
//! valve buttons post `/pipeline` (the engine decides who may: the recipes' namespace's
//! members).

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use quiver_engine::pipeline::{FailureQuery, ValveChange};
use quiver_model::Error;
use quiver_store::pipeline::{Activity, ALL_ECOSYSTEMS};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::reply::{Headed, Page, PageOr};
use crate::session::Visitor;
use crate::web::{error_page, render};
use crate::AppState;

const CHART_W: f64 = 640.0;
const CHART_H: f64 = 200.0;
const LEFT: f64 = 56.0;
const PAD: f64 = 28.0;

/// One hour's bars: passed stacked under failed, and the claims as a line's point.
#[derive(Serialize)]
struct Bar {
    x: f64,
    w: f64,
    passed_y: f64,
    passed_h: f64,
    failed_y: f64,
    failed_h: f64,
}

#[derive(Serialize)]
struct Chart {
    bars: Vec<Bar>,
    claims: String,
    y_max: u64,
    from: String,
    to: String,
}

fn chart(hours: &[Activity]) -> Option<Chart> {
    let (first, last) = (hours.first()?, hours.last()?);
    let y_max = hours
        .iter()
        .map(|h| h.claimed.max(h.passed + h.failed))
        .max()
        .unwrap_or(1)
        .max(1);
    let span = ((last.hour - first.hour) / 3_600_000 + 1) as f64;
    let w = (CHART_W - LEFT - PAD) / span;
    let x = |hour: i64| LEFT + ((hour - first.hour) / 3_600_000) as f64 * w;
    let h = |v: u64| v as f64 / y_max as f64 * (CHART_H - 2.0 * PAD);
    let base = CHART_H - PAD;
    let r1 = |v: f64| (v * 10.0).round() / 10.0;
    let bars = hours
        .iter()
        .map(|a| {
            let (ph, fh) = (h(a.passed), h(a.failed));
            Bar {
                x: r1(x(a.hour) + w * 0.1),
                w: r1(w * 0.8),
                passed_y: r1(base - ph),
                passed_h: r1(ph),
                failed_y: r1(base - ph - fh),
                failed_h: r1(fh),
            }
        })
        .collect();
    let claims = hours
        .iter()
        .map(|a| format!("{:.1},{:.1}", x(a.hour) + w / 2.0, base - h(a.claimed)))
        .collect::<Vec<_>>()
        .join(" ");
    let fmt = |ms: i64| {
        jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.strftime("%Y-%m-%d %H:00").to_string())
            .unwrap_or_default()
    };
    Some(Chart {
        bars,
        claims,
        y_max,
        from: fmt(first.hour),
        to: fmt(last.hour),
    })
}

/// `GET /pipeline`: depth, valves, activity, blockers, gaps, alerts, recent failures.
pub async fn dashboard(State(state): State<AppState>, v: Visitor) -> Headed<Page> {
    dashboard_with(&state, &v, None, StatusCode::OK).await
}

async fn dashboard_with(
    state: &AppState,
    v: &Visitor,
    problem: Option<String>,
    status: StatusCode,
) -> Headed<Page> {
    #[derive(Serialize)]
    struct View {
        s: quiver_engine::pipeline::PipelineStatus,
        ecosystems: Vec<(String, Vec<(String, u64)>)>,
        statuses: Vec<&'static str>,
        chart: Option<Chart>,
        hours: Vec<Activity>,
        blockers: Vec<quiver_engine::pipeline::Blocker>,
        gaps: Vec<quiver_engine::pipeline::Gap>,
        alerts: Vec<quiver_store::pipeline::ChecksumAlert>,
        failures: Vec<quiver_store::pipeline::ResultRecord>,
        csrf: Option<String>,
        problem: Option<String>,
    }
    let r = &state.registry;
    let loaded = async {
        let s = r.pipeline_status().await?;
        let blockers = r.pipeline_blockers(15, 8).await?;
        let mut gaps = r.pipeline_gaps(None).await?;
        gaps.truncate(20);
        let alerts = r.pipeline_checksum_alerts(None, 20).await?;
        let failures = r
            .pipeline_failures(FailureQuery {
                limit: Some(20),
                ..Default::default()
            })
            .await?
            .items;
        Ok::<_, Error>((s, blockers, gaps, alerts, failures))
    }
    .await;
    let (s, blockers, gaps, alerts, failures) = match loaded {
        Ok(x) => x,
        Err(e) => return error_page(v, e),
    };
    let statuses: Vec<&'static str> = quiver_store::pipeline::ItemStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .collect();
    let mut ecosystems: Vec<(String, Vec<(String, u64)>)> = Vec::new();
    for d in &s.depth {
        if ecosystems.last().is_none_or(|(e, _)| *e != d.ecosystem) {
            ecosystems.push((
                d.ecosystem.clone(),
                statuses.iter().map(|s| (s.to_string(), 0)).collect(),
            ));
        }
        if let Some((_, row)) = ecosystems.last_mut() {
            if let Some(cell) = row.iter_mut().find(|(k, _)| k == d.status.as_str()) {
                cell.1 = d.count;
            }
        }
    }
    let view = View {
        chart: chart(&s.activity),
        hours: s.activity.iter().rev().take(12).cloned().collect(),
        ecosystems,
        statuses,
        s,
        blockers,
        gaps,
        alerts,
        failures,
        csrf: v.csrf(),
        problem,
    };
    render(v, status, "pipeline.html", &view)
}

/// The dashboard's valve buttons.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ValveForm {
    csrf: String,
    /// `pause`, `resume`, `reset_breaker`, `rate_limit`, `stop` or `start`.
    action: String,
    /// The ecosystem (not for `stop` and `start`).
    #[serde(default)]
    ecosystem: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    /// For `rate_limit`: claims an hour (empty lifts the limit).
    #[serde(default)]
    claims_per_hour: Option<String>,
}

/// `POST /pipeline`: pause, resume, rate-limit or reset an ecosystem; stop or start all.
pub async fn valve(State(state): State<AppState>, v: Visitor, Form(f): Form<ValveForm>) -> PageOr {
    if v.name().is_none() {
        return crate::account_pages::redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let reason = f.reason.unwrap_or_default().trim().to_string();
    let eco = f.ecosystem.unwrap_or_default().trim().to_string();
    let change = match f.action.as_str() {
        "pause" | "stop" => Ok(ValveChange::Pause { reason }),
        "resume" | "start" => Ok(ValveChange::Resume),
        "reset_breaker" => Ok(ValveChange::ResetBreaker),
        "rate_limit" => match f.claims_per_hour.as_deref().map(str::trim) {
            None | Some("") => Ok(ValveChange::RateLimit {
                claims_per_hour: None,
            }),
            Some(n) => n
                .parse::<i64>()
                .map(|n| ValveChange::RateLimit {
                    claims_per_hour: Some(n),
                })
                .map_err(|_| {
                    Error::invalid("claims_per_hour", format!("'{n}' is not a whole number"))
                }),
        },
        other => Err(Error::invalid(
            "action",
            format!("'{other}': pause, resume, reset_breaker, rate_limit, stop or start"),
        )),
    };
    let target = if matches!(f.action.as_str(), "stop" | "start") {
        ALL_ECOSYSTEMS.to_string()
    } else {
        eco
    };
    let done = match change {
        Ok(c) => state.registry.pipeline_valve(&v.caller, &target, c).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(_) => crate::account_pages::redirect_to("/pipeline"),
        Err(e) => {
            let status = crate::error::status_of(e.code);
            let message = match &e.field {
                Some(f) => format!("{f}: {}", e.message),
                None => e.message.clone(),
            };
            dashboard_with(&state, &v, Some(message), status)
                .await
                .into()
        }
    }
}

/// A queue item, in a page's path (`homebrew:node`; a `/` as `%2F`).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ItemPagePath {
    id: String,
}

/// `GET /pipeline/items/{id}`: an item, its matrix, what blocks it, its history.
pub async fn item(
    State(state): State<AppState>,
    v: Visitor,
    Path(p): Path<ItemPagePath>,
) -> Headed<Page> {
    match state.registry.pipeline_item(&p.id).await {
        Ok(mut d) => {
            for r in &mut d.history {
                if let Some(m) = &mut r.result.message {
                    if m.len() > 2000 {
                        let mut cut = 2000;
                        while !m.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        m.truncate(cut);
                        m.push_str(" …");
                    }
                }
            }
            render(&v, StatusCode::OK, "pipeline_item.html", &d)
        }
        Err(e) => error_page(&v, e),
    }
}
