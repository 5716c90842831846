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
    match runtime.block_on(bench::run(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
