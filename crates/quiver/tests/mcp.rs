//! `quiver mcp`: the real binary as an MCP server on standard input and output, driven by
//! the SDK's client over a child process. Over the demo data and a private tool of a
//! user's namespace: the handshake, the tool list, search, a tool's schemas; the private
//! tool is not found anonymously and found with its owner's token; an unknown token is
//! refused at start.

use std::path::Path;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

mod common;
use common::{Server, BIN, PASSWORD};

const ADMIN: &str = "root-for-mcp-tests";

fn command(data_dir: &Path, token: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.arg("mcp")
        .arg("--data-dir")
        .arg(data_dir)
        .env("QUIVER_LOG", "warn")
        .env_remove("QUIVER_TOKEN");
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd
}

async fn connect(data_dir: &Path, token: Option<&str>) -> RunningService<RoleClient, ()> {
    let transport = TokioChildProcess::new(command(data_dir, token)).expect("spawn quiver mcp");
    ().serve(transport).await.expect("the MCP session starts")
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

/// The demo data, and olga's private tool `olga/ledger.sum`: olga's session token.
async fn store_with_a_private_tool(dir: &Path) -> String {
    let server = Server::start(dir, &["--demo", "--admin-token", ADMIN]);
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
    let r = http
        .post(server.url("/api/v1/namespaces"))
        .bearer_auth(&olga)
        .json(&json!({"name": "ledgerco"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .post(server.url("/api/v1/entries"))
        .bearer_auth(&olga)
        .json(
            &json!({"kind": "tool", "namespace": "ledgerco", "name": "ledger.sum",
                      "visibility": "private", "description": "Sum a ledger's rows"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let r = http
        .post(server.url("/api/v1/entries/tool/ledgerco/ledger.sum/versions"))
        .bearer_auth(&olga)
        .json(
            &json!({"version": "0.1.0", "manifest": {"input_schema": {"type": "object",
            "properties": {"rows": {"type": "array"}}, "required": ["rows"]}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    server.terminate();
    olga
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_reads_the_local_store_over_stdio() {
    let dir = tempfile::tempdir().unwrap();
    let olga = store_with_a_private_tool(dir.path()).await;

    let anon = connect(dir.path(), None).await;
    let info = anon.peer_info().expect("the server introduced itself");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("quiver")
    );
    let tools = anon.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert!(
        names.contains(&"search") && names.contains(&"get_tool_schema"),
        "{names:?}"
    );

    // The demo's web fetcher, by what it does.
    let r = call(
        &anon,
        "search",
        json!({"query": "fetch a web page readable text", "kind": "tool", "limit": 3}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    let v = structured(&r);
    assert_eq!(v["hits"][0]["namespace"], "tpmjs", "{v}");
    assert_eq!(v["hits"][0]["name"], "web.fetchText", "{v}");

    let r = call(
        &anon,
        "get_tool_schema",
        json!({"namespace": "tpmjs", "name": "web.fetchText"}),
    )
    .await;
    let v = structured(&r);
    assert_eq!(v["input_schema"]["required"], json!(["url"]), "{v}");
    assert_eq!(v["output_schema"]["properties"]["title"]["type"], "string");

    // Selection, skill suggestions and resolution answer from the demo's data.
    let r = call(
        &anon,
        "select_tool",
        json!({"need": "capture network packets", "variables": {"packet_count": 5000}}),
    )
    .await;
    let v = structured(&r);
    assert_eq!(v["capability"], "packet_capture", "{v}");
    assert_eq!(v["candidates"][0]["tool"]["name"], "tcpdump", "{v}");
    let r = call(&anon, "suggest_skills", json!({"packages": ["react"]})).await;
    let v = structured(&r);
    assert_eq!(v["skills"][0]["name"], "react-best-practices", "{v}");
    let r = call(
        &anon,
        "resolve",
        json!({"kind": "tool", "namespace": "tpmjs", "name": "text.csvParse", "range": "^1"}),
    )
    .await;
    assert_eq!(structured(&r)["version"], "1.1.0", "{r:?}");
    let templates = anon.list_all_resource_templates().await.unwrap();
    assert_eq!(
        templates[0].uri_template,
        "quiver://{kind}/{namespace}/{name}"
    );

    // Anonymous: the private tool is not found, and search does not show it.
    let r = call(
        &anon,
        "get_tool_schema",
        json!({"namespace": "ledgerco", "name": "ledger.sum"}),
    )
    .await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    assert_eq!(structured(&r)["error"]["code"], "not_found");
    let r = call(&anon, "search", json!({"query": "ledger"})).await;
    assert_eq!(structured(&r)["total"], 0, "{r:?}");
    anon.cancel().await.unwrap();

    // As its owner: found.
    let owner = connect(dir.path(), Some(&olga)).await;
    let r = call(
        &owner,
        "get_tool_schema",
        json!({"namespace": "ledgerco", "name": "ledger.sum"}),
    )
    .await;
    assert_eq!(r.is_error, Some(false), "{r:?}");
    assert_eq!(structured(&r)["input_schema"]["required"], json!(["rows"]));
    let r = call(&owner, "search", json!({"query": "ledger"})).await;
    assert_eq!(structured(&r)["hits"][0]["name"], "ledger.sum", "{r:?}");
    owner.cancel().await.unwrap();

    // A token the store does not know: the command fails, saying so.
    let out = command(dir.path(), Some("qvt_not_a_token"))
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid token of this store"), "{err}");
}
