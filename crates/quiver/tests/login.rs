//! `quiver login` end to end: the binary signs in to a real `quiver serve` with a device
//! code that a user approves through the API, stores the token in the config directory
//! with mode 0600, and the client commands use it; `quiver logout` revokes and forgets it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{Server, BIN, PASSWORD};

/// The client binary with a config directory of its own and no token from the
/// environment.
fn client(config_dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("QUIVER_LOG", "warn")
        .env("QUIVER_CONFIG_DIR", config_dir)
        .env_remove("QUIVER_TOKEN")
        .env_remove("QUIVER_SERVER");
    c
}

fn run(mut c: Command) -> (bool, String, String) {
    let out = c.output().expect("run quiver");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut rb = http.request(method, url);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let r = rb.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_approve_store_0600_use_and_logout() {
    use reqwest::Method;

    let data = tempfile::tempdir().unwrap();
    // Device codes as configured: a shorter life, a quicker poll (the login below is
    // quicker too).
    let server = Server::start(
        data.path(),
        &[
            "--device-code-lifetime",
            "120",
            "--device-poll-interval",
            "1",
        ],
    );
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (s, b) = call(
        &http,
        Method::POST,
        format!("{base}/api/v1/device/code"),
        None,
        Some(json!({"client_name": "probe"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["expires_in"], 120, "{b}");
    assert_eq!(b["interval"], 1, "{b}");

    // A user with a private entry, which only a token of theirs can see.
    let (s, b) = call(
        &http,
        Method::POST,
        format!("{base}/api/v1/users"),
        None,
        Some(json!({"name": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        &http,
        Method::POST,
        format!("{base}/api/v1/session"),
        None,
        Some(json!({"name": "alice", "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let session = b["token"].as_str().unwrap().to_string();
    let (s, b) = call(
        &http,
        Method::POST,
        format!("{base}/api/v1/entries"),
        Some(&session),
        Some(
            json!({"kind": "tool", "namespace": "alice", "name": "text.secretTool",
                    "description": "a private tool only alice may see", "visibility": "private"}),
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");

    let home = tempfile::tempdir().unwrap();
    // Not there yet: login creates it.
    let config = home.path().join("cfg").join("quiver");
    let creds = config.join("credentials.toml");

    // Without a stored token the private entry is not found.
    let (ok, _, err) = run(client(
        &config,
        &["info", "tool", "alice/text.secretTool", "--server", &base],
    ));
    assert!(!ok, "found without a token");
    assert!(err.contains("not found"), "{err}");

    // quiver login prints the page and the code, then polls.
    let mut login = client(
        &config,
        &["login", "--server", &base, "--name", "test laptop"],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn quiver login");
    let stdout = login.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = vec![];
    let user_code = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("quiver login prints the code");
        printed.push(line.clone());
        if let Some((page, code)) = line
            .strip_prefix("To sign in, open ")
            .and_then(|l| l.split_once(" and enter the code "))
        {
            assert_eq!(page, format!("{base}/device"));
            break code.trim().to_string();
        }
    };
    assert_eq!(user_code.len(), 9, "{user_code}");
    assert!(!creds.exists(), "nothing is stored before approval");

    // alice approves the code through the API.
    let (s, b) = call(
        &http,
        Method::POST,
        format!("{base}/api/v1/device/approve"),
        Some(&session),
        Some(json!({"user_code": user_code})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["client_name"], "test laptop");

    // login finishes on its next poll.
    let started = Instant::now();
    let status = loop {
        if let Some(st) = login.try_wait().unwrap() {
            break st;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "quiver login did not finish"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        printed.push(line);
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut login.stderr.take().unwrap(), &mut err).unwrap();
    assert!(
        status.success(),
        "login failed: {err}\n{}",
        printed.join("\n")
    );
    let out = printed.join("\n");
    assert!(out.contains("as alice"), "{out}");

    // The file: created 0600 in a 0700 directory, holding a token of alice's.
    assert_eq!(mode(&creds), 0o600, "credentials must be private");
    assert_eq!(mode(&config), 0o700);
    let text = std::fs::read_to_string(&creds).unwrap();
    assert!(text.contains(&format!("[servers.\"{base}\"]")), "{text}");
    let token = text
        .lines()
        .find_map(|l| l.strip_prefix("token = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a token line")
        .to_string();
    assert!(token.starts_with("qvr_"), "{text}");
    assert_ne!(token, session);
    let (s, me) = call(
        &http,
        Method::GET,
        format!("{base}/api/v1/user"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["name"], "alice");

    // quiver info, with no --token, uses the stored one and sees the private entry.
    let (ok, out, err) = run(client(
        &config,
        &["info", "tool", "alice/text.secretTool", "--server", &base],
    ));
    assert!(ok, "{err}");
    assert!(out.contains("text.secretTool"), "{out}");
    // A trailing slash on --server is the same server.
    let (ok, _, err) = run(client(
        &config,
        &[
            "info",
            "tool",
            "alice/text.secretTool",
            "--server",
            &format!("{base}/"),
        ],
    ));
    assert!(ok, "{err}");

    // logout revokes the token and forgets it; the file stays private.
    let (ok, out, err) = run(client(&config, &["logout", "--server", &base]));
    assert!(ok, "{err}");
    assert!(out.contains("Signed out"), "{out}");
    let (s, _) = call(
        &http,
        Method::GET,
        format!("{base}/api/v1/user"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(s, 401, "the token is revoked");
    let text = std::fs::read_to_string(&creds).unwrap();
    assert!(!text.contains(&token), "{text}");
    assert_eq!(mode(&creds), 0o600);
    let (ok, _, _) = run(client(
        &config,
        &["info", "tool", "alice/text.secretTool", "--server", &base],
    ));
    assert!(!ok, "signed out: the private entry is hidden again");
}
