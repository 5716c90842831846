//! How answers may be cached and read from other origins: `Cache-Control` and `Vary` on
//! every answer, so that a CDN or caching proxy in front of quiver serves public answers
//! from its cache and never serves one caller's answer to another; and CORS, off unless
//! origins are configured.
//!
//! The caching rules, applied after the handler (a handler's own `Cache-Control` is kept,
//! except that it is never `public` for a caller with credentials):
//! - every answer varies by `Authorization` and `Cookie` (who is asking);
//! - a `GET`/`HEAD` from a caller without credentials (no bearer token, no session
//!   cookie) answered 200 or 304 is `public, max-age=N` (N configurable, default 60 s)
//!   with its `ETag` to revalidate; the change feed and health checks are `no-cache`;
//! - any answer to a caller with credentials is `private, no-store`, as are errors and
//!   the answers to writes.
//!
//! CORS: `--cors-origins` lists the origins allowed (or `*` for any); preflights are
//! answered before routing. Credentials (cookies) are never allowed across origins: a
//! browser client from another origin sends its bearer token in `Authorization`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, COOKIE, VARY};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::session::SESSION_COOKIE;

/// The HTTP caching and cross-origin settings of a server.
#[derive(Debug, Clone)]
pub struct HttpPolicy {
    /// Seconds a shared cache may serve a public answer before revalidating it (0: always
    /// revalidate).
    pub public_max_age: u64,
    /// Origins allowed to call the API from a browser: empty (the default) for none,
    /// `*` for any.
    pub cors_origins: Vec<String>,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            public_max_age: 60,
            cors_origins: vec![],
        }
    }
}

impl HttpPolicy {
    /// Refuse origins that are not `*` or `scheme://host[:port]`.
    pub fn check(&self) -> Result<(), String> {
        for o in &self.cors_origins {
            if o == "*" {
                if self.cors_origins.len() > 1 {
                    return Err("cors origins: `*` stands alone".into());
                }
                continue;
            }
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && o.split_once("://").is_some_and(|(_, host)| {
                    !host.is_empty() && !host.contains('/') && !host.contains(char::is_whitespace)
                })
                && HeaderValue::from_str(o).is_ok();
            if !ok {
                return Err(format!(
                    "cors origin {o:?}: give scheme://host[:port] (no path, no trailing slash) or *"
                ));
            }
        }
        Ok(())
    }

    /// The CORS layer, when origins are configured.
    pub fn cors(&self) -> Option<CorsLayer> {
        if self.cors_origins.is_empty() {
            return None;
        }
        let origins = if self.cors_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(
                self.cors_origins
                    .iter()
                    .filter_map(|o| HeaderValue::from_str(o).ok()),
            )
        };
        let h = |s: &'static str| HeaderName::from_static(s);
        Some(
            CorsLayer::new()
                .allow_origin(origins)
                .allow_methods([
                    Method::GET,
                    Method::HEAD,
                    Method::POST,
                    Method::PUT,
                    Method::PATCH,
                    Method::DELETE,
                ])
                .allow_headers([
                    AUTHORIZATION,
                    axum::http::header::CONTENT_TYPE,
                    axum::http::header::IF_NONE_MATCH,
                    h("last-event-id"),
                    h("mcp-session-id"),
                    h("mcp-protocol-version"),
                ])
                .expose_headers([
                    axum::http::header::ETAG,
                    axum::http::header::LOCATION,
                    axum::http::header::RETRY_AFTER,
                    h("x-request-id"),
                    h("x-content-sha256"),
                    h("ratelimit-limit"),
                    h("ratelimit-remaining"),
                    h("ratelimit-reset"),
                    h("mcp-session-id"),
                ])
                // Never `allow_credentials`: cookies stay on quiver's own origin.
                .allow_credentials(false)
                .max_age(Duration::from_secs(600)),
        )
    }
}

/// Whether the request carries credentials: a bearer token or a session cookie.
fn credentialed(req: &Request) -> bool {
    req.headers().contains_key(AUTHORIZATION)
        || req
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .any(|c| c.trim_start().starts_with(&format!("{SESSION_COOKIE}=")))
}

/// Paths whose answers change without their URL changing, faster than any max-age.
fn uncacheable(path: &str) -> bool {
    path.starts_with("/api/v1/changes") || matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Set `Cache-Control` and `Vary` by the rules in the module's documentation.
pub async fn cache_headers(
    State(policy): State<Arc<HttpPolicy>>,
    req: Request,
    next: Next,
) -> Response {
    let readable = matches!(*req.method(), Method::GET | Method::HEAD);
    let credentialed = credentialed(&req);
    let uncacheable = uncacheable(req.uri().path());
    let mut resp = next.run(req).await;
    let status = resp.status();
    let headers = resp.headers_mut();
    // One `Vary` line (some caches read only one), with who is asking added.
    let mut vary: Vec<String> = headers
        .get_all(VARY)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    for v in ["authorization", "cookie"] {
        if !vary.iter().any(|h| h.eq_ignore_ascii_case(v) || h == "*") {
            vary.push(v.into());
        }
    }
    if let Ok(v) = HeaderValue::from_str(&vary.join(", ")) {
        headers.insert(VARY, v);
    }
    let own = headers
        .get(CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let value = match own {
        Some(own) if credentialed && own.contains("public") => {
            // A credentialed caller's answer is theirs alone, whatever the handler said.
            own.replace("public", "private")
        }
        Some(own) => own,
        None if !readable || credentialed => "private, no-store".into(),
        None if !(status == StatusCode::OK || status == StatusCode::NOT_MODIFIED) => {
            "no-store".into()
        }
        None if uncacheable || policy.public_max_age == 0 => "no-cache".into(),
        None => format!("public, max-age={}", policy.public_max_age),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(CACHE_CONTROL, v);
    }
    resp
}
