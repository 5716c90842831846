//! `quiver-bench --pg-writes`: acknowledged writes per second over PostgreSQL with two
//! nodes, and how fast a write on one node is found by search on the other.
//!
//! A fresh schema (dropped at the end) and two `quiver serve` nodes over it (open, on
//! loopback, rate limits off). `--writers` clients (default 4) split over the nodes, each
//! on its own connection, write as fast as they are answered for `--write-seconds`:
//! first creating entries (`POST /api/v1/entries`), then publishing a version of each
//! entry it created (`POST …/versions`). Only 2xx answers count. Then 20 writes on node
//! 1 are timed until node 2's search finds them.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use super::http::{post_json, Client};
use super::{pg, proc};

#[derive(Debug, Default, serde::Serialize)]
pub struct WriteFigures {
    pub writers: usize,
    pub seconds: f64,
    pub entries_created: u64,
    pub entries_per_sec: f64,
    pub versions_published: u64,
    pub versions_per_sec: f64,
    pub refused: u64,
    pub propagation_p50_ms: f64,
    pub propagation_max_ms: f64,
}

/// One writer's loop: `make(n)` is the n-th request (path and body); counts 2xx answers
/// until `stop`.
async fn writer(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
    make: impl Fn(u64) -> Option<(String, serde_json::Value)>,
) -> anyhow::Result<u64> {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some((path, body)) = make(n) else { break };
        let (s, answer) = post_json(addr, &path, &body).await?;
        if s.is_success() {
            ok.fetch_add(1, Ordering::Relaxed);
            n += 1;
        } else {
            refused.fetch_add(1, Ordering::Relaxed);
            if refused.load(Ordering::Relaxed) == 1 {
                eprintln!(
                    "bench: a write was refused: {s} {}",
                    String::from_utf8_lossy(&answer)
                );
            }
        }
    }
    Ok(n)
}

async fn phase(
    nodes: &[SocketAddr],
    writers: usize,
    secs: f64,
    refused: &Arc<AtomicU64>,
    make: impl Fn(usize, u64) -> Option<(String, serde_json::Value)> + Clone + Send + Sync + 'static,
) -> anyhow::Result<(Vec<u64>, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let make = make.clone();
            tokio::spawn(writer(
                nodes[w % nodes.len()],
                stop.clone(),
                ok.clone(),
                refused.clone(),
                move |n| make(w, n),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut per_writer = Vec::new();
    for t in tasks {
        per_writer.push(t.await.context("a writer")??);
    }
    Ok((per_writer, started.elapsed().as_secs_f64()))
}

pub async fn run(
    exe: &Path,
    work: &Path,
    postgres_url: &str,
    writers: usize,
    secs: f64,
    json: bool,
) -> anyhow::Result<()> {
    let schema = pg::schema_name(std::process::id() as u64 ^ 0x5eed);
    pg::connect(postgres_url)
        .await?
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .context("creating the bench's schema")?;
    let result = measure(
        exe,
        work,
        &pg::url_with_schema(postgres_url, &schema),
        writers,
        secs,
    )
    .await;
    if let Err(e) = pg::drop_schema(postgres_url, &schema).await {
        eprintln!("bench: could not drop the PostgreSQL schema {schema}: {e:#}");
    }
    let fig = result?;
    println!(
        "{:>7} {:>6} {:>9} {:>10} {:>9} {:>10} {:>7} {:>10} {:>10}",
        "writers",
        "secs",
        "entries",
        "entries/s",
        "versions",
        "versions/s",
        "refused",
        "prop p50",
        "prop max"
    );
    println!(
        "{:>7} {:>6.1} {:>9} {:>10.0} {:>9} {:>10.0} {:>7} {:>7.1} ms {:>7.1} ms",
        fig.writers,
        fig.seconds,
        fig.entries_created,
        fig.entries_per_sec,
        fig.versions_published,
        fig.versions_per_sec,
        fig.refused,
        fig.propagation_p50_ms,
        fig.propagation_max_ms
    );
    if json {
        println!("{}", serde_json::to_string_pretty(&fig)?);
    }
    Ok(())
}

async fn measure(
    exe: &Path,
    work: &Path,
    database: &str,
    writers: usize,
    secs: f64,
) -> anyhow::Result<WriteFigures> {
    let mut nodes = Vec::new();
    let mut guards = Vec::new();
    for i in 1..=2 {
        let addr = SocketAddr::from(([127, 0, 0, 1], proc::free_port()?));
        let dir = work.join(format!("writes-node{i}"));
        std::fs::create_dir_all(&dir).context("making a node's data directory")?;
        let mut node = super::start_node(
            exe,
            &dir,
            Some(database),
            addr,
            work.join(format!("serve-writes-node{i}.log")),
        )?;
        super::wait_ready(&mut node, addr, Duration::from_secs(120)).await?;
        nodes.push(addr);
        guards.push(node);
    }
    eprintln!("bench: writes: {writers} writers over 2 nodes for {secs} s per phase");
    let refused = Arc::new(AtomicU64::new(0));
    let tag = std::process::id();
    let entry = move |w: usize, n: u64| format!("w{tag}-{w}-{n}");
    let (created, t1) = phase(&nodes, writers, secs, &refused, move |w, n| {
        Some((
            "/api/v1/entries".to_string(),
            serde_json::json!({
                "kind": "tool", "namespace": "bench", "name": entry(w, n),
                "description": "an entry written by the write benchmark",
            }),
        ))
    })
    .await?;
    let created_total: u64 = created.iter().sum();
    let created = Arc::new(created);
    let (published, t2) = phase(&nodes, writers, secs, &refused, {
        let created = created.clone();
        move |w, n| {
            (n < created[w]).then(|| {
                (
                    format!("/api/v1/entries/tool/bench/{}/versions", entry(w, n)),
                    serde_json::json!({"version": "1.0.0", "manifest": {}}),
                )
            })
        }
    })
    .await?;
    let published_total: u64 = published.iter().sum();

    // Propagation: a write on node 1, searched for on node 2 until found.
    let mut client = Client::new(nodes[1]);
    let prop = super::time_propagation(nodes[0], &mut client, u64::from(tag), 20).await?;
    for mut g in guards {
        g.stop(Duration::from_secs(10));
    }
    Ok(WriteFigures {
        writers,
        seconds: t1 + t2,
        entries_created: created_total,
        entries_per_sec: created_total as f64 / t1,
        versions_published: published_total,
        versions_per_sec: published_total as f64 / t2,
        refused: refused.load(Ordering::Relaxed),
        propagation_p50_ms: prop.p50_ms,
        propagation_max_ms: prop.max_ms,
    })
}
