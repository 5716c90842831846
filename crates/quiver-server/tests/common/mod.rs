//! The one harness of the HTTP API tests: [`TestApp`], a registry served on a loopback
//! port, built with [`TestApp::builder`] (backend, admin token, users and tokens, job
//! worker, rate limits, engine configuration), and [`Api`], a client that sends JSON with
//! an optional bearer token. The engine is constructed in one place only,
//! [`open_registry`].
#![allow(dead_code)] // each test binary uses its own part of it

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use quiver_engine::{EngineConfig, Registry};
use quiver_postgres::testing::{test_url, TestSchema};
use quiver_server::conn::ConnectionLimits;
use quiver_server::limits::RateLimits;
use quiver_server::AppState;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The password of every user the tests register.
pub const PASSWORD: &str = "correct horse battery staple";

/// Where a test's registry keeps its data.
#[derive(Clone)]
pub enum Backend {
    /// The embedded store in the app's data directory.
    Sqlite,
    /// A PostgreSQL schema (dropped when the last app holding it is dropped); several apps
    /// may share one, as nodes of one registry do.
    Postgres(Arc<TestSchema>),
}

/// The one place the tests construct an engine: a registry over `backend` with its
/// search index (and, for SQLite, its store) in `dir`.
pub async fn open_registry(dir: &Path, config: EngineConfig, backend: &Backend) -> Arc<Registry> {
    let db = match backend {
        Backend::Sqlite => quiver_backends::open(quiver_backends::Location::in_data_dir(dir), None)
            .await
            .unwrap(),
        Backend::Postgres(schema) => schema.database().await.unwrap(),
    };
    Registry::open(db, config).await.unwrap()
}

type Tweak = Box<dyn FnOnce(&mut EngineConfig) + Send>;

/// How a [`TestApp`] runs. The defaults: the embedded store, no admin token (so writes
/// are open until a user registers), no job worker, no rate limits, a 50 ms feed poll.
pub struct TestAppBuilder {
    admin_token: Option<String>,
    worker: bool,
    limits: Option<RateLimits>,
    connections: ConnectionLimits,
    http: quiver_server::http_policy::HttpPolicy,
    backend: Backend,
    tweaks: Vec<Tweak>,
    users: Vec<String>,
    tokens: Vec<(String, String, Vec<String>)>,
}

impl TestAppBuilder {
    /// The bootstrap admin's token; with one, writes are closed to strangers.
    pub fn admin_token(mut self, token: &str) -> Self {
        self.admin_token = Some(token.to_string());
        self
    }

    /// Run the job worker (quality gates, index rebuilds).
    pub fn worker(mut self) -> Self {
        self.worker = true;
        self
    }

    /// Serve with these limits (and their `trust_forwarded_for`).
    pub fn limits(mut self, limits: RateLimits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Serve under these caching and cross-origin rules (the defaults otherwise).
    pub fn http(mut self, http: quiver_server::http_policy::HttpPolicy) -> Self {
        self.http = http;
        self
    }

    /// Serve under these connection limits (the defaults otherwise).
    pub fn connections(mut self, connections: ConnectionLimits) -> Self {
        self.connections = connections;
        self
    }

    /// Adjust the engine's configuration after the defaults.
    pub fn config(mut self, tweak: impl FnOnce(&mut EngineConfig) + Send + 'static) -> Self {
        self.tweaks.push(Box::new(tweak));
        self
    }

    /// Keep the store in a fresh schema of the PostgreSQL named by
    /// `QUIVER_TEST_POSTGRES_URL`; `None` (after a loud `SKIPPED` line) without it:
    /// `let Some(b) = TestApp::builder().postgres() else { return };`.
    pub fn postgres(self) -> Option<Self> {
        let url = test_url()?;
        Some(self.on_schema(Arc::new(TestSchema::new(&url))))
    }

    /// Keep the store in `schema`, which other apps may share (nodes of one registry).
    pub fn on_schema(mut self, schema: Arc<TestSchema>) -> Self {
        self.backend = Backend::Postgres(schema);
        self
    }

    /// Register `name` (with [`PASSWORD`]) once the app runs; its session token is
    /// [`TestApp::session`].
    pub fn user(mut self, name: &str) -> Self {
        self.users.push(name.to_string());
        self
    }

    /// Create the API token `name` with `scopes` for `user` (registered with
    /// [`TestAppBuilder::user`]) once the app runs; the secret is [`TestApp::token`].
    pub fn token(mut self, user: &str, name: &str, scopes: &[&str]) -> Self {
        self.tokens.push((
            user.to_string(),
            name.to_string(),
            scopes.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    pub async fn start(self) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = EngineConfig::new(dir.path());
        config.open_writes = self.admin_token.is_none();
        config.poll_interval = Duration::from_millis(50);
        for tweak in self.tweaks {
            tweak(&mut config);
        }
        let registry = open_registry(dir.path(), config, &self.backend).await;
        let follower = registry.spawn_follower();
        let worker = self.worker.then(|| registry.spawn_worker());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = AppState {
            registry: registry.clone(),
            admin_token: self.admin_token.clone(),
            http: std::sync::Arc::new(self.http.clone()),
        };
        let limits = self.limits.unwrap_or_else(RateLimits::off);
        let connections = self.connections;
        let server = tokio::spawn(async move {
            quiver_server::serve_limited(
                listener,
                state,
                limits,
                connections,
                std::future::pending(),
            )
            .await
            .unwrap();
        });
        let mut app = TestApp {
            api: Api::new(base),
            registry,
            dir,
            admin_token: self.admin_token,
            sessions: HashMap::new(),
            tokens: HashMap::new(),
            backend: self.backend,
            _server: server,
            _follower: follower,
            _worker: worker,
        };
        for name in self.users {
            let session = app.user(&name).await;
            app.sessions.insert(name, session);
        }
        for (user, name, scopes) in self.tokens {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let session = app.session(&user).to_string();
            let secret = app.create_token(&session, &name, &scopes, None).await;
            app.tokens.insert(name, secret);
        }
        app
    }
}

/// A registry in a fresh data directory, following its feed, served on a free loopback
/// port. Derefs to its client, so tests call `app.get(...)`, `app.user(...)`.
pub struct TestApp {
    pub api: Api,
    pub registry: Arc<Registry>,
    pub dir: tempfile::TempDir,
    pub admin_token: Option<String>,
    sessions: HashMap<String, String>,
    tokens: HashMap<String, String>,
    backend: Backend,
    _server: tokio::task::JoinHandle<()>,
    _follower: tokio::task::JoinHandle<()>,
    _worker: Option<quiver_engine::store::worker::WorkerHandle>,
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            admin_token: None,
            worker: false,
            limits: None,
            connections: ConnectionLimits::default(),
            http: Default::default(),
            backend: Backend::Sqlite,
            tweaks: Vec::new(),
            users: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// The default app: the embedded store, open writes, no worker, no limits.
    pub async fn start() -> TestApp {
        TestApp::builder().start().await
    }

    /// The session token of a user registered by the builder.
    pub fn session(&self, user: &str) -> &str {
        self.sessions
            .get(user)
            .unwrap_or_else(|| panic!("{user} was not registered by the builder"))
    }

    /// The secret of an API token created by the builder.
    pub fn token(&self, name: &str) -> &str {
        self.tokens
            .get(name)
            .unwrap_or_else(|| panic!("no token {name} was created by the builder"))
    }

    /// The PostgreSQL schema the app's store lives in, if it does.
    pub fn schema(&self) -> Option<&Arc<TestSchema>> {
        match &self.backend {
            Backend::Postgres(s) => Some(s),
            Backend::Sqlite => None,
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

    /// The full URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// One request; `token` is sent as a bearer token when given.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut rb = self.http.request(method, self.url(path));
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

    pub async fn delete(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, token, Some(body)).await
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

    /// Create an API token with the session `session`: its secret.
    pub async fn create_token(
        &self,
        session: &str,
        name: &str,
        scopes: &[&str],
        pattern: Option<&str>,
    ) -> String {
        let (s, b) = self
            .post(
                "/api/v1/tokens",
                Some(session),
                json!({"name": name, "scopes": scopes, "pattern": pattern}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "token {name}: {b}");
        b["token"].as_str().unwrap().to_string()
    }
}

/// The one error envelope with `code`, a message, and (when given) `field`.
pub fn assert_envelope(body: &Value, code: &str, field: Option<&str>) {
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
