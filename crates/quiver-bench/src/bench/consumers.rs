//! `quiver-bench --consumers`: the consumers' side at scale (issue 15's bars for
//! resolution and skill suggestions).
//!
//! 1. The real modules (`--module-fixtures`, the mlld registry fixtures) are imported into
//!    a scratch store and read back with `quiver export`, so the copies have the
//!    manifests quiver keeps for them.
//! 2. `--consumer-modules` renamed copies (default 100,000), each with 3 to 8 versions
//!    (minor and patch releases, a prerelease, now and then a yanked one) and a content
//!    hash per version, are written as quiver JSONL.
//! 3. The measured store gets the data set (`--data`, the 1.1M packages), the skills
//!    (`--skill-fixtures`, the upskill fixtures, whose `maps_to` relations reach the data
//!    set's npm packages) and the modules, through `quiver import`.
//! 4. `quiver serve`, then, one after the other through HTTP (a connection per request,
//!    so latency includes connecting): `--consumer-requests` lock sets of 100 references
//!    (`POST /api/v1/resolve`, ranges of every shape), the same number of single
//!    resolutions, and suggestions for a 50-dependency `package.json` (10 packages the
//!    skills map to, 40 drawn from the data set's npm packages, a few dev dependencies).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use super::data::{load_rows, Rng};
use super::http::post_json;
use super::intel::quiver;
use super::proc;
use super::stats::{fmt_bytes, fmt_ms, Lat, LatSummary};

macro_rules! note {
    ($($arg:tt)*) => {{
        eprintln!("bench: {}", format!($($arg)*));
    }};
}

/// What the run measured.
#[derive(Debug, Default, serde::Serialize)]
pub struct ConsumerFigures {
    pub module_bases: usize,
    pub modules: usize,
    pub versions: usize,
    pub packages: usize,
    pub import_secs: f64,
    pub resolve_batch: LatSummary,
    pub resolve_batch_failed_mean: f64,
    pub resolve_one: LatSummary,
    pub suggest: LatSummary,
    pub suggest_skills_mean: f64,
    /// Module versions published with content for the download load.
    pub download_modules: usize,
    /// Downloads with 8 clients at full speed: requests a second, and their latency.
    pub downloads_per_sec: f64,
    pub download: LatSummary,
    /// Distinct (client, version) pairs the load sent, and what the server counted.
    pub download_pairs: u64,
    pub downloads_counted: u64,
    /// Lookups with no other load, and while downloads run at a steady 1,000 a second.
    pub lookup_idle: LatSummary,
    pub lookup_under_downloads: LatSummary,
    pub peak_rss_bytes: u64,
}

/// A range of one of the shapes lock files and manifests use.
fn range(rng: &mut Rng) -> Value {
    match rng.below(6) {
        0 => Value::Null,
        1 => json!("latest"),
        2 => json!("^1"),
        3 => json!("~1.1.0"),
        4 => json!(">=1.0.0, <3"),
        _ => json!("1.0.0"),
    }
}

/// The versions of copy `i`: 3 to 8, with a prerelease and sometimes a yanked one.
fn versions(i: usize, rng: &mut Rng, manifest: &Value) -> Vec<Value> {
    let n = 3 + rng.below(6);
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let version = match k {
            k if k == n - 1 => format!("2.0.0-beta.{k}"),
            k => format!("1.{}.{}", k / 2, k % 2),
        };
        let mut m = manifest.clone();
        if !m.is_object() {
            m = json!({});
        }
        m["source"] = json!({"type": "github",
            "url": format!("https://example.invalid/benchmods/{i}/{version}.mld"),
            "content_hash": format!("{:016x}", rng.next_u64()).repeat(4)});
        let yanked = k == 1 && i.is_multiple_of(7);
        out.push(json!({"version": version, "manifest": m, "yanked": yanked,
                        "yank_reason": yanked.then_some("broken build")}));
    }
    out
}

pub async fn run(exe: &Path, work: &Path, a: &super::BenchArgs) -> anyhow::Result<()> {
    let fig = measure(exe, work, a).await?;
    print(&fig);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&fig)?);
    }
    Ok(())
}

fn print(f: &ConsumerFigures) {
    let pair = |l: &LatSummary| {
        format!(
            "p50 {}  p95 {}  p99 {}  max {}  ({} calls)",
            fmt_ms(l.p50_ms),
            fmt_ms(l.p95_ms),
            fmt_ms(l.p99_ms),
            fmt_ms(l.max_ms),
            l.count
        )
    };
    println!();
    println!(
        "consumers on SQLite ({} modules with {} versions from {} real ones, the data set ({} of its \
         packages npm ones), the upskill skills)",
        f.modules, f.versions, f.module_bases, f.packages
    );
    println!("  import             {:.1} s", f.import_secs);
    println!(
        "  resolve 100 refs   {}  ({:.1} unresolved a call)",
        pair(&f.resolve_batch),
        f.resolve_batch_failed_mean
    );
    println!("  resolve one        {}", pair(&f.resolve_one));
    println!(
        "  suggest (50 deps)  {}  ({:.1} skills an answer)",
        pair(&f.suggest),
        f.suggest_skills_mean
    );
    println!(
        "  downloads, 8 clients {:.0}/s  {}  ({} module versions with content)",
        f.downloads_per_sec,
        pair(&f.download),
        f.download_modules
    );
    println!(
        "  counted            {} of {} distinct client and version pairs",
        f.downloads_counted, f.download_pairs
    );
    println!("  lookups, idle      {}", pair(&f.lookup_idle));
    println!(
        "  lookups, 1,000 downloads/s beside them  {}",
        pair(&f.lookup_under_downloads)
    );
    println!(
        "  server memory      peak RSS {}",
        fmt_bytes(f.peak_rss_bytes)
    );
    println!();
    println!("bars");
    let bar = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!(
        "  {}  batch resolve of 100 p95 < 10 ms      {}",
        bar(f.resolve_batch.p95_ms < 10.0),
        fmt_ms(f.resolve_batch.p95_ms)
    );
    println!(
        "  {}  suggest for 50 dependencies p95 < 10 ms {}",
        bar(f.suggest.p95_ms < 10.0),
        fmt_ms(f.suggest.p95_ms)
    );
    println!(
        "  {}  downloads with 8 clients >= 5,000/s    {:.0}/s",
        bar(f.downloads_per_sec >= 5_000.0),
        f.downloads_per_sec
    );
    println!(
        "  {}  every distinct download counted        {} of {}",
        bar(f.downloads_counted == f.download_pairs),
        f.downloads_counted,
        f.download_pairs
    );
    println!(
        "  {}  lookup p99 < 1 ms beside downloads     {}",
        bar(f.lookup_under_downloads.p99_ms < 1.0),
        fmt_ms(f.lookup_under_downloads.p99_ms)
    );
}

async fn measure(exe: &Path, work: &Path, a: &super::BenchArgs) -> anyhow::Result<ConsumerFigures> {
    let mut fig = ConsumerFigures::default();
    for (flag, dir) in [
        ("--module-fixtures", &a.module_fixtures),
        ("--skill-fixtures", &a.skill_fixtures),
    ] {
        if !dir.is_dir() {
            bail!("{} not found ({flag})", dir.display());
        }
    }
    // 1. The real modules, as quiver keeps them.
    let scratch = work.join("consumer-modules");
    let scratch_arg = scratch.to_string_lossy().to_string();
    let fixtures_arg = a.module_fixtures.to_string_lossy().to_string();
    quiver(
        exe,
        &["import", "--data-dir", &scratch_arg, &fixtures_arg],
        "import (module fixtures)",
    )?;
    let exported = quiver(
        exe,
        &["export", "--data-dir", &scratch_arg, "--kind", "module"],
        "export (module fixtures)",
    )?;
    let bases: Vec<Value> = exported
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .collect();
    if bases.is_empty() {
        bail!("no module in {}", a.module_fixtures.display());
    }
    fig.module_bases = bases.len();

    // 2. The copies.
    let n = a.consumer_modules;
    let file = work.join("consumer-modules.jsonl");
    let mut rng = Rng::new(a.seed);
    let mut counts = Vec::with_capacity(n);
    {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::new(std::fs::File::create(&file)?);
        for i in 0..n {
            let base = &bases[i % bases.len()];
            let manifest = base["versions"][0]["manifest"].clone();
            let vs = versions(i, &mut rng, &manifest);
            counts.push(vs.len());
            let line = json!({"kind": "module", "namespace": "benchmods",
                "name": format!("m{i}"),
                "description": base["description"], "tags": base["tags"],
                "versions": vs});
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
    }
    fig.modules = n;
    fig.versions = counts.iter().sum();

    // 3. The store: data set, skills, modules.
    let data = work.join("consumers");
    let data_arg = data.to_string_lossy().to_string();
    let started = Instant::now();
    let data_files = super::data_files(a);
    let mut sources: Vec<String> = data_files
        .iter()
        .map(|p| p.to_string_lossy().to_string())
        .collect();
    sources.push(a.skill_fixtures.to_string_lossy().to_string());
    sources.push(file.to_string_lossy().to_string());
    for s in &sources {
        note!("consumers: importing {s}");
        quiver(exe, &["import", "--data-dir", &data_arg, s], "import")?;
    }
    fig.import_secs = started.elapsed().as_secs_f64();
    let npm: Vec<String> = {
        let files: Vec<_> = data_files
            .iter()
            .filter(|p| p.to_string_lossy().contains("npm"))
            .cloned()
            .collect();
        let rows = load_rows(&files)?.rows;
        fig.packages = rows.len();
        rows.into_iter().map(|r| r.name).collect()
    };
    if npm.is_empty() {
        bail!("no npm package in --data");
    }
    let mapped: Vec<String> = {
        let f = a.skill_fixtures.join(".upskill/package-mappings.json");
        let v: Value = serde_json::from_str(
            &std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
        )?;
        let mut all: Vec<String> = v
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(_, l)| l.as_array().cloned().unwrap_or_default())
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        all.sort();
        all.dedup();
        all
    };

    // 4. Measure.
    let addr = SocketAddr::from(([127, 0, 0, 1], proc::free_port()?));
    // Clients are told apart by X-Forwarded-For in the download load.
    let mut node = super::start_node_with(
        exe,
        &data,
        None,
        addr,
        work.join("serve-consumers.log"),
        &["--trust-forwarded-for", "--download-flush-ms", "500"],
    )?;
    super::wait_ready(&mut node, addr, Duration::from_secs(600)).await?;
    note!(
        "consumers: {} lock sets of 100, {} single resolutions, {} suggestions",
        a.consumer_requests,
        a.consumer_requests,
        a.consumer_requests
    );
    let mut lat = Lat::default();
    let mut failed = 0usize;
    for _ in 0..a.consumer_requests {
        let refs: Vec<Value> = (0..100)
            .map(|_| {
                // One reference in fifty names a module that does not exist.
                let i = rng.below(n + n / 50);
                json!({"kind": "module", "namespace": "benchmods", "name": format!("m{i}"),
                       "range": range(&mut rng)})
            })
            .collect();
        let body = json!({ "references": refs });
        let t = Instant::now();
        let (s, answer) = post_json(addr, "/api/v1/resolve", &body).await?;
        lat.record(t.elapsed());
        if !s.is_success() {
            bail!("resolve refused: {s} {}", String::from_utf8_lossy(&answer));
        }
        let v: Value = serde_json::from_slice(&answer)?;
        failed += v["failed"].as_u64().unwrap_or(0) as usize;
    }
    fig.resolve_batch = lat.summary();
    fig.resolve_batch_failed_mean = failed as f64 / a.consumer_requests.max(1) as f64;

    let mut lat = Lat::default();
    let mut client = super::http::Client::new(addr);
    for _ in 0..a.consumer_requests {
        let i = rng.below(n);
        let path = format!("/api/v1/resolve/module/benchmods/m{i}?range=%5E1");
        let t = Instant::now();
        let (s, _) = client.get_slow(&path, Duration::from_secs(60)).await?;
        lat.record(t.elapsed());
        if !s.is_success() {
            bail!("GET {path}: {s}");
        }
    }
    fig.resolve_one = lat.summary();

    let mut lat = Lat::default();
    let mut skills = 0usize;
    for _ in 0..a.consumer_requests {
        let mut deps = serde_json::Map::new();
        let mut dev = serde_json::Map::new();
        for _ in 0..10 {
            deps.insert(rng.pick(&mapped).clone(), json!("^1.0.0"));
        }
        while deps.len() + dev.len() < 50 {
            let name = rng.pick(&npm).clone();
            if rng.below(5) == 0 {
                dev.insert(name, json!("*"));
            } else {
                deps.insert(name, json!("^2.3.1"));
            }
        }
        let manifest = json!({"name": "app", "dependencies": deps, "devDependencies": dev});
        let body = json!({"manifest": {"filename": "package.json",
                                       "content": manifest.to_string()}});
        let t = Instant::now();
        let (s, answer) = post_json(addr, "/api/v1/skills/suggest", &body).await?;
        lat.record(t.elapsed());
        if !s.is_success() {
            bail!("suggest refused: {s} {}", String::from_utf8_lossy(&answer));
        }
        let v: Value = serde_json::from_slice(&answer)?;
        skills += v["skills"].as_array().map_or(0, Vec::len);
    }
    fig.suggest = lat.summary();
    fig.suggest_skills_mean = skills as f64 / a.consumer_requests.max(1) as f64;
    downloads(addr, n, &npm, a, &mut fig).await?;
    fig.peak_rss_bytes = proc::memory(node.id()).map_or(0, |m| m.0);
    node.stop(Duration::from_secs(10));
    Ok(fig)
}

/// The download load: `--download-modules` versions published with content, then 8
/// clients downloading them as fast as they can for `--download-seconds` (each request
/// from one of 50,000 client addresses, so most hits are distinct and reach the store),
/// the counts checked against the distinct pairs sent, then lookups timed idle and
/// beside a steady 1,000 downloads a second.
async fn downloads(
    addr: SocketAddr,
    modules: usize,
    npm: &[String],
    a: &super::BenchArgs,
    fig: &mut ConsumerFigures,
) -> anyhow::Result<()> {
    use std::collections::HashSet;
    let d = a.download_modules.clamp(1, modules);
    note!("consumers: publishing {d} module versions with content");
    for i in 0..d {
        let body = json!({"version": "3.0.0",
            "content": format!("/var @m{i} = \"{}\"\n/export {{ m{i} }}\n", "x".repeat(200))});
        let (s, answer) = post_json(
            addr,
            &format!("/api/v1/entries/module/benchmods/m{i}/versions"),
            &body,
        )
        .await?;
        if !s.is_success() {
            bail!(
                "publish with content refused: {s} {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    fig.download_modules = d;
    let stats = |addr: SocketAddr| async move {
        let mut c = super::http::Client::new(addr);
        let (s, body) = c
            .get_slow(
                "/api/v1/namespaces/benchmods/stats",
                Duration::from_secs(60),
            )
            .await?;
        if !s.is_success() {
            bail!("namespace stats: {s}");
        }
        let v: Value = serde_json::from_slice(&body)?;
        Ok::<u64, anyhow::Error>(v["total"].as_u64().unwrap_or(0))
    };
    let before = stats(addr).await?;

    note!(
        "consumers: downloads with 8 clients for {} s",
        a.download_seconds
    );
    let until = Instant::now() + Duration::from_secs_f64(a.download_seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..8u64)
        .map(|t| {
            let seed = a.seed ^ (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            tokio::spawn(async move {
                let mut rng = Rng::new(seed);
                let mut client = super::http::Client::new(addr);
                let mut lat = Lat::default();
                let mut pairs = HashSet::new();
                let mut n = 0u64;
                while Instant::now() < until {
                    let i = rng.below(d);
                    let c = rng.below(50_000);
                    client.forwarded_for =
                        Some(format!("10.{}.{}.{}", c >> 16, (c >> 8) & 255, c & 255));
                    let path =
                        format!("/api/v1/entries/module/benchmods/m{i}/versions/3.0.0/content");
                    let t = Instant::now();
                    let (s, _) = client.get(&path).await?;
                    lat.record(t.elapsed());
                    if !s.is_success() {
                        bail!("GET {path}: {s}");
                    }
                    pairs.insert((c, i));
                    n += 1;
                }
                Ok::<_, anyhow::Error>((n, lat, pairs))
            })
        })
        .collect();
    let mut lat = Lat::default();
    let mut pairs: HashSet<(usize, usize)> = HashSet::new();
    let mut total = 0u64;
    for t in tasks {
        let (n, l, p) = t.await??;
        total += n;
        lat.add(&l);
        pairs.extend(p);
    }
    fig.downloads_per_sec = total as f64 / started.elapsed().as_secs_f64();
    fig.download = lat.summary();
    fig.download_pairs = pairs.len() as u64;
    // Past a flush or two, every distinct pair is counted once.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        fig.downloads_counted = stats(addr).await? - before;
        if fig.downloads_counted >= fig.download_pairs || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let plain: Vec<&String> = npm.iter().filter(|n| !n.starts_with('@')).collect();
    let lookups = a.consumer_requests.max(1) * 4;
    let time_lookups = |seed: u64| {
        let plain = plain.clone();
        async move {
            let mut rng = Rng::new(seed);
            let mut client = super::http::Client::new(addr);
            let mut lat = Lat::default();
            for _ in 0..lookups {
                let name = plain[rng.below(plain.len())];
                let path = format!("/api/v1/entries/package/npm/{name}");
                let t = Instant::now();
                let (s, _) = client.get(&path).await?;
                lat.record(t.elapsed());
                if !s.is_success() {
                    bail!("GET {path}: {s}");
                }
            }
            Ok::<_, anyhow::Error>(lat.summary())
        }
    };
    fig.lookup_idle = time_lookups(a.seed).await?;
    // A steady 1,000 downloads a second (4 clients, one every 4 ms each) beside them.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4u64)
        .map(|t| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(t + 77);
                let mut client = super::http::Client::new(addr);
                let mut tick = tokio::time::interval(Duration::from_millis(4));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    tick.tick().await;
                    let i = rng.below(d);
                    let c = rng.below(50_000);
                    client.forwarded_for =
                        Some(format!("10.{}.{}.{}", c >> 16, (c >> 8) & 255, c & 255));
                    let path =
                        format!("/api/v1/entries/module/benchmods/m{i}/versions/3.0.0/content");
                    client.get(&path).await?;
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    let under = time_lookups(a.seed + 1).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in load {
        t.await??;
    }
    fig.lookup_under_downloads = under?;
    Ok(())
}
