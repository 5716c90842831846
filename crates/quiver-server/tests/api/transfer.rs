//! Import and export over HTTP: `POST /api/v1/import` and `GET /api/v1/export` (the
//! same runs as `quiver import` and `quiver export`), who may do what, dry runs, the
//! all-or-nothing rule, and large imports as jobs.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_envelope, TestApp};

const ADMIN: &str = "s3cret";
/// The demo data set of the binary: a few dozen entries of all five kinds, with relations.
const DEMO: &str = include_str!("../../../quiver/demo/demo.jsonl");

async fn app() -> TestApp {
    TestApp::builder()
        .admin_token(ADMIN)
        .worker()
        .user("alice")
        .user("bob")
        .start()
        .await
}

/// `POST /api/v1/import` with a raw body: status, answer, headers.
async fn import(
    app: &TestApp,
    query: &str,
    token: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut rb = app
        .http
        .post(app.url(&format!("/api/v1/import{query}")))
        .header("content-type", "application/octet-stream")
        .body(body);
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, r.json().await.unwrap_or(Value::Null), h)
}

/// `GET /api/v1/export…`: status, headers, body.
async fn export(
    app: &TestApp,
    query: &str,
    token: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
    let mut rb = app.http.get(app.url(&format!("/api/v1/export{query}")));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    let r = rb.send().await.unwrap();
    let (s, h) = (r.status(), r.headers().clone());
    (s, h, r.bytes().await.unwrap().to_vec())
}

fn lines(bytes: &[u8]) -> Vec<Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn names(bytes: &[u8]) -> Vec<String> {
    lines(bytes)
        .iter()
        .filter(|l| l.get("kind").is_some())
        .map(|l| {
            format!(
                "{}/{}",
                l["namespace"].as_str().unwrap(),
                l["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn entry_line(namespace: &str, name: &str, visibility: &str) -> String {
    json!({
        "kind": "tool", "namespace": namespace, "name": name,
        "description": format!("{name}, imported over HTTP"),
        "visibility": visibility,
        "versions": [{"version": "1.0.0", "manifest": {}}],
    })
    .to_string()
        + "\n"
}

async fn entry_status(app: &TestApp, path: &str) -> StatusCode {
    app.get(&format!("/api/v1/entries/tool/{path}"), Some(ADMIN))
        .await
        .0
}

#[tokio::test]
async fn export_then_import_into_a_second_server_gives_the_same_data() {
    let first = app().await;
    let (s, b, _) = import(&first, "?filename=demo.jsonl", Some(ADMIN), DEMO).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let created = b["report"]["totals"]["created"].as_u64().unwrap();
    assert!(created > 10, "{b}");
    assert_eq!(b["report"]["totals"]["rejected"], 0, "{b}");
    // The report names the upload, never the server's temporary folder.
    assert_eq!(b["report"]["files"][0]["path"], "demo.jsonl", "{b}");

    let (s, h, exported) = export(&first, "", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(h["content-type"], "application/x-ndjson");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("attachment; filename=\"quiver-export.jsonl\""));
    assert_eq!(names(&exported).len() as u64, created);

    let second = app().await;
    let (s, b, _) = import(&second, "?format=jsonl", Some(ADMIN), exported.clone()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["report"]["totals"]["created"].as_u64(),
        Some(created),
        "{b}"
    );
    let (_, _, again) = export(&second, "", Some(ADMIN)).await;
    assert_eq!(
        lines(&again),
        lines(&exported),
        "the second server holds the same data"
    );
    // Importing the same export again changes nothing.
    let (s, b, _) = import(&second, "?format=jsonl", Some(ADMIN), exported).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b["report"]["totals"]["unchanged"].as_u64(),
        Some(created),
        "{b}"
    );
    assert_eq!(b["report"]["totals"]["created"], 0, "{b}");

    // Filters as the CLI's: one kind.
    let (s, _, tools) = export(&first, "?kind=tool", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(lines(&tools).iter().all(|l| l["kind"] == "tool"));
    assert!(!lines(&tools).is_empty());
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let app = app().await;
    let body = entry_line("acme", "dry.one", "public") + &entry_line("acme", "dry.two", "public");
    let (s, b, _) = import(
        &app,
        "?dry_run=true&format=jsonl",
        Some(ADMIN),
        body.clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["report"]["dry_run"], true);
    assert_eq!(b["report"]["totals"]["created"], 2, "{b}");
    assert_eq!(b["gates_queued"], Value::Null);
    assert_eq!(
        entry_status(&app, "acme/dry.one").await,
        StatusCode::NOT_FOUND
    );
    let (_, _, all) = export(&app, "", Some(ADMIN)).await;
    assert!(names(&all).is_empty(), "{:?}", names(&all));
    // The same body for real.
    let (s, b, _) = import(&app, "?format=jsonl", Some(ADMIN), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["report"]["dry_run"], false);
    assert_eq!(entry_status(&app, "acme/dry.one").await, StatusCode::OK);
}

#[tokio::test]
async fn a_maintainer_imports_only_into_their_own_namespaces() {
    let app = app().await;
    let alice = app.session("alice").to_string();
    // Into another namespace (and their own): refused whole, naming it; nothing written.
    let body =
        entry_line("alice", "mine.tool", "public") + &entry_line("acme", "theirs.tool", "public");
    let (s, b, _) = import(&app, "?format=jsonl", Some(&alice), body).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_envelope(&b, "forbidden", None);
    let m = b["error"]["message"].as_str().unwrap();
    assert!(
        m.contains("'acme'") && m.contains("nothing was written"),
        "{m}"
    );
    assert_eq!(
        entry_status(&app, "alice/mine.tool").await,
        StatusCode::NOT_FOUND
    );
    // An ecosystem namespace is for admins only.
    let (s, b, _) = import(
        &app,
        "?format=jsonl",
        Some(&alice),
        entry_line("npm", "left-pad", "public"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("npm"),
        "{b}"
    );
    // Their own namespace alone: imported.
    let (s, b, _) = import(
        &app,
        "?format=jsonl",
        Some(&alice),
        entry_line("alice", "mine.tool", "public"),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["report"]["totals"]["created"], 1, "{b}");
    assert_eq!(entry_status(&app, "alice/mine.tool").await, StatusCode::OK);
    // Bob may not write alice's namespace.
    let bob = app.session("bob").to_string();
    let (s, b, _) = import(
        &app,
        "?format=jsonl",
        Some(&bob),
        entry_line("alice", "bobs.tool", "public"),
    )
    .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(
        entry_status(&app, "alice/bobs.tool").await,
        StatusCode::NOT_FOUND
    );
    // The source systems' formats are site admins' to export.
    let (s, _, body) = export(&app, "?format=ops-tools", Some(&alice)).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "{}",
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn anonymous_callers_may_not_import() {
    let app = app().await;
    let (s, b, _) = import(
        &app,
        "?format=jsonl",
        None,
        entry_line("acme", "anon.tool", "public"),
    )
    .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    assert_envelope(&b, "unauthorized", None);
    assert_eq!(
        entry_status(&app, "acme/anon.tool").await,
        StatusCode::NOT_FOUND
    );
    let (s, _, _) = export(&app, "?format=blocks", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn private_entries_are_exported_only_to_those_who_may_read_them() {
    let app = app().await;
    let alice = app.session("alice").to_string();
    let body =
        entry_line("alice", "open.tool", "public") + &entry_line("alice", "secret.tool", "private");
    let (s, b, _) = import(&app, "?format=jsonl", Some(&alice), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["report"]["totals"]["created"], 2, "{b}");

    let (s, _, anon) = export(&app, "", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(names(&anon), vec!["alice/open.tool"]);
    let (_, _, bobs) = export(&app, "", Some(app.session("bob"))).await;
    assert_eq!(names(&bobs), vec!["alice/open.tool"]);
    let (_, _, own) = export(&app, "?namespace=alice", Some(&alice)).await;
    assert_eq!(names(&own), vec!["alice/open.tool", "alice/secret.tool"]);
    let (_, _, admin) = export(&app, "", Some(ADMIN)).await;
    assert!(names(&admin).contains(&"alice/secret.tool".to_string()));
}

#[tokio::test]
async fn a_large_import_runs_as_a_job_whose_report_its_submitter_reads() {
    let app = app().await;
    let alice = app.session("alice").to_string();
    let padding = "x".repeat(900);
    let mut body = String::new();
    let mut n = 0;
    while body.len() <= 1024 * 1024 + 10_000 {
        body += &(json!({
            "kind": "tool", "namespace": "alice", "name": format!("bulk.t{n}"),
            "description": format!("bulk tool {n} {padding}"),
        })
        .to_string()
            + "\n");
        n += 1;
    }
    let (s, b, h) = import(&app, "?filename=bulk.jsonl", Some(&alice), body).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let poll = b["poll"].as_str().unwrap().to_string();
    assert_eq!(h["location"].to_str().unwrap(), poll);
    let id = b["job_id"].as_i64().unwrap();
    let mut status = Value::Null;
    for _ in 0..400 {
        let (s, v) = app.get(&poll, Some(&alice)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if v["job"]["state"] == "succeeded" && !v["report"].is_null() {
            status = v;
            break;
        }
        assert_ne!(v["job"]["state"], "dead", "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        status["report"]["report"]["totals"]["created"], n,
        "{status}"
    );
    assert_eq!(status["report"]["report"]["files"][0]["path"], "bulk.jsonl");
    assert_eq!(entry_status(&app, "alice/bulk.t0").await, StatusCode::OK);
    // The submitter reads the job itself too; someone else does not find it.
    let (s, _) = app.get(&format!("/api/v1/jobs/{id}"), Some(&alice)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get(&poll, Some(app.session("bob"))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app.get(&poll, Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK);
    // Over the body limit: 413 in the envelope.
    let (s, b, _) = import(&app, "", Some(ADMIN), vec![b'{'; 5 * 1024 * 1024]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
}

#[tokio::test]
async fn a_malformed_upload_is_refused_with_the_reason_and_nothing_is_written() {
    let app = app().await;
    // Not a format quiver reads.
    let (s, b, _) = import(&app, "", Some(ADMIN), "just some words\nand more").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    let m = b["error"]["message"].as_str().unwrap();
    assert!(m.contains("unrecognized format"), "{m}");
    assert!(!m.contains("quiver-upload-"), "no server path in {m}");
    // One bad record among good ones: 422 naming the field, and nothing written.
    let bad = json!({"kind": "tool", "namespace": "acme", "name": "bad.tool",
                     "versions": [{"version": "not-semver", "manifest": {}}]});
    let body = entry_line("acme", "good.tool", "public") + &bad.to_string() + "\n";
    let (s, b, _) = import(&app, "?format=jsonl", Some(ADMIN), body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_envelope(&b, "invalid_input", None);
    let field = b["error"]["field"].as_str().unwrap();
    assert!(field.contains("version"), "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("line 2"),
        "{b}"
    );
    assert_eq!(
        entry_status(&app, "acme/good.tool").await,
        StatusCode::NOT_FOUND
    );
    // partial=true writes what passes, and the report says what was rejected.
    let (s, b, _) = import(&app, "?format=jsonl&partial=true", Some(ADMIN), body).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["report"]["totals"]["created"], 1, "{b}");
    assert_eq!(b["report"]["totals"]["rejected"], 1, "{b}");
    assert_eq!(entry_status(&app, "acme/good.tool").await, StatusCode::OK);
    // An unknown format, an unknown parameter, an empty body.
    let (s, b, _) = import(&app, "?format=zip", Some(ADMIN), "x").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_envelope(&b, "invalid_input", Some("format"));
    let (s, _, _) = import(&app, "?force=yes", Some(ADMIN), "x").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, b, _) = import(&app, "", Some(ADMIN), "").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_envelope(&b, "invalid_input", Some("body"));
    // An export of an unknown format, or of TSV.
    let (s, _, _) = export(&app, "?format=tsv", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// The report of an import answered at once (200, or a 422 refusal) or by its job (202,
/// polled: the report, or the refusal as `{"error": …}`).
async fn report_of(app: &TestApp, token: &str, s: StatusCode, b: Value) -> Value {
    if s == StatusCode::OK || s == StatusCode::UNPROCESSABLE_ENTITY {
        return b;
    }
    assert_eq!(s, StatusCode::ACCEPTED, "{b}");
    let poll = b["poll"].as_str().unwrap().to_string();
    for _ in 0..600 {
        let (s, v) = app.get(&poll, Some(token)).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        if !v["report"].is_null() {
            return v["report"].clone();
        }
        assert_ne!(v["job"]["state"], "dead", "{v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the import job did not finish");
}

#[tokio::test]
async fn a_source_systems_folder_goes_in_as_an_archive_and_comes_out_as_one() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/opsconductor-ng");
    if !dir.exists() {
        println!("SKIPPED: the opsconductor-ng fixtures are not there");
        return;
    }
    let app = app().await;
    // The fixture's tool profiles as a tar archive, as a client would send a folder.
    let mut tar = tar::Builder::new(Vec::new());
    tar.append_dir_all("", &dir).unwrap();
    let archive = tar.into_inner().unwrap();
    let (s, b, _) = import(&app, "?dry_run=true", Some(ADMIN), archive.clone()).await;
    let dry = report_of(&app, ADMIN, s, b).await;
    let created = dry["report"]["totals"]["created"].as_u64().unwrap();
    assert!(created > 100, "{dry}");
    assert_eq!(dry["report"]["files"][0]["format"], "ops-tools", "{dry}");
    // The fixture has rejections of its own (a template, legacy duplicates): an
    // all-or-nothing import refuses it, a partial one takes the rest.
    let (s, b, _) = import(&app, "", Some(ADMIN), archive.clone()).await;
    let refused = report_of(&app, ADMIN, s, b).await;
    assert_eq!(refused["error"]["code"], "invalid_input", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{refused}"
    );
    let (s, b, _) = import(&app, "?partial=true", Some(ADMIN), archive).await;
    let done = report_of(&app, ADMIN, s, b).await;
    assert_eq!(
        done["report"]["totals"]["created"].as_u64(),
        Some(created),
        "{done}"
    );
    let (s, h, body) = export(&app, "?format=ops-tools", Some(ADMIN)).await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(h["content-type"], "application/x-tar");
    assert!(h["content-disposition"]
        .to_str()
        .unwrap()
        .contains("quiver-ops-tools.tar"));
    let mut files = 0;
    for e in tar::Archive::new(&body[..]).entries().unwrap() {
        let e = e.unwrap();
        let path = e.path().unwrap().into_owned();
        assert!(
            !path.is_absolute() && !path.starts_with(".."),
            "{}",
            path.display()
        );
        files += 1;
    }
    assert!(files > 100, "{files} files");
}
