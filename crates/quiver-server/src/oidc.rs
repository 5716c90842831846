//! Sign-in through an outside OAuth2/OIDC provider (configured in
//! `quiver_engine::oidc::OidcConfig`): `GET /api/v1/auth/oidc/start` redirects the browser
//! to the provider with a random `state` and a PKCE challenge (S256); the provider sends it
//! back to `GET /api/v1/auth/oidc/callback`, which checks the state, exchanges the code
//! (with the PKCE verifier and the client secret) for an access token, asks the userinfo
//! endpoint who it is, and lets the engine link or create the user and issue a session
//! token. `POST /api/v1/auth/oidc/link` starts the same dance for a signed-in user, whose
//! callback links the identity to their account instead (see `quiver_engine::oidc`).
//!
//! The state and the verifier travel in an `HttpOnly`, `SameSite=Lax` cookie scoped to
//! these two paths, never through the provider: a callback without the browser that
//! started the sign-in (a forged or replayed link) fails the state check, and an
//! intercepted code is useless without the verifier. Nothing is kept on the server, so any
//! node can answer the callback.

use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quiver_engine::accounts::NewTokenSecret;
use quiver_engine::auth::secrets;
use quiver_engine::oidc::{CallbackOutcome, ExternalUser, LinkedIdentity};
use quiver_model::Error;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiResult;
use crate::extract::Auth;
use crate::reply::{no_store, Either, Found, Headed, Json, PageOr, SeeOther};
use crate::session::Visitor;
use crate::AppState;

const COOKIE_NAME: &str = "quiver_oidc";
const COOKIE_PATH: &str = "/api/v1/auth/oidc";
const CALLBACK: &str = "/api/v1/auth/oidc/callback";
/// Ends the sign-in cookie of a sign-in started on the website.
const SITE_MARK: &str = ".site";

/// 43 random base64url characters (256 bits).
fn random() -> Result<String, Error> {
    let t = secrets::generate_token()?;
    Ok(t.trim_start_matches(secrets::TOKEN_PREFIX).to_string())
}

fn pkce_challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// What a query or form value escapes: everything but RFC 3986's unreserved characters.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn enc(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn redirect_uri(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let cfg = state.registry.oidc()?;
    Ok(cfg
        .redirect_uri
        .clone()
        .unwrap_or_else(|| format!("{}{CALLBACK}", crate::device::own_base(headers))))
}

/// A new sign-in at the provider: the authorize URL to send the browser to, the cookie
/// that carries the state and the PKCE verifier (and, for the website's sign-in,
/// [`SITE_MARK`]: the callback then sets the site's session cookie and goes to the
/// dashboard instead of answering JSON), and the state.
fn begin(state: &AppState, headers: &HeaderMap, site: bool) -> ApiResult<(String, String, String)> {
    let cfg = state.registry.oidc()?.clone();
    let redirect = redirect_uri(state, headers)?;
    let (st, verifier) = (random()?, random()?);
    let sep = if cfg.authorize_url.contains('?') {
        '&'
    } else {
        '?'
    };
    let location = format!(
        "{}{sep}{}",
        cfg.authorize_url,
        form(&[
            ("response_type", "code"),
            ("client_id", &cfg.client_id),
            ("redirect_uri", &redirect),
            ("scope", &cfg.scopes),
            ("state", &st),
            ("code_challenge", &pkce_challenge(&verifier)),
            ("code_challenge_method", "S256"),
        ])
    );
    let secure = if redirect.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let mark = if site { SITE_MARK } else { "" };
    let cookie = format!(
        "{COOKIE_NAME}={st}.{verifier}{mark}; Path={COOKIE_PATH}; HttpOnly; SameSite=Lax; Max-Age=600{secure}"
    );
    Ok((location, cookie, st))
}

/// `inner` with the sign-in cookie, not to be cached.
fn with_cookie<R>(inner: R, cookie: &str) -> ApiResult<Headed<R>> {
    let mut r = no_store(inner);
    r.headers.push((
        SET_COOKIE,
        HeaderValue::from_str(cookie).map_err(|e| Error::internal("a cookie", e))?,
    ));
    Ok(r)
}

/// `GET /api/v1/auth/oidc/start`: off to the provider.
pub async fn start(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Headed<Found>> {
    let (location, cookie, _) = begin(&state, &headers, false)?;
    let location = HeaderValue::from_str(&location)
        .map_err(|e| Error::internal("the provider's authorize URL", e))?;
    with_cookie(Found { location }, &cookie)
}

/// `GET /signin/oidc`: the website's sign-in at the provider; its callback sets the
/// site's session cookie and goes to the dashboard.
pub async fn site_start(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Headed<Found>> {
    let (location, cookie, _) = begin(&state, &headers, true)?;
    let location = HeaderValue::from_str(&location)
        .map_err(|e| Error::internal("the provider's authorize URL", e))?;
    with_cookie(Found { location }, &cookie)
}

/// `POST /api/v1/auth/oidc/link`: a signed-in user starts a sign-in at the provider that
/// links the identity to their account. Answers the URL to send the browser to (and the
/// same cookie as `start`: the browser that completes the sign-in must be this one).
pub async fn link(
    State(state): State<AppState>,
    Auth(caller): Auth,
    headers: HeaderMap,
) -> ApiResult<Headed<Json<LinkStart>>> {
    let (location, cookie, st) = begin(&state, &headers, false)?;
    state.registry.begin_oidc_link(&caller, &st).await?;
    with_cookie(
        Json::ok(LinkStart {
            authorize_url: location,
        }),
        &cookie,
    )
}

/// Where to send the browser to link an outside account.
#[derive(Serialize, JsonSchema)]
pub struct LinkStart {
    pub authorize_url: String,
}

/// An outside identity linked to the signed-in user.
#[derive(Serialize, JsonSchema)]
pub struct Linked {
    pub linked: LinkedIdentity,
}

/// The provider's redirect back. Not strict about other parameters: providers add their
/// own (`scope`, `authuser`, `prompt`...).
#[derive(Debug, Deserialize, JsonSchema)]
pub struct CallbackQuery {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// The sign-in cookie: (state, verifier, started on the website).
fn cookie_value(headers: &HeaderMap) -> Option<(String, String, bool)> {
    let value = crate::session::cookie(headers, COOKIE_NAME)?;
    let (value, site) = match value.strip_suffix(SITE_MARK) {
        Some(v) => (v.to_string(), true),
        None => (value, false),
    };
    value
        .split_once('.')
        .map(|(s, v)| (s.to_string(), v.to_string(), site))
}

fn refused(why: &str) -> Error {
    Error::unauthorized(format!("outside sign-in failed: {why}"))
}

/// `GET /api/v1/auth/oidc/callback`: the provider's answer, behind the credential
/// throttle (a failed callback counts against the client, as a wrong password does).
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    visitor: Visitor,
    Query(q): Query<CallbackQuery>,
) -> ApiResult<CallbackReply> {
    const CLEAR: &str = "quiver_oidc=; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0";
    state.registry.oidc()?;
    let site = cookie_value(&headers).is_some_and(|(_, _, site)| site);
    let outcome = state
        .registry
        .throttled(None, "oidc.callback", exchange(&state, &headers, &q))
        .await;
    if site {
        // The website's sign-in: the session in the site's cookie, then the dashboard;
        // a failure is a page, like the password form's.
        let clear = HeaderValue::from_static(CLEAR);
        let page = match outcome {
            Ok(CallbackOutcome::SignedIn(session)) => {
                let ttl = state.registry.config().session_ttl.as_secs();
                let mut out = Headed {
                    headers: visitor.sign_in_cookies(&session.token, ttl)?,
                    inner: SeeOther::to("/dashboard"),
                };
                out.headers.push((SET_COOKIE, clear));
                out.headers.push((
                    axum::http::header::CACHE_CONTROL,
                    HeaderValue::from_static("no-store"),
                ));
                PageOr::Redirect(out)
            }
            Ok(CallbackOutcome::Linked(_)) => crate::account_pages::redirect_to("/dashboard"),
            Err(e) => {
                let mut page = crate::web::error_page(&visitor, e);
                page.headers.push((SET_COOKIE, clear));
                PageOr::Page(page)
            }
        };
        return Ok(CallbackReply::Site(page));
    }
    let answer = match outcome? {
        CallbackOutcome::SignedIn(session) => Either::A(session),
        CallbackOutcome::Linked(linked) => Either::B(Linked { linked }),
    };
    Ok(CallbackReply::Api(with_cookie(answer, CLEAR)?))
}

/// The callback's answer: JSON for a sign-in started on the API, a redirect or a page
/// for one started on the website.
pub enum CallbackReply {
    Api(Headed<Either<NewTokenSecret, 201, Linked, 200>>),
    Site(PageOr),
}

impl axum::response::IntoResponse for CallbackReply {
    fn into_response(self) -> axum::response::Response {
        match self {
            CallbackReply::Api(a) => a.into_response(),
            CallbackReply::Site(p) => p.into_response(),
        }
    }
}

impl aide::OperationOutput for CallbackReply {
    type Inner = NewTokenSecret;

    fn operation_response(
        ctx: &mut aide::generate::GenContext,
        op: &mut aide::openapi::Operation,
    ) -> Option<aide::openapi::Response> {
        Either::<NewTokenSecret, 201, Linked, 200>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut aide::generate::GenContext,
        op: &mut aide::openapi::Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
        let mut out = Either::<NewTokenSecret, 201, Linked, 200>::inferred_responses(ctx, op);
        out.extend(SeeOther::inferred_responses(ctx, op));
        out
    }
}

/// Check the callback against this browser's sign-in, trade the code for the provider's
/// word on who signed in, and sign them in (or link them).
async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    q: &CallbackQuery,
) -> quiver_model::Result<CallbackOutcome> {
    let cfg = state.registry.oidc()?.clone();
    if let Some(e) = &q.error {
        return Err(refused(&format!("the provider answered '{e}'")));
    }
    let (Some(code), Some(st)) = (q.code.as_deref(), q.state.as_deref()) else {
        return Err(Error::invalid("code", "the callback needs code and state"));
    };
    let Some((want_state, verifier, _)) = cookie_value(headers) else {
        return Err(refused("no sign-in was started in this browser"));
    };
    if !secrets::constant_time_eq(st, &want_state) {
        return Err(refused("the state does not match this browser's sign-in"));
    }
    let redirect = redirect_uri(state, headers).map_err(|e| e.error)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| Error::internal("an HTTP client", e))?;
    let token_resp = http
        .post(&cfg.token_url)
        .header("accept", "application/json")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect),
            ("client_id", &cfg.client_id),
            ("client_secret", &cfg.client_secret),
            ("code_verifier", &verifier),
        ]))
        .send()
        .await
        .map_err(|e| Error::internal("reaching the provider's token endpoint", e))?;
    let ok = token_resp.status().is_success();
    let body: Value = token_resp.json().await.unwrap_or(Value::Null);
    let access = match body["access_token"].as_str() {
        Some(t) if ok => t.to_string(),
        _ => {
            let why = body["error"].as_str().unwrap_or("no access token");
            return Err(refused(&format!("the provider refused the code ({why})")));
        }
    };
    let info_resp = http
        .get(&cfg.userinfo_url)
        .bearer_auth(&access)
        .header("accept", "application/json")
        .header("user-agent", "quiver")
        .send()
        .await
        .map_err(|e| Error::internal("reaching the provider's userinfo endpoint", e))?;
    if !info_resp.status().is_success() {
        return Err(refused("the provider would not say who signed in"));
    }
    let info: Value = info_resp.json().await.unwrap_or(Value::Null);
    // OIDC's `sub`, or a GitHub-style numeric `id`.
    let subject = match (&info["sub"], &info["id"]) {
        (Value::String(s), _) => s.clone(),
        (_, Value::Number(n)) => n.to_string(),
        (_, Value::String(s)) => s.clone(),
        _ => return Err(refused("the provider named no user")),
    };
    let text = |k: &str| info[k].as_str().map(str::to_string);
    let who = ExternalUser {
        subject,
        login: text("preferred_username").or_else(|| text("login")),
        email: text("email"),
    };
    state.registry.external_callback(who, st).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::COOKIE;

    #[test]
    fn pkce_and_encoding() {
        // RFC 7636 appendix B.
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("x=1; quiver_oidc=st.ver; y=2"),
        );
        assert_eq!(cookie_value(&h), Some(("st".into(), "ver".into(), false)));
        h.insert(COOKIE, HeaderValue::from_static("quiver_oidc=st.ver.site"));
        assert_eq!(cookie_value(&h), Some(("st".into(), "ver".into(), true)));
    }
}
