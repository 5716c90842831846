//! Request extractors and response helpers: the caller, JSON bodies with field-precise
//! errors, query parameters, and ETag handling.

use std::collections::HashMap;
use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quiver_engine::Caller;
use quiver_model::Error;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};
use crate::AppState;

/// The caller of a request: anonymous without an `Authorization` header; the bootstrap
/// admin with the configured admin token; else the user of an API token, resolved by the
/// engine (revocation, expiry, rights). A token that does not resolve is refused (401)
/// rather than silently downgraded to anonymous.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Ok(Auth(Caller::Anonymous));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::from(Error::unauthorized(
                    "the Authorization header must be 'Bearer <token>'",
                ))
            })?;
        if let Some(admin) = &state.admin_token {
            if constant_time_eq(admin.as_bytes(), token.as_bytes()) {
                return Ok(Auth(Caller::BootstrapAdmin));
            }
        }
        Ok(Auth(state.registry.resolve_token(token).await?))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A JSON body. Syntax errors are 400; a body of the wrong shape is 422 and names the
/// field (`versions[0].manifest`, `kind`...).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let ct_ok = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !ct_ok {
            return Err(ApiError::malformed(
                "content-type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::malformed("body", format!("could not read the body: {e}")))?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(de) {
            Ok(v) => Ok(JsonBody(v)),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    Err(ApiError::malformed(
                        "body",
                        format!("the body is not valid JSON: {inner}"),
                    ))
                } else {
                    let field = if path == "." || path.is_empty() {
                        "body".to_string()
                    } else {
                        path
                    };
                    Err(Error::invalid(field, strip_position(&inner.to_string())).into())
                }
            }
        }
    }
}

/// serde_json appends " at line 1 column 42"; the field already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Query parameters, checked against the names a route accepts.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> ApiResult<Params> {
        let mut map = HashMap::new();
        let Some(q) = query else {
            return Ok(Params(map));
        };
        let pairs: Vec<(String, String)> = serde_urlencoded_pairs(q)?;
        for (k, v) in pairs {
            if !allowed.contains(&k.as_str()) {
                return Err(Error::invalid(
                    k.clone(),
                    format!(
                        "unknown query parameter '{k}' (accepted: {})",
                        allowed.join(", ")
                    ),
                )
                .into());
            }
            // Repeated parameters add values: kind=tool&kind=skill == kind=tool,skill
            map.entry(k)
                .and_modify(|old: &mut String| {
                    old.push(',');
                    old.push_str(&v)
                })
                .or_insert(v);
        }
        Ok(Params(map))
    }

    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }

    /// Comma-separated values, each parsed.
    pub fn list<T: FromStr<Err = Error>>(&self, k: &str) -> ApiResult<Vec<T>> {
        match self.get(k) {
            None => Ok(vec![]),
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.parse::<T>().map_err(|e| with_field(e, k)))
                .collect(),
        }
    }

    pub fn strings(&self, k: &str) -> Vec<String> {
        self.get(k)
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn usize(&self, k: &str, default: usize) -> ApiResult<usize> {
        match self.get(k) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| {
                Error::invalid(k, format!("'{v}' is not a non-negative whole number")).into()
            }),
        }
    }

    /// An RFC 3339 time (`2026-11-22T06:00:00Z`).
    pub fn timestamp(&self, k: &str) -> ApiResult<Option<jiff::Timestamp>> {
        self.get(k)
            .map(|v| {
                v.parse().map_err(|_| {
                    Error::invalid(
                        k,
                        format!("'{v}' is not an RFC 3339 time such as 2026-11-22T06:00:00Z"),
                    )
                    .into()
                })
            })
            .transpose()
    }

    pub fn bool(&self, k: &str) -> ApiResult<bool> {
        match self.get(k) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(v) => Err(Error::invalid(k, format!("'{v}' is not true or false")).into()),
        }
    }
}

fn with_field(mut e: Error, field: &str) -> ApiError {
    e.field = Some(field.to_string());
    e.into()
}

fn serde_urlencoded_pairs(q: &str) -> ApiResult<Vec<(String, String)>> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{q}")
            .parse()
            .map_err(|_| ApiError::malformed("query", "the query string is not valid"))?,
    )
    .map(|axum::extract::Query(v)| v)
    .map_err(|e| ApiError::malformed("query", format!("the query string is not valid: {e}")))
}

/// A JSON response with a strong ETag over its bytes; `304 Not Modified` when the client
/// already has it.
pub fn json_with_etag<T: Serialize>(headers: &HeaderMap, value: &T) -> ApiResult<Response> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::from(Error::internal("encoding a response", e)))?;
    let tag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
    let matches = headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let etag = HeaderValue::from_str(&tag).expect("hex is a valid header value");
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [
            (ETAG, etag),
            (
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        body,
    )
        .into_response())
}
