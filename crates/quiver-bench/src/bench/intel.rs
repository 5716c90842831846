//! `quiver-bench --tool-intel`: tool selection and telemetry at scale (issue 13's bars).
//!
//! 1. The real ops tool profiles (`--profiles`, the opsconductor fixtures) are imported
//!    into a scratch store with `quiver import` and read back with `quiver export`, so the
//!    copies below have exactly the manifests quiver keeps for them.
//! 2. `--intel-tools` renamed copies (default 100,000) with perturbed numbers (each
//!    pattern's preference matches ±10%, its time estimate scaled by 0.8 to 1.2: a number
//!    multiplied, an expression wrapped) are written as quiver JSONL and imported into the
//!    measured store (SQLite, or PostgreSQL with `--backend postgres`).
//! 3. `quiver serve`: the first `GET /api/v1/capabilities` (the catalog's build), then
//!    `--intel-selects` selections through HTTP cycling over every capability with a
//!    fixed set of context variables (one connection per request, so the latency
//!    includes connecting).
//! 4. `--intel-events` executions (default 5,000,000) of the patterns of the first 200
//!    tools, in time order over the last 7 days (as they arrive from orchestrators),
//!    posted in batches of 1,000 by `--concurrency` clients: events per second, and the
//!    server's peak memory.
//! 5. With those events stored: pattern reports over the 7 days and drift lists, latency.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::data::Rng;
use super::http::{post_json, Client};
use super::stats::{fmt_bytes, fmt_ms, Lat, LatSummary};
use super::{pg, proc};

/// A progress line on stderr.
macro_rules! note {
    ($($arg:tt)*) => {{
        eprintln!("bench: {}", format!($($arg)*));
    }};
}

/// What the run measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct IntelFigures {
    pub backend: String,
    pub profiles: usize,
    pub tools: usize,
    pub capabilities: usize,
    pub import_secs: f64,
    pub catalog_build_ms: f64,
    pub select: LatSummary,
    pub select_candidates_mean: f64,
    pub events: u64,
    pub ingest_secs: f64,
    pub events_per_sec: f64,
    pub ingest_peak_rss_bytes: u64,
    pub pattern_report: LatSummary,
    pub drift: LatSummary,
    pub drift_patterns: usize,
}

/// The context variables every selection and execution gives (those the profiles'
/// expressions use).
fn variables() -> Value {
    json!({"N": 100, "packet_count": 5000, "duration_ms": 10000, "pages": 3,
           "num_files": 20, "num_entries": 50, "num_directories": 10,
           "num_processes": 40, "num_filesystems": 4, "file_size_kb": 512,
           "network_latency": 20, "dns_latency": 10, "response_time": 100})
}

/// Run `quiver ARGS` to completion, its standard output returned.
pub(super) fn quiver(exe: &Path, args: &[&str], what: &str) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running quiver {what}"))?;
    if !out.status.success() {
        bail!(
            "quiver {what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out.stdout)
}

/// Scale every pattern's numbers of `line` (a JSONL entry) by factors drawn from `rng`.
fn perturb(line: &mut Value, rng: &mut Rng) {
    let Some(versions) = line["versions"].as_array_mut() else {
        return;
    };
    for v in versions {
        let Some(caps) = v["manifest"]["capabilities"].as_object_mut() else {
            continue;
        };
        for cap in caps.values_mut() {
            let Some(patterns) = cap["patterns"].as_object_mut() else {
                continue;
            };
            for p in patterns.values_mut() {
                let f = 0.8 + 0.4 * unit(rng);
                let t = &mut p["time_estimate_ms"];
                match t {
                    Value::Number(n) => *t = json!(n.as_f64().unwrap_or(0.0) * f),
                    Value::String(s) => *t = json!(format!("{f:.3} * ({s})")),
                    _ => {}
                }
                if let Some(prefs) = p["preference_match"].as_object_mut() {
                    for m in prefs.values_mut() {
                        if let Some(x) = m.as_f64() {
                            let g = 0.9 + 0.2 * unit(rng);
                            *m = json!((x * g).clamp(0.0, 1.0));
                        }
                    }
                }
            }
        }
    }
}

/// A uniform number in [0, 1).
fn unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// One target of the telemetry: (tool, version, capability, pattern).
type Target = (String, String, String, String);

pub async fn run(
    exe: &Path,
    work: &Path,
    profiles: &Path,
    a: &super::BenchArgs,
) -> anyhow::Result<()> {
    let schema = match a.backend {
        super::Backend::Postgres => {
            let schema = pg::schema_name(std::process::id() as u64 ^ 0x1e7e);
            pg::connect(&a.postgres_url)
                .await?
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .context("creating the bench's schema")?;
            Some(schema)
        }
        super::Backend::Sqlite => None,
    };
    let database = schema
        .as_ref()
        .map(|s| pg::url_with_schema(&a.postgres_url, s));
    let result = measure(exe, work, profiles, a, database.as_deref()).await;
    if let Some(schema) = &schema {
        if let Err(e) = pg::drop_schema(&a.postgres_url, schema).await {
            eprintln!("bench: could not drop the PostgreSQL schema {schema}: {e:#}");
        }
    }
    let fig = result?;
    print(&fig);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&fig)?);
    }
    Ok(())
}

fn print(f: &IntelFigures) {
    let bar = |ok: bool| if ok { "pass" } else { "FAIL" };
    println!(
        "tool intelligence on {} ({} tools from {} profiles, {} capabilities)",
        f.backend, f.tools, f.profiles, f.capabilities
    );
    println!("  import of the catalog          {:.1} s", f.import_secs);
    println!(
        "  catalog build (first request)  {}",
        fmt_ms(f.catalog_build_ms)
    );
    println!(
        "  select through HTTP            p50 {}  p95 {}  p99 {}  ({} requests, {:.1} candidates each)   bar p95 < 5 ms: {}",
        fmt_ms(f.select.p50_ms),
        fmt_ms(f.select.p95_ms),
        fmt_ms(f.select.p99_ms),
        f.select.count,
        f.select_candidates_mean,
        bar(f.select.p95_ms < 5.0)
    );
    println!(
        "  telemetry ingest               {} events in {:.1} s: {:.0} events/s   bar >= 50,000/s: {}",
        f.events,
        f.ingest_secs,
        f.events_per_sec,
        bar(f.events_per_sec >= 50_000.0)
    );
    println!(
        "  server peak memory (ingest)    {}   bar < 1 GB: {}",
        fmt_bytes(f.ingest_peak_rss_bytes),
        bar(f.ingest_peak_rss_bytes < 1 << 30)
    );
    println!(
        "  pattern report (7 days)        p50 {}  p95 {}   bar p95 < 50 ms: {}",
        fmt_ms(f.pattern_report.p50_ms),
        fmt_ms(f.pattern_report.p95_ms),
        bar(f.pattern_report.p95_ms < 50.0)
    );
    println!(
        "  drift list (7 days)            p50 {}  p95 {}  ({} patterns drift)   bar p95 < 50 ms: {}",
        fmt_ms(f.drift.p50_ms),
        fmt_ms(f.drift.p95_ms),
        f.drift_patterns,
        bar(f.drift.p95_ms < 50.0)
    );
}

async fn measure(
    exe: &Path,
    work: &Path,
    profiles: &Path,
    a: &super::BenchArgs,
    database: Option<&str>,
) -> anyhow::Result<IntelFigures> {
    if !profiles.is_dir() {
        bail!(
            "no ops tool profiles at {} (--profiles): the catalog is built from them",
            profiles.display()
        );
    }
    let mut fig = IntelFigures {
        backend: if database.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
        .into(),
        ..IntelFigures::default()
    };
    // 1. The real profiles, as quiver keeps them.
    let scratch = work.join("intel-profiles");
    let scratch_arg = scratch.to_string_lossy().to_string();
    let profiles_arg = profiles.to_string_lossy().to_string();
    quiver(
        exe,
        &["import", "--data-dir", &scratch_arg, &profiles_arg],
        "import (profiles)",
    )?;
    let exported = quiver(
        exe,
        &["export", "--data-dir", &scratch_arg, "--kind", "tool"],
        "export (profiles)",
    )?;
    let bases: Vec<Value> = exported
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(|v| {
            v["versions"]
                .as_array()
                .is_some_and(|vs| vs.iter().any(|v| v["manifest"]["capabilities"].is_object()))
        })
        .collect();
    if bases.is_empty() {
        bail!("no tool with capabilities in {}", profiles.display());
    }
    fig.profiles = bases.len();

    // 2. The copies.
    let n = a.intel_tools;
    let file = work.join("intel-tools.jsonl");
    let mut rng = Rng::new(a.seed);
    let mut targets: Vec<Target> = Vec::new();
    {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..n {
            let mut line = bases[i % bases.len()].clone();
            let name = format!(
                "{}-{i}",
                line["name"].as_str().unwrap_or("tool").to_lowercase()
            );
            line["namespace"] = json!("benchintel");
            line["name"] = json!(name);
            line["relations"] = json!([]);
            perturb(&mut line, &mut rng);
            if targets.len() < 2_000 && i < 200 {
                for v in line["versions"].as_array().into_iter().flatten() {
                    let version = v["version"].as_str().unwrap_or("").to_string();
                    for (cap, c) in v["manifest"]["capabilities"]
                        .as_object()
                        .into_iter()
                        .flatten()
                    {
                        for p in c["patterns"].as_object().into_iter().flatten().map(|x| x.0) {
                            targets.push((
                                format!("benchintel/{name}"),
                                version.clone(),
                                cap.clone(),
                                p.clone(),
                            ));
                        }
                    }
                }
            }
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    fig.tools = n;
    note!(
        "tool-intel: {n} tools written from {} profiles; importing",
        bases.len()
    );
    let data = work.join("intel");
    let started = Instant::now();
    let data_arg = data.to_string_lossy().to_string();
    let file_arg = file.to_string_lossy().to_string();
    let db_arg = database.map(|d| format!("--database={d}"));
    let mut args = vec!["import", "--data-dir", &data_arg];
    if let Some(d) = &db_arg {
        args.push(d);
    }
    args.push(&file_arg);
    quiver(exe, &args, "import (catalog)")?;
    fig.import_secs = started.elapsed().as_secs_f64();

    // 3. Selection.
    let addr = SocketAddr::from(([127, 0, 0, 1], proc::free_port()?));
    let mut node = super::start_node(exe, &data, database, addr, work.join("serve-intel.log"))?;
    super::wait_ready(&mut node, addr, Duration::from_secs(300)).await?;
    let mut client = Client::new(addr);
    let started = Instant::now();
    let (s, body) = client
        .get_slow("/api/v1/capabilities", Duration::from_secs(600))
        .await?;
    fig.catalog_build_ms = started.elapsed().as_secs_f64() * 1e3;
    if !s.is_success() {
        bail!("GET /api/v1/capabilities: {s}");
    }
    let caps: Vec<String> = serde_json::from_slice::<Value>(&body)?
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    fig.capabilities = caps.len();
    note!(
        "tool-intel: catalog of {} capabilities built in {}; selecting",
        caps.len(),
        fmt_ms(fig.catalog_build_ms)
    );
    let mut lat = Lat::default();
    let mut candidates = 0usize;
    for i in 0..a.intel_selects {
        let body = json!({"capability": caps[i % caps.len()], "variables": variables(),
                          "limit": 10});
        let t = Instant::now();
        let (s, answer) = post_json(addr, "/api/v1/select", &body).await?;
        lat.record(t.elapsed());
        if !s.is_success() {
            bail!("select refused: {s} {}", String::from_utf8_lossy(&answer));
        }
        let v: Value = serde_json::from_slice(&answer)?;
        candidates += v["candidates"].as_array().map_or(0, Vec::len);
    }
    fig.select = lat.summary();
    fig.select_candidates_mean = candidates as f64 / a.intel_selects.max(1) as f64;

    // 4. Telemetry.
    let events = a.intel_events as u64;
    let batches = events.div_ceil(1_000);
    let next = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let targets = Arc::new(targets);
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let week_ms = 7 * 24 * 3_600_000i64;
    note!(
        "tool-intel: {events} executions of {} patterns, {} clients",
        targets.len(),
        a.concurrency
    );
    let started = Instant::now();
    let pid = node.id();
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some((hwm, _)) = proc::memory(pid) {
                    peak.fetch_max(hwm, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for w in 0..a.concurrency.max(1) {
        let (next, accepted, targets) = (next.clone(), accepted.clone(), targets.clone());
        let seed = a.seed ^ (w as u64 + 1);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(seed);
            let vars = variables();
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= batches {
                    return anyhow::Ok(());
                }
                let from = b * 1_000;
                let to = (from + 1_000).min(events);
                let evs: Vec<Value> = (from..to)
                    .map(|k| {
                        let t = &targets[(rng.next_u64() % targets.len() as u64) as usize];
                        // Some patterns run slow, so that the drift list has work.
                        let slow = 1.0 + (k % 3) as f64 * 0.5 * unit(&mut rng);
                        json!({"idempotency_key": format!("e{k}"), "tool": t.0,
                               "version": t.1, "capability": t.2, "pattern": t.3,
                               "variables": vars, "time_ms": 50.0 + 900.0 * slow * unit(&mut rng),
                               "cost": unit(&mut rng), "success": unit(&mut rng) > 0.05,
                               "at": jiff::Timestamp::from_millisecond(
                                   now_ms - week_ms + (k as f64 / events as f64 * week_ms as f64) as i64
                               ).unwrap()})
                    })
                    .collect();
                let (s, answer) =
                    post_json(addr, "/api/v1/telemetry", &json!({"events": evs})).await?;
                if !s.is_success() {
                    bail!(
                        "telemetry refused: {s} {}",
                        String::from_utf8_lossy(&answer)
                    );
                }
                let v: Value = serde_json::from_slice(&answer)?;
                accepted.fetch_add(v["accepted"].as_u64().unwrap_or(0), Ordering::Relaxed);
                if b % 500 == 0 {
                    note!("tool-intel: {} events", (b + 1) * 1_000);
                }
            }
        }));
    }
    for t in tasks {
        t.await.context("a telemetry client")??;
    }
    fig.ingest_secs = started.elapsed().as_secs_f64();
    sampler.abort();
    if let Some((hwm, _)) = proc::memory(pid) {
        peak.fetch_max(hwm, Ordering::Relaxed);
    }
    fig.events = accepted.load(Ordering::Relaxed);
    fig.events_per_sec = fig.events as f64 / fig.ingest_secs;
    fig.ingest_peak_rss_bytes = peak.load(Ordering::Relaxed);

    // 5. Reports over the stored events.
    let since = jiff::Timestamp::from_millisecond(now_ms - week_ms)?.to_string();
    let mut lat = Lat::default();
    for i in 0..200 {
        let t = &targets[(i * 7919) % targets.len()];
        let (ns, name) = t.0.split_once('/').unwrap_or(("", ""));
        let path = format!(
            "/api/v1/telemetry/patterns/{ns}/{name}/{}/{}?since={since}",
            t.2, t.3
        );
        let started = Instant::now();
        let (s, _) = client.get(&path).await?;
        lat.record(started.elapsed());
        if !s.is_success() {
            bail!("GET {path}: {s}");
        }
    }
    fig.pattern_report = lat.summary();
    let mut lat = Lat::default();
    for _ in 0..20 {
        let path = format!("/api/v1/telemetry/drift?since={since}&min_count=30");
        let started = Instant::now();
        let (s, body) = client.get(&path).await?;
        lat.record(started.elapsed());
        if !s.is_success() {
            bail!("GET {path}: {s}");
        }
        fig.drift_patterns = serde_json::from_slice::<Value>(&body)?
            .as_array()
            .map_or(0, Vec::len);
    }
    fig.drift = lat.summary();
    node.stop(Duration::from_secs(10));
    Ok(fig)
}
