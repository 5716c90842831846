//! `quiver-bench`: the benchmark, kept out of the shipped `quiver` binary (it carries its
//! own HTTP client, histograms and the SQLite FTS5 and PostgreSQL peers). `quiver bench
//! ARGS…` runs this binary with the same arguments. Exit codes: 0 success, 1 the run
//! failed, 2 usage errors (clap's own).

use std::process::ExitCode;

use clap::Parser;

mod bench;

/// Benchmark import, lookups, search and memory of quiver on the data set, against SQLite
/// FTS5 and PostgreSQL.
#[derive(Parser)]
#[command(name = "quiver-bench", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    args: bench::BenchArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The main bench runs on one thread: a sequential client's request and its
    // connection task stay on it, so a latency figure holds no hop between threads (on a
    // 2-core machine shared with the server, each hop can wait for a core); concurrent
    // clients are tasks on it, blocking work (the in-process peers) goes to the blocking
    // pool. The other modes generate and send their load from every core, as before.
    let a = &cli.args;
    let other_mode = a.attacks || a.tool_intel || a.pipeline || a.consumers || a.pg_writes;
    let mut builder = if other_mode {
        tokio::runtime::Builder::new_multi_thread()
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(bench::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
