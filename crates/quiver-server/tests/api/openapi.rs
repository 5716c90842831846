//! The public surface, pinned: the OpenAPI document (generated from the router) is
//! snapshot-tested and validates as OpenAPI 3.1; every route the router serves is in it
//! and nothing else is; the error envelopes are snapshot-tested too. An accidental change
//! to the surface fails here (review and accept a deliberate one with `cargo insta`).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use quiver_server::limits::{Limit, RateLimits, RouteClass};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::entries::start;

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn document() -> &'static Value {
    quiver_server::openapi::document()
}

#[tokio::test]
async fn the_served_document_is_the_generated_one() {
    let app = start().await;
    let (s, doc) = app.get("/api/v1/openapi.json", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(&doc, document());
    assert_eq!(doc["openapi"], "3.1.0");
    for schema in [
        "Entry",
        "NewEntry",
        "Version",
        "SearchResponse",
        "ErrorBody",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    let (s, schema) = app.get("/api/v1/kinds/recipe/schema", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(schema["title"], "Recipe manifest");
}

#[test]
fn the_document_matches_its_snapshot() {
    insta::with_settings!({sort_maps => true}, {
        insta::assert_json_snapshot!("openapi", document());
    });
}

#[test]
fn the_document_validates_as_openapi_3_1() {
    let schema: Value = serde_json::from_str(include_str!("../data/openapi-3.1.schema.json"))
        .expect("the OpenAPI 3.1 schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the OpenAPI 3.1 schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(document())
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // The check has teeth: a document missing its info fails it.
    let mut broken = document().clone();
    broken.as_object_mut().unwrap().remove("info");
    assert!(!validator.is_valid(&broken));
}

#[test]
fn the_error_codes_in_the_document_are_the_table() {
    let doc = document();
    let codes = &doc["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["oneOf"];
    let served: BTreeMap<String, u64> = codes
        .as_array()
        .expect("ErrorDetail.code lists the codes")
        .iter()
        .map(|c| {
            (
                c["const"].as_str().unwrap().to_string(),
                c["x-http-status"].as_u64().unwrap(),
            )
        })
        .collect();
    let table: BTreeMap<String, u64> = quiver_server::error::Code::ALL
        .iter()
        .map(|c| (c.as_str().to_string(), u64::from(c.status().as_u16())))
        .collect();
    assert_eq!(served, table);
    assert_eq!(served["invalid_input"], 422);
    assert_eq!(served["malformed_request"], 400);
    assert_eq!(served["rate_limited"], 429);
}

/// The paths the router itself holds (read from its debug form, the only listing axum
/// offers), whatever built them.
fn router_paths() -> BTreeSet<String> {
    let text = format!("{:?}", quiver_server::routes());
    // The routes proper; the fallback router after them holds only axum's own paths.
    let (text, _) = text
        .split_once("fallback_router")
        .expect("the router's debug form names its fallback router");
    let mut paths = BTreeSet::new();
    for piece in text.split('"').skip(1).step_by(2) {
        if piece.starts_with('/') && !piece.contains("__private__") {
            paths.insert(piece.to_string());
        }
    }
    paths
}

fn example(path: &str) -> String {
    path.replace("{kind}", "tool")
        .replace("{namespace}", "ns")
        .replace("{name}", "a.b")
        .replace("{version}", "1.0.0")
        .replace("{user}", "someone")
        .replace("{id}", "1")
}

#[tokio::test]
async fn every_route_is_documented_and_nothing_else() {
    let doc = document();
    let documented: BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let routed = router_paths();
    assert!(
        routed.len() > 20,
        "the router's paths were not found: {routed:?}"
    );
    assert_eq!(
        routed, documented,
        "the router's paths and the document's differ"
    );

    // Each method of each path: served exactly when documented (a method the router does
    // not serve answers 405; an unrouted path, the 404 for routes).
    let app = start().await;
    for path in &documented {
        for method in METHODS {
            let url = app.url(&example(path));
            let m: Method = method.to_uppercase().parse().unwrap();
            let mut req = app.http.request(m, url);
            if method != "get" && method != "delete" {
                req = req.json(&json!({}));
            }
            let r = tokio::time::timeout(Duration::from_secs(20), req.send())
                .await
                .unwrap_or_else(|_| panic!("{method} {path} did not answer"))
                .unwrap();
            let status = r.status();
            // An event stream never ends: its status and headers are the answer.
            let streaming = r
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
            let body: Value = if streaming {
                Value::Null
            } else {
                tokio::time::timeout(Duration::from_secs(20), r.json())
                    .await
                    .unwrap_or_else(|_| panic!("{method} {path}: the body did not end"))
                    .unwrap_or(Value::Null)
            };
            assert!(
                !(status == StatusCode::NOT_FOUND && body["error"]["message"] == "route not found"),
                "{method} {path} is not routed: {body}"
            );
            let served = status != StatusCode::METHOD_NOT_ALLOWED;
            let in_doc = doc["paths"][path][method].is_object();
            assert_eq!(
                served, in_doc,
                "{method} {path}: served {served}, documented {in_doc}"
            );
        }
    }
}

/// `(status, body)` of a request, for the envelope snapshot.
async fn answer(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Value {
    let (s, b) = app.call(method, path, token, body).await;
    json!({"request": path, "status": s.as_u16(), "body": b})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_envelopes_match_their_snapshot() {
    const ROOT: &str = "root-token-for-envelope-tests";
    let app = TestApp::builder()
        .admin_token(ROOT)
        .user("ada")
        .token("ada", "reader", &["read-private"])
        .start()
        .await;
    let ada = app.session("ada").to_string();
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(ROOT),
            json!({"kind": "tool", "namespace": "acme", "name": "text.csvParse", "description": "Parse CSV text into rows"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let malformed = {
        let r = app
            .http
            .post(app.url("/api/v1/entries"))
            .bearer_auth(ROOT)
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        json!({"request": "/api/v1/entries (not JSON)", "status": r.status().as_u16(), "body": r.json::<Value>().await.unwrap()})
    };
    let mut answers = vec![
        malformed,
        answer(&app, Method::POST, "/api/v1/entries", Some(ROOT), Some(json!({"kind": "gadget", "namespace": "acme", "name": "x", "description": "y"}))).await,
        answer(&app, Method::GET, "/api/v1/search?q=x&colour=red", None, None).await,
        answer(&app, Method::GET, "/api/v1/search?q=x&sort=sideways", None, None).await,
        answer(&app, Method::GET, "/api/v1/entries?limit=abc", None, None).await,
        answer(&app, Method::GET, "/api/v1/entries/gadget/acme/x", None, None).await,
        answer(&app, Method::GET, "/api/v1/entries/tool/acme/missing", None, None).await,
        answer(&app, Method::GET, "/api/v1/no/such/route", None, None).await,
        answer(&app, Method::DELETE, "/api/v1/search", None, None).await,
        answer(&app, Method::POST, "/api/v1/entries", None, Some(json!({"kind": "tool", "namespace": "acme", "name": "a.b", "description": "c"}))).await,
        answer(&app, Method::GET, "/api/v1/entries", Some("not-a-token"), None).await,
        answer(&app, Method::POST, "/api/v1/entries", Some(&ada), Some(json!({"kind": "tool", "namespace": "acme", "name": "a.b", "description": "c"}))).await,
        answer(&app, Method::POST, "/api/v1/entries", Some(app.token("reader")), Some(json!({"kind": "tool", "namespace": "ada", "name": "a.b", "description": "c"}))).await,
        answer(&app, Method::POST, "/api/v1/entries", Some(ROOT), Some(json!({"kind": "tool", "namespace": "acme", "name": "text.csvParse", "description": "again"}))).await,
        answer(&app, Method::POST, "/api/v1/device/token", None, Some(json!({"device_code": "nope", "grant_type": "urn:ietf:params:oauth:grant-type:device_code"}))).await,
    ];
    // And a 429, from a server that limits reads to none.
    let limited = TestApp::builder()
        .admin_token(ROOT)
        .limits(only_class(RouteClass::Read))
        .start()
        .await;
    let mut a = answer(&limited, Method::GET, "/api/v1/entries", None, None).await;
    // The seconds to wait depend on the clock.
    let msg = a["body"]["error"]["message"].as_str().unwrap().to_string();
    let cut = msg
        .rfind("retry in ")
        .expect("the message says when to retry");
    a["body"]["error"]["message"] = json!(format!("{}retry in [seconds]", &msg[..cut]));
    answers.push(a);
    insta::assert_json_snapshot!("error_envelopes", answers);
}

/// Only `class` limited: to no request at all, per day.
fn only_class(class: RouteClass) -> RateLimits {
    let mut l = RateLimits::off();
    l.set(class, Some(Limit::per_day(0)));
    l
}
