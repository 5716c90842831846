//! `quiver-bench --pipeline`: the recipe pipeline at scale (the queue, claims, reports,
//! failure history and its analyses), through HTTP against a fresh `quiver serve`.
//!
//! 1. A fresh server (the embedded SQLite, or a fresh PostgreSQL schema with
//!    `--backend postgres`, dropped at the end), open on loopback: the bench operates the
//!    pipeline as the open server's anonymous caller.
//! 2. A synthetic queue made from the seed's real files (`--pipeline-fixtures`: the unified
//!    `queues/priority-queue.json` and `failures/*.jsonl`): their ecosystem mix, tiers,
//!    statuses and confidences, and their failures' environments, categories, exit codes,
//!    messages and `blocked_by` names, multiplied with numbered names up to
//!    `--pipeline-items` items and `--pipeline-failures` failure records. All draws are
//!    seeded (`--seed`): two runs load the same rows.
//!    - 2% of the items are blocked by missing dependencies: their only failure records
//!      (2% of all) are `missing_dependency` ones naming 1 to 3 dependencies of a pool of
//!      3,000 names (skewed: a few block many), about a third of which are the names of
//!      blocked items themselves, so that the blockers report has transitive work.
//!    - The other records go to 40% of the items (the history of items that failed).
//! 3. The load, through `POST /api/v1/pipeline/items` (10,000 a call) and
//!    `POST /api/v1/pipeline/failures` (10,000 a call, or fewer to stay under the server's
//!    4 MiB body limit), by `--concurrency` loaders: items/s and records/s.
//! 4. Measures, each through HTTP on loopback with keep-alive connections:
//!    - `--pipeline-claims` claims of 100 by one worker, each followed by the report of its
//!      items (mixed results over the server's environments: 70% pass everywhere, 10%
//!      pass on Linux only, 13% fail, 4% miss dependencies, 3% transient), latency;
//!    - `--concurrency` workers (4 unless `--concurrency` is given) looping claim 100 →
//!      report for 20 s: items claimed and reported per second;
//!    - the blockers report (`GET /blockers?limit=20`), 20 calls;
//!    - item details with history (`GET /items/{id}`) of random items that have
//!      failures, 500 calls;
//!    - failure queries (`GET /failures?…&limit=50`) by ecosystem, environment and
//!      category; the status page; capability gaps (3 calls);
//!    - the server's peak RSS (VmHWM).
//! 5. A block of figures, the bars, and the exact command line.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::data::{encode_query_value, Rng};
use super::stats::{fmt_bytes, fmt_int, fmt_ms, fmt_secs, Lat, LatSummary};
use super::{pg, proc};

/// A progress line on stderr.
macro_rules! note {
    ($($arg:tt)*) => {{
        eprintln!("bench: {}", format!($($arg)*));
    }};
}

/// Items and records per POST (the API's maximum).
const LOAD_BATCH: usize = 10_000;
/// A failure POST is cut before this many bytes (the server refuses bodies over 4 MiB).
const MAX_BODY: usize = 3_500_000;
/// Items per claim.
const CLAIM: usize = 100;
/// Seconds of the throughput test.
const THROUGHPUT_SECS: f64 = 20.0;
/// Workers of the throughput test unless `--concurrency` is given.
const DEFAULT_WORKERS: usize = 4;
/// The dependency pool's size, and how many of its names are names of blocked items.
const POOL: usize = 3_000;
const POOL_ITEMS: usize = 1_000;
/// The failure history spans this many days before now.
const HISTORY_DAYS: i64 = 90;
/// An ecosystem no item has (the failures query that matches nothing).
const NO_ECOSYSTEM: &str = "maven";
/// Longest wait for a load POST, a claim or report, and an analysis.
const LOAD_WAIT: Duration = Duration::from_secs(300);
const OP_WAIT: Duration = Duration::from_secs(60);
const REPORT_WAIT: Duration = Duration::from_secs(600);

// ---- the figures ----------------------------------------------------------------------

#[derive(Debug, Default, Serialize)]
pub struct PipelineFigures {
    pub backend: String,
    pub command: String,
    /// Where the real mix came from (or that it is the built-in fallback).
    pub seed_source: String,
    pub seed_queue_entries: usize,
    pub seed_failure_templates: usize,
    pub seed_dependency_names: usize,
    pub items: usize,
    pub blocked_items: usize,
    pub failing_items: usize,
    pub dependency_pool: usize,
    pub dependency_pool_items: usize,
    pub loaders: usize,
    pub workers: usize,

    pub items_inserted: u64,
    pub items_secs: f64,
    pub items_per_sec: f64,
    pub records_recorded: u64,
    pub records_requests: u64,
    pub records_secs: f64,
    pub records_per_sec: f64,
    pub rss_after_load_bytes: u64,

    /// One worker: claim of 100, then the report of those items.
    pub claim: LatSummary,
    pub claim_report: LatSummary,
    pub claims_short: u64,
    pub claimed_single: u64,

    pub throughput_secs: f64,
    pub throughput_claims: u64,
    pub throughput_claimed: u64,
    pub throughput_reported: u64,
    pub throughput_not_applied: u64,
    pub throughput_empty_claims: u64,
    pub claimed_per_sec: f64,
    pub reported_per_sec: f64,
    pub throughput_claim: LatSummary,
    pub throughput_report: LatSummary,

    pub blockers: LatSummary,
    /// The first answer's top of the ranking: (dependency, direct, total, impact).
    pub blockers_top: Vec<(String, u64, u64, f64)>,
    pub item_history: LatSummary,
    pub item_history_mean_len: f64,
    pub failures_by_ecosystem: LatSummary,
    pub failures_by_environment: LatSummary,
    pub failures_by_category: LatSummary,
    pub status: LatSummary,
    pub gaps: LatSummary,
    pub gaps_error: Option<String>,
    /// One failures query by an ecosystem that has no failures.
    pub failures_no_match_ms: Option<f64>,
    /// Queue depth by status after the run (from `/status`).
    pub totals: Vec<(String, u64)>,
    pub peak_rss_bytes: u64,
}

// ---- an HTTP/1.1 keep-alive client with bodies ------------------------------------------

/// One keep-alive connection that sends GETs and JSON POSTs, reconnecting when the
/// server closed it (the bench's `http::Client` only GETs).
struct Conn {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    fn new(addr: SocketAddr) -> Self {
        Conn { addr, sender: None }
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        wait: Duration,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        match tokio::time::timeout(wait, self.send_inner(method.clone(), path, body)).await {
            Ok(r) => r,
            Err(_) => {
                self.sender = None;
                Err(anyhow!("{method} {path}: no answer within {wait:?}"))
            }
        }
    }

    async fn send_inner(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let ready = match &mut self.sender {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected");
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, "127.0.0.1");
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(body.unwrap_or_default()))?;
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(anyhow!("{method} {path}: {e}"));
            }
        };
        let status = res.status();
        match res.into_body().collect().await {
            Ok(b) => Ok((status, b.to_bytes())),
            Err(e) => {
                self.sender = None;
                Err(anyhow!("{method} {path}: reading the body: {e}"))
            }
        }
    }

    /// A request that must succeed: its body.
    async fn ok(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        wait: Duration,
    ) -> anyhow::Result<Bytes> {
        let (s, answer) = self.send(method.clone(), path, body, wait).await?;
        if !s.is_success() {
            let text = String::from_utf8_lossy(&answer);
            bail!(
                "{method} {path}: {s} {}",
                text.chars().take(500).collect::<String>()
            );
        }
        Ok(answer)
    }

    async fn get(&mut self, path: &str, wait: Duration) -> anyhow::Result<Bytes> {
        self.ok(Method::GET, path, None, wait).await
    }

    async fn post(&mut self, path: &str, body: Vec<u8>, wait: Duration) -> anyhow::Result<Bytes> {
        self.ok(Method::POST, path, Some(Bytes::from(body)), wait)
            .await
    }
}

// ---- the seed's real mix --------------------------------------------------------------

/// An entry of the real queue.
#[derive(Debug, Clone)]
struct SeedItem {
    ecosystem: String,
    name: String,
    tier: i32,
    status: &'static str,
    confidence: Option<String>,
}

/// A real failure, the shape of the synthetic ones.
#[derive(Debug, Clone)]
struct Template {
    environment: String,
    category: Option<String>,
    exit_code: Option<i32>,
    message: Option<String>,
    /// The package the message is about (replaced by the synthetic item's name).
    name: String,
}

struct Seed {
    source: String,
    items: Vec<SeedItem>,
    templates: Vec<Template>,
    dependencies: Vec<String>,
}

fn item_status(s: &str) -> &'static str {
    match s {
        "success" => "success",
        "failed" => "failed",
        "blocked" => "blocked",
        "excluded" => "excluded",
        "requires_manual" => "requires_manual",
        _ => "pending",
    }
}

/// The seed's queue and failures under `dir`, or a small built-in mix when absent.
fn read_seed(dir: &Path) -> anyhow::Result<Seed> {
    let mut seed = Seed {
        source: String::new(),
        items: vec![],
        templates: vec![],
        dependencies: vec![],
    };
    let mut sources = Vec::new();
    let queue = dir.join("queues/priority-queue.json");
    if queue.is_file() {
        let v: Value = serde_json::from_slice(&std::fs::read(&queue)?)
            .with_context(|| format!("reading {}", queue.display()))?;
        let mut seen = HashSet::new();
        for e in v["entries"].as_array().into_iter().flatten() {
            let Some((eco, name)) = e["source"].as_str().and_then(|s| s.split_once(':')) else {
                continue;
            };
            if eco.is_empty() || name.is_empty() || !seen.insert((eco, name)) {
                continue;
            }
            seed.items.push(SeedItem {
                ecosystem: eco.to_string(),
                name: name.to_string(),
                tier: e["priority"].as_i64().unwrap_or(3).clamp(1, 3) as i32,
                status: item_status(e["status"].as_str().unwrap_or("pending")),
                confidence: e["confidence"].as_str().map(str::to_string),
            });
        }
        sources.push(queue.display().to_string());
    }
    let failures = dir.join("failures");
    let mut deps = std::collections::BTreeSet::new();
    if failures.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&failures)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        for f in &files {
            let text = std::fs::read_to_string(f)?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(d) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                let text = |v: &Value| v.as_str().map(str::to_string);
                let code = |v: &Value| v.as_i64().map(|c| c as i32);
                let mut lines = Vec::new();
                if let Some(fs) = d["failures"].as_array() {
                    let env = text(&d["environment"]).unwrap_or_default();
                    for r in fs {
                        let name = r["package_id"]
                            .as_str()
                            .and_then(|p| p.split_once(':'))
                            .map_or(String::new(), |(_, n)| n.to_string());
                        lines.push((env.clone(), r, name));
                    }
                } else {
                    let env = text(&d["platform"]).unwrap_or_default();
                    let name = text(&d["recipe"]).unwrap_or_default();
                    lines.push((env, &d, name));
                }
                for (environment, r, name) in lines {
                    if environment.is_empty() {
                        continue;
                    }
                    let blocked: Vec<String> = r["blocked_by"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(text)
                        .collect();
                    let category = text(&r["category"]);
                    if !blocked.is_empty()
                        || matches!(
                            category.as_deref(),
                            Some("missing_dep" | "missing_dependency")
                        )
                    {
                        // The synthetic missing dependencies are made apart (2% of all).
                        deps.extend(blocked);
                        continue;
                    }
                    seed.templates.push(Template {
                        environment,
                        category,
                        exit_code: code(&r["exit_code"]),
                        message: text(&r["message"]).filter(|m| !m.is_empty()),
                        name,
                    });
                }
            }
        }
        sources.push(format!("{} ({} files)", failures.display(), files.len()));
    }
    seed.dependencies = deps.into_iter().collect();
    if seed.items.is_empty() {
        note!(
            "pipeline: no queue at {}: a built-in ecosystem mix is used",
            queue.display()
        );
        for (eco, name, n) in [
            ("homebrew", "node", 92),
            ("github", "sharkdp/bat", 2),
            ("cargo", "ripgrep", 2),
            ("rubygems", "rails", 2),
            ("npm", "typescript", 1),
            ("pypi", "black", 1),
        ] {
            for k in 0..n {
                seed.items.push(SeedItem {
                    ecosystem: eco.into(),
                    name: format!("{name}{k}"),
                    tier: 3,
                    status: if k % 4 == 0 { "success" } else { "pending" },
                    confidence: Some("auto".into()),
                });
            }
        }
    }
    if seed.templates.is_empty() {
        note!(
            "pipeline: no failure files under {}: built-in failure shapes are used",
            failures.display()
        );
        for (env, cat, code, msg) in [
            (
                "linux-glibc-x86_64",
                "install_failed",
                None,
                "install failed",
            ),
            ("linux-alpine-musl-x86_64", "deterministic", Some(6), ""),
            (
                "linux-glibc-x86_64",
                "generation_failed",
                Some(6),
                "generation failed",
            ),
            ("darwin-arm64", "timeout", Some(124), ""),
        ] {
            seed.templates.push(Template {
                environment: env.into(),
                category: Some(cat.into()),
                exit_code: code,
                message: (!msg.is_empty()).then(|| msg.to_string()),
                name: String::new(),
            });
        }
    }
    if seed.dependencies.is_empty() {
        seed.dependencies = ["openssl@3", "libpng", "icu4c", "ada-url", "llhttp", "luv"]
            .map(String::from)
            .to_vec();
    }
    seed.source = if sources.is_empty() {
        "built-in".into()
    } else {
        sources.join(", ")
    };
    Ok(seed)
}

// ---- the synthetic queue ---------------------------------------------------------------

/// A seeded hash of `i` (SplitMix64's finalizer).
fn mix(seed: u64, i: u64) -> u64 {
    let mut z = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1).
fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

const SALT_BLOCKED: u64 = 0xB10C;
const SALT_FAILING: u64 = 0xFA11;
const SALT_DEPS: u64 = 0xDE95;
const SALT_POP: u64 = 0x9091;
const SALT_RECORD: u64 = 0x7EC0;
const SALT_RESULT: u64 = 0x2E5A;

/// Item `i` is copy `i / bases` of seed entry `i % bases` (copy 0 keeps the real name,
/// copy k is `<name>-<k>`).
struct Universe {
    seed: u64,
    n: usize,
    bases: Vec<SeedItem>,
    sep: &'static str,
    templates: Vec<Template>,
    /// Items blocked by missing dependencies, and items with other failures.
    blocked: Vec<u32>,
    failing: Vec<u32>,
    pool: Vec<String>,
    pool_items: usize,
}

impl Universe {
    fn new(seed_data: Seed, n: usize, seed: u64) -> Universe {
        let bases = seed_data.items;
        // A copy's name must not be a real name of the same ecosystem.
        let real: HashSet<(String, String)> = bases
            .iter()
            .map(|b| (b.ecosystem.clone(), b.name.clone()))
            .collect();
        let copies = n.div_ceil(bases.len().max(1));
        let clash = bases.iter().any(|b| {
            (1..copies).any(|k| real.contains(&(b.ecosystem.clone(), format!("{}-{k}", b.name))))
        });
        let mut u = Universe {
            seed,
            n,
            bases,
            sep: if clash { "-n" } else { "-" },
            templates: seed_data.templates,
            blocked: vec![],
            failing: vec![],
            pool: vec![],
            pool_items: 0,
        };
        for i in 0..n {
            if u.is_blocked(i) {
                u.blocked.push(i as u32);
            } else if mix(seed ^ SALT_FAILING, i as u64) % 10 < 4 {
                u.failing.push(i as u32);
            }
        }
        if u.blocked.is_empty() && u.failing.is_empty() {
            // A tiny queue: its first item takes the failures.
            u.failing.push(0);
        }
        // The pool: names of blocked items (transitive blocks), the real dependency
        // names, and numbered variants of these, shuffled so that the skewed draws hit
        // item names at every rank.
        let step = (u.blocked.len() / POOL_ITEMS.min(u.blocked.len() / 3).max(1)).max(1);
        let mut pool: Vec<String> = u
            .blocked
            .iter()
            .step_by(step)
            .take(POOL_ITEMS)
            .map(|&i| u.name(i as usize))
            .collect();
        u.pool_items = pool.len();
        let real_deps = &seed_data.dependencies;
        let mut k = 0usize;
        while pool.len() < POOL {
            let d = &real_deps[k % real_deps.len()];
            let round = k / real_deps.len();
            pool.push(if round == 0 {
                d.clone()
            } else {
                format!("{d}-{round}")
            });
            k += 1;
        }
        let mut rng = Rng::new(seed ^ SALT_DEPS);
        rng.shuffle(&mut pool);
        u.pool = pool;
        u
    }

    fn base(&self, i: usize) -> &SeedItem {
        &self.bases[i % self.bases.len()]
    }

    fn name(&self, i: usize) -> String {
        let b = self.base(i);
        match i / self.bases.len() {
            0 => b.name.clone(),
            k => format!("{}{}{k}", b.name, self.sep),
        }
    }

    fn id(&self, i: usize) -> String {
        format!("{}:{}", self.base(i).ecosystem, self.name(i))
    }

    fn is_blocked(&self, i: usize) -> bool {
        mix(self.seed ^ SALT_BLOCKED, i as u64).is_multiple_of(50)
    }

    fn popularity(&self, i: usize) -> f64 {
        let u = unit(mix(self.seed ^ SALT_POP, i as u64));
        match self.base(i).tier {
            1 => 0.6 + 0.4 * u,
            2 => 0.3 + 0.5 * u,
            _ => 0.6 * u.powi(4),
        }
    }

    /// A dependency of the pool, skewed towards its first names.
    fn dependency(&self, r: &mut Rng) -> &str {
        let u = unit(r.next_u64());
        &self.pool[((u * u * u) * self.pool.len() as f64) as usize % self.pool.len()]
    }

    /// The missing dependencies of blocked item `i` (the same on every environment).
    fn dependencies_of(&self, i: usize) -> Vec<&str> {
        let mut r = Rng::new(mix(self.seed ^ SALT_DEPS, i as u64));
        let n = 1 + r.below(3);
        let mut out: Vec<&str> = (0..n).map(|_| self.dependency(&mut r)).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Items that have failure records.
    fn with_failures(&self, r: &mut Rng) -> usize {
        let k = r.below(self.blocked.len() + self.failing.len());
        if k < self.blocked.len() {
            self.blocked[k] as usize
        } else {
            self.failing[k - self.blocked.len()] as usize
        }
    }
}

#[derive(Serialize)]
struct ItemOut<'a> {
    id: String,
    tier: i32,
    popularity: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    confidence: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
}

#[derive(Serialize)]
struct ItemsBody<'a> {
    items: Vec<ItemOut<'a>>,
    replace: bool,
}

fn items_body(u: &Universe, from: usize, to: usize) -> anyhow::Result<Vec<u8>> {
    let items = (from..to)
        .map(|i| {
            let b = u.base(i);
            let status = if u.is_blocked(i) { "blocked" } else { b.status };
            ItemOut {
                id: u.id(i),
                tier: b.tier,
                popularity: u.popularity(i),
                confidence: b.confidence.as_deref(),
                status: (status != "pending").then_some(status),
            }
        })
        .collect();
    Ok(serde_json::to_vec(&ItemsBody {
        items,
        replace: false,
    })?)
}

#[derive(Serialize)]
struct RecordOut<'a> {
    id: String,
    environment: &'a str,
    passed: bool,
    category: Option<&'a str>,
    exit_code: Option<i32>,
    message: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    blocked_by: Vec<&'a str>,
    batch_id: String,
    at: Timestamp,
}

/// A message about `from` rewritten about `to`.
fn retarget<'a>(message: &'a str, from: &str, to: &str) -> Cow<'a, str> {
    if from.len() >= 3 && message.contains(from) {
        Cow::Owned(message.replace(from, to))
    } else {
        Cow::Borrowed(message)
    }
}

/// Failure record `j`.
fn record(u: &Universe, j: usize, now_ms: i64) -> RecordOut<'_> {
    let mut r = Rng::new(mix(u.seed ^ SALT_RECORD, j as u64));
    let span = HISTORY_DAYS * 86_400_000;
    let at = Timestamp::from_millisecond(now_ms - span + r.below(span as usize) as i64)
        .unwrap_or_else(|_| Timestamp::now());
    let batch_id = format!("bench-history-{:05}", j / LOAD_BATCH);
    if (r.below(50) == 0 && !u.blocked.is_empty()) || u.failing.is_empty() {
        let i = *r.pick(&u.blocked) as usize;
        let deps = u.dependencies_of(i);
        let t = r.pick(&u.templates);
        let message = format!(
            "deterministic generation failed: [missing_dep] missing dependencies: {}",
            deps.iter()
                .map(|d| format!("recipe {d} not found in registry"))
                .collect::<Vec<_>>()
                .join("; ")
        );
        return RecordOut {
            id: u.id(i),
            environment: &t.environment,
            passed: false,
            category: Some("missing_dependency"),
            exit_code: None,
            message: Some(Cow::Owned(message)),
            blocked_by: deps,
            batch_id,
            at,
        };
    }
    let i = *r.pick(&u.failing) as usize;
    let t = r.pick(&u.templates);
    let name = u.name(i);
    RecordOut {
        id: u.id(i),
        environment: &t.environment,
        passed: false,
        category: t.category.as_deref(),
        exit_code: t.exit_code,
        message: t
            .message
            .as_deref()
            .map(|m| Cow::Owned(retarget(m, &t.name, &name).into_owned())),
        blocked_by: vec![],
        batch_id,
        at,
    }
}

/// The bodies of failure records `from..to`: at most [`LOAD_BATCH`] records and about
/// [`MAX_BODY`] bytes each.
fn records_bodies(
    u: &Universe,
    from: usize,
    to: usize,
    now_ms: i64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut body = Vec::with_capacity(MAX_BODY + 64 * 1024);
    let mut n = 0usize;
    for j in from..to {
        body.extend_from_slice(if n == 0 { b"{\"records\":[" } else { b"," });
        serde_json::to_writer(&mut body, &record(u, j, now_ms))?;
        n += 1;
        if n == LOAD_BATCH || body.len() >= MAX_BODY {
            body.extend_from_slice(b"]}");
            out.push(std::mem::take(&mut body));
            n = 0;
        }
    }
    if n > 0 {
        body.extend_from_slice(b"]}");
        out.push(body);
    }
    Ok(out)
}

// ---- claims and reports ----------------------------------------------------------------

#[derive(Deserialize)]
struct ClaimedItem {
    id: String,
}

#[derive(Deserialize)]
struct ClaimAnswer {
    items: Vec<ClaimedItem>,
    environments: Vec<String>,
    #[serde(default)]
    held_back: Vec<Value>,
    #[serde(default)]
    stopped: Option<String>,
}

#[derive(Deserialize)]
struct OutcomeAnswer {
    applied: bool,
}

#[derive(Serialize)]
struct EnvOut<'a> {
    environment: &'a str,
    passed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    category: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    blocked_by: Vec<&'a str>,
}

#[derive(Serialize)]
struct ReportItemOut<'a> {
    id: &'a str,
    results: Vec<EnvOut<'a>>,
}

#[derive(Serialize)]
struct ReportOut<'a> {
    worker: &'a str,
    batch_id: &'a str,
    items: Vec<ReportItemOut<'a>>,
}

/// The results of item `id` on `envs`: 70% pass everywhere, 10% on Linux only, 13% fail
/// everywhere (a real failure), 4% miss dependencies, 3% fail transiently.
fn results<'a>(u: &'a Universe, id: &'a str, envs: &'a [String]) -> Vec<EnvOut<'a>> {
    let mut r = Rng::new(mix(
        u.seed ^ SALT_RESULT,
        id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }),
    ));
    let t = r.pick(&u.templates);
    let dep = u.dependency(&mut r);
    let name = id.split_once(':').map_or(id, |(_, n)| n);
    let fail = |env: &'a str| EnvOut {
        environment: env,
        passed: false,
        category: t.category.as_deref(),
        exit_code: t.exit_code,
        message: t.message.as_deref().map(|m| retarget(m, &t.name, name)),
        blocked_by: vec![],
    };
    let pass = |env: &'a str| EnvOut {
        environment: env,
        passed: true,
        category: None,
        exit_code: None,
        message: None,
        blocked_by: vec![],
    };
    let roll = r.below(100);
    envs.iter()
        .map(|e| match roll {
            0..70 => pass(e),
            70..80 if e.starts_with("linux") => pass(e),
            70..93 => fail(e),
            93..97 => EnvOut {
                environment: e,
                passed: false,
                category: Some("missing_dependency"),
                exit_code: None,
                message: Some(Cow::Borrowed("missing dependencies")),
                blocked_by: vec![dep],
            },
            _ => EnvOut {
                environment: e,
                passed: false,
                category: Some("network"),
                exit_code: Some(5),
                message: Some(Cow::Borrowed("network error: connection reset by peer")),
                blocked_by: vec![],
            },
        })
        .collect()
}

/// What one claim → report round did.
struct Round {
    claimed: usize,
    applied: usize,
    claim: Duration,
    report: Option<Duration>,
}

async fn round(conn: &mut Conn, u: &Universe, worker: &str, batch: &str) -> anyhow::Result<Round> {
    let body = serde_json::to_vec(&serde_json::json!({
        "worker": worker, "limit": CLAIM, "ecosystems": [],
    }))?;
    let t = Instant::now();
    let answer = conn.post("/api/v1/pipeline/claim", body, OP_WAIT).await?;
    let claim = t.elapsed();
    let c: ClaimAnswer = serde_json::from_slice(&answer).context("reading a claim's answer")?;
    if let Some(why) = &c.stopped {
        bail!("the pipeline is stopped: {why}");
    }
    if c.items.is_empty() {
        if !c.held_back.is_empty() {
            note!(
                "pipeline: a claim gave nothing; held back: {}",
                serde_json::to_string(&c.held_back)?
            );
        }
        return Ok(Round {
            claimed: 0,
            applied: 0,
            claim,
            report: None,
        });
    }
    let items = c
        .items
        .iter()
        .map(|i| ReportItemOut {
            id: &i.id,
            results: results(u, &i.id, &c.environments),
        })
        .collect();
    let body = serde_json::to_vec(&ReportOut {
        worker,
        batch_id: batch,
        items,
    })?;
    let t = Instant::now();
    let answer = conn.post("/api/v1/pipeline/results", body, OP_WAIT).await?;
    let report = t.elapsed();
    let outcomes: Vec<OutcomeAnswer> =
        serde_json::from_slice(&answer).context("reading a report's answer")?;
    Ok(Round {
        claimed: c.items.len(),
        applied: outcomes.iter().filter(|o| o.applied).count(),
        claim,
        report: Some(report),
    })
}

// ---- the run ----------------------------------------------------------------------------

/// Whether `--concurrency` was given on the command line (its default, 8, is the search
/// test's; the pipeline's bar is for 4 workers).
fn concurrency_given() -> bool {
    std::env::args().any(|a| a == "--concurrency" || a.starts_with("--concurrency="))
}

/// This process's command line, quoted for a POSIX shell.
fn command_line() -> String {
    std::env::args()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c));
            if plain {
                a
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub async fn run(exe: &Path, work: &Path, a: &super::BenchArgs) -> anyhow::Result<()> {
    if a.pipeline_items == 0 || a.pipeline_failures == 0 || a.pipeline_claims == 0 {
        bail!("--pipeline-items, --pipeline-failures and --pipeline-claims must be positive");
    }
    let schema = match a.backend {
        super::Backend::Postgres => {
            let schema = pg::schema_name(std::process::id() as u64 ^ 0x919e);
            pg::connect(&a.postgres_url)
                .await
                .with_context(|| format!("connecting to {}", super::redact_url(&a.postgres_url)))?
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .context("creating the bench's schema")?;
            note!("pipeline: PostgreSQL schema {schema}");
            Some(schema)
        }
        super::Backend::Sqlite => None,
    };
    let database = schema
        .as_ref()
        .map(|s| pg::url_with_schema(&a.postgres_url, s));
    let result = tokio::select! {
        r = measure(exe, work, a, database.as_deref()) => r,
        _ = super::interrupted() => Err(anyhow!("interrupted")),
    };
    // The measure is dropped by now: its server was stopped.
    if let Some(schema) = &schema {
        note!("pipeline: dropping the PostgreSQL schema {schema}");
        if let Err(e) = pg::drop_schema(&a.postgres_url, schema).await {
            eprintln!("bench: could not drop the PostgreSQL schema {schema}: {e:#}");
        }
    }
    let fig = result?;
    print!("{}", render(&fig));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&fig)?);
    }
    Ok(())
}

async fn measure(
    exe: &Path,
    work: &Path,
    a: &super::BenchArgs,
    database: Option<&str>,
) -> anyhow::Result<PipelineFigures> {
    let workers = if concurrency_given() {
        a.concurrency.max(1)
    } else {
        DEFAULT_WORKERS
    };
    let mut fig = PipelineFigures {
        backend: if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        }
        .into(),
        command: command_line(),
        workers,
        loaders: workers,
        ..PipelineFigures::default()
    };

    // 2. The synthetic queue.
    let seed = read_seed(&a.pipeline_fixtures)?;
    fig.seed_source = seed.source.clone();
    fig.seed_queue_entries = seed.items.len();
    fig.seed_failure_templates = seed.templates.len();
    fig.seed_dependency_names = seed.dependencies.len();
    let u = Arc::new(Universe::new(seed, a.pipeline_items, a.seed));
    fig.items = u.n;
    fig.blocked_items = u.blocked.len();
    fig.failing_items = u.failing.len();
    fig.dependency_pool = u.pool.len();
    fig.dependency_pool_items = u.pool_items;
    note!(
        "pipeline: {} items from {} real queue entries ({} blocked, {} with other failures), \
         {} failure records from {} real failures, {} dependency names ({} of them items)",
        fmt_int(u.n as u64),
        fig.seed_queue_entries,
        fmt_int(u.blocked.len() as u64),
        fmt_int(u.failing.len() as u64),
        fmt_int(a.pipeline_failures as u64),
        fig.seed_failure_templates,
        u.pool.len(),
        u.pool_items
    );

    // 1. The server.
    let data = work.join("pipeline");
    let addr = SocketAddr::from(([127, 0, 0, 1], proc::free_port()?));
    let mut node = super::start_node(exe, &data, database, addr, work.join("serve-pipeline.log"))?;
    super::wait_ready(&mut node, addr, Duration::from_secs(300)).await?;
    let pid = node.id();

    // 3. The load.
    let started = Instant::now();
    let batches = u.n.div_ceil(LOAD_BATCH) as u64;
    let next = Arc::new(AtomicU64::new(0));
    let inserted = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..fig.loaders {
        let (u, next, inserted) = (u.clone(), next.clone(), inserted.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return anyhow::Ok(());
                }
                let from = b as usize * LOAD_BATCH;
                let to = (from + LOAD_BATCH).min(u.n);
                let uu = u.clone();
                let body = tokio::task::spawn_blocking(move || items_body(&uu, from, to)).await??;
                let answer = conn.post("/api/v1/pipeline/items", body, LOAD_WAIT).await?;
                let v: Value = serde_json::from_slice(&answer)?;
                inserted.fetch_add(v["inserted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                if (b + 1) % 20 == 0 {
                    note!("pipeline: {} items", fmt_int(to as u64));
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("an item loader")??;
    }
    fig.items_secs = started.elapsed().as_secs_f64();
    fig.items_inserted = inserted.load(Ordering::Relaxed);
    fig.items_per_sec = fig.items_inserted as f64 / fig.items_secs.max(1e-9);
    note!(
        "pipeline: {} items in {}: {:.0} items/s",
        fmt_int(fig.items_inserted),
        fmt_secs(fig.items_secs),
        fig.items_per_sec
    );
    if fig.items_inserted != u.n as u64 {
        bail!(
            "{} items were inserted of {} (a store left from an earlier run?)",
            fig.items_inserted,
            u.n
        );
    }

    let total = a.pipeline_failures;
    let chunks = total.div_ceil(LOAD_BATCH) as u64;
    let now_ms = Timestamp::now().as_millisecond();
    let next = Arc::new(AtomicU64::new(0));
    let recorded = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..fig.loaders {
        let (u, next, recorded, requests) =
            (u.clone(), next.clone(), recorded.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    return anyhow::Ok(());
                }
                let from = c as usize * LOAD_BATCH;
                let to = (from + LOAD_BATCH).min(total);
                let uu = u.clone();
                let bodies =
                    tokio::task::spawn_blocking(move || records_bodies(&uu, from, to, now_ms))
                        .await??;
                for body in bodies {
                    let answer = conn
                        .post("/api/v1/pipeline/failures", body, LOAD_WAIT)
                        .await?;
                    let v: Value = serde_json::from_slice(&answer)?;
                    recorded.fetch_add(v["recorded"].as_u64().unwrap_or(0), Ordering::Relaxed);
                    requests.fetch_add(1, Ordering::Relaxed);
                }
                if (c + 1) % 50 == 0 {
                    let done = recorded.load(Ordering::Relaxed);
                    note!(
                        "pipeline: {} failure records, {:.0}/s",
                        fmt_int(done),
                        done as f64 / started.elapsed().as_secs_f64()
                    );
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("a failure loader")??;
    }
    fig.records_secs = started.elapsed().as_secs_f64();
    fig.records_recorded = recorded.load(Ordering::Relaxed);
    fig.records_requests = requests.load(Ordering::Relaxed);
    fig.records_per_sec = fig.records_recorded as f64 / fig.records_secs.max(1e-9);
    fig.rss_after_load_bytes = proc::memory(pid).map_or(0, |m| m.0);
    note!(
        "pipeline: {} failure records in {} ({} requests): {:.0} records/s",
        fmt_int(fig.records_recorded),
        fmt_secs(fig.records_secs),
        fig.records_requests,
        fig.records_per_sec
    );

    // 4a. One worker: claim 100, report them.
    note!(
        "pipeline: {} claims of {CLAIM} by one worker",
        a.pipeline_claims
    );
    let mut conn = Conn::new(addr);
    let (mut claim_lat, mut report_lat) = (Lat::default(), Lat::default());
    for k in 0..a.pipeline_claims {
        let r = round(&mut conn, &u, "bench-latency", &format!("lat-{k}")).await?;
        claim_lat.record(r.claim);
        if let Some(d) = r.report {
            report_lat.record(d);
        }
        if r.claimed < CLAIM {
            fig.claims_short += 1;
        }
        fig.claimed_single += r.claimed as u64;
        if (k + 1) % 500 == 0 {
            note!(
                "pipeline: {} claims, p95 so far {}",
                k + 1,
                fmt_ms(claim_lat.summary().p95_ms)
            );
        }
    }
    fig.claim = claim_lat.summary();
    fig.claim_report = report_lat.summary();
    note!(
        "pipeline: claim of {CLAIM}: {}; report: {}; {} short",
        brief(&fig.claim),
        brief(&fig.claim_report),
        fig.claims_short
    );

    // 4b. Workers for a while.
    note!("pipeline: {workers} workers claiming and reporting for {THROUGHPUT_SECS:.0} s");
    let claimed = Arc::new(AtomicU64::new(0));
    let applied = Arc::new(AtomicU64::new(0));
    let reported = Arc::new(AtomicU64::new(0));
    let claims = Arc::new(AtomicU64::new(0));
    let empty = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(THROUGHPUT_SECS);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (u, claimed, applied, reported, claims, empty) = (
            u.clone(),
            claimed.clone(),
            applied.clone(),
            reported.clone(),
            claims.clone(),
            empty.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let worker = format!("bench-worker-{w}");
            let (mut cl, mut rl) = (Lat::default(), Lat::default());
            let mut k = 0u64;
            while Instant::now() < deadline {
                let r = round(&mut conn, &u, &worker, &format!("w{w}-{k}")).await?;
                k += 1;
                claims.fetch_add(1, Ordering::Relaxed);
                claimed.fetch_add(r.claimed as u64, Ordering::Relaxed);
                cl.record(r.claim);
                if let Some(d) = r.report {
                    rl.record(d);
                    reported.fetch_add(r.claimed as u64, Ordering::Relaxed);
                    applied.fetch_add(r.applied as u64, Ordering::Relaxed);
                } else {
                    empty.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            anyhow::Ok((cl, rl))
        }));
    }
    let (mut cl, mut rl) = (Lat::default(), Lat::default());
    for t in tasks {
        let (c, r) = t.await.context("a worker")??;
        cl.add(&c);
        rl.add(&r);
    }
    fig.throughput_secs = started.elapsed().as_secs_f64();
    fig.throughput_claims = claims.load(Ordering::Relaxed);
    fig.throughput_claimed = claimed.load(Ordering::Relaxed);
    fig.throughput_reported = applied.load(Ordering::Relaxed);
    fig.throughput_not_applied = reported.load(Ordering::Relaxed) - fig.throughput_reported;
    fig.throughput_empty_claims = empty.load(Ordering::Relaxed);
    fig.claimed_per_sec = fig.throughput_claimed as f64 / fig.throughput_secs;
    fig.reported_per_sec = fig.throughput_reported as f64 / fig.throughput_secs;
    fig.throughput_claim = cl.summary();
    fig.throughput_report = rl.summary();
    note!(
        "pipeline: {workers} workers: {:.0} items/s claimed, {:.0} reported; claim {}; report {}",
        fig.claimed_per_sec,
        fig.reported_per_sec,
        brief(&fig.throughput_claim),
        brief(&fig.throughput_report)
    );

    // 4c. The blockers report.
    note!("pipeline: blockers report");
    let mut lat = Lat::default();
    for k in 0..20 {
        let t = Instant::now();
        let body = conn
            .get("/api/v1/pipeline/blockers?limit=20", REPORT_WAIT)
            .await?;
        lat.record(t.elapsed());
        if k == 0 {
            let v: Value = serde_json::from_slice(&body)?;
            fig.blockers_top = v
                .as_array()
                .into_iter()
                .flatten()
                .take(5)
                .map(|b| {
                    (
                        b["dependency"].as_str().unwrap_or("").to_string(),
                        b["direct"].as_u64().unwrap_or(0),
                        b["total"].as_u64().unwrap_or(0),
                        b["impact"].as_f64().unwrap_or(0.0),
                    )
                })
                .collect();
            note!(
                "pipeline: first blockers report in {}",
                fmt_ms(t.elapsed().as_secs_f64() * 1e3)
            );
        }
    }
    fig.blockers = lat.summary();
    note!("pipeline: blockers: {}", brief(&fig.blockers));

    // 4d. Items with their history.
    note!("pipeline: item details");
    let mut rng = Rng::new(a.seed ^ 0x4157);
    let mut lat = Lat::default();
    let mut history = 0usize;
    for _ in 0..500 {
        let id = u.id(u.with_failures(&mut rng));
        let path = format!("/api/v1/pipeline/items/{}", encode_query_value(&id));
        let t = Instant::now();
        let body = conn.get(&path, OP_WAIT).await?;
        lat.record(t.elapsed());
        let v: Value = serde_json::from_slice(&body)?;
        history += v["history"].as_array().map_or(0, Vec::len);
    }
    fig.item_history = lat.summary();
    fig.item_history_mean_len = history as f64 / 500.0;
    note!("pipeline: item history: {}", brief(&fig.item_history));

    // 4e. Failure queries.
    note!("pipeline: failure queries");
    let mut ecosystems: Vec<&str> = u.bases.iter().map(|b| b.ecosystem.as_str()).collect();
    ecosystems.sort_unstable();
    ecosystems.dedup();
    let mut environments: Vec<&str> = u.templates.iter().map(|t| t.environment.as_str()).collect();
    environments.sort_unstable();
    environments.dedup();
    let mut categories: Vec<&str> = u
        .templates
        .iter()
        .filter_map(|t| t.category.as_deref())
        .chain(["missing_dependency", "network"])
        .collect();
    categories.sort_unstable();
    categories.dedup();
    let queries: [(&str, &[&str]); 3] = [
        ("ecosystem", &ecosystems),
        ("environment", &environments),
        ("category", &categories),
    ];
    let mut lats = Vec::new();
    for (param, values) in queries {
        let mut lat = Lat::default();
        for k in 0..200 {
            let path = format!(
                "/api/v1/pipeline/failures?{param}={}&limit=50",
                encode_query_value(values[k % values.len()])
            );
            let t = Instant::now();
            conn.get(&path, OP_WAIT).await?;
            lat.record(t.elapsed());
        }
        lats.push(lat.summary());
    }
    fig.failures_by_ecosystem = lats[0];
    fig.failures_by_environment = lats[1];
    fig.failures_by_category = lats[2];
    note!(
        "pipeline: failures by ecosystem: {}; by environment: {}; by category: {}",
        brief(&lats[0]),
        brief(&lats[1]),
        brief(&lats[2])
    );
    // One ecosystem filter that matches no failure (a typo, or an ecosystem not yet fed).
    let t = Instant::now();
    match conn
        .get(
            &format!("/api/v1/pipeline/failures?ecosystem={NO_ECOSYSTEM}&limit=50"),
            REPORT_WAIT,
        )
        .await
    {
        Ok(_) => fig.failures_no_match_ms = Some(t.elapsed().as_secs_f64() * 1e3),
        Err(e) => note!("pipeline: the failures query that matches nothing failed: {e:#}"),
    }
    note!(
        "pipeline: failures of an ecosystem with none: {}",
        fig.failures_no_match_ms.map_or("-".into(), fmt_ms)
    );

    // The status page and the capability gaps.
    let mut lat = Lat::default();
    for _ in 0..20 {
        let t = Instant::now();
        let body = conn.get("/api/v1/pipeline/status", OP_WAIT).await?;
        lat.record(t.elapsed());
        let v: Value = serde_json::from_slice(&body)?;
        fig.totals = v["totals"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
            .collect();
    }
    fig.status = lat.summary();
    note!("pipeline: status: {}", brief(&fig.status));
    note!("pipeline: capability gaps");
    let mut lat = Lat::default();
    for _ in 0..3 {
        let t = Instant::now();
        match conn.get("/api/v1/pipeline/gaps", REPORT_WAIT).await {
            Ok(_) => lat.record(t.elapsed()),
            Err(e) => {
                fig.gaps_error = Some(format!("{e:#}"));
                break;
            }
        }
    }
    fig.gaps = lat.summary();
    note!("pipeline: gaps: {}", brief(&fig.gaps));

    fig.peak_rss_bytes = proc::memory(pid).map_or(0, |m| m.0);
    note!(
        "pipeline: server peak RSS {}",
        fmt_bytes(fig.peak_rss_bytes)
    );
    node.stop(Duration::from_secs(10));
    Ok(fig)
}

// ---- the report -------------------------------------------------------------------------

/// `p50 … p95 … p99 …` for a progress line.
fn brief(l: &LatSummary) -> String {
    format!(
        "p50 {} p95 {} p99 {}",
        fmt_ms(l.p50_ms),
        fmt_ms(l.p95_ms),
        fmt_ms(l.p99_ms)
    )
}

fn render(f: &PipelineFigures) -> String {
    let mut s = String::new();
    let bar = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let pair = |l: &LatSummary| {
        format!(
            "p50 {}  p95 {}  p99 {}  max {}",
            fmt_ms(l.p50_ms),
            fmt_ms(l.p95_ms),
            fmt_ms(l.p99_ms),
            fmt_ms(l.max_ms)
        )
    };
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "recipe pipeline on {} ({} items, {} failure records)",
        f.backend,
        fmt_int(f.items as u64),
        fmt_int(f.records_recorded)
    );
    let _ = writeln!(s, "  command            {}", f.command);
    let _ = writeln!(
        s,
        "  made from          {} real queue entries, {} real failures, {} real dependency names ({})",
        fmt_int(f.seed_queue_entries as u64),
        fmt_int(f.seed_failure_templates as u64),
        f.seed_dependency_names,
        f.seed_source
    );
    let _ = writeln!(
        s,
        "  synthetic queue    {} blocked items (missing dependencies), {} with other failures; \
         {} dependency names, {} of them blocked items",
        fmt_int(f.blocked_items as u64),
        fmt_int(f.failing_items as u64),
        fmt_int(f.dependency_pool as u64),
        fmt_int(f.dependency_pool_items as u64)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  load items         {} in {}: {} items/s ({} loaders, 10,000 a call)",
        fmt_int(f.items_inserted),
        fmt_secs(f.items_secs),
        fmt_int(f.items_per_sec as u64),
        f.loaders
    );
    let _ = writeln!(
        s,
        "  load failures      {} in {}: {} records/s ({} calls of up to 10,000 / 3.5 MB)",
        fmt_int(f.records_recorded),
        fmt_secs(f.records_secs),
        fmt_int(f.records_per_sec as u64),
        fmt_int(f.records_requests)
    );
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  claim of 100       {}  ({} claims, one worker; {} gave fewer than 100)",
        pair(&f.claim),
        fmt_int(f.claim.count),
        fmt_int(f.claims_short)
    );
    let _ = writeln!(s, "  report of 100      {}", pair(&f.claim_report));
    let _ = writeln!(
        s,
        "  throughput         {} workers for {}: {} items/s claimed, {} items/s reported \
         ({} claims, {} empty, {} not applied)",
        f.workers,
        fmt_secs(f.throughput_secs),
        fmt_int(f.claimed_per_sec as u64),
        fmt_int(f.reported_per_sec as u64),
        fmt_int(f.throughput_claims),
        fmt_int(f.throughput_empty_claims),
        fmt_int(f.throughput_not_applied)
    );
    let _ = writeln!(s, "    claim under load {}", pair(&f.throughput_claim));
    let _ = writeln!(s, "    report under load {}", pair(&f.throughput_report));
    let _ = writeln!(
        s,
        "  blockers report    {}  (20 calls, limit 20)",
        pair(&f.blockers)
    );
    for (dep, direct, total, impact) in &f.blockers_top {
        let _ = writeln!(
            s,
            "    {dep:<24} {direct} direct, {total} in all, impact {impact:.2}"
        );
    }
    let _ = writeln!(
        s,
        "  item history       {}  (500 items with failures, {:.1} records each)",
        pair(&f.item_history),
        f.item_history_mean_len
    );
    let _ = writeln!(
        s,
        "  failures query     by ecosystem {}",
        pair(&f.failures_by_ecosystem)
    );
    let _ = writeln!(
        s,
        "                     by environment {}",
        pair(&f.failures_by_environment)
    );
    let _ = writeln!(
        s,
        "                     by category {}",
        pair(&f.failures_by_category)
    );
    let _ = writeln!(
        s,
        "                     by an ecosystem with no failures ({NO_ECOSYSTEM}): {}  (1 call)",
        f.failures_no_match_ms.map_or("-".into(), fmt_ms)
    );
    let _ = writeln!(s, "  status page        {}", pair(&f.status));
    match &f.gaps_error {
        Some(e) => {
            let _ = writeln!(s, "  capability gaps    FAILED: {e}");
        }
        None => {
            let _ = writeln!(s, "  capability gaps    {}  (3 calls)", pair(&f.gaps));
        }
    }
    let _ = writeln!(
        s,
        "  server memory      peak RSS {} ({} after the load)",
        fmt_bytes(f.peak_rss_bytes),
        fmt_bytes(f.rss_after_load_bytes)
    );
    let totals: Vec<String> = f
        .totals
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {}", fmt_int(*n)))
        .collect();
    let _ = writeln!(s, "  queue after        {}", totals.join(", "));
    let _ = writeln!(s);
    let _ = writeln!(s, "bars");
    let _ = writeln!(
        s,
        "  {}  claim of 100 p95 < 20 ms                 {}",
        bar(f.claim.p95_ms < 20.0),
        fmt_ms(f.claim.p95_ms)
    );
    let _ = writeln!(
        s,
        "  {}  >= 5,000 items/s claimed with {} workers   {}",
        bar(f.claimed_per_sec >= 5_000.0),
        f.workers,
        fmt_int(f.claimed_per_sec as u64)
    );
    let _ = writeln!(
        s,
        "  {}  blockers report p95 < 1 s                {}",
        bar(f.blockers.p95_ms < 1_000.0),
        fmt_ms(f.blockers.p95_ms)
    );
    let _ = writeln!(
        s,
        "  {}  item history p95 < 10 ms                 {}",
        bar(f.item_history.p95_ms < 10.0),
        fmt_ms(f.item_history.p95_ms)
    );
    if f.workers != DEFAULT_WORKERS {
        let _ = writeln!(
            s,
            "  (the throughput bar is set for {DEFAULT_WORKERS} workers; this run had {})",
            f.workers
        );
    }
    if f.claims_short > 0 || f.throughput_empty_claims > 0 {
        let _ = writeln!(
            s,
            "  !! the queue ran short of pending items: the claims are not all of 100"
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> Seed {
        Seed {
            source: "test".into(),
            items: ["node", "jq", "sharkdp/bat"]
                .iter()
                .map(|n| SeedItem {
                    ecosystem: "homebrew".into(),
                    name: n.to_string(),
                    tier: 3,
                    status: "pending",
                    confidence: None,
                })
                .collect(),
            templates: vec![Template {
                environment: "linux-glibc-x86_64".into(),
                category: Some("install_failed".into()),
                exit_code: Some(6),
                message: Some("recipe node failed".into()),
                name: "node".into(),
            }],
            dependencies: vec!["libpng".into()],
        }
    }

    #[test]
    fn the_synthetic_queue() {
        let u = Universe::new(seed(), 5_000, 7);
        assert_eq!(u.id(0), "homebrew:node");
        assert_eq!(u.id(5), "homebrew:sharkdp/bat-1");
        assert_eq!(u.pool.len(), POOL);
        assert!(u.pool_items > 0 && u.pool_items <= u.blocked.len());
        assert!((50..150).contains(&u.blocked.len()), "{}", u.blocked.len());
        let ids: HashSet<String> = (0..u.n).map(|i| u.id(i)).collect();
        assert_eq!(ids.len(), u.n);
        // Deterministic, JSON the API takes, split under the body limit.
        let a = records_bodies(&u, 0, 2_000, 0).unwrap();
        let b = records_bodies(&u, 0, 2_000, 0).unwrap();
        assert_eq!(a, b);
        let v: Value = serde_json::from_slice(&a[0]).unwrap();
        let records = v["records"].as_array().unwrap();
        assert_eq!(records.len(), 2_000);
        let missing = records
            .iter()
            .filter(|r| r["category"] == "missing_dependency")
            .count();
        assert!((10..90).contains(&missing), "{missing}");
        assert!(records
            .iter()
            .filter(|r| r["category"] == "install_failed")
            .all(|r| !r["message"].as_str().unwrap().contains("recipe node ")
                || r["id"] == "homebrew:node"));
        let v: Value = serde_json::from_slice(&items_body(&u, 0, 10).unwrap()).unwrap();
        assert_eq!(v["items"].as_array().unwrap().len(), 10);
        let envs = vec!["linux-glibc-x86_64".to_string(), "darwin-arm64".to_string()];
        let r = results(&u, "homebrew:jq", &envs);
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|e| e.passed || e.category.is_some()));
        assert_eq!(
            retarget("recipe node failed", "node", "x"),
            "recipe x failed"
        );
        assert!(command_line().contains("pipeline") || !command_line().is_empty());
    }
}
