//! Load the benchmark data set into a SQLite store, build the search index from the
//! feed, then measure relevance (relevance/queries.tsv) and latency over a query mix.
//!
//! ```text
//! cargo run --release -p quiver-search --example dataset_index -- \
//!     ../shared/data/pypi.tsv.gz ../shared/data/npm.tsv.gz
//! ```
//!
//! Options: `--dir D` (default /tmp/quiver-bench; the store is kept between runs and
//! only imported when empty), `--reindex` (rebuild the index from scratch), `--set F`
//! (relevance set; default relevance/queries.tsv), `--queries N` (sampled names for the
//! latency mix, default 400), `--verbose` (print the top 5 of every relevance query).
//! `QUIVER_RANKING` may hold JSON overriding [`quiver_search::Ranking`] weights.

use std::path::{Path, PathBuf};
use std::time::Instant;

use hdrhistogram::Histogram;
use quiver_import::dataset::DatasetReader;
use quiver_search::{relevance, SearchIndex, SearchQuery};
use quiver_sqlite::SqliteStore;
use quiver_store::Store;

fn rss() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        s.lines()
            .find(|l| l.starts_with(k))
            .map(|l| l[k.len()..].trim().to_string())
            .unwrap_or_default()
    };
    format!(
        "RSS {} (peak {}; anonymous {}, file-backed {})",
        get("VmRSS:"),
        get("VmHWM:"),
        get("RssAnon:"),
        get("RssFile:")
    )
}

/// Nanoseconds this thread has spent on a CPU: the latency a query would have on an
/// idle machine, whatever else runs beside it.
fn thread_cpu_ns() -> Option<u64> {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Some(t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64)
}

/// A deterministic typo: swap two adjacent letters in the middle.
fn typo(s: &str) -> Option<String> {
    let c: Vec<char> = s.chars().collect();
    if c.len() < 5 || !c.iter().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let i = c.len() / 2;
    if c[i] == c[i - 1] {
        return None;
    }
    let mut c = c;
    c.swap(i - 1, i);
    Some(c.into_iter().collect())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut files: Vec<PathBuf> = Vec::new();
    let mut dir = PathBuf::from("/tmp/quiver-bench");
    let mut reindex = false;
    let mut verbose = false;
    let mut latency = true;
    let mut n_queries = 400usize;
    let mut set = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../relevance/queries.tsv");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().expect("--dir D").into(),
            "--set" => set = args.next().expect("--set F").into(),
            "--queries" => n_queries = args.next().expect("--queries N").parse()?,
            "--reindex" => reindex = true,
            "--verbose" => verbose = true,
            "--no-latency" => latency = false,
            _ => files.push(a.into()),
        }
    }
    std::fs::create_dir_all(&dir)?;
    let store = SqliteStore::open(dir.join("store.db"))?;
    let stats = store.stats().await?;
    if stats.entries == 0 {
        for f in &files {
            let t = Instant::now();
            let mut batch = Vec::with_capacity(10_000);
            let (mut n, mut rejected) = (0u64, 0u64);
            for rec in DatasetReader::open(f)? {
                match rec {
                    Ok(r) => batch.push(r),
                    Err(_) => rejected += 1,
                }
                if batch.len() == 10_000 {
                    n += batch.len() as u64;
                    store.import_batch(std::mem::take(&mut batch)).await?;
                }
            }
            n += batch.len() as u64;
            store.import_batch(batch).await?;
            println!(
                "imported {n} records from {} ({rejected} rejected) in {:.1}s",
                f.display(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    let stats = store.stats().await?;
    println!(
        "store: {} entries, feed head {}",
        stats.entries, stats.feed_head
    );

    if std::env::var("QUIVER_TIME_STORE_READ").is_ok() {
        // How long reading the feed and the touched entries takes on its own.
        let t = Instant::now();
        let (mut pos, mut n) = (0i64, 0usize);
        loop {
            let ev = store.feed_since(pos, 20_000).await?;
            let Some(last) = ev.last() else { break };
            pos = last.seq;
            let mut ids: Vec<i64> = ev.iter().filter_map(|e| e.entry_id).collect();
            ids.sort_unstable();
            ids.dedup();
            n += store.get_entries_by_id(&ids).await?.len();
        }
        println!(
            "store read alone: {n} entries in {:.2}s",
            t.elapsed().as_secs_f64()
        );
    }
    let index_dir = dir.join("index");
    if reindex && index_dir.exists() {
        std::fs::remove_dir_all(&index_dir)?;
    }
    let index = SearchIndex::open(&index_dir)?;
    if let Ok(r) = std::env::var("QUIVER_RANKING") {
        let mut v = serde_json::to_value(index.ranking())?;
        let o: serde_json::Value = serde_json::from_str(&r)?;
        if let (Some(v), Some(o)) = (v.as_object_mut(), o.as_object()) {
            for (k, x) in o {
                v.insert(k.clone(), x.clone());
            }
        }
        index.set_ranking(serde_json::from_value(v)?);
        println!("ranking: {:?}", index.ranking());
    }
    let t = Instant::now();
    let cu = index.catch_up(&store).await?;
    let s = index.stats();
    println!(
        "catch_up: {} events to position {} in {:.2}s; index {} docs, {:.1} MB, {} segments; {}",
        cu.applied_events,
        cu.position,
        t.elapsed().as_secs_f64(),
        s.docs,
        s.size_bytes as f64 / 1e6,
        s.segments,
        rss()
    );

    // Relevance.
    let cases = relevance::load_set(&set)?;
    let report = relevance::evaluate(&cases, |q| {
        let res = index
            .search(&SearchQuery {
                limit: 10,
                ..SearchQuery::text(q)
            })
            .expect("search");
        if verbose {
            println!("{q:?} ({} hits)", res.total);
            for h in res.hits.iter().take(5) {
                println!(
                    "    {:>7.2} {:.2} {}/{}  {}",
                    h.score,
                    h.popularity,
                    h.namespace,
                    h.name,
                    h.description.chars().take(70).collect::<String>()
                );
            }
        }
        res.hits
            .into_iter()
            .map(|h| (h.namespace, h.name))
            .collect()
    });
    println!(
        "\nrelevance ({} cases, {}):\n{report}",
        cases.len(),
        set.display()
    );

    if !latency {
        return Ok(());
    }
    // Latency over a mix: the relevance set, sampled exact names, their typos and
    // prefixes, and descriptive queries made of summary words.
    let mut mix: Vec<(String, &str)> = cases
        .iter()
        .map(|c| (c.query.clone(), "relevance"))
        .collect();
    for f in &files {
        let per_file = n_queries / files.len().max(1);
        let rows: Vec<(String, String)> = DatasetReader::open(f)?
            .filter_map(Result::ok)
            .map(|r| (r.entry.name, r.entry.description))
            .collect();
        let step = (rows.len() / per_file.max(1)).max(1);
        for (name, desc) in rows.iter().step_by(step).take(per_file) {
            mix.push((name.clone(), "exact"));
            if let Some(t) = typo(name) {
                mix.push((t, "typo"));
            }
            if name.len() > 6 {
                mix.push((name[..name.len() * 2 / 3].to_string(), "prefix"));
            }
            let words: Vec<&str> = desc
                .split_whitespace()
                .filter(|w| w.len() > 3 && w.chars().all(char::is_alphabetic))
                .take(3)
                .collect();
            if words.len() >= 2 {
                mix.push((words.join(" "), "descriptive"));
            }
        }
    }
    for (q, _) in &mix {
        index.search(&SearchQuery::text(q.as_str()))?; // warm up
    }
    let mut all = Histogram::<u64>::new(3)?;
    let mut cpu = Histogram::<u64>::new(3)?;
    let mut per: std::collections::BTreeMap<&str, Histogram<u64>> = Default::default();
    let mut per_cpu: std::collections::BTreeMap<&str, Histogram<u64>> = Default::default();
    let mut slow: Vec<(u64, String)> = Vec::new();
    for round in 0..3 {
        for (q, class) in &mix {
            let c0 = thread_cpu_ns();
            let t = Instant::now();
            index.search(&SearchQuery::text(q.as_str()))?;
            let us = t.elapsed().as_micros() as u64;
            if let (Some(a), Some(b)) = (c0, thread_cpu_ns()) {
                let c = (b.saturating_sub(a) / 1000).max(1);
                cpu.record(c)?;
                per_cpu
                    .entry(class)
                    .or_insert_with(|| Histogram::new(3).unwrap())
                    .record(c)?;
            }
            all.record(us)?;
            per.entry(class)
                .or_insert_with(|| Histogram::new(3).unwrap())
                .record(us)?;
            if round == 2 {
                slow.push((us, q.clone()));
            }
        }
    }
    let line = |name: &str, h: &Histogram<u64>| {
        println!(
            "{:<12} n={:>5}  p50 {:>6.2} ms  p95 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            name,
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.95) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        )
    };
    println!("latency over {} queries x 3 rounds:", mix.len());
    for (c, h) in &per {
        line(c, h);
    }
    line("all", &all);
    println!("the same, as CPU time of the searching thread:");
    for (c, h) in &per_cpu {
        line(c, h);
    }
    line("all", &cpu);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "(wall-clock figures include waiting for a CPU; load average now {})",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    slow.sort_by_key(|s| std::cmp::Reverse(s.0));
    println!(
        "slowest: {}",
        slow.iter()
            .take(8)
            .map(|(us, q)| format!("{q:?} {:.1}ms", *us as f64 / 1000.0))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("{}", rss());
    Ok(())
}
