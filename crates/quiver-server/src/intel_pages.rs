//! The website's telemetry and A/B test pages: the drift list with its recommendations
//! (`/telemetry/drift`), one pattern's executions hour by hour with a chart of actual
//! against estimated time (`/telemetry/{namespace}/{name}/{capability}/{pattern}`), the
//! A/B tests (`/experiments`) and one test's results with its start, complete and cancel
//! buttons (`/experiments/{name}`). Each is the engine call the JSON API makes, with the
//! same rights; the chart is inline SVG drawn here, so the pages need no script.

use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use jiff::{SignedDuration, Timestamp};
use quiver_engine::experiments::ExperimentAction;
use quiver_engine::telemetry::{Figures, HourFigures};
use quiver_model::{EntryKey, Error, Kind};
use quiver_store::ExperimentFilter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::account_pages::redirect_path;
use crate::reply::{Headed, Page, PageOr};
use crate::session::Visitor;
use crate::web::{entry_href, error_page, render};
use crate::AppState;

/// A window of whole days before now.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct DaysQuery {
    /// Days back from now (1 to 90; default 1 for drift, 7 for a pattern).
    #[serde(default)]
    days: Option<String>,
}

fn days(q: &DaysQuery, default: i64) -> Result<(Timestamp, i64), Error> {
    let d = match q.days.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => default,
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|d| (1..=90).contains(d))
            .ok_or_else(|| Error::invalid("days", "a whole number of days, 1 to 90"))?,
    };
    Ok((Timestamp::now() - SignedDuration::from_hours(24 * d), d))
}

fn num(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{v:.digits$}"))
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "–".into(), |v| format!("{:.1}%", v * 100.0))
}

/// A pattern's figures as the pages show them.
#[derive(Serialize)]
struct FigureRow {
    label: String,
    count: u64,
    success: String,
    time_mean: String,
    time_p50: String,
    time_p90: String,
    time_p99: String,
    cost: String,
    ratio: String,
}

fn row(label: String, f: &Figures) -> FigureRow {
    FigureRow {
        label,
        count: f.count,
        success: pct(f.success_rate),
        time_mean: num(f.time_mean_ms, 0),
        time_p50: num(f.time_p50_ms, 0),
        time_p90: num(f.time_p90_ms, 0),
        time_p99: num(f.time_p99_ms, 0),
        cost: num(f.cost_mean, 2),
        ratio: num(f.ratio_median, 2),
    }
}

// ---- drift ------------------------------------------------------------------------------

/// `GET /telemetry/drift`: the patterns whose estimates are off, with recommendations.
pub async fn drift(
    State(state): State<AppState>,
    v: Visitor,
    Query(q): Query<DaysQuery>,
) -> Headed<Page> {
    #[derive(Serialize)]
    struct Item {
        tool: String,
        href: String,
        pattern_href: String,
        capability: String,
        pattern: String,
        direction: String,
        figures: FigureRow,
        current: Option<String>,
        recommended: Option<String>,
        rmse: Option<String>,
    }
    #[derive(Serialize)]
    struct View {
        days: i64,
        items: Vec<Item>,
    }
    let (since, d) = match days(&q, 1) {
        Ok(x) => x,
        Err(e) => return error_page(&v, e),
    };
    match state.registry.drift(&v.caller, Some(since), None, 30).await {
        Ok(list) => {
            let items = list
                .into_iter()
                .map(|x| {
                    let t = &x.tool;
                    Item {
                        tool: format!("{}/{}", t.namespace, t.name),
                        href: entry_href(t.kind, &t.namespace, &t.name),
                        pattern_href: pattern_href(t, &x.capability, &x.pattern),
                        direction: x.direction,
                        figures: row(String::new(), &x.figures),
                        current: x.recommendation.as_ref().map(|r| r.current.clone()),
                        recommended: x.recommendation.as_ref().map(|r| r.expression.clone()),
                        rmse: x.recommendation.as_ref().map(|r| {
                            format!(
                                "{:.0} → {:.0} ms over {} runs",
                                r.rmse_current_ms, r.rmse_recommended_ms, r.samples
                            )
                        }),
                        capability: x.capability,
                        pattern: x.pattern,
                    }
                })
                .collect();
            render(&v, StatusCode::OK, "drift.html", &View { days: d, items })
        }
        Err(e) => error_page(&v, e),
    }
}

fn pattern_href(t: &EntryKey, capability: &str, pattern: &str) -> String {
    use percent_encoding::utf8_percent_encode as enc;
    let p = crate::web::SEGMENT;
    format!(
        "/telemetry/{}/{}/{}/{}",
        enc(&t.namespace, p),
        enc(&t.name, p),
        enc(capability, p),
        enc(pattern, p)
    )
}

// ---- one pattern ------------------------------------------------------------------------

/// A pattern of a tool, in a page's path.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct PatternPagePath {
    namespace: String,
    name: String,
    capability: String,
    pattern: String,
}

/// The chart's size, in SVG units.
const CHART_W: f64 = 640.0;
const CHART_H: f64 = 220.0;
const CHART_PAD: f64 = 36.0;
/// Room for the y axis' labels.
const CHART_LEFT: f64 = 64.0;

/// The chart of a pattern's hours: mean actual time, and the estimate it implies (the
/// mean time over the mean actual/estimate), as polylines over the window's hours.
#[derive(Serialize, Default)]
struct Chart {
    actual: String,
    estimate: String,
    y_max: String,
    x_from: String,
    x_to: String,
    /// Dots of both lines, so that an hour alone between gaps shows.
    dots: Vec<(f64, f64)>,
    estimate_dots: Vec<(f64, f64)>,
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// An hour of the chart: its start (ms), the mean actual time and the implied estimate.
type Point = (f64, f64, Option<f64>);

fn chart(hours: &[HourFigures], since: Timestamp, until: Timestamp) -> Option<Chart> {
    let points: Vec<Point> = hours
        .iter()
        .filter_map(|h| {
            let f = &h.figures;
            let actual = f.time_mean_ms?;
            let estimate = f.ratio_mean.filter(|r| *r > 0.0).map(|r| actual / r);
            let at = h.hour.as_millisecond() as f64;
            Some((at, actual, estimate))
        })
        .collect();
    if points.is_empty() {
        return None;
    }
    let y_max = points
        .iter()
        .map(|(_, a, e)| a.max(e.unwrap_or(0.0)))
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.1;
    let (t0, t1) = (since.as_millisecond() as f64, until.as_millisecond() as f64);
    let x =
        |t: f64| CHART_LEFT + (t - t0) / (t1 - t0).max(1.0) * (CHART_W - CHART_LEFT - CHART_PAD);
    let y = |v: f64| CHART_H - CHART_PAD - v / y_max * (CHART_H - 2.0 * CHART_PAD);
    let line = |pick: &dyn Fn(&Point) -> Option<f64>| {
        points
            .iter()
            .filter_map(|p| pick(p).map(|v| format!("{:.1},{:.1}", x(p.0), y(v))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Some(Chart {
        actual: line(&|p| Some(p.1)),
        estimate: line(&|p| p.2),
        y_max: format!("{y_max:.0}"),
        x_from: since.strftime("%Y-%m-%d %H:00").to_string(),
        x_to: until.strftime("%Y-%m-%d %H:00").to_string(),
        dots: points
            .iter()
            .map(|p| (round1(x(p.0)), round1(y(p.1))))
            .collect(),
        estimate_dots: points
            .iter()
            .filter_map(|p| p.2.map(|e| (round1(x(p.0)), round1(y(e)))))
            .collect(),
    })
}

/// `GET /telemetry/{namespace}/{name}/{capability}/{pattern}`: a pattern's executions.
pub async fn pattern(
    State(state): State<AppState>,
    v: Visitor,
    Path(p): Path<PatternPagePath>,
    Query(q): Query<DaysQuery>,
) -> Headed<Page> {
    #[derive(Serialize)]
    struct View {
        tool: String,
        href: String,
        capability: String,
        pattern: String,
        days: i64,
        all: FigureRow,
        versions: Vec<FigureRow>,
        environments: Vec<FigureRow>,
        hours: Vec<FigureRow>,
        chart: Option<Chart>,
        api: String,
    }
    let (since, d) = match days(&q, 7) {
        Ok(x) => x,
        Err(e) => return error_page(&v, e),
    };
    let key = EntryKey::new(Kind::Tool, &p.namespace, &p.name);
    let until = Timestamp::now();
    let report = state
        .registry
        .pattern_report(
            &v.caller,
            &key,
            &p.capability,
            &p.pattern,
            Some(since),
            Some(until),
        )
        .await;
    match report {
        Ok(r) => {
            let view = View {
                tool: format!("{}/{}", key.namespace, key.name),
                href: entry_href(Kind::Tool, &key.namespace, &key.name),
                days: d,
                all: row("all".into(), &r.all),
                versions: r
                    .by_version
                    .iter()
                    .map(|(k, f)| row(k.clone(), f))
                    .collect(),
                environments: r
                    .by_environment
                    .iter()
                    .map(|(k, f)| row(k.clone(), f))
                    .collect(),
                hours: r
                    .by_hour
                    .iter()
                    .rev()
                    .map(|h| row(h.hour.strftime("%Y-%m-%d %H:00").to_string(), &h.figures))
                    .collect(),
                chart: chart(&r.by_hour, since, until),
                api: format!(
                    "/api/v1/telemetry/patterns{}",
                    pattern_href(&key, &p.capability, &p.pattern).trim_start_matches("/telemetry")
                ),
                capability: p.capability,
                pattern: p.pattern,
            };
            render(&v, StatusCode::OK, "pattern.html", &view)
        }
        Err(e) => error_page(&v, e),
    }
}

// ---- A/B tests --------------------------------------------------------------------------

/// `GET /experiments`: the A/B tests of the tools the visitor may read.
pub async fn experiments(State(state): State<AppState>, v: Visitor) -> Headed<Page> {
    experiments_page(&state, &v, NewExperimentForm::default(), None).await
}

/// The list, and (for signed-in visitors) the creation form with what was typed and
/// the problem, when a creation was refused.
async fn experiments_page(
    state: &AppState,
    v: &Visitor,
    form: NewExperimentForm,
    problem: Option<Error>,
) -> Headed<Page> {
    #[derive(Serialize)]
    struct View {
        tests: Vec<quiver_store::Experiment>,
        csrf: Option<String>,
        form: NewExperimentForm,
        problem: Option<String>,
    }
    let status = if problem.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    match state
        .registry
        .experiments(&v.caller, ExperimentFilter::default())
        .await
    {
        Ok(tests) => render(
            v,
            status,
            "experiments.html",
            &View {
                tests,
                csrf: v.name().and_then(|_| v.csrf()),
                form,
                problem: problem.map(|e| match &e.field {
                    Some(f) => format!("{f}: {}", e.message),
                    None => e.message,
                }),
            },
        ),
        Err(e) => error_page(v, e),
    }
}

/// The creation form of an A/B test (the tool's maintainers).
#[derive(Debug, Default, Clone, Serialize, Deserialize, JsonSchema)]
pub struct NewExperimentForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    /// The tool, `namespace/name`.
    #[serde(default)]
    tool: String,
    #[serde(default)]
    capability: String,
    /// `versions` or `patterns`.
    #[serde(default)]
    subject: String,
    #[serde(default)]
    arm_a: String,
    #[serde(default)]
    arm_b: String,
    /// The share of subjects for arm b, 0 to 1 (default 0.5).
    #[serde(default)]
    split: String,
    #[serde(default)]
    description: String,
    /// `on`: start it at once.
    #[serde(default)]
    start: Option<String>,
}

/// `POST /experiments`: create an A/B test from the form.
pub async fn create_experiment(
    State(state): State<AppState>,
    v: Visitor,
    Form(f): Form<NewExperimentForm>,
) -> PageOr {
    if v.name().is_none() {
        return crate::account_pages::redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let new = (|| -> quiver_model::Result<quiver_engine::experiments::NewExperiment> {
        let subject = match f.subject.as_str() {
            "versions" => quiver_store::ExperimentSubject::Versions,
            "patterns" => quiver_store::ExperimentSubject::Patterns,
            other => {
                return Err(Error::invalid(
                    "subject",
                    format!("'{other}': versions or patterns"),
                ))
            }
        };
        let split = match f.split.trim() {
            "" => None,
            x => Some(x.parse::<f64>().map_err(|_| {
                Error::invalid("split", format!("'{x}' is not a number between 0 and 1"))
            })?),
        };
        Ok(quiver_engine::experiments::NewExperiment {
            name: f.name.trim().to_string(),
            description: f.description.trim().to_string(),
            tool: f.tool.trim().to_string(),
            capability: f.capability.trim().to_string(),
            subject,
            arm_a: f.arm_a.trim().to_string(),
            arm_b: f.arm_b.trim().to_string(),
            split,
            environment: None,
            callers: vec![],
            min_samples: None,
            auto_complete: false,
            start: f.start.as_deref().is_some_and(|s| !s.is_empty()),
        })
    })();
    let created = match new {
        Ok(n) => state.registry.create_experiment(&v.caller, n).await,
        Err(e) => Err(e),
    };
    match created {
        Ok(e) => {
            use percent_encoding::utf8_percent_encode as enc;
            redirect_path(
                &v,
                format!("/experiments/{}", enc(&e.name, crate::web::SEGMENT)),
            )
        }
        Err(e) if e.code == quiver_model::ErrorCode::InvalidInput => {
            let mut kept = f.clone();
            kept.csrf = String::new();
            experiments_page(&state, &v, kept, Some(e)).await.into()
        }
        Err(e) => error_page(&v, e).into(),
    }
}

/// An A/B test, in a page's path.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExperimentPagePath {
    name: String,
}

/// `GET /experiments/{name}`: a test's results, and its buttons.
pub async fn experiment(
    State(state): State<AppState>,
    v: Visitor,
    Path(p): Path<ExperimentPagePath>,
) -> Headed<Page> {
    #[derive(Serialize)]
    struct Arm {
        arm: String,
        share: String,
        figures: FigureRow,
        winner: bool,
    }
    #[derive(Serialize)]
    struct View {
        r: quiver_engine::experiments::ExperimentResults,
        tool_href: String,
        arms: Vec<Arm>,
        tests: Vec<String>,
        csrf: Option<String>,
    }
    match state.registry.experiment_results(&v.caller, &p.name).await {
        Ok(r) => {
            let arms = r
                .arms
                .iter()
                .map(|a| Arm {
                    arm: a.arm.clone(),
                    share: format!("{:.0}%", a.share * 100.0),
                    winner: r.experiment.winner.as_deref() == Some(a.arm.as_str()),
                    figures: FigureRow {
                        label: a.arm.clone(),
                        count: a.count,
                        success: pct(a.success_rate),
                        time_mean: num(a.time_mean_ms, 0),
                        time_p50: num(a.time_p50_ms, 0),
                        time_p90: num(a.time_p90_ms, 0),
                        time_p99: num(a.time_p99_ms, 0),
                        cost: num(a.cost_mean, 2),
                        ratio: String::new(),
                    },
                })
                .collect();
            let tests = [&r.success, &r.time]
                .into_iter()
                .flatten()
                .map(|s| {
                    format!(
                        "{}: statistic {:.3}, p = {:.4} ({}; better: {})",
                        s.test,
                        s.statistic,
                        s.p_value,
                        if s.significant {
                            "significant"
                        } else {
                            "not significant"
                        },
                        s.better
                    )
                })
                .collect();
            let e = &r.experiment;
            let view = View {
                tool_href: entry_href(Kind::Tool, &e.namespace, &e.tool),
                arms,
                tests,
                // The buttons are for signed-in visitors (the engine then decides whether
                // they may act); an anonymous one who holds a form cookie sees none.
                csrf: v.name().and_then(|_| v.csrf()),
                r,
            };
            render(&v, StatusCode::OK, "experiment.html", &view)
        }
        Err(e) => error_page(&v, e),
    }
}

/// The buttons' form on a test's page.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct ExperimentForm {
    csrf: String,
    /// `start`, `complete` or `cancel`.
    action: String,
    /// For `complete`: the winning arm (default: the one the results declare).
    #[serde(default)]
    winner: Option<String>,
}

/// `POST /experiments/{name}`: start, complete or cancel (the tool's maintainers).
pub async fn experiment_action(
    State(state): State<AppState>,
    v: Visitor,
    Path(p): Path<ExperimentPagePath>,
    Form(f): Form<ExperimentForm>,
) -> PageOr {
    if v.name().is_none() {
        return crate::account_pages::redirect_to("/signin");
    }
    if let Err(e) = v.check_csrf(&f.csrf) {
        return error_page(&v, e).into();
    }
    let action = match f.action.as_str() {
        "start" => ExperimentAction::Start,
        "complete" => ExperimentAction::Complete {
            winner: f.winner.filter(|w| !w.trim().is_empty()),
        },
        "cancel" => ExperimentAction::Cancel,
        other => {
            return error_page(
                &v,
                Error::invalid("action", format!("'{other}': start, complete or cancel")),
            )
            .into()
        }
    };
    match state
        .registry
        .change_experiment(&v.caller, &p.name, action)
        .await
    {
        Ok(e) => {
            use percent_encoding::utf8_percent_encode as enc;
            redirect_path(
                &v,
                format!("/experiments/{}", enc(&e.name, crate::web::SEGMENT)),
            )
        }
        Err(e) => error_page(&v, e).into(),
    }
}
