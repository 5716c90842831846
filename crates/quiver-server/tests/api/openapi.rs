//! The OpenAPI document: every operation documented and routed.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::entries::start;

#[tokio::test]
async fn openapi_documents_every_operation() {
    let app = start().await;
    let (s, doc) = app.get("/api/v1/openapi.json", None).await;
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
    let (s, schema) = app.get("/api/v1/kinds/recipe/schema", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(schema["title"], "Recipe manifest");
}
