//! The `quiver` binary: server, client commands, importer and exporter.
//!
//! Arguments are parsed by clap into [`Cli`]; each subcommand is a thin function over the
//! engine (local commands: serve, import, export, relevance) or over the HTTP API (client
//! commands: publish, info, search, list). `bench` hands over to the separate
//! `quiver-bench` binary. Exit codes: 0 success, 1 the operation
//! failed (not found, refused...), 2 usage errors (clap's own).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod bench_exec;
mod cache;
mod client;
mod install_cli;
mod local;
mod login;
mod mcp_cli;
mod mirror_cli;
mod new_cli;
mod pipeline_cli;
mod prompt;
mod resolve_cli;
mod suggest_cli;

/// quiver: a registry for the tools developers and AI agents use.
#[derive(Parser)]
#[command(name = "quiver", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the embedded store lives (local commands).
#[derive(Args, Clone)]
pub struct DataDir {
    /// Data directory of the embedded store and index.
    #[arg(long, env = "QUIVER_DATA_DIR", default_value = "./quiver-data")]
    pub data_dir: PathBuf,
    /// The database to use instead of the data directory's embedded store: a PostgreSQL
    /// URL (postgres://user@host/db), or an SQLite file (sqlite:PATH or a path); the
    /// search index stays in the data directory.
    #[arg(long = "database", env = "QUIVER_DATABASE_URL", hide_env_values = true)]
    pub database: Option<String>,
    /// A read replica of the PostgreSQL database for the API's reads (writes, the change
    /// feed and the index follower stay on `--database`).
    #[arg(
        long = "read-database",
        env = "QUIVER_READ_DATABASE_URL",
        hide_env_values = true
    )]
    pub read_database: Option<String>,
}

impl DataDir {
    /// The engine configuration for these options.
    pub fn config(&self) -> quiver_engine::EngineConfig {
        let mut c = quiver_engine::EngineConfig::new(&self.data_dir);
        match login::oidc_from_env() {
            Ok(o) => c.oidc = o,
            Err(e) => eprintln!("warning: outside sign-in is off: {e:#}"),
        }
        c
    }

    /// Where the database is: `--database`, else the data directory's embedded store.
    fn location(&self) -> quiver_model::Result<quiver_backends::Location> {
        match &self.database {
            Some(url) => quiver_backends::Location::parse(url),
            None => Ok(quiver_backends::Location::in_data_dir(&self.data_dir)),
        }
    }

    /// Open the database (with the read replica, when one is given).
    pub async fn database(&self) -> quiver_model::Result<quiver_store::Database> {
        quiver_backends::open(self.location()?, self.read_database.as_deref()).await
    }

    /// The database for a bulk writer (import): everything on the primary, since an
    /// import compares with what it just wrote.
    pub async fn primary_database(&self) -> quiver_model::Result<quiver_store::Database> {
        quiver_backends::open(self.location()?, None).await
    }

    /// The embedded store's file, when no other database is named, for commands that
    /// need an existing store.
    pub fn embedded_store(&self) -> Option<PathBuf> {
        self.database
            .is_none()
            .then(|| quiver_backends::store_path(&self.data_dir))
    }
}

/// Which server to talk to (client commands).
#[derive(Args, Clone)]
pub struct Remote {
    /// Base URL of a running quiver server.
    #[arg(long, env = "QUIVER_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// API token (sent as a bearer token); default: the one `quiver login` stored for
    /// this server.
    #[arg(long, env = "QUIVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server over the embedded store.
    Serve(local::ServeArgs),
    /// Import files or folders (data set TSV, quiver JSONL, the source systems' formats).
    Import(local::ImportArgs),
    /// Export the store as quiver JSONL, or as a source system's own files.
    Export(local::ExportArgs),
    /// Report hit rates at 1, 3 and 10 of the relevance set against the local index.
    Relevance(local::RelevanceArgs),
    /// List, show and retry durable jobs in the store.
    Jobs(local::JobsArgs),
    /// Serve the local store to an AI agent over MCP on standard input and output (tools:
    /// search, get_entry, get_tool_schema, select_tool, suggest_skills, resolve).
    Mcp(mcp_cli::McpArgs),
    /// Mirror another quiver server: follow its public change feed and copy its public
    /// entries, versions, relations, lifecycle state and content into the local store,
    /// resuming from the last position (`--once` to catch up and exit).
    Mirror(mirror_cli::MirrorArgs),
    /// Publish an entry version to a server: from a JSON file, or from a kind's own
    /// source (an mlld module file, a skill, a tpmjs package.json, an ops tool profile, a
    /// recipe TOML), asking for what the source lacks.
    Publish(client::PublishArgs),
    /// Create a tool, recipe, skill, module or package in the terminal (prompts with
    /// defaults, checked as typed; `--yes` and flags for scripts), writing a JSON file
    /// that `quiver publish` takes.
    New(new_cli::NewArgs),
    /// Show an entry and its versions: `quiver info package npm/@types/node`.
    Info(client::InfoArgs),
    /// Delete an entry or one version under the server's deletion policy (owners within
    /// the grace period, nothing depending on it, few downloads; admins with a reason):
    /// `quiver delete tool acme/csv-parse@1.0.1 --reason "leaked a key"`.
    Delete(client::DeleteArgs),
    /// Search a server.
    Search(client::SearchArgs),
    /// Select tools for a capability: `quiver select packet_capture --var packet_count=5000`.
    Select(client::SelectArgs),
    /// Skills that fit a project: `quiver suggest` reads package.json, pyproject.toml,
    /// requirements.txt or Cargo.toml here; or `quiver suggest react pypi:requests`.
    Suggest(suggest_cli::SuggestArgs),
    /// Pin references to versions: `quiver resolve module alice/fmt@^1.2 alice/io`.
    Resolve(resolve_cli::ResolveArgs),
    /// Download a version's content and verify its sha256 (a mismatch is refused):
    /// `quiver install module alice/fmt@^1.2 --out quiver_modules`.
    Install(install_cli::InstallArgs),
    /// Counted downloads with a terminal chart: `quiver stats module alice/fmt`, or a
    /// namespace: `quiver stats alice`.
    Stats(install_cli::StatsArgs),
    /// List entries on a server.
    List(client::ListArgs),
    /// The recipe pipeline: status, claim, report, blockers, item, requeue, pause,
    /// resume, rate-limit, reset-breaker, stop, start.
    Pipeline(pipeline_cli::PipelineArgs),
    /// Read or export a server's audit log (admins; owners with --namespace).
    Audit(client::AuditArgs),
    /// Who the stored (or given) token signs in as.
    Whoami(client::WhoamiArgs),
    /// Create an account on a server (with `--setup-code`, its first site admin); the
    /// password is read from standard input.
    Register(client::RegisterArgs),
    /// List, create and revoke your API tokens on a server.
    Tokens(client::TokensArgs),
    /// Benchmark import, lookups, search and memory on the data set, against SQLite FTS5 and
    /// PostgreSQL: runs the separate `quiver-bench` binary with these arguments.
    Bench(bench_exec::BenchArgs),
    /// Sign in to a server with a device code (approve it in a signed-in session) and keep
    /// the token in the user's config directory.
    Login(login::LoginArgs),
    /// Revoke the stored token of a server and forget it.
    Logout(login::LogoutArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The benchmark is another binary: hand over before starting anything here.
    let cli = match cli.command {
        Command::Bench(a) => {
            return match bench_exec::run(a) {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        command => Cli { command },
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("QUIVER_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,tower_http=warn,tantivy=warn")
    });
    let json_logs = std::env::var("QUIVER_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json_logs {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(a) => local::serve(a).await,
            Command::Import(a) => local::import(a).await,
            Command::Export(a) => local::export(a).await,
            Command::Relevance(a) => local::relevance(a).await,
            Command::Jobs(a) => local::jobs(a).await,
            Command::Mcp(a) => mcp_cli::run(a).await,
            Command::Mirror(a) => mirror_cli::run(a).await,
            Command::Publish(a) => client::publish(a).await,
            Command::New(a) => new_cli::run(a),
            Command::Info(a) => client::info(a).await,
            Command::Delete(a) => client::delete(a).await,
            Command::Audit(a) => client::audit(a).await,
            Command::Whoami(a) => client::whoami(a).await,
            Command::Register(a) => client::register(a).await,
            Command::Tokens(a) => client::tokens(a).await,
            Command::Search(a) => client::search(a).await,
            Command::Select(a) => client::select(a).await,
            Command::List(a) => client::list(a).await,
            Command::Suggest(a) => suggest_cli::run(a).await,
            Command::Resolve(a) => resolve_cli::run(a).await,
            Command::Install(a) => install_cli::install(a).await,
            Command::Stats(a) => install_cli::stats(a).await,
            Command::Pipeline(a) => pipeline_cli::run(a).await,
            Command::Bench(_) => unreachable!("handled before the runtime starts"),
            Command::Login(a) => login::login(a).await,
            Command::Logout(a) => login::logout(a).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
