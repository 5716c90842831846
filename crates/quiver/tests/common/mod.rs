//! What the binary's end-to-end tests share: the binary, and a `quiver serve` child.
#![allow(dead_code)] // each test binary uses its own part of it

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_quiver");
pub const PASSWORD: &str = "correct horse battery staple";

/// A `quiver serve` child on a free loopback port, killed on drop.
pub struct Server {
    child: Child,
    pub base: String,
    /// The one-time setup code it printed (a server without an admin token).
    pub setup_code: Option<String>,
}

/// How `quiver serve` announces its setup code.
pub const SETUP_CODE_LINE: &str = "quiver setup code (registers the first site admin, once): ";

impl Server {
    /// Serve `data_dir` with `extra` arguments (no admin token from the environment);
    /// returns once the server announces its address.
    pub fn start(data_dir: &Path, extra: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", data_dir, extra)
    }

    /// [`Server::start`] on the address `listen`.
    pub fn start_on(listen: &str, data_dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(extra)
            .env("QUIVER_LOG", "warn")
            .env_remove("QUIVER_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn quiver serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut setup_code = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(code) = line.strip_prefix(SETUP_CODE_LINE) {
                    setup_code = Some(code.trim().to_string());
                }
                if let Some(addr) = line.strip_prefix("quiver listening on ") {
                    let _ = tx.send((addr.to_string(), setup_code.take()));
                }
            }
        });
        let (base, setup_code) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the server announces its address");
        Server {
            child,
            base,
            setup_code,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Kill it with SIGKILL (no shutdown) and wait for it.
    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on unix
        self.child.wait().unwrap();
    }
}

impl Server {
    /// Stop it with SIGTERM (a clean shutdown) and wait for it.
    pub fn terminate(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
