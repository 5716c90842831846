//! Rate limits: a middleware that counts each API request against its route class and
//! answers 429 with `Retry-After` once a client is over the class's limit.
//!
//! - **Classes.** `search` (`GET /api/v1/search`), `download` (`GET` of one version of an
//!   entry: counted per client *and entry*), `registration` (`POST` of a new entry,
//!   namespace or account: counted per *user* when the token resolves to one), `write`
//!   (every other `POST`/`PUT`/`PATCH`/`DELETE`) and `read` (every other `GET`). Health,
//!   readiness, metrics and the device page are not limited. Each route group of the
//!   router ([`crate::api`]) carries its class as a layer; an unknown path under
//!   `/api/v1` counts as a read (`GET`) or a write.
//! - **Who is counted.** A bearer token (hashed: the counters never hold a secret), else
//!   the client address of the connection — IPv6 by its /64, since one host owns a whole
//!   /64 — hashed too. `X-Forwarded-For` is believed only when configured
//!   ([`RateLimits::trust_forwarded_for`]), and then its last address (the one the
//!   nearest proxy saw) counts.
//! - **Where counts live.** Wherever the database keeps them
//!   ([`quiver_store::Database::rate_limiter`]): in PostgreSQL, so every node shares them;
//!   in this process on SQLite ([`quiver_store::MemoryLimiter`]).
//!   Fixed windows aligned to the epoch; see [`quiver_store::limits`].
//! - **Failing open.** If the counters cannot be reached, the request is served and the
//!   failure logged: a limiter outage must not become an API outage.
//! - **Headers.** Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`
//!   and `RateLimit-Reset` (seconds); a 429 also carries `Retry-After` (seconds) and the
//!   error envelope with code `rate_limited`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, RawPathParams, Request, State};
use axum::http::header::{HeaderName, AUTHORIZATION, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::RequestExt as _;
use quiver_engine::Caller;
use quiver_store::{RateLimiter, Verdict};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, Code};
use crate::AppState;

/// What a request is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RouteClass {
    Read,
    Search,
    Write,
    Registration,
    Download,
}

impl RouteClass {
    pub const ALL: [RouteClass; 5] = [
        RouteClass::Read,
        RouteClass::Search,
        RouteClass::Write,
        RouteClass::Registration,
        RouteClass::Download,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RouteClass::Read => "read",
            RouteClass::Search => "search",
            RouteClass::Write => "write",
            RouteClass::Registration => "registration",
            RouteClass::Download => "download",
        }
    }
}

/// How the middleware finds a request's class.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Classify {
    /// The class of the route group the layer is on.
    Fixed(RouteClass),
    /// A path no route matched: under `/api/v1`, a read (`GET`, `HEAD`, `OPTIONS`) or a
    /// write; elsewhere not limited.
    Unmatched,
}

impl Classify {
    fn class(self, method: &Method, path: &str) -> Option<RouteClass> {
        match self {
            Classify::Fixed(c) => Some(c),
            Classify::Unmatched if path.starts_with("/api/v1/") || path == "/api/v1" => Some(
                if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
                    RouteClass::Read
                } else {
                    RouteClass::Write
                },
            ),
            Classify::Unmatched => None,
        }
    }
}

impl fmt::Display for RouteClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RouteClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        RouteClass::ALL
            .into_iter()
            .find(|c| c.as_str() == s.trim())
            .ok_or_else(|| {
                format!("'{s}' is not a route class (read, search, write, registration, download)")
            })
    }
}

/// At most `requests` requests per `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub requests: u64,
    pub window: Duration,
}

impl Limit {
    pub const fn new(requests: u64, window: Duration) -> Limit {
        Limit { requests, window }
    }

    pub const fn per_second(requests: u64) -> Limit {
        Limit::new(requests, Duration::from_secs(1))
    }

    pub const fn per_minute(requests: u64) -> Limit {
        Limit::new(requests, Duration::from_secs(60))
    }

    pub const fn per_hour(requests: u64) -> Limit {
        Limit::new(requests, Duration::from_secs(3600))
    }

    pub const fn per_day(requests: u64) -> Limit {
        Limit::new(requests, Duration::from_secs(86_400))
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.window.as_secs();
        match s {
            1 => write!(f, "{}/s", self.requests),
            60 => write!(f, "{}/min", self.requests),
            3600 => write!(f, "{}/hour", self.requests),
            86_400 => write!(f, "{}/day", self.requests),
            _ => write!(f, "{}/{}s", self.requests, s),
        }
    }
}

/// `<n>/<window>`: `100/min`, `20/s`, `5000/hour`, `50/day`, or a multiple: `10/30s`,
/// `100/5min`, `1000/2h`.
impl FromStr for Limit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("'{s}' is not a limit like 100/min, 20/s, 10/30s, 5000/hour or 50/day");
        let (n, w) = s.trim().split_once('/').ok_or_else(bad)?;
        let requests: u64 = n.trim().parse().map_err(|_| bad())?;
        let w = w.trim();
        let digits = w.chars().take_while(char::is_ascii_digit).count();
        let count: u64 = if digits == 0 {
            1
        } else {
            w[..digits].parse().map_err(|_| bad())?
        };
        let unit = match &w[digits..] {
            "s" | "sec" | "second" | "seconds" => 1,
            "m" | "min" | "minute" | "minutes" => 60,
            "h" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(bad());
        }
        Ok(Limit::new(requests, Duration::from_secs(count * unit)))
    }
}

/// Rate limits per route class (`None`: that class is not limited), and whether to believe
/// `X-Forwarded-For`.
///
/// [`Default`] holds limits generous for a person or an agent and tight for a scraper;
/// [`RateLimits::off`] limits nothing. [`FromStr`] reads `off`, or comma-separated
/// `class=limit` pairs applied over the defaults (`search=60/min,download=off`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimits {
    pub read: Option<Limit>,
    pub search: Option<Limit>,
    pub write: Option<Limit>,
    /// New entries, namespaces and accounts, per user (per address when anonymous).
    pub registration: Option<Limit>,
    /// Versions fetched, per client and entry.
    pub download: Option<Limit>,
    /// Count the last address of `X-Forwarded-For` instead of the connection's address.
    /// Only behind a proxy that sets it: otherwise a client picks its own address.
    pub trust_forwarded_for: bool,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            read: Some(Limit::per_minute(1200)),
            search: Some(Limit::per_minute(300)),
            write: Some(Limit::per_minute(120)),
            registration: Some(Limit::per_day(100)),
            download: Some(Limit::per_hour(300)),
            trust_forwarded_for: false,
        }
    }
}

impl RateLimits {
    /// No limits at all.
    pub fn off() -> Self {
        RateLimits {
            read: None,
            search: None,
            write: None,
            registration: None,
            download: None,
            trust_forwarded_for: false,
        }
    }

    pub fn get(&self, class: RouteClass) -> Option<Limit> {
        match class {
            RouteClass::Read => self.read,
            RouteClass::Search => self.search,
            RouteClass::Write => self.write,
            RouteClass::Registration => self.registration,
            RouteClass::Download => self.download,
        }
    }

    pub fn set(&mut self, class: RouteClass, limit: Option<Limit>) -> &mut Self {
        *match class {
            RouteClass::Read => &mut self.read,
            RouteClass::Search => &mut self.search,
            RouteClass::Write => &mut self.write,
            RouteClass::Registration => &mut self.registration,
            RouteClass::Download => &mut self.download,
        } = limit;
        self
    }

    /// Set one class from `class=limit` (`search=60/min`; `download=off` for no limit).
    pub fn apply(&mut self, spec: &str) -> Result<&mut Self, String> {
        let (class, limit) = spec
            .split_once('=')
            .ok_or_else(|| format!("'{spec}' is not class=limit (for example search=60/min)"))?;
        let class: RouteClass = class.parse()?;
        let limit = match limit.trim() {
            "off" | "none" => None,
            l => Some(l.parse()?),
        };
        Ok(self.set(class, limit))
    }

    fn is_off(&self) -> bool {
        RouteClass::ALL.iter().all(|c| self.get(*c).is_none())
    }
}

impl FromStr for RateLimits {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "off" {
            return Ok(RateLimits::off());
        }
        let mut limits = RateLimits::default();
        for spec in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            limits.apply(spec)?;
        }
        Ok(limits)
    }
}

/// The middleware's state: the limits, where the counts live, and the app (to resolve a
/// token to its user for registrations).
#[derive(Clone)]
pub(crate) struct Limiting {
    limits: Arc<RateLimits>,
    counter: Arc<dyn RateLimiter>,
    app: AppState,
}

impl Limiting {
    /// `None` when nothing is limited (no middleware at all).
    pub(crate) fn new(app: &AppState, limits: RateLimits) -> Option<Limiting> {
        if limits.is_off() {
            return None;
        }
        let counter = app.registry.database().rate_limiter.clone();
        Some(Limiting {
            limits: Arc::new(limits),
            counter,
            app: app.clone(),
        })
    }
}

fn hashed(kind: &str, value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    format!("{kind}:{}", &hex::encode(digest)[..32])
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The address a request counts against: the connection's, or the last `X-Forwarded-For`
/// address when trusted. IPv6 addresses count by their /64.
fn client_address(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    let forwarded = trust_forwarded_for
        .then(|| {
            req.headers()
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                // Only the last address is the proxy's; an unreadable one is not replaced
                // by an earlier (client-written) one.
                .and_then(|a| a.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    let ip = forwarded.or_else(|| {
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
    })?;
    Some(match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
        v4 => v4,
    })
}

/// Who a request counts against in `class`. (Takes the request's parts rather than the
/// request: a `&Request` held across an await would make the future not `Send`.)
async fn subject(
    l: &Limiting,
    token: Option<String>,
    address: Option<IpAddr>,
    entry: Option<String>,
    class: RouteClass,
) -> String {
    let who = match token.as_deref() {
        Some(token) => {
            let mut who = hashed("token", token);
            if class == RouteClass::Registration && !l.app.is_admin_token(token) {
                // Registrations count per user, whichever of their tokens is used. A token
                // that does not resolve is refused by the route anyway; it counts as itself.
                if let Ok(Caller::Token { account, .. } | Caller::User(account)) =
                    l.app.registry.resolve_token(token).await
                {
                    who = format!("user:{}", account.id);
                }
            }
            who
        }
        None => match address {
            Some(ip) => hashed("addr", &ip.to_string()),
            None => "addr:unknown".to_string(),
        },
    };
    match entry {
        Some(entry) if class == RouteClass::Download => hashed("dl", &format!("{who}|{entry}")),
        _ => who,
    }
}

fn seconds(d: Duration) -> u64 {
    // Round up, and never 0: "retry after 0 s" invites an immediate retry into the same window.
    d.as_millis().div_ceil(1000).max(1) as u64
}

fn header(resp: &mut Response, name: &'static str, value: u64) {
    resp.headers_mut()
        .insert(HeaderName::from_static(name), HeaderValue::from(value));
}

/// The request's client address ([`client_address`]), found once by [`client_context`]
/// for the rate limits and the audit log.
#[derive(Debug, Clone, Copy)]
struct ClientAddress(Option<IpAddr>);

/// The outermost middleware: finds the request's client address, keeps it on the request
/// for the rate limits, and gives it to the engine for the audit log to record hashed.
pub(crate) async fn client_context(
    State(trust_forwarded_for): State<bool>,
    mut req: Request,
    next: Next,
) -> Response {
    let ip = client_address(&req, trust_forwarded_for);
    req.extensions_mut().insert(ClientAddress(ip));
    quiver_engine::audit::with_client(ip.map(|ip| ip.to_string()), next.run(req)).await
}

/// The middleware: count the request, then serve it or answer 429.
pub(crate) async fn limit(
    State((l, classify)): State<(Limiting, Classify)>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(class) = classify.class(req.method(), req.uri().path()) else {
        return next.run(req).await;
    };
    let Some(limit) = l.limits.get(class) else {
        return next.run(req).await;
    };
    let token = bearer(req.headers()).map(str::to_string);
    // Set by `client_context`, the layer around this one (see `router_with`).
    let address = req.extensions().get::<ClientAddress>().and_then(|c| c.0);
    // Downloads count per entry: its kind, namespace and name from the matched route.
    let entry = if class == RouteClass::Download {
        req.extract_parts::<RawPathParams>().await.ok().map(|p| {
            p.iter()
                .filter(|(k, _)| *k != "version")
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
                .join("/")
        })
    } else {
        None
    };
    let who = subject(&l, token, address, entry, class).await;
    let verdict = match l
        .counter
        .hit(&who, class.as_str(), limit.window, limit.requests)
        .await
    {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(error = %e, class = class.as_str(), "rate limiter unavailable; request served unlimited");
            return next.run(req).await;
        }
    };
    match verdict {
        Verdict::Allowed {
            remaining,
            reset_after,
        } => {
            let mut resp = next.run(req).await;
            header(&mut resp, "ratelimit-limit", limit.requests);
            header(&mut resp, "ratelimit-remaining", remaining);
            header(&mut resp, "ratelimit-reset", seconds(reset_after));
            resp
        }
        Verdict::Limited { retry_after } => {
            let secs = seconds(retry_after);
            metrics::counter!("quiver_rate_limited_total", "class" => class.as_str()).increment(1);
            let mut resp = ApiError::new(
                Code::RateLimited,
                format!(
                    "too many {class} requests: at most {} per {} s; retry in {secs} s",
                    limit.requests,
                    limit.window.as_secs().max(1)
                ),
                None,
            )
            .into_response();
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(secs));
            header(&mut resp, "ratelimit-limit", limit.requests);
            header(&mut resp, "ratelimit-remaining", 0);
            header(&mut resp, "ratelimit-reset", secs);
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_parse_and_print() {
        assert_eq!("100/min".parse(), Ok(Limit::per_minute(100)));
        assert_eq!("20/s".parse(), Ok(Limit::per_second(20)));
        assert_eq!(
            "10/30s".parse(),
            Ok(Limit::new(10, Duration::from_secs(30)))
        );
        assert_eq!("50/day".parse(), Ok(Limit::per_day(50)));
        assert_eq!("5000/hour".parse(), Ok(Limit::per_hour(5000)));
        assert!("100".parse::<Limit>().is_err());
        assert!("x/min".parse::<Limit>().is_err());
        assert!("10/0s".parse::<Limit>().is_err());
        assert!("10/fortnight".parse::<Limit>().is_err());
        for l in ["100/min", "20/s", "10/30s", "50/day", "5000/hour"] {
            assert_eq!(l.parse::<Limit>().unwrap().to_string(), l);
        }
    }

    #[test]
    fn rate_limits_parse_over_the_defaults() {
        let r: RateLimits = "search=60/min, download=off".parse().unwrap();
        assert_eq!(r.search, Some(Limit::per_minute(60)));
        assert_eq!(r.download, None);
        assert_eq!(r.read, RateLimits::default().read);
        assert_eq!("off".parse::<RateLimits>(), Ok(RateLimits::off()));
        assert!("lookups=1/s".parse::<RateLimits>().is_err());
        assert!("search".parse::<RateLimits>().is_err());
    }
}
