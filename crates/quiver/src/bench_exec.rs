//! `quiver bench`: a thin entry point to the benchmark, which lives in its own binary
//! (`quiver-bench`, crate `crates/quiver-bench`) so that the shipped binary carries none of
//! its code or dependencies (its HTTP client, histograms, the SQLite FTS5 and PostgreSQL
//! peers). The arguments pass through unchanged; the benchmark measures this very binary
//! (`QUIVER_BIN`, unless the caller set it or passes `--quiver`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};
use clap::Args;

#[derive(Args)]
#[command(disable_help_flag = true)]
pub struct BenchArgs {
    /// The quiver-bench binary [default: `quiver-bench` next to this executable].
    #[arg(long = "quiver-bench", env = "QUIVER_BENCH_BIN", value_name = "PATH")]
    pub quiver_bench: Option<PathBuf>,
    /// The benchmark's own arguments (`quiver bench --help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<OsString>,
}

/// Where the `quiver-bench` binary is: `explicit`, else beside `exe`.
fn locate(explicit: Option<&Path>, exe: &Path) -> anyhow::Result<PathBuf> {
    let (path, how) = match explicit {
        Some(p) => (
            p.to_path_buf(),
            "given by --quiver-bench or QUIVER_BENCH_BIN",
        ),
        None => (
            exe.with_file_name(format!("quiver-bench{}", std::env::consts::EXE_SUFFIX)),
            "next to this executable",
        ),
    };
    if !path.is_file() {
        bail!(
            "the benchmark is a separate binary, quiver-bench, and there is none at {} ({how}): \
             build it with `cargo build --release -p quiver-bench`, or pass --quiver-bench PATH",
            path.display()
        );
    }
    Ok(path)
}

/// Replace this process with `quiver-bench ARGS…` (on Unix; elsewhere run it and pass on
/// its exit code). Returns only on failure.
pub fn run(a: BenchArgs) -> anyhow::Result<std::process::ExitCode> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let bench = locate(a.quiver_bench.as_deref(), &exe)?;
    let mut cmd = Command::new(&bench);
    cmd.args(&a.args);
    if std::env::var_os("QUIVER_BIN").is_none() {
        cmd.env("QUIVER_BIN", &exe);
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        let e = cmd.exec();
        Err(e).with_context(|| format!("running {}", bench.display()))
    }
    #[cfg(not(unix))]
    {
        let status = cmd
            .status()
            .with_context(|| format!("running {}", bench.display()))?;
        Ok(std::process::ExitCode::from(
            status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_names_the_build_command_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("quiver");
        let err = locate(None, &exe).unwrap_err().to_string();
        assert!(
            err.contains("cargo build --release -p quiver-bench"),
            "{err}"
        );
        assert!(err.contains(&dir.path().display().to_string()), "{err}");

        let bench = dir
            .path()
            .join(format!("quiver-bench{}", std::env::consts::EXE_SUFFIX));
        std::fs::write(&bench, b"").unwrap();
        assert_eq!(locate(None, &exe).unwrap(), bench);
        let other = dir.path().join("elsewhere");
        let err = locate(Some(&other), &exe).unwrap_err().to_string();
        assert!(err.contains("--quiver-bench"), "{err}");
    }
}
