//! `quiver-bench --attacks`: two attacks on a fresh `quiver serve`, with `/healthz` probed
//! from another client address every 50 ms throughout and the server's peak resident
//! memory read from `/proc`.
//!
//! - **Slowloris**: one client address (127.0.0.2) opens about 5,000 connections a second
//!   (up to 8,000 open at once) that send nothing, or half a request head, for the
//!   attack's duration, reopening the ones the server closes.
//! - **Large versions**: an entry is filled with ~900 KB manifests up to its manifest
//!   budget, then 8 clients fetch its version list with manifests, over and over.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpSocket;

use super::http::{post_json, Client};
use super::proc::{self, ChildGuard};

/// What one attack did and how the server held up.
#[derive(Debug, Default, serde::Serialize)]
pub struct AttackFigures {
    pub attack: &'static str,
    pub seconds: f64,
    /// Connections opened by the attacker, and how many the server refused (503).
    pub attacker_connections: u64,
    pub refused: u64,
    /// Requests the attack completed (large versions).
    pub attack_requests: u64,
    /// `/healthz` from another client: probes, failures, median and worst latency.
    pub probes: usize,
    pub probe_failures: usize,
    pub healthz_p50_ms: f64,
    pub healthz_max_ms: f64,
    /// The server's peak resident memory (VmHWM) after the attack.
    pub peak_rss_bytes: u64,
}

/// [`probe`] on a thread and runtime of its own, so that the attacker's tasks in this
/// process do not delay the probe's own scheduling.
fn spawn_probe(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<(Vec<f64>, usize)> {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map(|rt| rt.block_on(probe(addr, stop)))
            .unwrap_or_default()
    })
}

/// Probe `/healthz` every 50 ms on a fresh connection until `stop`: latencies (ms) and
/// failures (no 200 within 2 s).
async fn probe(addr: SocketAddr, stop: Arc<AtomicBool>) -> (Vec<f64>, usize) {
    let mut lat = Vec::new();
    let mut failures = 0;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let mut c = Client::new(addr);
        match tokio::time::timeout(Duration::from_secs(2), c.get("/healthz")).await {
            Ok(Ok((s, _))) if s.is_success() => lat.push(started.elapsed().as_secs_f64() * 1000.0),
            _ => failures += 1,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (lat, failures)
}

fn summarize(fig: &mut AttackFigures, mut lat: Vec<f64>, failures: usize, server: &ChildGuard) {
    lat.sort_by(|a, b| a.total_cmp(b));
    fig.probes = lat.len() + failures;
    fig.probe_failures = failures;
    fig.healthz_p50_ms = lat.get(lat.len() / 2).copied().unwrap_or(f64::NAN);
    fig.healthz_max_ms = lat.last().copied().unwrap_or(f64::NAN);
    fig.peak_rss_bytes = proc::memory(server.id()).map_or(0, |(peak, _)| peak);
}

/// One attacker connection from 127.0.0.2: half of them send half a request head.
async fn idle_connection(
    addr: SocketAddr,
    partial: bool,
    refused: Arc<AtomicU64>,
) -> anyhow::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind("127.0.0.2:0".parse()?)?;
    let mut s = socket.connect(addr).await?;
    if partial {
        s.write_all(b"GET /api/v1/entries HTTP/1.1\r\nhost: x\r\nx-slow: ")
            .await?;
    }
    let mut buf = [0u8; 512];
    // Held until the server answers or closes (a refusal, or the header timeout).
    let n = s.read(&mut buf).await.unwrap_or(0);
    if buf[..n].starts_with(b"HTTP/1.1 503") {
        refused.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn slowloris(addr: SocketAddr, server: &ChildGuard, secs: f64) -> AttackFigures {
    let mut fig = AttackFigures {
        attack: "slowloris",
        ..Default::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let prober = spawn_probe(addr, stop.clone());
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut opened = 0u64;
    let live = Arc::new(tokio::sync::Semaphore::new(8_000));
    while started.elapsed().as_secs_f64() < secs {
        let Ok(permit) = live.clone().try_acquire_owned() else {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        };
        opened += 1;
        let refused = refused.clone();
        tokio::spawn(async move {
            let _ = idle_connection(addr, opened.is_multiple_of(2), refused).await;
            drop(permit);
        });
        // About 5,000 new connections a second.
        if opened.is_multiple_of(50) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (lat, failures) = prober.join().unwrap_or_default();
    fig.seconds = started.elapsed().as_secs_f64();
    fig.attacker_connections = opened;
    fig.refused = refused.load(Ordering::Relaxed);
    summarize(&mut fig, lat, failures, server);
    fig
}

async fn large_versions(
    addr: SocketAddr,
    server: &ChildGuard,
    secs: f64,
) -> anyhow::Result<AttackFigures> {
    let mut fig = AttackFigures {
        attack: "large versions",
        ..Default::default()
    };
    let entry = serde_json::json!({
        "kind": "tool", "namespace": "attack", "name": "huge.versions",
        "description": "an entry filled to its manifest budget",
    });
    let (s, body) = post_json(addr, "/api/v1/entries", &entry).await?;
    anyhow::ensure!(s.is_success(), "creating the entry: {s} {body:?}");
    let path = "/api/v1/entries/tool/attack/huge.versions";
    let mut published = 0;
    for i in 0..100 {
        let v = serde_json::json!({
            "version": format!("1.{i}.0"),
            "manifest": {"input_schema": {"type": "object", "description": "x".repeat(900_000)}},
        });
        let (s, _) = post_json(addr, &format!("{path}/versions"), &v).await?;
        if s.as_u16() == 422 {
            break; // the entry's manifest budget is spent
        }
        anyhow::ensure!(s.is_success(), "publishing version {i}: {s}");
        published += 1;
    }
    eprintln!("bench: attack: {published} versions of ~900 KB published before the budget ran out");
    let stop = Arc::new(AtomicBool::new(false));
    let prober = spawn_probe(addr, stop.clone());
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (stop, done) = (stop.clone(), done.clone());
        clients.push(tokio::spawn(async move {
            let mut c = Client::new(addr);
            let list = format!("{path}/versions?include=manifest&limit=100");
            while !stop.load(Ordering::Relaxed) {
                if c.get(&list).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    let (lat, failures) = prober.join().unwrap_or_default();
    fig.seconds = started.elapsed().as_secs_f64();
    fig.attack_requests = done.load(Ordering::Relaxed);
    summarize(&mut fig, lat, failures, server);
    Ok(fig)
}

/// Run both attacks, each on a fresh server, and print their figures.
pub async fn run(exe: &Path, work: &Path, secs: f64, json: bool) -> anyhow::Result<()> {
    let mut figures = Vec::new();
    for attack in ["slowloris", "large versions"] {
        let addr = SocketAddr::from(([127, 0, 0, 1], proc::free_port()?));
        let dir = work.join(format!("attack-{}", attack.replace(' ', "-")));
        std::fs::create_dir_all(&dir).context("making the attack's data directory")?;
        let mut server = super::start_node(exe, &dir, None, addr, work.join("serve-attack.log"))?;
        super::wait_ready(&mut server, addr, Duration::from_secs(60)).await?;
        eprintln!("bench: attack: {attack} for {secs} s on {addr}");
        let fig = match attack {
            "slowloris" => slowloris(addr, &server, secs).await,
            _ => large_versions(addr, &server, secs).await?,
        };
        server.stop(Duration::from_secs(10));
        figures.push(fig);
    }
    println!(
        "{:<15} {:>6} {:>9} {:>8} {:>9} {:>7} {:>6} {:>9} {:>9} {:>10}",
        "attack",
        "secs",
        "attacker",
        "refused",
        "requests",
        "probes",
        "failed",
        "p50 ms",
        "max ms",
        "peak RSS"
    );
    for f in &figures {
        println!(
            "{:<15} {:>6.1} {:>9} {:>8} {:>9} {:>7} {:>6} {:>9.2} {:>9.2} {:>7} MB",
            f.attack,
            f.seconds,
            f.attacker_connections,
            f.refused,
            f.attack_requests,
            f.probes,
            f.probe_failures,
            f.healthz_p50_ms,
            f.healthz_max_ms,
            f.peak_rss_bytes / (1024 * 1024)
        );
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&figures)?);
    }
    Ok(())
}
