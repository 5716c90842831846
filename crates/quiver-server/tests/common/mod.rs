//! What the HTTP API tests share: a server on a loopback port over a registry, and a
//! client that sends JSON with an optional bearer token and registers users.
#![allow(dead_code)] // each test binary uses its own part of it

use std::sync::Arc;

use quiver_engine::Registry;
use quiver_server::AppState;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery staple";

/// Serve `registry` on a free loopback port, with `admin_token` as the bootstrap admin:
/// the base URL and the server task.
pub async fn serve(
    registry: Arc<Registry>,
    admin_token: Option<&str>,
) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let state = AppState {
        registry,
        admin_token: admin_token.map(str::to_string),
    };
    let server = tokio::spawn(async move {
        quiver_server::serve(listener, state, std::future::pending())
            .await
            .unwrap();
    });
    (base, server)
}

/// A client of one server.
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: String) -> Api {
        Api {
            base,
            http: reqwest::Client::new(),
        }
    }

    /// One request; `token` is sent as a bearer token when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    /// Register `name` (with [`PASSWORD`]) and sign in: the session token.
    pub async fn user(&self, name: &str) -> String {
        let (s, b) = self
            .post(
                "/api/v1/users",
                None,
                json!({"name": name, "email": format!("{name}@example.org"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "registering {name}: {b}");
        self.login(name).await
    }

    /// Sign in with [`PASSWORD`]: the session token.
    pub async fn login(&self, name: &str) -> String {
        let (s, b) = self
            .post(
                "/api/v1/session",
                None,
                json!({"name": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "login {name}: {b}");
        b["token"].as_str().unwrap().to_string()
    }
}
