//! `quiver pipeline ...`: the recipe pipeline's operations against a server, for
//! operators and for workers written as shell scripts (`claim` prints the items, `report`
//! sends a results file back).

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use crate::client::{print_json, Client};
use crate::Remote;

#[derive(Args)]
pub struct PipelineArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub command: PipelineCommand,
}

#[derive(Subcommand)]
pub enum PipelineCommand {
    /// Queue depth, valves and activity.
    Status,
    /// Claim up to LIMIT items for WORKER (prints them; `--json` for the whole answer).
    Claim {
        worker: String,
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Only these ecosystems (repeatable).
        #[arg(long = "ecosystem")]
        ecosystems: Vec<String>,
        /// The lease in seconds (default: the server's).
        #[arg(long)]
        lease_seconds: Option<u64>,
    },
    /// Report results from a JSON file (`{"worker", "batch_id", "items": [...]}`, as
    /// `POST /api/v1/pipeline/results` takes; `-` reads standard input).
    Report { file: String },
    /// Missing dependencies ranked by what they block.
    Blockers {
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// An item with what blocks it and its history.
    Item { id: String },
    /// Put items back to pending: by id, by ecosystem and status, or by dependency.
    Requeue {
        ids: Vec<String>,
        #[arg(long)]
        ecosystem: Option<String>,
        /// blocked, failed, requires_manual or excluded (default: blocked and failed).
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        dependency: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Pause an ecosystem's claims.
    Pause {
        ecosystem: String,
        #[arg(long)]
        reason: String,
    },
    /// Resume an ecosystem's claims.
    Resume { ecosystem: String },
    /// Set (or with no value lift) an ecosystem's hourly claim limit.
    RateLimit {
        ecosystem: String,
        claims_per_hour: Option<i64>,
    },
    /// Close an ecosystem's circuit breaker by hand.
    ResetBreaker { ecosystem: String },
    /// Emergency stop of the whole pipeline.
    Stop {
        #[arg(long)]
        reason: String,
    },
    /// Lift the emergency stop.
    Start,
}

/// Percent-encode an item id for a path (`github:sharkdp/bat`).
fn path_id(id: &str) -> String {
    id.replace('%', "%25").replace('/', "%2F")
}

pub async fn run(a: PipelineArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let json = a.remote.json;
    let call = |m: Method, p: String, b: Option<Value>| {
        let client = &client;
        async move {
            client
                .call(m, &p, b.as_ref())
                .await?
                .with_context(|| format!("{p}: not found"))
        }
    };
    let r = match a.command {
        PipelineCommand::Status => {
            let r = call(Method::GET, "/api/v1/pipeline/status".into(), None).await?;
            if !json {
                if let Some(s) = r["stopped"].as_str() {
                    println!("STOPPED: {s}");
                }
                let totals = r["totals"].as_object().cloned().unwrap_or_default();
                let line: Vec<String> = totals.iter().map(|(k, v)| format!("{k} {v}")).collect();
                println!("items: {}", line.join(", "));
                for v in r["valves"].as_array().into_iter().flatten() {
                    println!(
                        "  {:<12} breaker {:<9} {}{}",
                        v["ecosystem"].as_str().unwrap_or(""),
                        v["breaker"].as_str().unwrap_or(""),
                        if v["paused"] == true { "paused: " } else { "" },
                        v["reason"].as_str().unwrap_or("")
                    );
                }
                return Ok(());
            }
            r
        }
        PipelineCommand::Claim {
            worker,
            limit,
            ecosystems,
            lease_seconds,
        } => {
            let body = json!({"worker": worker, "limit": limit, "ecosystems": ecosystems,
                              "lease_seconds": lease_seconds});
            let r = call(Method::POST, "/api/v1/pipeline/claim".into(), Some(body)).await?;
            if !json {
                if let Some(s) = r["stopped"].as_str() {
                    println!("the pipeline is stopped: {s}");
                }
                for h in r["held_back"].as_array().into_iter().flatten() {
                    eprintln!(
                        "held back {}: {}",
                        h["ecosystem"].as_str().unwrap_or(""),
                        h["reason"].as_str().unwrap_or("")
                    );
                }
                for i in r["items"].as_array().into_iter().flatten() {
                    println!("{}", i["id"].as_str().unwrap_or(""));
                }
                return Ok(());
            }
            r
        }
        PipelineCommand::Report { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin()).context("reading standard input")?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let body: Value =
                serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
            let r = call(Method::POST, "/api/v1/pipeline/results".into(), Some(body)).await?;
            if !json {
                for o in r.as_array().into_iter().flatten() {
                    println!(
                        "{}: {}{}{}",
                        o["id"].as_str().unwrap_or(""),
                        if o["applied"] == true {
                            ""
                        } else {
                            "NOT APPLIED "
                        },
                        o["status"].as_str().unwrap_or(""),
                        o["recipe"]["state"]
                            .as_str()
                            .map(|s| format!(" (recipe {s})"))
                            .unwrap_or_default()
                    );
                    for n in o["notes"].as_array().into_iter().flatten() {
                        println!("  {}", n.as_str().unwrap_or(""));
                    }
                }
                return Ok(());
            }
            r
        }
        PipelineCommand::Blockers { limit } => {
            let r = call(
                Method::GET,
                format!("/api/v1/pipeline/blockers?limit={limit}"),
                None,
            )
            .await?;
            if !json {
                for b in r.as_array().into_iter().flatten() {
                    println!(
                        "{:<30} impact {:>8.3}  blocks {} directly, {} in all",
                        b["dependency"].as_str().unwrap_or(""),
                        b["impact"].as_f64().unwrap_or(0.0),
                        b["direct"],
                        b["total"]
                    );
                }
                return Ok(());
            }
            r
        }
        PipelineCommand::Item { id } => {
            let r = call(
                Method::GET,
                format!("/api/v1/pipeline/items/{}", path_id(&id)),
                None,
            )
            .await?;
            if !json {
                let i = &r["item"];
                println!(
                    "{}  {}  tier {}  failures {}",
                    i["id"].as_str().unwrap_or(""),
                    i["status"].as_str().unwrap_or(""),
                    i["tier"],
                    i["failure_count"]
                );
                for (env, deps) in r["blocked_by"].as_object().into_iter().flatten() {
                    println!("  blocked on {env} by {deps}");
                }
                for h in r["history"].as_array().into_iter().flatten().take(20) {
                    println!(
                        "  {} {:<24} {} {}",
                        h["at"].as_str().unwrap_or(""),
                        h["environment"].as_str().unwrap_or(""),
                        if h["passed"] == true { "pass" } else { "FAIL" },
                        h["category"].as_str().unwrap_or("")
                    );
                }
                return Ok(());
            }
            r
        }
        PipelineCommand::Requeue {
            ids,
            ecosystem,
            status,
            dependency,
            reason,
        } => {
            if ids.is_empty() && ecosystem.is_none() && dependency.is_none() {
                bail!("name items, --ecosystem or --dependency");
            }
            let body = json!({"ids": ids, "ecosystem": ecosystem, "status": status,
                              "dependency": dependency, "reason": reason});
            let r = call(Method::POST, "/api/v1/pipeline/requeue".into(), Some(body)).await?;
            if !json {
                let n = r["requeued"].as_array().map_or(0, Vec::len);
                println!("re-queued {n} items");
                return Ok(());
            }
            r
        }
        PipelineCommand::Pause { ecosystem, reason } => {
            valve(
                &call,
                &ecosystem,
                json!({"action": "pause", "reason": reason}),
            )
            .await?
        }
        PipelineCommand::Resume { ecosystem } => {
            valve(&call, &ecosystem, json!({"action": "resume"})).await?
        }
        PipelineCommand::RateLimit {
            ecosystem,
            claims_per_hour,
        } => {
            valve(
                &call,
                &ecosystem,
                json!({"action": "rate_limit", "claims_per_hour": claims_per_hour}),
            )
            .await?
        }
        PipelineCommand::ResetBreaker { ecosystem } => {
            valve(&call, &ecosystem, json!({"action": "reset_breaker"})).await?
        }
        PipelineCommand::Stop { reason } => {
            call(
                Method::POST,
                "/api/v1/pipeline/stop".into(),
                Some(json!({"reason": reason})),
            )
            .await?
        }
        PipelineCommand::Start => {
            call(
                Method::POST,
                "/api/v1/pipeline/start".into(),
                Some(json!({})),
            )
            .await?
        }
    };
    print_json(&r)
}

async fn valve<F, Fut>(call: &F, ecosystem: &str, body: Value) -> anyhow::Result<Value>
where
    F: Fn(Method, String, Option<Value>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Value>>,
{
    call(
        Method::POST,
        format!("/api/v1/pipeline/ecosystems/{}", path_id(ecosystem)),
        Some(body),
    )
    .await
}
