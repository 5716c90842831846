//! The HTTP API, driven end to end over a real socket on loopback.

use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{EngineConfig, Registry};
use quiver_server::AppState;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct TestApp {
    base: String,
    http: reqwest::Client,
    registry: Arc<Registry>,
    _dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
    _follower: tokio::task::JoinHandle<()>,
}

impl TestApp {
    async fn start() -> TestApp {
        Self::start_with(None).await
    }

    async fn start_with(admin_token: Option<&str>) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.open_writes = admin_token.is_none();
        config.poll_interval = Duration::from_millis(50);
        let db = quiver_backends::open(quiver_backends::Location::in_data_dir(dir.path()), None)
            .await
            .unwrap();
        let registry = Registry::open(db, config).await.unwrap();
        let follower = registry.spawn_follower();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let worker = registry.spawn_worker();
        let state = AppState {
            registry: registry.clone(),
            admin_token: admin_token.map(str::to_string),
        };
        std::mem::forget(worker);
        let server = tokio::spawn(async move {
            quiver_server::serve(listener, state, std::future::pending())
                .await
                .unwrap();
        });
        TestApp {
            base,
            http: reqwest::Client::new(),
            registry,
            _dir: dir,
            _server: server,
            _follower: follower,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn send(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        let req = match method {
            "POST" => self.http.post(self.url(path)),
            "PATCH" => self.http.patch(self.url(path)),
            _ => unreachable!(),
        };
        let r = req.json(&body).send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send("POST", path, body).await
    }

    async fn feed_head(&self) -> i64 {
        self.registry.store().feed_head().await.unwrap()
    }

    /// The validation result of a version once its job has recorded it (Null after two
    /// seconds without one).
    async fn validation_of(&self, version_path: &str) -> Value {
        for _ in 0..100 {
            let (_, v) = self.get(version_path).await;
            if !v["validation"].is_null() {
                return v["validation"].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Value::Null
    }

    /// Search until `pred` holds or two seconds pass (the index follows the feed).
    async fn search_until(&self, q: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..40 {
            let (s, body) = self.get(&format!("/api/v1/search?q={q}")).await;
            assert_eq!(s, StatusCode::OK, "{body}");
            if pred(&body) {
                return body;
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("search for {q} never satisfied the condition; last answer: {last}");
    }
}

fn hit_names(body: &Value) -> Vec<String> {
    body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}/{}",
                h["namespace"].as_str().unwrap(),
                h["name"].as_str().unwrap()
            )
        })
        .collect()
}

fn tool(name: &str, description: &str) -> Value {
    json!({
        "kind": "tool", "namespace": "tpmjs", "name": name,
        "description": description, "category": "text", "tags": ["csv", "parsing"]
    })
}

fn assert_envelope(body: &Value, code: &str, field: Option<&str>) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(
        e["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    if let Some(f) = field {
        assert_eq!(e["field"], f, "{body}");
    }
}

#[tokio::test]
async fn create_publish_read_list_search_yank() {
    let app = TestApp::start().await;
    let (s, e) = app
        .post(
            "/api/v1/entries",
            tool("text.csvParse", "Parse CSV text into typed rows"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    assert_eq!(e["status"], "draft");

    let manifest = json!({
        "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        "output_schema": {"type": "object", "properties": {"rows": {"type": "array"}}},
        "examples": [{"name": "simple", "input": {"text": "a,b\n1,2"}}]
    });
    let path = "/api/v1/entries/tool/tpmjs/text.csvParse";
    let (s, v) = app
        .post(
            &format!("{path}/versions"),
            json!({"version": "1.0.0", "manifest": manifest, "changelog": "first"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    let (s, _) = app
        .post(
            &format!("{path}/versions"),
            json!({"version": "1.1.0", "manifest": manifest}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let (s, e) = app.get(path).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        e["status"], "published",
        "the first version publishes a draft"
    );
    assert_eq!(e["latest_version"], "1.1.0");
    let (_, vs) = app.get(&format!("{path}/versions")).await;
    let vs: Vec<&str> = vs
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(vs, vec!["1.1.0", "1.0.0"]);
    let (s, v) = app.get(&format!("{path}/versions/1.0.0")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["manifest"], manifest);
    // The schema checks also ran as a durable job, which recorded its result.
    let validation = app.validation_of(&format!("{path}/versions/1.0.0")).await;
    assert_eq!(validation["passed"], true, "{validation}");
    assert_eq!(validation["sha256"], v["sha256"]);
    let (_, jobs) = app.get("/api/v1/jobs?kind=validate_version").await;
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        2,
        "one job per version: {jobs}"
    );

    let (_, list) = app.get("/api/v1/entries?kind=tool&namespace=tpmjs").await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);

    let found = app
        .search_until("csv", |b| {
            hit_names(b).contains(&"tpmjs/text.csvParse".to_string())
        })
        .await;
    let hit = &found["hits"][0];
    for field in ["kind", "namespace", "name", "description", "score"] {
        assert!(!hit[field].is_null(), "hit lacks {field}: {hit}");
    }

    let (s, v) = app
        .post(
            &format!("{path}/versions/1.1.0/yank"),
            json!({"reason": "wrong output"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["yanked"], true);
    assert_eq!(v["yank_reason"], "wrong output");
    let (_, e) = app.get(path).await;
    assert_eq!(e["latest_version"], "1.0.0");
    let (s, v) = app
        .post(&format!("{path}/versions/1.1.0/unyank"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["yanked"], false);

    let (s, e) = app
        .post(
            &format!("{path}/deprecate"),
            json!({"message": "use text.csvParse2", "replacement": "tool tpmjs/text.csvParse2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "deprecated");
    assert_eq!(e["deprecation"]["message"], "use text.csvParse2");
}

#[tokio::test]
async fn invalid_input_is_refused_and_changes_nothing() {
    let app = TestApp::start().await;
    let (s, _) = app
        .post(
            "/api/v1/entries",
            tool("web.fetchText", "Fetch a page as text"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let path = "/api/v1/entries/tool/tpmjs/web.fetchText";
    let (s, _) = app
        .post(&format!("{path}/versions"), json!({"version": "1.0.0"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Let the validation job record its result first: that write is not a refused request.
    assert!(!app
        .validation_of(&format!("{path}/versions/1.0.0"))
        .await
        .is_null());
    let head = app.feed_head().await;

    // Each case: method, path, body, expected status, code, field.
    type Case<'a> = (&'a str, String, Value, StatusCode, &'a str, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/entries".into(),
            tool("1bad..name", "x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/entries".into(),
            tool("ok.name\u{0007}", "x"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/entries".into(),
            json!({"kind": "gadget", "namespace": "x", "name": "y"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("kind"),
        ),
        (
            "POST",
            "/api/v1/entries".into(),
            json!({"kind": "tool", "namespace": "x", "name": "y", "colour": "red"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            None,
        ),
        (
            "POST",
            "/api/v1/entries".into(),
            tool("web.fetchText", "dup"),
            StatusCode::CONFLICT,
            "conflict",
            Some("name"),
        ),
        (
            "POST",
            "/api/v1/entries".into(),
            json!({"kind": "package", "namespace": "npm", "name": "../../etc/passwd"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("name"),
        ),
        (
            "POST",
            format!("{path}/versions"),
            json!({"version": "1.0"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("version"),
        ),
        (
            "POST",
            format!("{path}/versions"),
            json!({"version": "1.0.0"}),
            StatusCode::CONFLICT,
            "conflict",
            Some("version"),
        ),
        (
            "POST",
            format!("{path}/versions"),
            json!({"version": "2.0.0", "manifest": {"inputs": [{"type": "string"}]}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("manifest.inputs.0"),
        ),
        (
            "POST",
            format!("{path}/versions"),
            json!({"version": "2.0.0", "manifest": {"input_schema": {"type": 12}}}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("manifest.input_schema"),
        ),
        (
            "POST",
            format!("{path}/versions"),
            json!({"version": "2.0.0", "manifest": "not an object"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("manifest"),
        ),
        (
            "POST",
            "/api/v1/entries/gadget/tpmjs/x/versions".into(),
            json!({"version": "1.0.0"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("kind"),
        ),
        (
            "POST",
            "/api/v1/entries/tool/tpmjs/nope/versions".into(),
            json!({"version": "1.0.0"}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "POST",
            format!("{path}/versions/9.9.9/yank"),
            json!({}),
            StatusCode::NOT_FOUND,
            "not_found",
            None,
        ),
        (
            "PATCH",
            path.into(),
            json!({"tags": [""]}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("tags[0]"),
        ),
        (
            "PATCH",
            path.into(),
            json!({}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("body"),
        ),
        (
            "POST",
            format!("{path}/relations"),
            json!({"kind": "maps_to", "to": {"kind": "package", "namespace": "npm", "name": "react"}, "confidence": 0.5}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
            Some("to"),
        ),
    ];
    for (method, p, body, status, code, field) in cases {
        let (s, b) = app.send(method, &p, body.clone()).await;
        assert_eq!(s, status, "{method} {p} {body}: {b}");
        assert_envelope(&b, code, field);
    }

    // Malformed JSON is a 400 in the same envelope.
    let r = app
        .http
        .post(app.url("/api/v1/entries"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_envelope(&r.json().await.unwrap(), "malformed_request", Some("body"));

    // Bad query parameters.
    for (q, field) in [
        ("/api/v1/search?q=x&limit=1000", "limit"),
        ("/api/v1/search?q=x&sort=sideways", "sort"),
        ("/api/v1/search?q=x&kind=gadget", "kind"),
        ("/api/v1/search?q=x&colour=red", "colour"),
        ("/api/v1/entries?cursor=zzz", "cursor"),
        ("/api/v1/entries?limit=0", "limit"),
    ] {
        let (s, b) = app.get(q).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {b}");
        assert_envelope(&b, "invalid_input", Some(field));
    }

    let (s, b) = app.get("/api/v1/entries/tool/tpmjs/missing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_envelope(&b, "not_found", None);
    let (s, b) = app.get("/api/v1/no/such/route").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_envelope(&b, "not_found", None);

    assert_eq!(
        app.feed_head().await,
        head,
        "no refused request wrote anything"
    );
    let (_, vs) = app.get(&format!("{path}/versions")).await;
    assert_eq!(vs.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn etags_answer_304() {
    let app = TestApp::start().await;
    app.post("/api/v1/entries", tool("a.b", "an entry")).await;
    let url = app.url("/api/v1/entries/tool/tpmjs/a.b");
    let r = app.http.get(&url).send().await.unwrap();
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    app.send(
        "PATCH",
        "/api/v1/entries/tool/tpmjs/a.b",
        json!({"description": "changed"}),
    )
    .await;
    let r = app
        .http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "a changed entry has a new ETag");
}

#[tokio::test]
async fn scoped_npm_names_and_relations() {
    let app = TestApp::start().await;
    let (s, b) = app
        .post(
            "/api/v1/entries",
            json!({"kind": "package", "namespace": "npm", "name": "@types/node", "description": "TypeScript definitions for Node.js"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    app.post(
        "/api/v1/entries",
        json!({"kind": "skill", "namespace": "upskill", "name": "node-typescript", "description": "Writing Node.js services in TypeScript"}),
    )
    .await;
    let (s, _) = app.get("/api/v1/entries/package/npm/@types/node").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get("/api/v1/entries/package/npm/%40types%2Fnode").await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = app
        .post(
            "/api/v1/entries/package/npm/@types/node/relations",
            json!({"kind": "maps_to", "to": {"kind": "skill", "namespace": "upskill", "name": "node-typescript"}, "confidence": 0.7, "source": "curated"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (_, rels) = app
        .get("/api/v1/entries/skill/upskill/node-typescript/relations?direction=incoming")
        .await;
    assert_eq!(rels[0]["from"]["name"], "@types/node");
    assert_eq!(rels[0]["confidence"], 0.7);
}

#[tokio::test]
async fn private_and_unlisted_entries_do_not_leak() {
    let app = TestApp::start_with(Some("s3cret")).await;
    let admin = |rb: reqwest::RequestBuilder| rb.bearer_auth("s3cret");
    for (name, vis) in [
        ("pub.tool", "public"),
        ("hidden.tool", "private"),
        ("quiet.tool", "unlisted"),
    ] {
        let body = json!({"kind": "tool", "namespace": "acme", "name": name, "description": "zebra tool for stripes", "visibility": vis});
        let r = admin(app.http.post(app.url("/api/v1/entries")))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = admin(
            app.http
                .post(app.url(&format!("/api/v1/entries/tool/acme/{name}/versions"))),
        )
        .json(&json!({"version": "1.0.0"}))
        .send()
        .await
        .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }
    // Writes need credentials once an admin token is configured (401: sign in); a wrong
    // token is refused.
    let (s, b) = app
        .post("/api/v1/entries", tool("x.y", "anonymous write"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_envelope(&b, "unauthorized", None);
    let r = app
        .http
        .get(app.url("/api/v1/entries"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // A private entry answers exactly like a missing one.
    let (s1, b1) = app.get("/api/v1/entries/tool/acme/hidden.tool").await;
    let (s2, b2) = app.get("/api/v1/entries/tool/acme/never.existed").await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    // Same body but for the name the caller asked about.
    assert_eq!(
        b1.to_string().replace("hidden.tool", "X"),
        b2.to_string().replace("never.existed", "X")
    );
    let (s, _) = app
        .get("/api/v1/entries/tool/acme/hidden.tool/versions")
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Unlisted: by name yes, in lists and search no.
    let (s, _) = app.get("/api/v1/entries/tool/acme/quiet.tool").await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = app.get("/api/v1/entries?namespace=acme").await;
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["pub.tool"]);
    let found = app
        .search_until("zebra&facets=true", |b| {
            hit_names(b).contains(&"acme/pub.tool".to_string())
        })
        .await;
    assert_eq!(hit_names(&found), vec!["acme/pub.tool"]);
    assert_eq!(found["total"], 1);
    let text = found["facets"].to_string();
    assert!(
        text.contains("\"count\":1") && !text.contains("\"count\":3"),
        "{text}"
    );
    // The admin sees the private entry by name and in lists.
    let r = admin(
        app.http
            .get(app.url("/api/v1/entries/tool/acme/hidden.tool")),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r: Value = admin(app.http.get(app.url("/api/v1/entries?namespace=acme")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn openapi_documents_every_operation() {
    let app = TestApp::start().await;
    let (s, doc) = app.get("/api/v1/openapi.json").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    for op in quiver_server::openapi::OPERATIONS {
        assert!(
            doc["paths"][op.path][op.method].is_object(),
            "{} {} is not in the document",
            op.method,
            op.path
        );
        // Every documented path is routed: it never answers the router's 404 for routes.
        let path = op
            .path
            .replace("{kind}", "tool")
            .replace("{namespace}", "ns")
            .replace("{name}", "a.b")
            .replace("{version}", "1.0.0")
            .replace("{user}", "someone")
            .replace("{id}", "1");
        let req = match op.method {
            "get" => app.http.get(app.url(&path)),
            "post" => app.http.post(app.url(&path)).json(&json!({})),
            "patch" => app.http.patch(app.url(&path)).json(&json!({})),
            "put" => app.http.put(app.url(&path)).json(&json!({})),
            "delete" => app.http.delete(app.url(&path)),
            m => panic!("unexpected method {m}"),
        };
        let r = req.send().await.unwrap();
        let status = r.status();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert!(
            !(status == StatusCode::NOT_FOUND && body["error"]["message"] == "route not found"),
            "{} {path} is documented but not routed",
            op.method
        );
        assert_ne!(
            status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{} {path}",
            op.method
        );
    }
    for schema in [
        "Entry",
        "NewEntry",
        "Version",
        "SearchResponse",
        "ErrorBody",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let (s, schema) = app.get("/api/v1/kinds/recipe/schema").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(schema["title"], "Recipe manifest");
}

#[tokio::test]
async fn health_and_readiness() {
    let app = TestApp::start().await;
    assert_eq!(app.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.0, StatusCode::OK);
    let (s, st) = app.get("/api/v1/status").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(st["backend"], "sqlite");
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for metric in [
        "quiver_http_requests_total",
        "quiver_http_request_duration_seconds",
        "quiver_index_lag_events",
        "quiver_feed_head",
    ] {
        assert!(
            text.contains(metric),
            "{metric} missing from /metrics:\n{text}"
        );
    }
    assert!(text.contains("route=\"/api/v1/status\""), "{text}");
}

#[tokio::test]
async fn index_rebuild_runs_as_a_durable_job() {
    let app = TestApp::start().await;
    let mut body = tool("text.rebuildMe", "capybara grooming kit");
    body["status"] = json!("published");
    app.post("/api/v1/entries", body).await;
    let (s, job) = app.post("/api/v1/index/rebuild", json!({})).await;
    assert_eq!(s, StatusCode::ACCEPTED, "{job}");
    let id = job["id"].as_i64().unwrap();
    let mut state = Value::Null;
    for _ in 0..100 {
        let (_, j) = app.get(&format!("/api/v1/jobs/{id}")).await;
        state = j["state"].clone();
        if state == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "succeeded");
    let (_, list) = app.get("/api/v1/jobs?state=succeeded").await;
    assert_eq!(list["items"][0]["id"], id);
    app.search_until("capybara", |b| {
        hit_names(b).contains(&"tpmjs/text.rebuildMe".to_string())
    })
    .await;
    let (s, b) = app
        .post(&format!("/api/v1/jobs/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "only dead jobs are retried: {b}");
    let (s, _) = app.get("/api/v1/jobs/999999").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app.get("/api/v1/jobs/abc").await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
}
