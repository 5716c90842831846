//! The website's visitor: who is asking (a session cookie, or an `Authorization` header
//! as on the API), and the CSRF token their forms must carry.
//!
//! - **Sessions are API session tokens in a cookie.** Signing in on the site is the API's
//!   password login (`quiver_engine` issues a session token behind the credential
//!   throttle); the token goes in the `quiver_session` cookie (`HttpOnly`,
//!   `SameSite=Lax`, `Secure` over https, `Path=/`) and is resolved on each request like a
//!   bearer token, so revocation and expiry apply at once and any node can serve the
//!   session. Only the site reads the cookie: the JSON API takes bearer tokens only, so a
//!   cross-site request can never ride a session there.
//! - **Every form post carries a CSRF token.** Signed in, it is derived from the session
//!   secret (a keyed hash the attacker cannot compute without the `HttpOnly` cookie); for
//!   the sign-in form itself (no session yet) from a random `quiver_form` cookie set with
//!   the form (double submit). Both are compared in constant time.
//! - A stale cookie (revoked, expired) makes an anonymous visitor, not an error page.

use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, COOKIE, IF_NONE_MATCH, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use quiver_engine::auth::secrets;
use quiver_engine::Caller;
use quiver_model::Error;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::extract::Auth;
use crate::AppState;

pub(crate) const SESSION_COOKIE: &str = "quiver_session";
pub(crate) const FORM_COOKIE: &str = "quiver_form";

/// Who is visiting a page, and what the page needs of the request.
pub struct Visitor {
    pub caller: Caller,
    /// The session secret, when signed in through the site.
    session: Option<String>,
    /// The sign-in form's random cookie, when the browser holds one.
    form_cookie: Option<String>,
    /// The browser's `If-None-Match` (pages answer 304 when it holds their bytes).
    pub(crate) if_none_match: Option<String>,
    /// Whether the request came over https (cookies get `Secure`).
    pub(crate) https: bool,
    /// The browser sent a session cookie that no longer signs anyone in.
    pub(crate) stale_session: bool,
}

/// The value of cookie `name` in the request.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
        .filter(|v| !v.is_empty())
}

/// A CSRF token bound to `secret` (a session token or the form cookie).
fn csrf_of(secret: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"quiver csrf\0");
    h.update(secret.as_bytes());
    hex::encode(&h.finalize()[..16])
}

impl Visitor {
    /// The signed-in user's name (a session or a token), for the page's header.
    pub fn name(&self) -> Option<&str> {
        match &self.caller {
            Caller::User(a) | Caller::Token { account: a, .. } => Some(a.name.as_str()),
            _ => None,
        }
    }

    /// Signed in through the site (a session cookie).
    pub fn has_session(&self) -> bool {
        self.session.is_some()
    }

    /// The session token's id (to revoke it on sign-out).
    pub fn session_token_id(&self) -> Option<i64> {
        match (&self.caller, &self.session) {
            (Caller::Token { token_id, .. }, Some(_)) => Some(*token_id),
            _ => None,
        }
    }

    /// The token this visitor's forms carry: bound to their session, else to the form
    /// cookie (`None`: the page must set one first, see [`Self::form_cookie`]).
    pub fn csrf(&self) -> Option<String> {
        self.session
            .as_deref()
            .or(self.form_cookie.as_deref())
            .map(csrf_of)
    }

    /// Refuse a form post whose token is not this visitor's.
    pub fn check_csrf(&self, given: &str) -> quiver_model::Result<()> {
        match self.csrf() {
            Some(want) if secrets::constant_time_eq(given, &want) => Ok(()),
            _ => Err(Error::forbidden(
                "this form expired or did not come from this site; reload the page and try again",
            )),
        }
    }

    /// For a page with the sign-in form: a `Set-Cookie` that gives the browser its form
    /// cookie when it has none (and the token the form must carry).
    pub fn form_cookie(&mut self) -> quiver_model::Result<Option<(HeaderValue, String)>> {
        if self.session.is_some() || self.form_cookie.is_some() {
            return Ok(None);
        }
        let value = secrets::generate_token()?;
        let value = value.trim_start_matches(secrets::TOKEN_PREFIX).to_string();
        let header = self.cookie_header(FORM_COOKIE, &value, Some(3600))?;
        self.form_cookie = Some(value);
        Ok(Some((header, self.csrf().unwrap_or_default())))
    }

    /// `Set-Cookie` for `name=value` (`max_age` 0 clears it), `HttpOnly`, `SameSite=Lax`,
    /// `Secure` over https.
    pub(crate) fn cookie_header(
        &self,
        name: &str,
        value: &str,
        max_age: Option<u64>,
    ) -> quiver_model::Result<HeaderValue> {
        let age = max_age
            .map(|s| format!("; Max-Age={s}"))
            .unwrap_or_default();
        let secure = if self.https { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Lax{age}{secure}"
        ))
        .map_err(|e| Error::internal("a cookie", e))
    }

    /// `Set-Cookie` headers that sign the browser in with `token` for `ttl` seconds (and
    /// drop the sign-in form's cookie).
    pub(crate) fn sign_in_cookies(
        &self,
        token: &str,
        ttl: u64,
    ) -> quiver_model::Result<Vec<(axum::http::HeaderName, HeaderValue)>> {
        Ok(vec![
            (
                SET_COOKIE,
                self.cookie_header(SESSION_COOKIE, token, Some(ttl))?,
            ),
            (SET_COOKIE, self.cookie_header(FORM_COOKIE, "", Some(0))?),
        ])
    }

    /// `Set-Cookie` that signs the browser out.
    pub(crate) fn sign_out_cookie(
        &self,
    ) -> quiver_model::Result<(axum::http::HeaderName, HeaderValue)> {
        Ok((SET_COOKIE, self.cookie_header(SESSION_COOKIE, "", Some(0))?))
    }
}

impl FromRequestParts<AppState> for Visitor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let https = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|p| p.eq_ignore_ascii_case("https"))
            || parts.uri.scheme_str() == Some("https");
        let mut v = Visitor {
            caller: Caller::Anonymous,
            session: None,
            form_cookie: cookie(headers, FORM_COOKIE),
            if_none_match: headers
                .get(IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            https,
            stale_session: false,
        };
        if headers.contains_key(AUTHORIZATION) {
            // An API client reading a page: the header decides, as on the API.
            v.caller = Auth::from_request_parts(parts, state).await?.0;
            return Ok(v);
        }
        if let Some(token) = cookie(headers, SESSION_COOKIE) {
            match state.registry.resolve_token(&token).await {
                Ok(caller) => {
                    v.caller = caller;
                    v.session = Some(token);
                }
                Err(e) if e.code == quiver_model::ErrorCode::Unauthorized => {
                    v.stale_session = true;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(v)
    }
}

/// Documented as the API's optional bearer authentication (the session cookie is the
/// browser's way to the same thing).
impl aide::OperationInput for Visitor {
    fn operation_input(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        Auth::operation_input(ctx, operation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_csrf() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; quiver_session=qvr_abc; quiver_form="),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("qvr_abc"));
        assert_eq!(cookie(&h, FORM_COOKIE), None, "an empty cookie is none");
        assert_eq!(cookie(&h, "b"), None);
        // Bound to its secret, and not the secret itself.
        assert_ne!(csrf_of("s1"), csrf_of("s2"));
        assert!(!csrf_of("s1").contains("s1"));
        assert_eq!(csrf_of("s1").len(), 32);
    }
}
