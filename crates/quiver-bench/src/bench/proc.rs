//! Child processes (killed on every exit path), their memory, sizes on disk, free ports.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A child process that is stopped (SIGTERM, then SIGKILL) and reaped when dropped.
pub struct ChildGuard {
    child: Option<Child>,
    pub name: &'static str,
    /// The child's stderr goes here.
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn new(child: Child, name: &'static str, log: PathBuf) -> Self {
        ChildGuard {
            child: Some(child),
            name,
            log,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The exit status, if the child has exited.
    pub fn try_wait(&mut self) -> std::io::Result<Option<ExitStatus>> {
        match &mut self.child {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Ask the child to stop (SIGTERM), wait up to `grace`, then kill it. Returns its
    /// exit status when it stopped by itself within the grace period.
    pub fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!(
            "bench: {} (pid {}) did not stop within {grace:?}: killing it",
            self.name,
            child.id()
        );
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    /// The last lines of the child's log, to explain a failure.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Peak and current resident memory of a live process, in bytes (VmHWM, VmRSS).
pub fn memory(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| {
        s.lines().find(|l| l.starts_with(key)).and_then(|l| {
            l[key.len()..]
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    Some((kb("VmHWM:")? * 1024, kb("VmRSS:")? * 1024))
}

/// What the children this process has reaped used: the largest peak resident memory
/// (bytes) and the CPU time (user + system, seconds) of all of them.
pub fn children_usage() -> (u64, f64) {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (
                u.max_rss().max(0) as u64 * 1024,
                secs(u.user_time()) + secs(u.system_time()),
            )
        }
        Err(_) => (0, 0.0),
    }
}

/// CPU time (user + system, seconds) a live process has used so far.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    stat_cpu_secs(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// User + system CPU seconds out of a `/proc/<pid>/stat` line.
fn stat_cpu_secs(s: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces) start at field 3, state.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15, in clock ticks (USER_HZ, 100 on Linux).
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// Total size of the files under `path` (or of the file itself).
pub fn disk_size(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if meta.is_file() {
        return meta.len();
    }
    if !meta.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .map(|rd| rd.flatten().map(|e| disk_size(&e.path())).sum())
        .unwrap_or(0)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_memory_and_sizes() {
        let (hwm, rss) = memory(std::process::id()).unwrap();
        assert!(hwm >= rss && rss > 0);
        assert!(cpu_secs(std::process::id()).is_some());
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 3 0 1 2 3";
        assert_eq!(stat_cpu_secs(stat), Some(3.25));
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 100]).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/b"), [0u8; 50]).unwrap();
        assert_eq!(disk_size(dir.path()), 150);
        assert!(free_port().unwrap() > 0);
    }

    #[test]
    fn guard_stops_the_child() {
        let child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let mut g = ChildGuard::new(child, "sleep", PathBuf::from("/nonexistent"));
        assert!(g.try_wait().unwrap().is_none());
        let started = Instant::now();
        drop(g);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
}
