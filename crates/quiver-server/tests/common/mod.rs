//! What the HTTP API tests share: a registry served on a loopback port ([`App`]), and a
//! client that sends JSON with an optional bearer token and registers users ([`Api`]).
#![allow(dead_code)] // each test binary uses its own part of it

use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{EngineConfig, Registry};
use quiver_server::limits::RateLimits;
use quiver_server::AppState;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub const PASSWORD: &str = "correct horse battery staple";

/// How a test server runs. The default: the embedded store, no admin token (so writes are
/// open until a user registers), no job worker, no rate limits.
#[derive(Default)]
pub struct Options<'a> {
    /// The bootstrap admin's token; with one, writes are closed to strangers.
    pub admin_token: Option<&'a str>,
    /// Run the job worker (quality gates, index rebuilds).
    pub worker: bool,
    /// Serve with these limits (and their `trust_forwarded_for`); none: no limits.
    pub limits: Option<RateLimits>,
    /// Keep the store in a fresh schema of this PostgreSQL (dropped with the app).
    pub postgres: Option<&'a str>,
}

/// A registry in a fresh data directory, following its feed, served on a free loopback
/// port. Derefs to its client, so tests call `app.get(...)`, `app.user(...)`.
pub struct App {
    pub api: Api,
    pub registry: Arc<Registry>,
    pub dir: tempfile::TempDir,
    _server: tokio::task::JoinHandle<()>,
    _follower: tokio::task::JoinHandle<()>,
    _worker: Option<quiver_engine::store::worker::WorkerHandle>,
    _schema: Option<quiver_postgres::testing::TestSchema>,
}

impl std::ops::Deref for App {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl App {
    /// Start one; `tweak` adjusts the engine's configuration after the defaults (open
    /// writes only without an admin token, a 50 ms feed poll).
    pub async fn start(opts: Options<'_>, tweak: impl FnOnce(&mut EngineConfig)) -> App {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.open_writes = opts.admin_token.is_none();
        config.poll_interval = Duration::from_millis(50);
        tweak(&mut config);
        let (db, schema) = match opts.postgres {
            None => {
                let location = quiver_backends::Location::in_data_dir(dir.path());
                (quiver_backends::open(location, None).await.unwrap(), None)
            }
            Some(url) => {
                let schema = quiver_postgres::testing::TestSchema::new(url);
                (schema.database().await.unwrap(), Some(schema))
            }
        };
        let registry = Registry::open(db, config).await.unwrap();
        let follower = registry.spawn_follower();
        let worker = opts.worker.then(|| registry.spawn_worker());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState {
            registry: registry.clone(),
            admin_token: opts.admin_token.map(str::to_string),
        };
        let limits = opts.limits.unwrap_or_else(RateLimits::off);
        let server = tokio::spawn(async move {
            quiver_server::serve_with(listener, state, limits, std::future::pending())
                .await
                .unwrap();
        });
        App {
            api: Api::new(base),
            registry,
            dir,
            _server: server,
            _follower: follower,
            _worker: worker,
            _schema: schema,
        }
    }
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
