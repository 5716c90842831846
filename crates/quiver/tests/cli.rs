//! The `quiver` binary end to end: the README's quick start, client commands, and a
//! SIGKILL in the middle of writes.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{Server, BIN, PASSWORD};

fn quiver(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("QUIVER_LOG", "warn")
        // The client's cache, out of the user's home (keys include the server's port).
        .env(
            "QUIVER_CACHE_DIR",
            Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-cache"),
        )
        .output()
        .expect("run quiver");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn get(url: &str) -> Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_server_answers_client_commands() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--demo", "--rate-limits", "search=500/min"]);
    let s = ["--server", server.base.as_str()];

    // Rate limits are on, as configured.
    let res = reqwest::get(format!("{}/api/v1/search?q=chalk", server.base))
        .await
        .unwrap();
    assert_eq!(
        res.headers()
            .get("ratelimit-limit")
            .and_then(|v| v.to_str().ok()),
        Some("500")
    );

    let (ok, out, err) =
        quiver(&[&["search"], &s[..], &["terminal", "string", "styling"]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("npm/chalk"), "{out}");

    let (ok, out, _) = quiver(&[&["search"], &s[..], &["--json", "ripgrp"]].concat());
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["hits"][0]["name"], "ripgrep", "typo forgiven: {v}");

    // Selection over the demo's ops tools.
    let (ok, out, err) = quiver(
        &[
            &["select"],
            &s[..],
            &[
                "packet_capture",
                "--var",
                "packet_count=5000",
                "--no-approval",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with(
            " 1. opsconductor/tcpdump@1.0.0 capture  score 0.820  time 2300 ms  cost 5"
        ),
        "{out}"
    );
    assert!(out.contains("needs inputs: interface"), "{out}");
    assert!(
        out.contains("opsconductor/tshark capture: requires approval"),
        "{out}"
    );
    let (ok, _, err) = quiver(&[&["select"], &s[..], &["packet_capture", "--var", "x"]].concat());
    assert!(!ok && err.contains("write NAME=NUMBER"), "{err}");

    // Skills for a project's packages, and a manifest read from a file.
    let (ok, out, err) = quiver(&[&["suggest"], &s[..], &["react", "pypi:PyTest"]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("upskill/react-best-practices"), "{out}");
    assert!(out.contains("fits: pytest (80%, curated)"), "{out}");
    let manifest = dir.path().join("package.json");
    std::fs::write(
        &manifest,
        r#"{"dependencies": {"next": "^14"}, "devDependencies": {"tailwindcss": "3"}}"#,
    )
    .unwrap();
    let m = manifest.to_str().unwrap();
    let (ok, out, err) = quiver(&[&["suggest"], &s[..], &["--manifest", m]].concat());
    assert!(ok, "{err}");
    assert!(out.starts_with("2 packages from "), "{out}");
    let first = out.find("nextjs-app-router").unwrap();
    let dev = out.find("tailwind-setup").unwrap();
    assert!(first < dev, "a dev dependency weighs half: {out}");

    // Resolution: one reference, then a lock set with one that does not resolve.
    let (ok, out, err) = quiver(&[&["resolve"], &s[..], &["module", "mlld/env@~1.0"]].concat());
    assert!(ok, "{err}");
    assert!(
        out.starts_with("mlld/env@~1.0 -> 1.0.0  manifest sha256:"),
        "{out}"
    );
    assert!(
        out.contains("warning: a newer version is out: 1.1.0"),
        "{out}"
    );
    let (ok, out, _) = quiver(
        &[
            &["resolve"],
            &s[..],
            &["module", "mlld/env", "mlld/no-such-module"],
        ]
        .concat(),
    );
    assert!(!ok, "a reference that does not resolve fails the command");
    assert!(out.contains("mlld/env -> 1.1.0"), "{out}");
    assert!(out.contains("mlld/no-such-module: "), "{out}");

    let (ok, out, _) = quiver(&[&["info"], &s[..], &["package", "npm/@types/node"]].concat());
    assert!(ok);
    assert!(out.contains("TypeScript definitions"), "{out}");

    let (ok, out, _) = quiver(&[&["list"], &s[..], &["--kind", "module", "--json"]].concat());
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["items"].as_array().unwrap().len(), 5);

    // publish: creates the entry, then the version; a second publish of the same version fails.
    let file = dir.path().join("tool.json");
    std::fs::write(
        &file,
        json!({
            "kind": "tool", "namespace": "acme", "name": "text.slugify",
            "description": "Turn a title into a URL slug", "tags": ["text"],
            "version": "1.0.0", "manifest": {"input_schema": {"type": "object"}}
        })
        .to_string(),
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let (ok, out, err) = quiver(&[&["publish"], &s[..], &[f]].concat());
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("published tool acme/text.slugify 1.0.0"),
        "{out}"
    );
    let (ok, _, err) = quiver(&[&["publish"], &s[..], &[f]].concat());
    assert!(!ok);
    assert!(
        err.contains("already published") && err.contains("field: version"),
        "{err}"
    );

    // A rebuild queued through the API is a durable job that `quiver jobs` lists.
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/index/rebuild", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let d = dir.path().to_str().unwrap();
    let (ok, out, err) = quiver(&["jobs", "--data-dir", d, "list", "--json"]);
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["kind"].as_str().unwrap().starts_with("rebuild_index:")),
        "{v}"
    );
    let (ok, _, err) = quiver(&["jobs", "--data-dir", d, "retry", "999"]);
    assert!(!ok && err.contains("not found"), "{err}");

    // Errors are sentences, not panics.
    let (ok, _, err) = quiver(&[&["info"], &s[..], &["tool", "acme/nope"]].concat());
    assert!(
        !ok && err.starts_with("error: ") && !err.contains("panicked"),
        "{err}"
    );
    let (ok, _, err) = quiver(&["search", "--server", "http://127.0.0.1:1", "x"]);
    assert!(!ok && err.contains("could not reach the server"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_whoami_and_tokens_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--admin-token", "root-for-cli-tests"]);
    let s = ["--server", server.base.as_str()];
    let admin = ["--token", "root-for-cli-tests"];
    let http = reqwest::Client::new();
    let r = http
        .post(server.url("/api/v1/users"))
        .json(&json!({"name": "olga", "email": "olga@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let session: Value = http
        .post(server.url("/api/v1/session"))
        .json(&json!({"name": "olga", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let olga = session["token"].as_str().unwrap();
    for ns in ["acme", "beta"] {
        let r = http
            .post(server.url("/api/v1/namespaces"))
            .bearer_auth(olga)
            .json(&json!({"name": ns}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }

    let (ok, out, err) = quiver(&[&["audit"], &s[..], &admin[..]].concat());
    assert!(ok, "{err}");
    assert!(
        out.contains("namespace.create") && out.contains("namespace acme"),
        "{out}"
    );
    let (ok, out, err) =
        quiver(&[&["audit"], &s[..], &admin[..], &["--json", "--limit", "1"]].concat());
    assert!(ok, "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["items"][0]["target"], "namespace beta",
        "newest first: {v}"
    );
    assert!(v["next_cursor"].is_string());

    let file = dir.path().join("audit.jsonl");
    let f = file.to_str().unwrap();
    let (ok, _, err) = quiver(
        &[
            &["audit"],
            &s[..],
            &admin[..],
            &["--export", "--namespace", "acme", "-o", f],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("1 audit rows written"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    let rows: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{text}");
    assert_eq!(rows[0]["namespace"], "acme");

    // Refusals and bad input are sentences naming the field.
    let (ok, _, err) = quiver(&[&["audit"], &s[..], &["--export"]].concat());
    assert!(!ok && err.contains("sign in"), "{err}");
    let (ok, _, err) =
        quiver(&[&["audit"], &s[..], &admin[..], &["--since", "yesterday"]].concat());
    assert!(!ok && err.contains("field: since"), "{err}");

    // whoami and tokens: who a token is, and a token made, used and revoked from the CLI.
    let as_olga = ["--token", olga];
    let (ok, out, err) = quiver(&[&["whoami"], &s[..], &as_olga[..]].concat());
    assert!(ok, "{err}");
    assert!(out.starts_with("olga\n"), "{out}");
    assert!(out.contains("acme") && out.contains("owner"), "{out}");
    let (ok, secret, err) = quiver(
        &[
            &["tokens"],
            &s[..],
            &as_olga[..],
            &[
                "create",
                "ci",
                "--scope",
                "publish-update",
                "--pattern",
                "text.*",
                "--expires-in-days",
                "30",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("shown once"), "{err}");
    let secret = secret.trim().to_string();
    assert!(secret.starts_with("qvr_"), "{secret}");
    let (ok, out, err) = quiver(&[&["tokens"], &s[..], &as_olga[..], &["--json", "list"]].concat());
    assert!(ok, "{err}");
    assert!(!out.contains(&secret[4..]), "a listing shows no secret");
    let list: Value = serde_json::from_str(&out).unwrap();
    let ci = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "ci")
        .expect("the new token is listed")
        .clone();
    assert_eq!(ci["scopes"], json!(["publish-update"]));
    assert_eq!(ci["pattern"], "text.*");
    assert!(ci["expires_at"].is_string());
    let (ok, out, err) = quiver(&[&["whoami"], &s[..], &["--token", &secret]].concat());
    assert!(ok && out.starts_with("olga"), "{out}{err}");
    let id = ci["id"].to_string();
    let (ok, out, err) = quiver(&[&["tokens"], &s[..], &as_olga[..], &["revoke", &id]].concat());
    assert!(ok, "{err}");
    assert!(out.contains("revoked token"), "{out}");
    let (ok, _, err) = quiver(&[&["whoami"], &s[..], &["--token", &secret]].concat());
    assert!(!ok && err.contains("revoked"), "{err}");
    // Without any token: a sentence, not a request.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([&["whoami"], &s[..]].concat())
        .env("QUIVER_CONFIG_DIR", empty.path())
        .env_remove("QUIVER_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not signed in"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--rate-limits", "off"]);
    let http = reqwest::Client::new();
    let mut acknowledged = Vec::new();
    let started = Instant::now();
    // Write as fast as we can and kill the server in the middle of it.
    for i in 0..200 {
        let name = format!("crash.tool{i}");
        let r = http
            .post(server.url("/api/v1/entries"))
            .json(&json!({"kind": "tool", "namespace": "acme", "name": name,
                          "description": format!("pelican number {i}"), "status": "published"}))
            .send()
            .await;
        if matches!(r, Ok(ref r) if r.status() == 201) {
            acknowledged.push(name);
        }
        if i == 120 {
            break;
        }
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    server.kill9();

    let server = Server::start(dir.path(), &["--rate-limits", "off"]);
    let status = get(&server.url("/api/v1/status")).await;
    assert_eq!(status["index_lag"], 0, "{status}");
    assert_eq!(status["store"]["entries"], acknowledged.len(), "{status}");
    for name in acknowledged.iter().step_by(10) {
        let r = http
            .get(server.url(&format!("/api/v1/entries/tool/acme/{name}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{name} was acknowledged, so it survives");
    }
    let found = get(&server.url("/api/v1/search?q=pelican&limit=1")).await;
    assert_eq!(
        found["total"],
        acknowledged.len(),
        "the index agrees with the store"
    );
}

/// Copy a folder tree (the project's small format fixtures) under `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

fn import_json(args: &[&str]) -> Value {
    let (_, out, err) = quiver(args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"))
}

#[test]
fn import_a_folder_of_source_system_files_and_export_them_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../quiver-import/tests/data");
    let mixed = dir.path().join("mixed");
    copy_tree(&Path::new(data).join("ops"), &mixed.join("ops"));
    copy_tree(
        &Path::new(data).join("blocks/catalog"),
        &mixed.join("tpmjs"),
    );
    std::fs::write(mixed.join("NOTES.txt"), "not data").unwrap();
    let store = dir.path().join("store");
    let (store_s, mixed_s) = (store.to_str().unwrap(), mixed.to_str().unwrap());

    // A dry run reports per format and the file nothing reads, and writes nothing.
    let dry = import_json(&[
        "import",
        "--data-dir",
        store_s,
        "--dry-run",
        "--json",
        mixed_s,
    ]);
    assert_eq!(dry["dry_run"], true);
    let formats: Vec<&str> = dry["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["format"].as_str().unwrap())
        .collect();
    assert!(
        formats.contains(&"ops-tools") && formats.contains(&"blocks"),
        "{dry}"
    );
    let unread = dry["unread"].as_array().unwrap();
    assert_eq!(unread.len(), 1, "{dry}");
    assert!(unread[0]["file"].as_str().unwrap().ends_with("NOTES.txt"));
    let would_create = dry["totals"]["created"].as_u64().unwrap();
    assert!(would_create > 0);

    let first = import_json(&["import", "--data-dir", store_s, "--json", mixed_s]);
    assert_eq!(
        first["totals"]["created"].as_u64(),
        Some(would_create),
        "{first}"
    );
    let again = import_json(&["import", "--data-dir", store_s, "--json", mixed_s]);
    assert_eq!(again["totals"]["created"], 0, "{again}");
    assert_eq!(again["totals"]["updated"], 0, "{again}");
    assert_eq!(again["totals"]["documents"]["created"], 0, "{again}");

    // Each format exports back; importing the export changes nothing.
    for (format, out) in [("ops-tools", "ops-out"), ("blocks", "blocks-out")] {
        let out = dir.path().join(out);
        let (ok, _, err) = quiver(&[
            "export",
            "--data-dir",
            store_s,
            "--format",
            format,
            "--output",
            out.to_str().unwrap(),
        ]);
        assert!(ok, "export {format}: {err}");
        let back = import_json(&[
            "import",
            "--data-dir",
            store_s,
            "--json",
            "--format",
            format,
            out.to_str().unwrap(),
        ]);
        let t = &back["totals"];
        assert_eq!(
            (t["created"].as_u64(), t["updated"].as_u64()),
            (Some(0), Some(0)),
            "{format}: {back}"
        );
        assert!(t["unchanged"].as_u64().unwrap() > 0, "{format}: {back}");
    }

    // A format export needs somewhere to write.
    let (ok, _, err) = quiver(&["export", "--data-dir", store_s, "--format", "recipes"]);
    assert!(!ok && err.contains("--output"), "{err}");
}

#[test]
fn an_open_server_listens_only_on_loopback_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    // No admin token, no users, all addresses: refused, saying how to go on.
    let (ok, _, err) = quiver(&["serve", "--listen", "0.0.0.0:0", "--data-dir", data]);
    assert!(!ok, "an open server on 0.0.0.0 must not start");
    assert!(
        err.contains("refusing to serve an open registry") && err.contains("--insecure-open"),
        "{err}"
    );
    // Told so, it starts; with an admin token it is not open and starts too.
    drop(Server::start_on(
        "0.0.0.0:0",
        dir.path(),
        &["--insecure-open"],
    ));
    drop(Server::start_on(
        "0.0.0.0:0",
        dir.path(),
        &["--admin-token", "root-for-listen-tests"],
    ));
}

#[test]
fn the_setup_code_registers_the_first_admin_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[]);
    let code = server
        .setup_code
        .clone()
        .expect("a server without admin token prints a setup code");
    assert!(code.starts_with("qvs_") && code.len() > 40, "{code}");
    let register = |name: &str, code: Option<&str>| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "register",
            "--server",
            &server.base,
            "--name",
            name,
            "--password-stdin",
        ])
        .env("QUIVER_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        if let Some(c) = code {
            cmd.args(["--setup-code", c]);
        }
        let mut child = cmd.spawn().unwrap();
        std::io::Write::write_all(
            &mut child.stdin.take().unwrap(),
            format!("{PASSWORD}\n").as_bytes(),
        )
        .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = register("plain", None);
    assert!(ok, "{err}");
    assert!(
        out.contains("registered plain") && !out.contains("(admin)"),
        "{out}"
    );
    let (ok, _, err) = register("guess", Some("qvs_wrong"));
    assert!(!ok && err.contains("setup code"), "{err}");
    let (ok, out, err) = register("root", Some(&code));
    assert!(ok, "{err}");
    assert!(out.contains("registered root (admin)"), "{out}");
    let (ok, _, err) = register("again", Some(&code));
    assert!(!ok, "a setup code works once: {err}");
}

/// Imported versions get their quality gates through the change feed: `quiver import`
/// queues them (and says how many), a server's worker runs them; the ecosystem
/// namespaces' packages are not gated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imported_versions_get_their_gates_through_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    let tool = |name: &str, description: &str| {
        json!({"kind": "tool", "namespace": "acme", "name": name, "status": "published",
            "description": description,
            "versions": [{"version": "1.0.0", "manifest": {}}]})
        .to_string()
    };
    let package = json!({"kind": "package", "namespace": "pypi", "name": "requests-mirror",
        "description": "an outside registry's package", "status": "published",
        "versions": [{"version": "2.0.0", "manifest": {}}]});
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n{package}\n",
            tool(
                "text.csvOne",
                "Parse CSV text into typed rows for the tests"
            ),
            // Fails the required `description` gate (under 20 characters).
            tool("text.csvTwo", "Parses CSV")
        ),
    )
    .unwrap();
    let d = dir.path().join("data");
    let (d, f) = (d.to_str().unwrap(), file.to_str().unwrap());
    let import = || {
        let (ok, out, err) = quiver(&["import", "--json", "--data-dir", d, f]);
        assert!(ok, "{err}");
        serde_json::from_str::<Value>(&out).unwrap()
    };
    let first = import();
    assert_eq!(first["totals"]["created"], 3, "{first}");
    assert_eq!(
        first["gates_queued"], 2,
        "the two tools, not the package: {first}"
    );
    // Nothing new: nothing queued again.
    assert_eq!(import()["gates_queued"], 0);
    let (ok, out, _) = quiver(&["import", "--data-dir", d, f]);
    assert!(
        ok && out.contains("quality gates queued: 0 versions"),
        "{out}"
    );

    // One audit row per run, by the operator, with its counts (a dry run writes none).
    let (ok, _, err) = quiver(&["import", "--dry-run", "--data-dir", d, f]);
    assert!(ok, "{err}");
    let out = dir.path().join("out.jsonl");
    let (ok, _, err) = quiver(&["export", "--data-dir", d, "-o", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let db = quiver_backends::open(quiver_backends::Location::in_data_dir(Path::new(d)), None)
        .await
        .unwrap();
    let rows = db
        .audit
        .list_audit(&quiver_store::AuditFilter::default(), None, 100)
        .await
        .unwrap()
        .items;
    let runs: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.actor.as_str()))
        .collect();
    let op = "operator (command line)";
    assert_eq!(
        runs,
        [
            ("export.run", op),
            ("import.run", op),
            ("import.run", op),
            ("import.run", op)
        ],
        "newest first, nothing per record"
    );
    assert_eq!(
        rows[3].target, "import of in.jsonl",
        "file names, not paths"
    );
    assert_eq!(rows[3].diff.as_ref().unwrap()["created"], 3);
    assert_eq!(rows[3].diff.as_ref().unwrap()["gates_queued"], 2);
    assert_eq!(rows[0].diff.as_ref().unwrap()["entries"], 3);
    drop(db);

    let server = Server::start(Path::new(d), &[]);
    let version = |path: &str| server.url(&format!("/api/v1/entries/{path}/versions"));
    let started = Instant::now();
    for (name, passes) in [("text.csvOne", true), ("text.csvTwo", false)] {
        loop {
            let v = get(&format!("{}/1.0.0", version(&format!("tool/acme/{name}")))).await;
            if !v["validation"].is_null() {
                assert!(v["validation"]["gates"].is_array(), "{v}");
                // An imported version keeps its source's decision: a failed gate is a
                // finding in its result, not a hold-back.
                assert_eq!(v["validation"]["passed"], passes, "{v}");
                assert_eq!(v["yanked"], false, "{v}");
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the gates of {name} ran: {v}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let e = get(&server.url("/api/v1/entries/tool/acme/text.csvTwo")).await;
    assert_eq!(e["status"], "published", "{e}");
    let p = get(&format!(
        "{}/2.0.0",
        version("package/pypi/requests-mirror")
    ))
    .await;
    assert!(p["validation"].is_null(), "not gated: {p}");
}

/// Suggestions and resolutions fetched once are answered from the client's cache when
/// the server is gone, saying so; what was never fetched is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_from_the_cache_when_the_server_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &["--demo"]);
    let base = server.base.clone();
    let s = ["--server", base.as_str()];
    let resolve = [
        &["resolve"],
        &s[..],
        &["module", "mlld/env@~1.0", "mlld/env"],
    ]
    .concat();
    let suggest = [&["suggest"], &s[..], &["react", "pypi:pytest"]].concat();
    let (ok, resolved, err) = quiver(&resolve);
    assert!(ok, "{err}");
    assert!(!err.contains("offline"), "{err}");
    let (ok, suggested, err) = quiver(&suggest);
    assert!(ok, "{err}");
    // Online again: the same answers, revalidated (not from the cache).
    let (ok, again, err) = quiver(&resolve);
    assert!(ok && again == resolved && !err.contains("offline"), "{err}");
    drop(server);

    let (ok, offline, err) = quiver(&resolve);
    assert!(ok, "{err}");
    assert_eq!(offline, resolved);
    assert!(
        err.contains("offline: ") && err.contains("answering from the cache as of"),
        "{err}"
    );
    let (ok, offline, err) = quiver(&suggest);
    assert!(ok, "{err}");
    assert_eq!(offline, suggested);
    assert!(err.contains("offline: "), "{err}");
    let (ok, _, err) = quiver(&[&["resolve"], &s[..], &["module", "mlld/env@~9.9"]].concat());
    assert!(!ok && err.contains("nothing is cached"), "{err}");
}

/// `quiver publish --content` then `quiver install`: the content is downloaded and
/// verified; once its bytes are changed in the server's content store, `quiver install`
/// refuses them and writes nothing. `quiver stats` shows the download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_verifies_content_and_refuses_changed_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data, &[]);
    let s = ["--server", server.base.as_str()];
    let text = "/var @greeting = \"hello\"\n/export { greeting }\n";
    let module = dir.path().join("greet.mld");
    std::fs::write(&module, text).unwrap();
    let spec = dir.path().join("greet.json");
    std::fs::write(
        &spec,
        json!({"kind": "module", "namespace": "alice", "name": "greet",
               "description": "greetings for every occasion", "version": "1.0.0",
               "manifest": {"license": "CC0"}})
        .to_string(),
    )
    .unwrap();
    let publish = [
        &["publish"],
        &s[..],
        &[
            spec.to_str().unwrap(),
            "--content",
            module.to_str().unwrap(),
        ],
    ]
    .concat();
    let (ok, out, err) = quiver(&publish);
    assert!(ok, "{err}");
    assert!(out.contains("published module alice/greet 1.0.0"), "{out}");

    let out_dir = dir.path().join("modules");
    let install = [
        &["install"],
        &s[..],
        &[
            "module",
            "alice/greet@^1",
            "--out",
            out_dir.to_str().unwrap(),
        ],
    ]
    .concat();
    let (ok, out, err) = quiver(&install);
    assert!(ok, "{err}");
    let installed = out_dir.join("alice").join("greet@1.0.0");
    assert!(out.contains("installed module alice/greet@1.0.0"), "{out}");
    assert_eq!(std::fs::read_to_string(&installed).unwrap(), text);
    let (ok, out, err) = quiver(&install);
    assert!(ok && out.contains("is installed at"), "{out} {err}");

    // Change the stored bytes on the server's disk: the client refuses them.
    let hash = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes())
    );
    let blob = data
        .join("content")
        .join("sha256")
        .join(&hash[..2])
        .join(&hash);
    std::fs::write(&blob, "/var @greeting = \"pwned\"\n").unwrap();
    std::fs::remove_file(&installed).unwrap();
    let (ok, _, err) = quiver(&install);
    assert!(!ok, "a changed download is refused");
    assert!(err.contains("refusing the download"), "{err}");
    assert!(!installed.exists(), "nothing written");

    // The good download was counted (flushed within a second).
    let started = Instant::now();
    loop {
        let (ok, out, err) = quiver(&[&["stats"], &s[..], &["module", "alice/greet"]].concat());
        assert!(ok, "{err}");
        if out.contains("module alice/greet: 1 downloads in all") {
            assert!(out.contains("1.0.0"), "{out}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{out}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A SIGKILL loses no download counted before the last flush; a clean shutdown loses none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_counts_survive_sigkill_after_a_flush_and_a_clean_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--trust-forwarded-for",
        "--rate-limits",
        "off",
        "--download-flush-ms",
        "200",
    ];
    let server = Server::start(dir.path(), &args);
    let http = reqwest::Client::new();
    let created = http
        .post(server.url("/api/v1/entries"))
        .json(&json!({"kind": "module", "namespace": "alice", "name": "greet", "description": "g"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let published = http
        .post(server.url("/api/v1/entries/module/alice/greet/versions"))
        .json(&json!({"version": "1.0.0", "content": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 201);
    let fetch = |base: String, client: String| {
        let http = http.clone();
        async move {
            let r = http
                .get(format!(
                    "{base}/api/v1/entries/module/alice/greet/versions/1.0.0/content"
                ))
                .header("x-forwarded-for", client)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for i in 0..20 {
        fetch(server.base.clone(), format!("10.0.0.{i}")).await;
    }
    // Past the flush interval, then killed.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill9();
    let server = Server::start(dir.path(), &args);
    let stats = get(&server.url("/api/v1/entries/module/alice/greet/stats")).await;
    assert_eq!(stats["total"], 20, "{stats}");
    // Downloads answered just before a clean shutdown are flushed by it.
    for i in 0..15 {
        fetch(server.base.clone(), format!("10.0.1.{i}")).await;
    }
    server.terminate();
    let server = Server::start(dir.path(), &args);
    let stats = get(&server.url("/api/v1/entries/module/alice/greet/stats")).await;
    assert_eq!(stats["total"], 35, "{stats}");
}

/// Write `text` to `dir/rel` (creating folders) and give the path as text.
fn write_file(dir: &Path, rel: &str, text: &str) -> String {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

/// `quiver publish PATH` from each kind's own source file, against a live server: the
/// metadata is read from the file, a module file is uploaded as the content, a recipe
/// (no versions of its own) is published as 1.0.0 and then the next patch, and a module
/// file without a description fails without a terminal, naming the field, publishing
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_each_kinds_source_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let s = ["--server", server.base.as_str()];
    let publish = |extra: &[&str]| quiver(&[&["publish"], &s[..], extra].concat());
    let src = dir.path().join("src");

    // An mlld module file: front matter, content uploaded with it.
    let module_text = "---\nname: greet\nauthor: alice\nabout: Greetings for every occasion\n\
                       version: 1.2.0\nneeds: [js]\nlicense: CC0\nkeywords: [text, greeting]\n\
                       ---\n\n/var @greeting = \"hello\"\n/export { @greeting }\n";
    let module = write_file(&src, "greet.mld.md", module_text);
    let (ok, out, err) = publish(&["--dry-run", &module]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("module alice/greet") && out.contains("would be published"),
        "{out}"
    );
    assert!(
        reqwest::get(server.url("/api/v1/entries/module/alice/greet"))
            .await
            .unwrap()
            .status()
            == 404,
        "a dry run writes nothing"
    );
    let (ok, out, err) = publish(&[&module]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("published module alice/greet 1.2.0"), "{out}");
    let v = get(&server.url("/api/v1/entries/module/alice/greet/versions/1.2.0")).await;
    assert_eq!(v["manifest"]["needs"], json!(["js"]), "{v}");
    assert_eq!(v["manifest"]["license"], "CC0", "{v}");
    let e = get(&server.url("/api/v1/entries/module/alice/greet")).await;
    assert_eq!(e["description"], "Greetings for every occasion", "{e}");
    let content =
        reqwest::get(server.url("/api/v1/entries/module/alice/greet/versions/1.2.0/content"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
    assert_eq!(content, module_text);

    // Header comments instead of front matter, the namespace from --namespace.
    let headed = write_file(
        &src,
        "fmt.mld",
        ">> name: fmt\n>> description: Formatting helpers for text and tables\n\
         >> version: 0.1.0\n\n/exe @upper(s) = js { return s.toUpperCase() }\n",
    );
    let (ok, out, err) = publish(&["--namespace", "bob", &headed]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("published module bob/fmt 0.1.0"), "{out}");

    // No description: without a terminal (and with --no-input) the field is named and
    // nothing is published.
    let bare = write_file(
        &src,
        "alice.mld",
        "---\nname: nodesc\nauthor: alice\nversion: 1.0.0\n---\n/var @x = 1\n",
    );
    for extra in [&[][..], &["--no-input"][..]] {
        let (ok, _, err) = publish(&[extra, &[bare.as_str()]].concat());
        assert!(!ok);
        assert!(
            err.contains("alice.mld: module nodesc missing description (add `description:` to the front matter)"),
            "{err}"
        );
        assert!(err.contains("nothing was published"), "{err}");
    }
    let none = reqwest::get(server.url("/api/v1/entries/module/alice/nodesc"))
        .await
        .unwrap();
    assert_eq!(none.status(), 404);
    let bare2 = write_file(&src, "empty.mld", "/var @x = 1\n");
    let (ok, _, err) = publish(&["--yes", &bare2]);
    assert!(!ok);
    for f in ["namespace", "name", "description", "version"] {
        assert!(err.contains(&format!("missing {f} (")), "{f}: {err}");
    }

    // An ops tool profile.
    let ops = write_file(
        &src,
        "tools/network/netprobe.yaml",
        "tool_name: netprobe\nversion: \"1.0\"\ndescription: Probe hosts for reachability over ICMP\n\
         platform: linux\ncategory: network\ncapabilities:\n  reachability:\n    description: Is the host up\n\
         \x20   patterns:\n      ping:\n        description: ICMP echo\n        time_estimate_ms: \"100 * count + 50\"\n\
         \x20       cost_estimate: \"1\"\n        required_inputs:\n          - name: count\n            type: integer\n",
    );
    let (ok, out, err) = publish(&["--namespace", "acme", &ops]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("published tool acme/netprobe 1.0.0"), "{out}");
    let v = get(&server.url("/api/v1/entries/tool/acme/netprobe/versions/1.0.0")).await;
    assert_eq!(
        v["manifest"]["capabilities"]["reachability"]["patterns"]["ping"]["time_estimate_ms"],
        "100 * count + 50",
        "{v}"
    );

    // A recipe TOML: no version of its own, so 1.0.0, then the next patch.
    let recipe = write_file(
        &src,
        "recipes/r/ripgrep.toml",
        "[metadata]\nname = \"ripgrep\"\ndescription = \"Search directories for a regex pattern, fast\"\n\
         homepage = \"https://github.com/BurntSushi/ripgrep\"\n\n[[steps]]\naction = \"homebrew\"\nformula = \"ripgrep\"\n\n\
         [verify]\ncommand = \"rg --version\"\n",
    );
    let (ok, out, err) = publish(&[&recipe]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("published recipe tsuku/ripgrep 1.0.0"),
        "{out}"
    );
    let (ok, out, err) = publish(&[&recipe]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("published recipe tsuku/ripgrep 1.0.1"),
        "{out}"
    );

    // A skill's folder (SKILL.md with front matter).
    let skill_dir = src.join("pdf-forms");
    write_file(
        &skill_dir,
        "SKILL.md",
        "---\nname: pdf-forms\ndescription: Fill PDF forms from structured data\nauthor: acme\n\
         version: 0.3.0\n---\n# PDF forms\n\nRead the form's fields, then fill them.\n",
    );
    let (ok, out, err) = publish(&[skill_dir.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("published skill acme/pdf-forms 0.3.0"),
        "{out}"
    );
    let v = get(&server.url("/api/v1/entries/skill/acme/pdf-forms/versions/0.3.0")).await;
    assert!(
        v["manifest"]["content"]
            .as_str()
            .unwrap()
            .contains("fill them"),
        "{v}"
    );

    // A package.json with a tpmjs field: its tool and the npm package.
    let pkg = write_file(
        &src,
        "text-tools/package.json",
        &json!({
            "name": "@acme/text-tools", "version": "1.2.0",
            "description": "Text tools for agents: slugs and more", "license": "MIT",
            "keywords": ["text"],
            "tpmjs": {"category": "text", "frameworks": ["vercel-ai"], "tools": [{
                "name": "slugifyTool",
                "description": "Turn a title into a URL slug for links",
                "parameters": [{"name": "title", "type": "string", "description": "the title", "required": true}],
                "returns": {"type": "string", "description": "the slug"}
            }]}
        })
        .to_string(),
    );
    // (The npm package it also holds is only for admins and imports to write.)
    let (ok, _, err) = publish(&["--entry", "nope", &pkg]);
    assert!(!ok, "{err}");
    assert!(
        err.contains("holds no entry nope")
            && err.contains("tpmjs/text.slugifyTool, npm/@acme/text-tools"),
        "{err}"
    );
    let (ok, out, err) = publish(&["--entry", "text.slugifyTool", &pkg]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("published tool tpmjs/text.slugifyTool 1.0.0"),
        "{out}"
    );
    let v = get(&server.url("/api/v1/entries/tool/tpmjs/text.slugifyTool/versions/1.0.0")).await;
    assert_eq!(
        v["manifest"]["input_schema"]["required"],
        json!(["title"]),
        "{v}"
    );

    // The JSON file of before still works, and a file nobody reads is refused by name.
    let other = write_file(&src, "notes.txt", "hello\n");
    let (ok, _, err) = publish(&[&other]);
    assert!(
        !ok && err.contains("not a file quiver can publish"),
        "{err}"
    );

    // Real files of the source systems, when the shared fixtures are on this machine.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures");
    if fixtures.is_dir() {
        for (rel, want) in [
            (
                "opsconductor-ng/tools/database/pg_dump.yaml",
                "published tool opsconductor/pg_dump 1.0.0",
            ),
            (
                "tsuku/recipes/b/brotli.toml",
                "published recipe tsuku/brotli 1.0.0",
            ),
            (
                "tpmjs/tool-manifests/hello/package.json",
                "published tool tpmjs/text-analysis.helloWorldTool 1.0.0",
            ),
            (
                "mlld-registry/modules/mlld/env/1.0.0.json",
                "published module mlld/env 1.0.0",
            ),
        ] {
            let path = fixtures.join(rel);
            let mut args = vec![path.to_str().unwrap()];
            if rel.ends_with("package.json") {
                args.extend(["--entry", "text-analysis.helloWorldTool"]);
            }
            let (ok, out, err) = publish(&args);
            assert!(ok, "{rel}: {out}{err}");
            assert!(out.contains(want), "{rel}: {out}");
        }
        // A registry's version file takes the description from its metadata.json.
        let e = get(&server.url("/api/v1/entries/module/mlld/env")).await;
        assert_eq!(
            e["description"], "Environment variable validation and management",
            "{e}"
        );
    } else {
        eprintln!(
            "SKIPPED: the real source files: {} not found",
            fixtures.display()
        );
    }
}

/// `quiver new tool` in a terminal (a pseudo-terminal made by `script`): answers are
/// checked as typed (a short description and a bad expression are asked again, the
/// expression's error showing its position), and the file it writes publishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tool_in_a_terminal_writes_a_file_that_publishes() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no `script` command for a pseudo-terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("probe.json");
    let cmd = format!("'{BIN}' new tool --out '{}'", out.display());
    let answers = [
        "acme",                                        // namespace
        "net probe",                                   // name: refused (white space)
        "net.probe",                                   // name
        "short",                                       // description: refused (gate)
        "Probe hosts on the network for reachability", // description
        "",                                            // version: 1.0.0
        "network",                                     // category
        "net,icmp",                                    // tags
        "",                                            // platform: linux
        "reachability",                                // capability
        "ping",                                        // pattern
        "count",                                       // inputs
        "100 * * count",                               // time: refused, with the position
        "100 * count + 50",                            // time
        "hosts",                                       // cost: refused, not an input
        "0.1 * count",                                 // cost
    ];
    let (ok, screen) = in_terminal(&cmd, &answers);
    assert!(ok, "{screen}");
    assert!(
        screen.contains("name [") || screen.contains("name:"),
        "{screen}"
    );
    assert!(screen.contains("must not contain white space"), "{screen}");
    assert!(screen.contains("at least 20 are needed"), "{screen}");
    assert!(screen.contains("at character 7"), "{screen}");
    assert!(screen.contains("`hosts` is neither an input"), "{screen}");
    assert!(
        screen.contains("wrote tool acme/net.probe 1.0.0"),
        "{screen}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let pattern = &doc["manifest"]["capabilities"]["reachability"]["patterns"]["ping"];
    assert_eq!(pattern["time_estimate_ms"], "100 * count + 50", "{doc}");
    assert_eq!(pattern["cost_estimate"], "0.1 * count", "{doc}");
    assert_eq!(doc["tags"], json!(["net", "icmp"]), "{doc}");

    let server = Server::start(&dir.path().join("data"), &[]);
    let (ok, out_text, err) = quiver(&["publish", "--server", &server.base, out.to_str().unwrap()]);
    assert!(ok, "{out_text}{err}");
    assert!(
        out_text.contains("published tool acme/net.probe 1.0.0"),
        "{out_text}"
    );
}

/// `quiver new tool --yes` with flags: defaults fill the rest; a required value without
/// a default, or a flag that does not check, fails naming it and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tool_without_questions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("df.json");
    let o = out.to_str().unwrap();
    let (ok, _, err) = quiver(&["new", "tool", "--yes", "--out", o, "--name", "disk.usage"]);
    assert!(!ok);
    assert!(err.contains("needs --namespace, --description"), "{err}");
    assert!(!out.exists(), "nothing written");
    let flags = [
        "new",
        "tool",
        "--yes",
        "--out",
        o,
        "--namespace",
        "acme",
        "--name",
        "disk.usage",
        "--description",
        "Report the disk usage of a mount point",
        "--capability",
        "usage",
        "--inputs",
        "mount,depth",
    ];
    let (ok, _, err) = quiver(&[&flags[..], &["--time-estimate", "10 * (depth"]].concat());
    assert!(
        !ok && err.contains("--time-estimate: ") && err.contains("at character"),
        "{err}"
    );
    assert!(!out.exists(), "nothing written");
    let (ok, stdout, err) =
        quiver(&[&flags[..], &["--time-estimate", "200 + 10 * depth"]].concat());
    assert!(ok, "{err}");
    assert!(
        stdout.contains("wrote tool acme/disk.usage 1.0.0"),
        "{stdout}"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(
        doc["manifest"]["capabilities"]["usage"]["patterns"]["default"]["cost_estimate"], 1,
        "{doc}"
    );
    assert_eq!(
        doc["manifest"]["input_schema"]["required"],
        json!(["mount", "depth"]),
        "{doc}"
    );
    let (ok, _, err) = quiver(&[&flags[..], &["--time-estimate", "5"]].concat());
    assert!(!ok && err.contains("exists; pass --force"), "{err}");

    let server = Server::start(&dir.path().join("data"), &[]);
    let (ok, stdout, err) = quiver(&["publish", "--server", &server.base, o]);
    assert!(ok, "{stdout}{err}");
    assert!(
        stdout.contains("published tool acme/disk.usage 1.0.0"),
        "{stdout}"
    );
}

/// Run `cmd` (a shell command) in a pseudo-terminal made by `script`, typing `answers`
/// (one line each); whether it succeeded, and what the terminal showed.
fn in_terminal(cmd: &str, answers: &[&str]) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("QUIVER_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for a in answers {
        writeln!(stdin, "{a}").unwrap();
    }
    stdin.flush().unwrap();
    // Keep standard input open until the program is done (script ends the session on EOF).
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{cmd} did not finish"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stdin);
    let done = child.wait_with_output().unwrap();
    (
        done.status.success(),
        String::from_utf8_lossy(&done.stdout).into_owned(),
    )
}

/// A module file missing its description, published from a terminal: the description
/// is asked for (a short one is refused by the gate) and the module is published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_asks_for_what_a_module_file_lacks_in_a_terminal() {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED: no `script` command for a pseudo-terminal");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &[]);
    let file = write_file(
        dir.path(),
        "hello.mld",
        "---\nauthor: alice\nversion: 1.0.0\n---\n/var @hello = \"hi\"\n",
    );
    let cmd = format!("'{BIN}' publish --server {} '{file}'", server.base);
    let (ok, screen) = in_terminal(
        &cmd,
        &["Hello", "", "too short", "Say hello in many languages"],
    );
    assert!(ok, "{screen}");
    assert!(
        screen.contains("name [hello]"),
        "the file's stem is offered: {screen}"
    );
    assert!(screen.contains("module names are lowercase"), "{screen}");
    assert!(screen.contains("at least 20 are needed"), "{screen}");
    assert!(
        screen.contains("published module alice/hello 1.0.0"),
        "{screen}"
    );
    let e = get(&server.url("/api/v1/entries/module/alice/hello")).await;
    assert_eq!(e["description"], "Say hello in many languages", "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_from_the_cli_under_the_servers_policy() {
    const ROOT: &str = "root-for-delete-tests";
    let dir = tempfile::tempdir().unwrap();
    // A grace period of none: an owner may delete nothing, an admin anything.
    let server = Server::start(
        dir.path(),
        &["--admin-token", ROOT, "--delete-grace-hours", "0"],
    );
    let s = ["--server", server.base.as_str()];
    let http = reqwest::Client::new();
    let r = http
        .post(server.url("/api/v1/users"))
        .json(&json!({"name": "olga", "email": "olga@example.org", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let session: Value = http
        .post(server.url("/api/v1/session"))
        .json(&json!({"name": "olga", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let olga = session["token"].as_str().unwrap().to_string();
    let post = |path: &str, body: Value| {
        http.post(server.url(path))
            .bearer_auth(&olga)
            .json(&body)
            .send()
    };
    assert_eq!(
        post("/api/v1/namespaces", json!({"name": "acme"}))
            .await
            .unwrap()
            .status(),
        201
    );
    assert_eq!(
        post(
            "/api/v1/entries",
            json!({"kind": "module", "namespace": "acme", "name": "fmt", "description": "formats things"})
        )
        .await
        .unwrap()
        .status(),
        201
    );
    for v in ["1.0.0", "1.1.0"] {
        let r = post(
            "/api/v1/entries/module/acme/fmt/versions",
            json!({"version": v, "manifest": {"license": "CC0"}}),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 201, "{v}");
    }

    let (ok, _, err) = quiver(
        &[
            &["delete"],
            &s[..],
            &["--token", &olga, "module", "acme/fmt"],
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(
        err.contains("grace period") && err.contains("yank"),
        "{err}"
    );
    let (ok, out, err) = quiver(
        &[
            &["delete"],
            &s[..],
            &[
                "--token",
                ROOT,
                "module",
                "acme/fmt@1.1.0",
                "--reason",
                "leaked a key",
            ],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(out.contains("deleted module acme/fmt@1.1.0"), "{out}");
    let (ok, _, err) = quiver(
        &[
            &["delete"],
            &s[..],
            &["--token", ROOT, "module", "acme/fmt"],
        ]
        .concat(),
    );
    assert!(!ok);
    assert!(err.contains("reason"), "{err}");
    let (ok, out, err) = quiver(
        &[
            &["delete"],
            &s[..],
            &["--token", ROOT, "module", "acme/fmt", "--reason", "malware"],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("deleted module acme/fmt") && out.contains("reserved"),
        "{out}"
    );
    let r = reqwest::get(server.url("/api/v1/entries/module/acme/fmt"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
