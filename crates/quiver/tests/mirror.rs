//! `quiver mirror` between two real servers on loopback: a write on the source appears on
//! the mirror's server, a mirror killed and started again resumes from its position (no
//! version missed or written twice), private entries are never copied, and `--prefix`
//! renames namespaces; deletions on the source (an entry, a version) are followed.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{Server, BIN};

const ADMIN: &str = "root-for-mirror-tests";
const GREETING: &str = "/var @greeting = \"hello\"\n/export { greeting }\n";

fn mirror_once(source: &str, data: &Path, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(["mirror", "--once", "--from", source, "--data-dir"])
        .arg(data)
        .args(extra)
        .env("QUIVER_LOG", "warn")
        .env_remove("QUIVER_MIRROR_TOKEN")
        .env_remove("QUIVER_DATABASE_URL")
        .output()
        .expect("run quiver mirror");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A following mirror (no `--once`), killed on drop.
struct Follower(Child);

impl Follower {
    fn start(source: &str, data: &Path) -> Follower {
        let child = Command::new(BIN)
            .args(["mirror", "--wait", "2", "--from", source, "--data-dir"])
            .arg(data)
            .env("QUIVER_LOG", "warn")
            .env_remove("QUIVER_MIRROR_TOKEN")
            .env_remove("QUIVER_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn quiver mirror");
        Follower(child)
    }

    /// SIGKILL: no chance to finish anything.
    fn kill9(mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: server.base.clone(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "POST {path}: {status} {v}");
        v
    }

    /// GET as the admin (who sees private entries too): `None` for 404.
    async fn get(&self, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        if r.status() == 404 {
            return None;
        }
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        Some(r.json().await.unwrap())
    }

    async fn create(&self, name: &str, visibility: &str) {
        self.post(
            "/api/v1/entries",
            json!({"kind": "module", "namespace": "alice", "name": name,
                   "description": format!("the {name} module, kept for the mirror test"), "visibility": visibility}),
        )
        .await;
    }

    async fn publish(&self, name: &str, version: &str, content: Option<&str>) {
        let mut body = json!({"version": version, "manifest": {"license": "CC0"}});
        if let Some(c) = content {
            body["content"] = json!(c);
        }
        self.post(
            &format!("/api/v1/entries/module/alice/{name}/versions"),
            body,
        )
        .await;
    }

    /// The versions of a module as `(version, yanked)`, sorted.
    async fn versions(&self, name: &str) -> Option<Vec<(String, bool)>> {
        let v = self
            .get(&format!(
                "/api/v1/entries/module/alice/{name}/versions?limit=100"
            ))
            .await?;
        let mut out: Vec<(String, bool)> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    v["version"].as_str().unwrap().to_string(),
                    v["yanked"].as_bool().unwrap(),
                )
            })
            .collect();
        out.sort();
        Some(out)
    }
}

fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
    v.iter().map(|(s, y)| (s.to_string(), *y)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_follows_resumes_and_never_copies_private_entries() {
    let dir = tempfile::tempdir().unwrap();
    let source_server = Server::start(&dir.path().join("source"), &["--admin-token", ADMIN]);
    let mirror_data = dir.path().join("mirror");
    let mirror_server = Server::start(&mirror_data, &["--admin-token", ADMIN]);
    let source = Api::new(&source_server);
    let local = Api::new(&mirror_server);
    let from = source_server.base.as_str();

    // The source: two public modules (one with content, depending on the other) and a
    // private one.
    source.create("greet", "public").await;
    source.create("base", "public").await;
    source.create("secret", "private").await;
    source.publish("greet", "1.0.0", Some(GREETING)).await;
    source.publish("base", "1.0.0", None).await;
    source
        .publish("secret", "0.1.0", Some("private bytes"))
        .await;
    source
        .post(
            "/api/v1/entries/module/alice/greet/relations",
            json!({"kind": "depends_on", "to": {"kind": "module", "namespace": "alice", "name": "base"}}),
        )
        .await;

    // Catch up once.
    let (ok, out, err) = mirror_once(from, &mirror_data, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("caught up"), "{out}");
    assert_eq!(
        local.versions("greet").await,
        Some(owned(&[("1.0.0", false)]))
    );
    let entry = local
        .get("/api/v1/entries/module/alice/greet")
        .await
        .unwrap();
    assert_eq!(
        entry["description"],
        "the greet module, kept for the mirror test"
    );
    assert_eq!(entry["visibility"], "public");
    let content = reqwest::get(
        mirror_server.url("/api/v1/entries/module/alice/greet/versions/1.0.0/content"),
    )
    .await
    .unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(content.text().await.unwrap(), GREETING);
    let rels = local
        .get("/api/v1/entries/module/alice/greet/relations?direction=outgoing")
        .await
        .unwrap();
    assert_eq!(rels[0]["to"]["name"], "base", "{rels}");
    assert!(
        local
            .get("/api/v1/entries/module/alice/secret")
            .await
            .is_none(),
        "a private entry is never mirrored"
    );

    // Follow: writes on the source appear on the mirror's server.
    let follower = Follower::start(from, &mirror_data);
    source.publish("greet", "1.1.0", None).await;
    source
        .post(
            "/api/v1/entries/module/alice/greet/versions/1.0.0/yank",
            json!({"reason": "says hello too loudly"}),
        )
        .await;
    source
        .post(
            "/api/v1/entries/module/alice/base/deprecate",
            json!({"message": "use greet"}),
        )
        .await;
    source.create("hidden", "private").await;
    source.publish("hidden", "1.0.0", None).await;
    let started = Instant::now();
    loop {
        let versions = local.versions("greet").await;
        let base = local.get("/api/v1/entries/module/alice/base").await;
        let deprecated = base
            .as_ref()
            .is_some_and(|b| b["deprecation"]["message"] == "use greet");
        if versions == Some(owned(&[("1.0.0", true), ("1.1.0", false)])) && deprecated {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the mirror did not follow: {versions:?} {base:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let yanked = local
        .get("/api/v1/entries/module/alice/greet/versions/1.0.0")
        .await
        .unwrap();
    assert_eq!(yanked["yank_reason"], "says hello too loudly");

    // Killed, then writes it does not see, then started again: it resumes.
    follower.kill9();
    source.publish("greet", "1.2.0", None).await;
    source.create("late", "public").await;
    source.publish("late", "0.1.0", None).await;
    let (ok, out, err) = mirror_once(from, &mirror_data, &[]);
    assert!(ok, "{out}\n{err}");
    let resumed_at: i64 = err
        .split("from position ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("the mirror says where it starts: {err}"));
    assert!(resumed_at > 0, "resumed from its stored position: {err}");
    assert_eq!(
        local.versions("greet").await,
        Some(owned(&[
            ("1.0.0", true),
            ("1.1.0", false),
            ("1.2.0", false)
        ]))
    );
    assert_eq!(
        local.versions("late").await,
        Some(owned(&[("0.1.0", false)]))
    );
    for private in ["secret", "hidden"] {
        assert!(
            local
                .get(&format!("/api/v1/entries/module/alice/{private}"))
                .await
                .is_none(),
            "{private} is private on the source"
        );
    }

    // Each version was written once: one `create` event per version in the mirror's own
    // feed, and a run with nothing new writes nothing.
    let feed = local
        .get("/api/v1/changes?since=0&limit=1000")
        .await
        .unwrap();
    let mut created: Vec<String> = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["entity"] == "version" && c["op"] == "create")
        .map(|c| {
            format!(
                "{}@{}",
                c["name"].as_str().unwrap(),
                c["version"].as_str().unwrap()
            )
        })
        .collect();
    created.sort();
    assert_eq!(
        created,
        [
            "base@1.0.0",
            "greet@1.0.0",
            "greet@1.1.0",
            "greet@1.2.0",
            "late@0.1.0"
        ]
    );
    let head = feed["head"].as_i64().unwrap();
    let (ok, out, err) = mirror_once(from, &mirror_data, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(!out.contains("created"), "nothing new to write: {out}");
    let again = local.get("/api/v1/changes?since=0&limit=1").await.unwrap();
    assert_eq!(
        again["head"].as_i64().unwrap(),
        head,
        "no write on a re-run"
    );

    // Into a fresh store with `--prefix`: every namespace renamed, relations included.
    // With a token that reads private entries too, they are still left out.
    let prefixed = dir.path().join("prefixed");
    let (ok, out, err) = mirror_once(from, &prefixed, &["--prefix", "up-", "--token", ADMIN]);
    assert!(ok, "{out}\n{err}");
    let export = Command::new(BIN)
        .args(["export", "--data-dir"])
        .arg(&prefixed)
        .env("QUIVER_LOG", "warn")
        .output()
        .unwrap();
    assert!(export.status.success());
    let lines: Vec<Value> = String::from_utf8_lossy(&export.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &Value| v.get("kind").is_some())
        .collect();
    let mut names: Vec<String> = lines
        .iter()
        .map(|l| {
            format!(
                "{}/{}",
                l["namespace"].as_str().unwrap(),
                l["name"].as_str().unwrap()
            )
        })
        .collect();
    names.sort();
    assert_eq!(names, ["up-alice/base", "up-alice/greet", "up-alice/late"]);
    let greet = lines.iter().find(|l| l["name"] == "greet").unwrap();
    assert_eq!(
        greet["relations"][0]["to"]["namespace"], "up-alice",
        "{greet}"
    );
    assert_eq!(greet["versions"].as_array().unwrap().len(), 3, "{greet}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_follows_deletions() {
    let dir = tempfile::tempdir().unwrap();
    let source_server = Server::start(&dir.path().join("source"), &["--admin-token", ADMIN]);
    let mirror_data = dir.path().join("mirror");
    let mirror_server = Server::start(&mirror_data, &["--admin-token", ADMIN]);
    let source = Api::new(&source_server);
    let local = Api::new(&mirror_server);
    let from = source_server.base.as_str();
    source.create("keep", "public").await;
    source.publish("keep", "1.0.0", None).await;
    source.publish("keep", "1.1.0", None).await;
    source.create("gone", "public").await;
    source.publish("gone", "1.0.0", None).await;
    let (ok, out, err) = mirror_once(from, &mirror_data, &[]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        local.versions("keep").await,
        Some(owned(&[("1.0.0", false), ("1.1.0", false)]))
    );
    assert!(local.versions("gone").await.is_some());

    // The source's admin deletes a version and an entry; the mirror follows.
    for path in [
        "/api/v1/entries/module/alice/keep/versions/1.1.0",
        "/api/v1/entries/module/alice/gone",
    ] {
        let r = source
            .http
            .delete(format!("{}{path}", source.base))
            .bearer_auth(ADMIN)
            .json(&json!({"reason": "takedown request"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "DELETE {path}");
    }
    // And disables the version left: the mirror marks it too.
    source
        .post(
            "/api/v1/entries/module/alice/keep/versions/1.0.0/disable",
            json!({"reason": "broken build"}),
        )
        .await;
    let (ok, out, err) = mirror_once(from, &mirror_data, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("2 deleted"), "{out}");
    let v = local
        .get("/api/v1/entries/module/alice/keep/versions/1.0.0")
        .await
        .unwrap();
    assert_eq!(v["disabled"]["reason"], "broken build", "{v}");
    assert_eq!(
        local.versions("keep").await,
        Some(owned(&[("1.0.0", false)]))
    );
    assert!(local
        .get("/api/v1/entries/module/alice/gone")
        .await
        .is_none());
    // The mirror's own feed says so too, and a second run writes nothing.
    let feed = local
        .get("/api/v1/changes?since=0&limit=1000")
        .await
        .unwrap();
    let deletes = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["op"] == "delete")
        .count();
    assert_eq!(deletes, 2, "{feed}");
    let (ok, out, err) = mirror_once(from, &mirror_data, &[]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.trim().is_empty() || out.contains("caught up"),
        "nothing new: {out}"
    );
    assert!(!out.contains("deleted"), "nothing new to delete: {out}");
}
