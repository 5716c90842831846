//! The recipe pipeline's operator dashboard (`/pipeline`) and item pages
//! (`/pipeline/items/{id}`, a `/` in the id as `%2F`), over the same engine calls as
//! `/api/v1/pipeline/…`. The valve buttons post `/pipeline/ecosystems/{ecosystem}`,
//! `/pipeline/stop` and `/pipeline/start`; the engine decides who may (the members of the
//! recipes' namespace), and a refusal shows the dashboard again with the reason. The
//! activity chart is inline SVG drawn here, with its figures as text, so the pages need no
//! script.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use jiff::Timestamp;
use percent_encoding::utf8_percent_encode as enc;
use quiver_engine::pipeline::{FailureQuery, PipelineStatus, ValveChange};
use quiver_model::{Error, ErrorCode};
use quiver_store::pipeline::{Activity, ItemStatus, ResultRecord, ALL_ECOSYSTEMS};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::account_pages::{redirect_to, when};
use crate::reply::{Headed, Page, PageOr};
use crate::session::Visitor;
use crate::web::{error_page, render, QUERY, SEGMENT};
use crate::AppState;

/// Failure records on the dashboard, and blockers with the items each blocks.
const FAILURES: usize = 20;
const BLOCKERS: usize = 15;
const BLOCKED_EACH: usize = 8;
const ALERTS: usize = 20;
/// A history message is cut at this many characters (the JSON has it whole).
const MESSAGE_CHARS: usize = 2000;
/// The first line of a failure's message in the dashboard's table.
const SNIPPET_CHARS: usize = 120;

/// The chart's size, in SVG units (the template's axes use the same figures).
const CHART_W: f64 = 640.0;
const CHART_H: f64 = 220.0;
const CHART_PAD: f64 = 36.0;
/// Room for the y axis' labels.
const CHART_LEFT: f64 = 56.0;
const HOUR_MS: i64 = 3_600_000;
const HOURS: i64 = 48;

fn item_href(id: &str) -> String {
    format!("/pipeline/items/{}", enc(id, SEGMENT))
}

fn label(s: &str) -> String {
    s.replace('_', " ")
}

/// `s` cut to `max` characters, and whether it was cut.
fn cut(s: &str, max: usize) -> (String, bool) {
    match s.char_indices().nth(max) {
        Some((at, _)) => (format!("{} …", &s[..at]), true),
        None => (s.to_string(), false),
    }
}

fn hour_label(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%d %H:00").to_string())
        .unwrap_or_default()
}

// ---- the activity chart -------------------------------------------------------------------

/// One hour's bars (passed below failed) and the claims line's point.
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
    y_mid: String,
    x_from: String,
    x_mid: String,
    x_to: String,
    summary: String,
}

#[derive(Serialize)]
struct HourRow {
    hour: String,
    claimed: u64,
    passed: u64,
    failed: u64,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// The last 48 hours (an hour without a row is an hour of nothing), up to `now`'s hour.
fn chart(activity: &[Activity], now: Timestamp) -> (Option<Chart>, Vec<HourRow>) {
    let last = now.as_millisecond().div_euclid(HOUR_MS) * HOUR_MS;
    let first = last - (HOURS - 1) * HOUR_MS;
    let by_hour: BTreeMap<i64, &Activity> = activity.iter().map(|a| (a.hour, a)).collect();
    let hours: Vec<(i64, u64, u64, u64)> = (0..HOURS)
        .map(|i| {
            let h = first + i * HOUR_MS;
            by_hour
                .get(&h)
                .map_or((h, 0, 0, 0), |a| (h, a.claimed, a.passed, a.failed))
        })
        .collect();
    let rows: Vec<HourRow> = hours
        .iter()
        .rev()
        .filter(|h| h.1 + h.2 + h.3 > 0)
        .map(|&(h, claimed, passed, failed)| HourRow {
            hour: hour_label(h),
            claimed,
            passed,
            failed,
        })
        .collect();
    if rows.is_empty() {
        return (None, rows);
    }
    let top = hours
        .iter()
        .map(|h| h.1.max(h.2 + h.3))
        .max()
        .unwrap_or(1)
        .max(1);
    // A round top: 1, 2 or 5 times a power of ten, at least the busiest hour.
    let mut y_max = 1u64;
    'round: for p in 0..20u32 {
        for m in [1u64, 2, 5] {
            let v = m.saturating_mul(10u64.saturating_pow(p));
            if v >= top {
                y_max = v;
                break 'round;
            }
        }
    }
    let w = (CHART_W - CHART_LEFT - CHART_PAD) / HOURS as f64;
    let x = |i: usize| CHART_LEFT + i as f64 * w;
    let h = |v: u64| v as f64 / y_max as f64 * (CHART_H - 2.0 * CHART_PAD);
    let base = CHART_H - CHART_PAD;
    let bars = hours
        .iter()
        .enumerate()
        .filter(|(_, a)| a.2 + a.3 > 0)
        .map(|(i, a)| {
            let (ph, fh) = (h(a.2), h(a.3));
            Bar {
                x: round1(x(i) + w * 0.15),
                w: round1(w * 0.7),
                passed_y: round1(base - ph),
                passed_h: round1(ph),
                failed_y: round1(base - ph - fh),
                failed_h: round1(fh),
            }
        })
        .collect();
    let claims = hours
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{:.1},{:.1}", x(i) + w / 2.0, base - h(a.1)))
        .collect::<Vec<_>>()
        .join(" ");
    let sum = |f: fn(&(i64, u64, u64, u64)) -> u64| hours.iter().map(f).sum::<u64>();
    let (claimed, passed, failed) = (sum(|h| h.1), sum(|h| h.2), sum(|h| h.3));
    let busiest = hours
        .iter()
        .max_by_key(|h| (h.1.max(h.2 + h.3), h.0))
        .expect("48 hours");
    let summary = format!(
        "In the last 48 hours: {claimed} claimed, {passed} passed, {failed} failed. \
         The busiest hour, {} UTC: {} claimed, {} passed, {} failed.",
        hour_label(busiest.0),
        busiest.1,
        busiest.2,
        busiest.3
    );
    let chart = Chart {
        bars,
        claims,
        y_max,
        y_mid: if y_max.is_multiple_of(2) {
            (y_max / 2).to_string()
        } else {
            format!("{:.1}", y_max as f64 / 2.0)
        },
        x_from: hour_label(first),
        x_mid: hour_label(first + HOURS / 2 * HOUR_MS),
        x_to: hour_label(last),
        summary,
    };
    (Some(chart), rows)
}

// ---- the dashboard ----------------------------------------------------------------------

/// Which failure records the dashboard lists (all fields optional; empty means any).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct FailureFilter {
    #[serde(default)]
    ecosystem: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    category: Option<String>,
    /// Records older than this one (the previous page's last).
    #[serde(default)]
    before: Option<String>,
}

fn given(s: &Option<String>) -> Option<String> {
    s.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[derive(Serialize)]
struct Count {
    label: String,
    n: u64,
}

#[derive(Serialize)]
struct DepthRow {
    ecosystem: String,
    counts: Vec<u64>,
    total: u64,
}

#[derive(Serialize)]
struct ValveView {
    ecosystem: String,
    action: String,
    paused: bool,
    reason: Option<String>,
    breaker: String,
    closed: bool,
    opened_at: Option<String>,
    failure_rate: Option<String>,
    recent_results: usize,
    claims_per_hour: Option<i64>,
    claims_left: Option<i64>,
}

#[derive(Serialize)]
struct Link {
    text: String,
    href: String,
    note: Option<String>,
}

#[derive(Serialize)]
struct BlockerView {
    dependency: String,
    recipe: Option<String>,
    direct: u64,
    total: u64,
    impact: String,
    items: Vec<Link>,
    more: u64,
}

#[derive(Serialize)]
struct GapCell {
    n: u64,
    href: Option<String>,
}

#[derive(Serialize)]
struct GapRow {
    category: String,
    cells: Vec<GapCell>,
    total: u64,
}

#[derive(Serialize)]
struct AlertView {
    recipe: String,
    version: String,
    environment: String,
    asset: String,
    expected: String,
    observed: String,
    at: String,
}

#[derive(Serialize)]
struct FailureView {
    id: String,
    href: String,
    ecosystem: String,
    environment: String,
    category: Option<String>,
    exit_code: Option<i32>,
    message: Option<String>,
    at: String,
}

#[derive(Serialize)]
struct FilterView {
    ecosystem: String,
    environment: String,
    category: String,
    ecosystems: Vec<String>,
    environments: Vec<String>,
    categories: Vec<String>,
    on: bool,
}

#[derive(Serialize)]
struct Dashboard {
    problem: Option<String>,
    csrf: Option<String>,
    stopped: Option<String>,
    totals: Vec<Count>,
    total: u64,
    statuses: Vec<String>,
    depth: Vec<DepthRow>,
    chart: Option<Chart>,
    hours: Vec<HourRow>,
    valves: Vec<ValveView>,
    blockers: Vec<BlockerView>,
    gap_environments: Vec<String>,
    gaps: Vec<GapRow>,
    alerts: Vec<AlertView>,
    failures: Vec<FailureView>,
    filter: FilterView,
    older: Option<String>,
    environments: Vec<String>,
}

/// `GET /pipeline`: totals, depth, activity, valves, blockers, gaps, alerts, failures.
pub async fn dashboard(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<FailureFilter>,
) -> Headed<Page> {
    dashboard_with(&state, &v, &q, None, StatusCode::OK).await
}

async fn dashboard_with(
    state: &AppState,
    v: &Visitor,
    q: &FailureFilter,
    problem: Option<String>,
    status: StatusCode,
) -> Headed<Page> {
    match dashboard_view(state, v, q, problem).await {
        Ok(view) => render(v, status, "pipeline.html", &view),
        Err(e) => error_page(v, e),
    }
}

async fn dashboard_view(
    state: &AppState,
    v: &Visitor,
    q: &FailureFilter,
    problem: Option<String>,
) -> Result<Dashboard, Error> {
    let before = match given(&q.before) {
        None => None,
        Some(b) => Some(
            b.parse::<i64>()
                .map_err(|_| Error::invalid("before", "a failure record's id"))?,
        ),
    };
    let (ecosystem, environment, category) = (
        given(&q.ecosystem),
        given(&q.environment),
        given(&q.category),
    );
    let r = &state.registry;
    let s: PipelineStatus = r.pipeline_status().await?;
    let blockers = r.pipeline_blockers(BLOCKERS, BLOCKED_EACH).await?;
    let gaps = r.pipeline_gaps(None).await?;
    let alerts = r.pipeline_checksum_alerts(None, ALERTS).await?;
    let failures = r
        .pipeline_failures(FailureQuery {
            ecosystem: ecosystem.clone(),
            environment: environment.clone(),
            category: category.clone(),
            since: None,
            before,
            limit: Some(FAILURES),
        })
        .await?;

    let totals: Vec<Count> = ItemStatus::ALL
        .iter()
        .map(|st| Count {
            label: label(st.as_str()),
            n: s.totals.get(st.as_str()).copied().unwrap_or(0),
        })
        .collect();
    let mut depth: BTreeMap<String, DepthRow> = BTreeMap::new();
    for d in &s.depth {
        let row = depth
            .entry(d.ecosystem.clone())
            .or_insert_with(|| DepthRow {
                ecosystem: d.ecosystem.clone(),
                counts: vec![0; ItemStatus::ALL.len()],
                total: 0,
            });
        if let Some(i) = ItemStatus::ALL.iter().position(|x| *x == d.status) {
            row.counts[i] += d.count;
        }
        row.total += d.count;
    }

    // Every ecosystem with items or a valve, a valve's defaults where there is none.
    let mut valves: BTreeMap<String, ValveView> = depth
        .keys()
        .map(|e| {
            (
                e.clone(),
                ValveView {
                    ecosystem: e.clone(),
                    action: format!("/pipeline/ecosystems/{}", enc(e, SEGMENT)),
                    paused: false,
                    reason: None,
                    breaker: "closed".into(),
                    closed: true,
                    opened_at: None,
                    failure_rate: None,
                    recent_results: 0,
                    claims_per_hour: None,
                    claims_left: None,
                },
            )
        })
        .collect();
    for x in &s.valves {
        valves.insert(
            x.ecosystem.clone(),
            ValveView {
                ecosystem: x.ecosystem.clone(),
                action: format!("/pipeline/ecosystems/{}", enc(&x.ecosystem, SEGMENT)),
                paused: x.paused,
                reason: x.reason.clone(),
                breaker: label(x.breaker.as_str()),
                closed: x.breaker == quiver_store::pipeline::BreakerState::Closed,
                opened_at: x.opened_at.map(when),
                failure_rate: x.failure_rate.map(|f| format!("{:.0}%", f * 100.0)),
                recent_results: x.recent_results,
                claims_per_hour: x.claims_per_hour,
                claims_left: x.claims_left,
            },
        );
    }

    let all_environments = s.environments.len();
    let blockers = blockers
        .into_iter()
        .map(|b| BlockerView {
            more: b.total.saturating_sub(b.items.len() as u64),
            items: b
                .items
                .iter()
                .map(|i| Link {
                    text: i.id.clone(),
                    href: item_href(&i.id),
                    note: if i.transitive {
                        Some("through another item".into())
                    } else if i.environments.is_empty() || i.environments.len() >= all_environments
                    {
                        None
                    } else if i.environments.len() == 1 {
                        Some(format!("on {}", i.environments[0]))
                    } else {
                        Some(format!(
                            "on {} of {all_environments} environments",
                            i.environments.len()
                        ))
                    },
                })
                .collect(),
            recipe: b.recipe.filter(|r| *r != b.dependency),
            dependency: b.dependency,
            direct: b.direct,
            total: b.total,
            impact: format!("{:.2}", b.impact),
        })
        .collect();

    // Capability gaps as a matrix: failure categories by environment.
    let mut gap_environments: Vec<String> = s.environments.clone();
    for g in &gaps {
        if !gap_environments.contains(&g.environment) {
            gap_environments.push(g.environment.clone());
        }
    }
    let mut by_category: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for g in &gaps {
        *by_category
            .entry(g.category.clone())
            .or_default()
            .entry(g.environment.clone())
            .or_default() += g.items;
    }
    let mut gap_rows: Vec<GapRow> = by_category
        .into_iter()
        .map(|(category, envs)| GapRow {
            total: envs.values().sum(),
            cells: gap_environments
                .iter()
                .map(|e| {
                    let n = envs.get(e).copied().unwrap_or(0);
                    GapCell {
                        n,
                        href: (n > 0).then(|| {
                            format!(
                                "/pipeline?category={}&environment={}#failures",
                                enc(&category, QUERY),
                                enc(e, QUERY)
                            )
                        }),
                    }
                })
                .collect(),
            category,
        })
        .collect();
    gap_rows.sort_by(|a, b| b.total.cmp(&a.total).then(a.category.cmp(&b.category)));
    let gap_categories: BTreeSet<String> = gap_rows.iter().map(|g| g.category.clone()).collect();

    let alerts = alerts
        .into_iter()
        .map(|a| AlertView {
            recipe: a.recipe,
            version: a.version,
            environment: a.environment,
            asset: a.asset,
            expected: a.expected,
            observed: a.observed,
            at: when(a.at),
        })
        .collect();

    let older = failures.next.map(|n| {
        let mut href = format!("/pipeline?before={n}");
        for (k, v) in [
            ("ecosystem", &ecosystem),
            ("environment", &environment),
            ("category", &category),
        ] {
            if let Some(v) = v {
                href.push_str(&format!("&{k}={}", enc(v, QUERY)));
            }
        }
        href + "#failures"
    });
    let failures = failures
        .items
        .into_iter()
        .map(|f: ResultRecord| FailureView {
            href: item_href(&f.item_id),
            id: f.item_id,
            ecosystem: f.ecosystem,
            environment: f.result.environment,
            category: f.result.category,
            exit_code: f.result.exit_code,
            message: f
                .result
                .message
                .as_deref()
                .and_then(|m| m.lines().find(|l| !l.trim().is_empty()))
                .map(|l| cut(l.trim(), SNIPPET_CHARS).0),
            at: when(f.at),
        })
        .collect();

    let with = |list: &mut Vec<String>, current: &Option<String>| {
        if let Some(c) = current {
            if !list.contains(c) {
                list.push(c.clone());
            }
        }
    };
    let mut filter_ecosystems: Vec<String> = valves.keys().cloned().collect();
    with(&mut filter_ecosystems, &ecosystem);
    let mut filter_environments = gap_environments.clone();
    with(&mut filter_environments, &environment);
    let filter = FilterView {
        on: ecosystem.is_some() || environment.is_some() || category.is_some() || before.is_some(),
        ecosystem: ecosystem.unwrap_or_default(),
        environment: environment.unwrap_or_default(),
        category: category.unwrap_or_default(),
        ecosystems: filter_ecosystems,
        environments: filter_environments,
        categories: gap_categories.into_iter().collect(),
    };

    let (chart, hours) = chart(&s.activity, Timestamp::now());
    Ok(Dashboard {
        problem,
        // The buttons are for signed-in visitors (a form cookie alone gives a token too).
        csrf: v.name().and_then(|_| v.csrf()),
        stopped: s.stopped,
        total: totals.iter().map(|c| c.n).sum(),
        totals,
        statuses: ItemStatus::ALL.iter().map(|x| label(x.as_str())).collect(),
        depth: depth.into_values().collect(),
        chart,
        hours,
        valves: valves.into_values().collect(),
        blockers,
        gap_environments,
        gaps: gap_rows,
        alerts,
        failures,
        filter,
        older,
        environments: s.environments,
    })
}

// ---- the valve buttons --------------------------------------------------------------------

/// An ecosystem (`homebrew`, `cargo`, …) in a form's address.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct EcosystemPagePath {
    ecosystem: String,
}

/// An ecosystem's valve buttons.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ValveForm {
    csrf: String,
    /// `pause`, `resume`, `reset_breaker` or `rate_limit`.
    action: String,
    /// For `pause`: why (shown on the dashboard and to workers held back).
    #[serde(default)]
    reason: Option<String>,
    /// For `rate_limit`: claims an hour (empty lifts the limit).
    #[serde(default)]
    claims_per_hour: Option<String>,
}

/// The emergency stop's button.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StopForm {
    csrf: String,
    /// Why (shown on the dashboard and to every worker).
    #[serde(default)]
    reason: Option<String>,
}

/// The emergency stop's start button.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct StartForm {
    csrf: String,
}

/// `POST /pipeline/ecosystems/{ecosystem}`: pause, resume, rate-limit or reset the breaker
/// of an ecosystem (the pipeline's operators).
pub async fn ecosystem_action(
    State(state): State<AppState>,
    v: Visitor,
    Path(p): Path<EcosystemPagePath>,
    Form(f): Form<ValveForm>,
) -> PageOr {
    let change = match f.action.as_str() {
        "pause" => Ok(ValveChange::Pause {
            reason: f.reason.unwrap_or_default().trim().to_string(),
        }),
        "resume" => Ok(ValveChange::Resume {}),
        "reset_breaker" => Ok(ValveChange::ResetBreaker {}),
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
                    Error::invalid(
                        "claims_per_hour",
                        format!("'{n}' is not a whole number of claims"),
                    )
                }),
        },
        other => Err(Error::invalid(
            "action",
            format!("'{other}': pause, resume, reset_breaker or rate_limit"),
        )),
    };
    act(&state, &v, &f.csrf, &p.ecosystem, change).await
}

/// `POST /pipeline/stop`: the emergency stop (the pipeline's operators).
pub async fn stop(State(state): State<AppState>, v: Visitor, Form(f): Form<StopForm>) -> PageOr {
    let reason = f.reason.unwrap_or_default().trim().to_string();
    act(
        &state,
        &v,
        &f.csrf,
        ALL_ECOSYSTEMS,
        Ok(ValveChange::Pause { reason }),
    )
    .await
}

/// `POST /pipeline/start`: lift the emergency stop (the pipeline's operators).
pub async fn start(State(state): State<AppState>, v: Visitor, Form(f): Form<StartForm>) -> PageOr {
    act(
        &state,
        &v,
        &f.csrf,
        ALL_ECOSYSTEMS,
        Ok(ValveChange::Resume {}),
    )
    .await
}

/// The engine call the API makes; back to the dashboard, or the dashboard again with why
/// not.
async fn act(
    state: &AppState,
    v: &Visitor,
    csrf: &str,
    ecosystem: &str,
    change: Result<ValveChange, Error>,
) -> PageOr {
    if v.name().is_none() {
        return redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(csrf) {
        return error_page(v, e).into();
    }
    let done = match change {
        Ok(c) => state.registry.pipeline_valve(&v.caller, ecosystem, c).await,
        Err(e) => Err(e),
    };
    match done {
        Ok(_) => redirect_to("/pipeline"),
        Err(e) if e.code == ErrorCode::Internal => error_page(v, e).into(),
        Err(e) => {
            let status = crate::error::status_of(e.code);
            let message = match &e.field {
                Some(f) => format!("{f}: {}", e.message),
                None => e.message.clone(),
            };
            dashboard_with(state, v, &FailureFilter::default(), Some(message), status)
                .await
                .into()
        }
    }
}

// ---- an item ------------------------------------------------------------------------------

/// A queue item in a page's address (`homebrew:node`; a `/` in it as `%2F`).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ItemPagePath {
    id: String,
}

#[derive(Serialize)]
struct Fact {
    term: String,
    value: String,
    href: Option<String>,
}

#[derive(Serialize)]
struct EnvRow {
    environment: String,
    /// `None`: no result there yet.
    passed: Option<bool>,
    category: Option<String>,
    exit_code: Option<i32>,
    at: Option<String>,
}

#[derive(Serialize)]
struct HistoryRow {
    environment: String,
    passed: bool,
    category: Option<String>,
    exit_code: Option<i32>,
    blocked_by: Vec<String>,
    batch_id: Option<String>,
    worker: Option<String>,
    message: Option<String>,
    cut: bool,
    at: String,
}

/// `GET /pipeline/items/{id}`: an item, what blocks it, its matrix, its history.
pub async fn item(
    State(state): State<AppState>,
    v: Visitor,
    Path(p): Path<ItemPagePath>,
) -> Headed<Page> {
    #[derive(Serialize)]
    struct View {
        id: String,
        status: String,
        facts: Vec<Fact>,
        blocked_by: Vec<(String, Vec<String>)>,
        matrix: Vec<EnvRow>,
        history: Vec<HistoryRow>,
        api: String,
    }
    let d = match state.registry.pipeline_item(&p.id).await {
        Ok(d) => d,
        Err(e) => return error_page(&v, e),
    };
    let i = &d.item;
    let fact = |term: &str, value: String| Fact {
        term: term.into(),
        value,
        href: None,
    };
    let mut facts = vec![
        fact("Ecosystem", i.ecosystem.clone()),
        fact("Name", i.name.clone()),
        fact("Status", label(i.status.as_str())),
        fact("Tier", i.tier.to_string()),
        fact("Popularity", format!("{:.3}", i.popularity)),
        fact("Requests", i.requests.to_string()),
        fact("Failed attempts", i.failure_count.to_string()),
        fact("Transient failures in a row", i.retries.to_string()),
    ];
    if let Some(c) = &i.confidence {
        facts.push(fact("Confidence", c.clone()));
    }
    if let Some(t) = i.next_retry_at {
        facts.push(fact("Not claimed before", when(t)));
    }
    if let Some(w) = &i.lease_owner {
        let until = i.lease_until.map(when).unwrap_or_default();
        facts.push(fact("Leased to", format!("{w} until {until}")));
    }
    if let Some(r) = &i.recipe {
        facts.push(Fact {
            term: "Recipe".into(),
            value: format!("{}/{r}", quiver_engine::pipeline::NAMESPACE),
            href: Some(crate::web::entry_href(
                quiver_model::Kind::Recipe,
                quiver_engine::pipeline::NAMESPACE,
                r,
            )),
        });
    }
    facts.push(fact("Added", when(i.created_at)));
    facts.push(fact("Changed", when(i.updated_at)));

    let mut envs: Vec<String> = state.registry.config().pipeline.environments.clone();
    for e in d.environments.keys() {
        if !envs.contains(e) {
            envs.push(e.clone());
        }
    }
    let matrix = envs
        .into_iter()
        .map(|e| match d.environments.get(&e) {
            Some(r) => EnvRow {
                passed: Some(r.result.passed),
                category: r.result.category.clone(),
                exit_code: r.result.exit_code,
                at: Some(when(r.at)),
                environment: e,
            },
            None => EnvRow {
                environment: e,
                passed: None,
                category: None,
                exit_code: None,
                at: None,
            },
        })
        .collect();
    let mut newest_first: Vec<&ResultRecord> = d.history.iter().collect();
    newest_first.sort_by(|a, b| b.at.cmp(&a.at).then(b.id.cmp(&a.id)));
    let history = newest_first
        .into_iter()
        .map(|r| {
            let (message, was_cut) = match &r.result.message {
                Some(m) => {
                    let (m, c) = cut(m, MESSAGE_CHARS);
                    (Some(m), c)
                }
                None => (None, false),
            };
            HistoryRow {
                environment: r.result.environment.clone(),
                passed: r.result.passed,
                category: r.result.category.clone(),
                exit_code: r.result.exit_code,
                blocked_by: r.result.blocked_by.clone(),
                batch_id: r.batch_id.clone(),
                worker: r.worker.clone(),
                message,
                cut: was_cut,
                at: when(r.at),
            }
        })
        .collect();
    let view = View {
        api: format!("/api/v1/pipeline/items/{}", enc(&i.id, SEGMENT)),
        id: i.id.clone(),
        status: label(i.status.as_str()),
        facts,
        blocked_by: d.blocked_by.clone().into_iter().collect(),
        matrix,
        history,
    };
    render(&v, StatusCode::OK, "pipeline_item.html", &view)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_keeps_whole_characters() {
        assert_eq!(cut("abc", 5), ("abc".to_string(), false));
        assert_eq!(cut("ééééé", 2), ("éé …".to_string(), true));
    }

    #[test]
    fn chart_spans_48_hours_with_a_round_top() {
        let now = Timestamp::from_millisecond(100 * HOUR_MS + 1234).unwrap();
        let activity = [
            Activity {
                hour: 99 * HOUR_MS,
                claimed: 7,
                passed: 3,
                failed: 2,
            },
            Activity {
                hour: 100 * HOUR_MS,
                claimed: 1,
                passed: 0,
                failed: 1,
            },
        ];
        let (c, rows) = chart(&activity, now);
        let c = c.expect("a chart");
        assert_eq!((c.y_max, c.y_mid.as_str()), (10, "5"));
        assert_eq!(c.bars.len(), 2);
        assert_eq!(c.claims.split(' ').count(), 48);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].claimed, 1, "newest first");
        assert!(
            c.summary.contains("8 claimed, 3 passed, 3 failed"),
            "{}",
            c.summary
        );
        assert!(chart(&[], now).0.is_none());
    }
}
