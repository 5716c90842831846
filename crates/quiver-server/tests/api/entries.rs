//! Entries and their versions and relations: create, publish, read, list, search, yank,
//! deprecate; invalid input refused in the one envelope and changing nothing; ETags;
//! npm scoped names in paths; private and unlisted entries never leaking.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::{assert_envelope, TestApp};

/// The embedded store with the job worker and open writes.
pub(crate) async fn start() -> TestApp {
    TestApp::builder().worker().start().await
}

impl TestApp {
    async fn send(&self, method: &str, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(method.parse().unwrap(), path, None, Some(body))
            .await
    }

    async fn feed_head(&self) -> i64 {
        self.registry.store().feed_head().await.unwrap()
    }

    /// The validation result of a version once its job has recorded it (Null after two
    /// seconds without one).
    async fn validation_of(&self, version_path: &str) -> Value {
        for _ in 0..100 {
            let (_, v) = self.get(version_path, None).await;
            if !v["validation"].is_null() {
                return v["validation"].clone();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Value::Null
    }

    /// Search until `pred` holds or two seconds pass (the index follows the feed).
    pub(crate) async fn search_until(&self, q: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..40 {
            let (s, body) = self.get(&format!("/api/v1/search?q={q}"), None).await;
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

pub(crate) fn hit_names(body: &Value) -> Vec<String> {
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

pub(crate) fn tool(name: &str, description: &str) -> Value {
    json!({
        "kind": "tool", "namespace": "tpmjs", "name": name,
        "description": description, "category": "text", "tags": ["csv", "parsing"]
    })
}

#[tokio::test]
async fn create_publish_read_list_search_yank() {
    let app = start().await;
    let (s, e) = app
        .post(
            "/api/v1/entries",
            None,
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
            None,
            json!({"version": "1.0.0", "manifest": manifest, "changelog": "first"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    let (s, _) = app
        .post(
            &format!("{path}/versions"),
            None,
            json!({"version": "1.1.0", "manifest": manifest}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    let (s, e) = app.get(path, None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        e["status"], "published",
        "the first version publishes a draft"
    );
    assert_eq!(e["latest_version"], "1.1.0");
    let (_, vs) = app.get(&format!("{path}/versions"), None).await;
    let vs: Vec<&str> = vs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(vs, vec!["1.1.0", "1.0.0"]);
    let (s, v) = app.get(&format!("{path}/versions/1.0.0"), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["manifest"], manifest);
    // The schema checks also ran as a durable job, which recorded its result.
    let validation = app.validation_of(&format!("{path}/versions/1.0.0")).await;
    assert_eq!(validation["passed"], true, "{validation}");
    assert_eq!(validation["sha256"], v["sha256"]);
    // The second version's job is queued by the feed follower: wait for it (bounded),
    // then there must be exactly one per version.
    let mut jobs = Value::Null;
    for _ in 0..100 {
        jobs = app.get("/api/v1/jobs?kind=validate_version", None).await.1;
        if jobs["items"].as_array().map_or(0, Vec::len) >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        jobs["items"].as_array().unwrap().len(),
        2,
        "one job per version: {jobs}"
    );

    let (_, list) = app
        .get("/api/v1/entries?kind=tool&namespace=tpmjs", None)
        .await;
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
            None,
            json!({"reason": "wrong output"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["yanked"], true);
    assert_eq!(v["yank_reason"], "wrong output");
    let (_, e) = app.get(path, None).await;
    assert_eq!(e["latest_version"], "1.0.0");
    let (s, v) = app
        .post(&format!("{path}/versions/1.1.0/unyank"), None, json!({}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["yanked"], false);

    let (s, e) = app
        .post(
            &format!("{path}/deprecate"),
            None,
            json!({"message": "use text.csvParse2", "replacement": "tool tpmjs/text.csvParse2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["status"], "deprecated");
    assert_eq!(e["deprecation"]["message"], "use text.csvParse2");
}

#[tokio::test]
async fn invalid_input_is_refused_and_changes_nothing() {
    let app = start().await;
    let (s, _) = app
        .post(
            "/api/v1/entries",
            None,
            tool("web.fetchText", "Fetch a page as text"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let path = "/api/v1/entries/tool/tpmjs/web.fetchText";
    let (s, _) = app
        .post(
            &format!("{path}/versions"),
            None,
            json!({"version": "1.0.0"}),
        )
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
        let (s, b) = app.get(q, None).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {b}");
        assert_envelope(&b, "invalid_input", Some(field));
    }

    let (s, b) = app.get("/api/v1/entries/tool/tpmjs/missing", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_envelope(&b, "not_found", None);
    let (s, b) = app.get("/api/v1/no/such/route", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_envelope(&b, "not_found", None);
    // Below an entry, only its known sub-resources are routes.
    let (s, b) = app.get(&format!("{path}/nope"), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{b}");
    assert_envelope(&b, "not_found", None);
    assert_eq!(b["error"]["message"], "route not found");

    assert_eq!(
        app.feed_head().await,
        head,
        "no refused request wrote anything"
    );
    let (_, vs) = app.get(&format!("{path}/versions"), None).await;
    assert_eq!(vs["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn etags_answer_304() {
    let app = start().await;
    app.post("/api/v1/entries", None, tool("a.b", "an entry"))
        .await;
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

const ROOT: &str = "root-token-for-entry-tests";

#[tokio::test]
async fn scoped_npm_names_and_relations() {
    // npm is an ecosystem namespace: only admins (and imports) write there.
    let app = TestApp::builder().admin_token(ROOT).start().await;
    let (s, b) = app
        .post(
            "/api/v1/entries", Some(ROOT),
            json!({"kind": "package", "namespace": "npm", "name": "@types/node", "description": "TypeScript definitions for Node.js"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    app.post(
        "/api/v1/entries", Some(ROOT),
        json!({"kind": "skill", "namespace": "upskill", "name": "node-typescript", "description": "Writing Node.js services in TypeScript"}),
    )
    .await;
    let (s, _) = app
        .get("/api/v1/entries/package/npm/@types/node", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .get("/api/v1/entries/package/npm/%40types%2Fnode", None)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, r) = app
        .post(
            "/api/v1/entries/package/npm/@types/node/relations", Some(ROOT),
            json!({"kind": "maps_to", "to": {"kind": "skill", "namespace": "upskill", "name": "node-typescript"}, "confidence": 0.7, "source": "curated"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{r}");
    let (_, rels) = app
        .get(
            "/api/v1/entries/skill/upskill/node-typescript/relations?direction=incoming",
            None,
        )
        .await;
    assert_eq!(rels[0]["from"]["name"], "@types/node");
    assert_eq!(rels[0]["confidence"], 0.7);
    // Versions of a scoped package, and their sub-resources, through the slash.
    let (s, v) = app
        .post(
            "/api/v1/entries/package/npm/@types/node/versions",
            Some(ROOT),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = app
        .post(
            "/api/v1/entries/package/npm/@types/node/versions/1.0.0/yank",
            Some(ROOT),
            json!({"reason": "broken types"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["yanked"], true);
    let (s, v) = app
        .get(
            "/api/v1/entries/package/npm/@types%2Fnode/versions/1.0.0",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["yank_reason"], "broken types");
}

#[tokio::test]
async fn private_and_unlisted_entries_do_not_leak() {
    let app = TestApp::builder()
        .admin_token("s3cret")
        .worker()
        .start()
        .await;
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
        .post("/api/v1/entries", None, tool("x.y", "anonymous write"))
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
    let (s1, b1) = app.get("/api/v1/entries/tool/acme/hidden.tool", None).await;
    let (s2, b2) = app
        .get("/api/v1/entries/tool/acme/never.existed", None)
        .await;
    assert_eq!((s1, s2), (StatusCode::NOT_FOUND, StatusCode::NOT_FOUND));
    // Same body but for the name the caller asked about.
    assert_eq!(
        b1.to_string().replace("hidden.tool", "X"),
        b2.to_string().replace("never.existed", "X")
    );
    let (s, _) = app
        .get("/api/v1/entries/tool/acme/hidden.tool/versions", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Unlisted: by name yes, in lists and search no.
    let (s, _) = app.get("/api/v1/entries/tool/acme/quiet.tool", None).await;
    assert_eq!(s, StatusCode::OK);
    let (_, list) = app.get("/api/v1/entries?namespace=acme", None).await;
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
