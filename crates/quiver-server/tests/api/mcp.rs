//! MCP over Streamable HTTP at `/mcp`, driven by the SDK's own client: the handshake, the
//! tool list, search, a tool's schemas, an entry as a resource, and authorization (a
//! private entry is not found for an anonymous caller and found with a token that may
//! read it; a token that does not resolve is refused with 401).

use reqwest::StatusCode;
use rmcp::model::{CallToolRequestParams, CallToolResult, ReadResourceRequestParams};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

use crate::common::{assert_envelope, TestApp};

const ADMIN: &str = "admin-secret-for-mcp";

async fn tool(app: &TestApp, namespace: &str, name: &str, visibility: &str) {
    let (s, e) = app
        .post(
            "/api/v1/entries",
            Some(ADMIN),
            json!({"kind": "tool", "namespace": namespace, "name": name,
                   "visibility": visibility,
                   "description": format!("{name}: parse comma separated values into rows")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
    let (s, e) = app
        .post(
            &format!("/api/v1/entries/tool/{namespace}/{name}/versions"),
            Some(ADMIN),
            json!({"version": "1.0.0", "manifest": {
                "input_schema": {"type": "object",
                    "properties": {"text": {"type": "string", "description": "CSV text"}},
                    "required": ["text"]},
                "output_schema": {"type": "object",
                    "properties": {"rows": {"type": "array"}}}}}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{e}");
}

async fn connect(app: &TestApp, token: Option<&str>) -> RunningService<RoleClient, ()> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(app.url("/mcp"));
    if let Some(t) = token {
        config = config.auth_header(t);
    }
    ().serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("the MCP session starts")
}

async fn call(client: &RunningService<RoleClient, ()>, name: &str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments are an object")
    };
    client
        .call_tool(CallToolRequestParams::new(name.to_string()).with_arguments(args))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn structured(r: &CallToolResult) -> &Value {
    r.structured_content.as_ref().expect("structured content")
}

#[tokio::test]
async fn agents_search_and_read_schemas_as_their_token_allows() {
    let app = TestApp::builder().admin_token(ADMIN).start().await;
    tool(&app, "acme", "csv.parse", "public").await;
    tool(&app, "secretco", "csv.internal", "private").await;
    app.registry.sync_index().await.unwrap();

    let anon = connect(&app, None).await;
    let info = anon.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("quiver")
    );
    assert!(info.capabilities.tools.is_some() && info.capabilities.resources.is_some());

    let tools = anon.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    for want in [
        "search",
        "get_entry",
        "get_tool_schema",
        "select_tool",
        "suggest_skills",
        "resolve",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let search = tools.iter().find(|t| t.name == "search").unwrap();
    assert!(
        search.input_schema["properties"]["kind"].is_object(),
        "{search:?}"
    );

    // Search finds the public tool, never the private one.
    let r = call(
        &anon,
        "search",
        json!({"query": "comma separated values", "kind": "tool"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let v = structured(&r);
    let hits: Vec<&str> = v["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap())
        .collect();
    assert_eq!(hits, ["csv.parse"], "{v}");
    assert_eq!(v["hits"][0]["namespace"], "acme");
    assert_eq!(v["hits"][0]["version"], "1.0.0");
    assert_eq!(v["hits"][0]["uri"], "quiver://tool/acme/csv.parse");

    // The schemas of a tool's latest version.
    let r = call(
        &anon,
        "get_tool_schema",
        json!({"namespace": "acme", "name": "csv.parse"}),
    )
    .await;
    let v = structured(&r);
    assert_eq!(v["version"], "1.0.0", "{v}");
    assert_eq!(v["input_schema"]["required"], json!(["text"]), "{v}");
    assert_eq!(v["output_schema"]["properties"]["rows"]["type"], "array");

    // The entry as a resource.
    let res = anon
        .read_resource(ReadResourceRequestParams::new(
            "quiver://tool/acme/csv.parse",
        ))
        .await
        .unwrap();
    let text = match &res.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["entry"]["name"], "csv.parse");
    assert_eq!(
        v["latest"]["manifest"]["input_schema"]["required"],
        json!(["text"])
    );

    // A private entry is not found for an anonymous caller: a tool error, not a crash.
    for (name, args) in [
        (
            "get_entry",
            json!({"kind": "tool", "namespace": "secretco", "name": "csv.internal"}),
        ),
        (
            "get_tool_schema",
            json!({"namespace": "secretco", "name": "csv.internal"}),
        ),
    ] {
        let r = call(&anon, name, args).await;
        assert_eq!(r.is_error, Some(true), "{name}: {r:?}");
        assert_eq!(
            structured(&r)["error"]["code"],
            "not_found",
            "{name}: {r:?}"
        );
    }
    assert!(anon
        .read_resource(ReadResourceRequestParams::new(
            "quiver://tool/secretco/csv.internal"
        ))
        .await
        .is_err());
    // Bad arguments are a tool error naming the problem.
    let r = call(
        &anon,
        "get_entry",
        json!({"kind": "gadget", "namespace": "a", "name": "b"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true));
    assert_eq!(structured(&r)["error"]["code"], "invalid_input", "{r:?}");
    // The session still answers after those.
    let r = call(
        &anon,
        "resolve",
        json!({"kind": "tool", "namespace": "acme", "name": "csv.parse"}),
    )
    .await;
    assert_eq!(structured(&r)["version"], "1.0.0", "{r:?}");
    anon.cancel().await.unwrap();

    // With a token that may read it, the private entry is there, in search too.
    let admin = connect(&app, Some(ADMIN)).await;
    let r = call(
        &admin,
        "get_entry",
        json!({"kind": "tool", "namespace": "secretco", "name": "csv.internal"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let v = structured(&r);
    assert_eq!(v["entry"]["visibility"], "private");
    assert_eq!(
        v["latest"]["manifest"]["input_schema"]["required"],
        json!(["text"])
    );
    let r = call(
        &admin,
        "get_tool_schema",
        json!({"namespace": "secretco", "name": "csv.internal"}),
    )
    .await;
    assert_eq!(
        structured(&r)["input_schema"]["required"],
        json!(["text"]),
        "{r:?}"
    );
    let r = call(&admin, "search", json!({"query": "comma separated values"})).await;
    assert_eq!(structured(&r)["total"], 2, "{r:?}");
    admin.cancel().await.unwrap();

    // A token that does not resolve is refused before any MCP, as by the API.
    let res = app
        .http
        .post(app.url("/mcp"))
        .bearer_auth("qvt_not_a_token")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let body: Value = res.json().await.unwrap();
    assert_envelope(&body, "unauthorized", None);
}

#[tokio::test]
async fn the_setup_page_shows_how_to_connect() {
    let app = TestApp::start().await;
    let res = app.http.get(app.url("/mcp-setup")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let html = res
        .text()
        .await
        .unwrap()
        .replace("&quot;", "\"")
        .replace("&#x2f;", "/");
    // This server's endpoint, by the address the browser used, in a config to copy.
    let endpoint = app.url("/mcp");
    assert!(html.contains(&format!("\"url\": \"{endpoint}\"")), "{html}");
    assert!(html.contains("\"mcpServers\""), "{html}");
    assert!(html.contains("\"command\": \"quiver\""), "{html}");
    for tool in ["search", "get_tool_schema", "select_tool"] {
        assert!(
            html.contains(&format!("<code>{tool}</code>")),
            "{tool}: {html}"
        );
    }
    // The API page links to it.
    let api = app
        .http
        .get(app.url("/api"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(api.contains("href=\"/mcp-setup\""));
}

/// MCP requests count as reads for the rate limits, like the API's reads.
#[tokio::test]
async fn mcp_requests_count_as_reads() {
    let mut limits = quiver_server::limits::RateLimits::off();
    limits
        .apply("read=2/min")
        .expect("a valid limit specification");
    let app = TestApp::builder().limits(limits).start().await;
    let post = || {
        app.http
            .post(app.url("/mcp"))
            .header("accept", "application/json, text/event-stream")
            .json(
                &json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-06-18", "capabilities": {},
                "clientInfo": {"name": "limit-test", "version": "1"}}}),
            )
            .send()
    };
    for _ in 0..2 {
        let res = post().await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = post().await.unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}
