//! `quiver mcp`: the registry for an agent over MCP on standard input and output, read
//! straight from a local store (the same tools and resources as `/mcp` on `quiver serve`).

use anyhow::Context as _;
use clap::Args;
use quiver_engine::{Caller, Registry};
use quiver_server::mcp::QuiverMcp;
use rmcp::ServiceExt;

use crate::local::{load_demo, open_registry};
use crate::DataDir;

#[derive(Args)]
pub struct McpArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Act as the user of this API token of the store (its rights: private entries of
    /// its namespaces). Without it the agent reads as an anonymous caller: public entries
    /// only. A token the store does not know is refused (the command fails), never
    /// downgraded to anonymous.
    #[arg(long, env = "QUIVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Load the demo data set (idempotent) before serving.
    #[arg(long)]
    pub demo: bool,
}

pub async fn run(a: McpArgs) -> anyhow::Result<()> {
    let registry = if a.demo {
        std::fs::create_dir_all(&a.data.data_dir)
            .with_context(|| format!("creating {}", a.data.data_dir.display()))?;
        let db = a.data.database().await.context("opening the database")?;
        let registry = Registry::open(db, a.data.config()).await?;
        load_demo(&registry, &a.data.data_dir).await?;
        registry.sync_index().await?;
        registry
    } else {
        open_registry(&a.data).await?
    };
    let caller = match a.token.as_deref().map(str::trim) {
        None | Some("") => Caller::Anonymous,
        Some(token) => registry.resolve_token(token).await.map_err(|e| {
            anyhow::anyhow!(
                "--token (or QUIVER_TOKEN) is not a valid token of this store: {}",
                e.message
            )
        })?,
    };
    tracing::info!(
        caller = if matches!(caller, Caller::Anonymous) {
            "anonymous"
        } else {
            "token"
        },
        "quiver MCP server on standard input and output"
    );
    let service = QuiverMcp::new(registry, caller)
        .serve(rmcp::transport::stdio())
        .await
        .context("starting the MCP session")?;
    service.waiting().await.context("the MCP session")?;
    Ok(())
}
