//! The audit log through the HTTP API: writes and denied writes leave rows with diffs,
//! hashed client addresses on every row written for a request, time windows, and the
//! streamed export (its rights, filters and paging).

use quiver_server::limits::RateLimits;
use quiver_store::NewAuditRecord;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{TestApp, PASSWORD};

const ROOT: &str = "root-token-for-tests";

/// A server that trusts `X-Forwarded-For`, as behind a proxy, so that a test can be
/// several clients.
async fn start() -> TestApp {
    TestApp::builder()
        .admin_token(ROOT)
        .limits(RateLimits {
            trust_forwarded_for: true,
            ..RateLimits::off()
        })
        .start()
        .await
}

impl TestApp {
    /// A POST from the client at `address`.
    async fn post_from(&self, address: &str, path: &str, token: &str, body: Value) -> StatusCode {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("x-forwarded-for", address)
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// `GET /api/v1/audit/export?{query}`: status, content type, and the rows.
    async fn export(&self, query: &str, token: Option<&str>) -> (StatusCode, String, Vec<Value>) {
        let mut rb = self
            .http
            .get(format!("{}/api/v1/audit/export?{query}", self.base));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        let r = rb.send().await.unwrap();
        let status = r.status();
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let text = r.text().await.unwrap();
        let rows = if status == StatusCode::OK {
            text.lines()
                .map(|l| serde_json::from_str(l).expect("each line is one JSON row"))
                .collect()
        } else {
            vec![serde_json::from_str(&text).unwrap()]
        };
        (status, ct, rows)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_carry_the_client_address_hashed() {
    let app = start().await;
    let olga = app.user("olga").await;
    let sam = app.user("sam").await;
    let (a, b) = ("198.51.100.7", "203.0.113.9");
    let s = app
        .post_from(a, "/api/v1/namespaces", &olga, json!({"name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let s = app
        .post_from(
            a,
            "/api/v1/entries",
            &olga,
            json!({"kind": "tool", "namespace": "acme", "name": "text.csv", "description": "audited tool"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // A denied write from another client.
    let s = app
        .post_from(
            b,
            "/api/v1/entries",
            &sam,
            json!({"kind": "tool", "namespace": "acme", "name": "x", "description": "not sam's"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, log) = app.get("/api/v1/audit?limit=100", Some(ROOT)).await;
    assert_eq!(s, StatusCode::OK, "{log}");
    let rows = log["items"].as_array().unwrap();
    let client_of = |action: &str, outcome: &str| -> String {
        rows.iter()
            .find(|r| r["action"] == action && r["outcome"] == outcome)
            .unwrap_or_else(|| panic!("no {action} {outcome} row in {log}"))["client"]
            .as_str()
            .unwrap_or_else(|| panic!("{action}: no client in {log}"))
            .to_string()
    };
    let ns = client_of("namespace.create", "allowed");
    let created = client_of("entry.create", "allowed");
    let denied = client_of("entry.create", "denied");
    // Registrations came over the loopback connection, without the header.
    let registered = client_of("user.register", "allowed");
    assert_eq!(ns.len(), 16, "{ns}");
    assert!(ns.chars().all(|c| c.is_ascii_hexdigit()), "{ns}");
    assert_eq!(ns, created, "one client, one hash");
    assert_ne!(ns, denied, "two clients, two hashes");
    assert_ne!(ns, registered);
    // No address is stored in clear.
    let text = log.to_string();
    for addr in [a, b, "127.0.0.1"] {
        assert!(!text.contains(addr), "{addr} is in the audit log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_exports_whole_filtered_and_only_to_those_who_may_read_it() {
    let app = start().await;
    let olga = app.user("olga").await;
    let sam = app.user("sam").await;
    let s = app
        .post_from(
            "198.51.100.7",
            "/api/v1/namespaces",
            &olga,
            json!({"name": "acme"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Enough rows for several of the export's pages (rows of other namespaces in between).
    let log = app.registry.database().audit.clone();
    for i in 0..1_203 {
        let ns = if i % 3 == 0 { "beta" } else { "acme" };
        log.append_audit(NewAuditRecord {
            actor: "loader".into(),
            action: "entry.create".into(),
            namespace: Some(ns.into()),
            target: format!("tool {ns}/t{i}"),
            outcome: "allowed".into(),
            reason: None,
            diff: None,
            client: None,
        })
        .await
        .unwrap();
    }

    // The admin exports everything, newest first, each row once.
    let (s, ct, all) = app.export("", Some(ROOT)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(ct, "application/x-ndjson");
    let (_, listed) = app.get("/api/v1/audit?limit=1", Some(ROOT)).await;
    assert_eq!(all[0]["id"], listed["items"][0]["id"], "newest first");
    let ids: Vec<i64> = all.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "strictly newest first");
    // Two registrations and their sessions, the namespace, and the loaded rows.
    assert_eq!(all.len(), 1_203 + 5, "{:?}", &all[1_203..]);

    // An owner exports their namespace; filters apply as in the listing.
    let (s, _, acme) = app.export("namespace=acme", Some(&olga)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(acme.len(), 802 + 1);
    assert!(acme.iter().all(|r| r["namespace"] == "acme"));
    let (_, _, created) = app
        .export("namespace=acme&action=namespace.create", Some(&olga))
        .await;
    assert_eq!(created.len(), 1);
    assert!(created[0]["actor"].as_str().unwrap().starts_with("olga"));

    // Time windows, on the export and on the listing.
    let at = created[0]["at"].as_str().unwrap().to_string();
    let (_, _, from) = app
        .export(&format!("namespace=acme&since={at}"), Some(&olga))
        .await;
    assert_eq!(
        from.len(),
        acme.len(),
        "every acme row is at or after the first"
    );
    let (_, _, before) = app
        .export(&format!("namespace=acme&until={at}"), Some(&olga))
        .await;
    assert!(before.is_empty());
    let (s, page) = app
        .get(
            &format!("/api/v1/audit?since={at}&action=namespace.create"),
            Some(ROOT),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);

    // Rights: as for the listing.
    let (s, _, _) = app.export("", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, _) = app.export("", Some(&olga)).await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "owners export their namespace only"
    );
    let (s, _, _) = app.export("namespace=acme", Some(&sam)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Bad input names the field.
    let (s, _, e) = app.export("since=yesterday", Some(ROOT)).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e[0]["error"]["field"], "since", "{:?}", e[0]);
    let (s, _, e) = app
        .export(
            "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z",
            Some(ROOT),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(e[0]["error"]["field"], "until");
    let (s, _, e) = app.export("cursor=x", Some(ROOT)).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "the export takes no cursor"
    );
    assert_eq!(e[0]["error"]["field"], "cursor");
    let (s, b) = app
        .call(Method::GET, "/api/v1/audit?until=soon", Some(ROOT), None)
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "until");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_and_denied_writes_leave_audit_rows_with_diffs() {
    let app = crate::accounts::start(Some(ROOT)).await;
    let olga = app.user("olga").await;
    let sam = app.user("sam").await;
    app.post("/api/v1/namespaces", Some(&olga), json!({"name": "acme"}))
        .await;
    let (s, _) = app
        .post(
            "/api/v1/entries",
            Some(&olga),
            json!({"kind": "tool", "namespace": "acme", "name": "text.csv", "description": "audited tool"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    app.post(
        "/api/v1/entries/tool/acme/text.csv/versions",
        Some(&olga),
        json!({"version": "1.0.0"}),
    )
    .await;
    let (s, _) = app
        .call(
            Method::PATCH,
            "/api/v1/entries/tool/acme/text.csv",
            Some(&olga),
            Some(json!({"description": "a better description"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    app.post(
        "/api/v1/entries/tool/acme/text.csv/versions/1.0.0/yank",
        Some(&olga),
        json!({"reason": "broken build"}),
    )
    .await;
    app.put(
        "/api/v1/namespaces/acme/members/sam",
        Some(&olga),
        json!({"role": "viewer"}),
    )
    .await;
    // Denied: sam (a viewer) tries to publish.
    let (s, _) = app
        .post(
            "/api/v1/entries/tool/acme/text.csv/versions",
            Some(&sam),
            json!({"version": "2.0.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // The owner reads acme's rows; others may not; the admin reads everything.
    let (s, _) = app.get("/api/v1/audit", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.get("/api/v1/audit?namespace=acme", Some(&sam)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/api/v1/audit", Some(&olga)).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "owners read their namespace only");
    let (s, page) = app
        .get("/api/v1/audit?namespace=acme&limit=100", Some(&olga))
        .await;
    assert_eq!(s, StatusCode::OK, "{page}");
    let rows = page["items"].as_array().unwrap();
    let summary: Vec<(String, String, String)> = rows
        .iter()
        .rev()
        .map(|r| {
            (
                r["actor"]
                    .as_str()
                    .unwrap()
                    .split(' ')
                    .next()
                    .unwrap()
                    .to_string(),
                r["action"].as_str().unwrap().to_string(),
                r["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("olga", "namespace.create", "allowed"),
        ("olga", "entry.create", "allowed"),
        ("olga", "version.publish", "allowed"),
        ("olga", "entry.update", "allowed"),
        ("olga", "version.yank", "allowed"),
        ("olga", "member.set", "allowed"),
        ("sam", "entry.publish", "denied"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(summary, want);
    let row = |action: &str| rows.iter().find(|r| r["action"] == action).unwrap().clone();
    assert_eq!(
        row("entry.update")["diff"],
        json!({"description": {"before": "audited tool", "after": "a better description"}})
    );
    assert_eq!(row("entry.create")["diff"]["name"]["after"], "text.csv");
    assert_eq!(row("version.publish")["target"], "tool acme/text.csv@1.0.0");
    assert_eq!(row("version.yank")["reason"], "broken build");
    assert_eq!(
        row("version.yank")["diff"]["yanked"],
        json!({"before": false, "after": true})
    );
    assert_eq!(
        row("member.set")["diff"]["role"],
        json!({"before": null, "after": "viewer"})
    );
    assert!(row("entry.publish")["reason"]
        .as_str()
        .unwrap()
        .contains("sam may not"));

    // Paginated and filterable; the admin sees rows outside acme (registrations, tokens),
    // and no row carries a secret.
    let (_, p1) = app
        .get("/api/v1/audit?namespace=acme&limit=3", Some(&olga))
        .await;
    assert_eq!(p1["items"].as_array().unwrap().len(), 3);
    let (_, p2) = app
        .get(
            &format!(
                "/api/v1/audit?namespace=acme&limit=100&cursor={}",
                p1["next_cursor"].as_str().unwrap()
            ),
            Some(&olga),
        )
        .await;
    assert_eq!(p2["items"].as_array().unwrap().len(), 4);
    let (s, all) = app
        .get("/api/v1/audit?action=token.create&limit=100", Some(ROOT))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(all["items"].as_array().unwrap().len(), 2, "two logins");
    let (_, denied) = app.get("/api/v1/audit?outcome=denied", Some(ROOT)).await;
    assert_eq!(denied["items"].as_array().unwrap().len(), 1);
    let (_, everything) = app.get("/api/v1/audit?limit=100", Some(ROOT)).await;
    let text = everything.to_string();
    for secret in [&olga, &sam] {
        assert!(!text.contains(&secret[4..]), "a token is in the audit log");
    }
    assert!(!text.contains(PASSWORD));
    assert!(!text.contains("$argon2id$"));
}

/// `target=` is one entry's or one version's history, exactly.
#[tokio::test]
async fn rows_of_one_target() {
    let app = start().await;
    let (s, _) = app
        .post(
            "/api/v1/entries",
            Some(ROOT),
            json!({"kind": "package", "namespace": "acme", "name": "hist",
                   "description": "an entry with a history"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    for v in ["1.0.0", "1.1.0"] {
        let (s, _) = app
            .post(
                "/api/v1/entries/package/acme/hist/versions",
                Some(ROOT),
                json!({"version": v, "manifest": {}}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let actions = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["action"].as_str().unwrap(),
                    r["target"].as_str().unwrap()
                )
            })
            .collect()
    };
    let (s, body) = app
        .get("/api/v1/audit?target=package%20acme/hist", Some(ROOT))
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(actions(&body), ["entry.create package acme/hist"]);
    let (_, body) = app
        .get("/api/v1/audit?target=package%20acme/hist@1.1.0", Some(ROOT))
        .await;
    assert_eq!(actions(&body), ["version.publish package acme/hist@1.1.0"]);
    let (s, _, rows) = app
        .export("target=package%20acme/hist@1.0.0", Some(ROOT))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(rows.len(), 1);
}
