//! The one JSON error envelope, the one table of error codes, and the one place engine
//! errors become HTTP statuses.
//!
//! Every error leaves the server as
//! `{"error": {"code": "invalid_input", "message": "name: ...", "field": "name"}}`.
//! [`Code`] lists every code the API answers with its HTTP status and a short
//! description ([`Code::info`]: the table); the envelope's response, the engine's
//! [`ErrorCode`] mapping and the OpenAPI document (the `code` property of `ErrorDetail`)
//! all read it.

use std::borrow::Cow;

use aide::generate::GenContext;
use aide::openapi::{
    MediaType, Operation, Response as DocResponse, SchemaObject, StatusCode as DocStatus,
};
use aide::OperationOutput;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quiver_model::{Error, ErrorCode};
use schemars::{json_schema, Schema, SchemaGenerator};
use serde::Serialize;

/// Every error code the API answers, with its status and meaning in [`Code::info`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    InvalidInput,
    MalformedRequest,
    NotFound,
    Conflict,
    Unauthorized,
    Forbidden,
    MethodNotAllowed,
    RateLimited,
    Internal,
    AuthorizationPending,
    SlowDown,
    ExpiredToken,
    AccessDenied,
    InvalidGrant,
    PayloadTooLarge,
    UriTooLong,
    HeadersTooLarge,
    Unavailable,
    TooManyAttempts,
    DeleteRefused,
}

impl Code {
    pub const ALL: [Code; 20] = [
        Code::InvalidInput,
        Code::MalformedRequest,
        Code::NotFound,
        Code::Conflict,
        Code::Unauthorized,
        Code::Forbidden,
        Code::MethodNotAllowed,
        Code::RateLimited,
        Code::Internal,
        Code::AuthorizationPending,
        Code::SlowDown,
        Code::ExpiredToken,
        Code::AccessDenied,
        Code::InvalidGrant,
        Code::PayloadTooLarge,
        Code::UriTooLong,
        Code::HeadersTooLarge,
        Code::Unavailable,
        Code::TooManyAttempts,
        Code::DeleteRefused,
    ];

    /// The table: the code's name in the envelope, its HTTP status, and what it means.
    pub const fn info(self) -> (&'static str, StatusCode, &'static str) {
        use StatusCode as S;
        match self {
            Code::InvalidInput => ("invalid_input", S::UNPROCESSABLE_ENTITY, "a value breaks a rule (a body field, a query or path parameter); `field` names it"),
            Code::MalformedRequest => ("malformed_request", S::BAD_REQUEST, "the request could not be read: a body that is not JSON, a wrong content type, a query string that does not parse"),
            Code::NotFound => ("not_found", S::NOT_FOUND, "no such route, or no such entry, version, user, job or token visible to the caller"),
            Code::Conflict => ("conflict", S::CONFLICT, "the write conflicts with what is stored: a taken name, a version already published, a transition not allowed from the current status"),
            Code::Unauthorized => ("unauthorized", S::UNAUTHORIZED, "credentials are missing (for a write that needs them) or not valid"),
            Code::Forbidden => ("forbidden", S::FORBIDDEN, "the caller is known but may not do this"),
            Code::MethodNotAllowed => ("method_not_allowed", S::METHOD_NOT_ALLOWED, "the path exists but not with this method"),
            Code::RateLimited => ("rate_limited", S::TOO_MANY_REQUESTS, "too many requests of this route class; retry after Retry-After seconds"),
            Code::Internal => ("internal", S::INTERNAL_SERVER_ERROR, "something failed inside quiver; the server log has the details"),
            Code::AuthorizationPending => ("authorization_pending", S::BAD_REQUEST, "device sign-in (RFC 8628): not approved yet; poll again after the interval"),
            Code::SlowDown => ("slow_down", S::BAD_REQUEST, "device sign-in (RFC 8628): polling too fast; wait longer between polls"),
            Code::ExpiredToken => ("expired_token", S::BAD_REQUEST, "device sign-in (RFC 8628): the device code expired; start again"),
            Code::AccessDenied => ("access_denied", S::BAD_REQUEST, "device sign-in (RFC 8628): the user denied the request"),
            Code::InvalidGrant => ("invalid_grant", S::BAD_REQUEST, "device sign-in (RFC 8628): unknown device code, or its token was already handed out"),
            Code::PayloadTooLarge => ("payload_too_large", S::PAYLOAD_TOO_LARGE, "the request body is larger than the server accepts (4 MiB)"),
            Code::UriTooLong => ("uri_too_long", S::URI_TOO_LONG, "the request's path and query are longer than the server accepts (8 KiB)"),
            Code::HeadersTooLarge => ("headers_too_large", S::REQUEST_HEADER_FIELDS_TOO_LARGE, "the request's headers are larger than the server accepts (32 KiB in all)"),
            Code::Unavailable => ("unavailable", S::SERVICE_UNAVAILABLE, "the server is at its connection limit (for this client or in all); retry after Retry-After seconds"),
            Code::DeleteRefused => ("delete_refused", S::CONFLICT, "the deletion policy refuses this delete (past the grace period, other entries depend on it, or too many downloads); the message says why and what to do instead: yank, deprecate or archive"),
            Code::TooManyAttempts => ("too_many_attempts", S::TOO_MANY_REQUESTS, "too many failed credential checks for this account from this client, or from this client in all; retry after Retry-After seconds"),
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.info().0
    }

    pub const fn status(self) -> StatusCode {
        self.info().1
    }

    /// The code named `name` in the envelope.
    pub fn from_name(name: &str) -> Option<Code> {
        Code::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl From<ErrorCode> for Code {
    fn from(code: ErrorCode) -> Code {
        match code {
            ErrorCode::InvalidInput => Code::InvalidInput,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::Conflict => Code::Conflict,
            ErrorCode::Unauthorized => Code::Unauthorized,
            ErrorCode::Forbidden => Code::Forbidden,
            ErrorCode::TooManyAttempts => Code::TooManyAttempts,
            ErrorCode::DeleteRefused => Code::DeleteRefused,
            // `ErrorCode` may grow: an unknown code is treated as internal.
            _ => Code::Internal,
        }
    }
}

/// The HTTP status of an engine error.
pub fn status_of(code: ErrorCode) -> StatusCode {
    Code::from(code).status()
}

/// An error on the request path: the API's code and the engine's error (message, field).
#[derive(Debug)]
pub struct ApiError {
    pub code: Code,
    pub error: Error,
}

/// The error envelope.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error envelope's content.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code; each is listed with its HTTP status.
    #[schemars(schema_with = "code_schema")]
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The offending field, where there is one (`name`, `manifest.steps.0`, `q`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The codes of [`Code::info`] as the schema of `ErrorDetail.code`: one `const` per code
/// with its description and HTTP status (`x-http-status`).
fn code_schema(_: &mut SchemaGenerator) -> Schema {
    let one_of: Vec<serde_json::Value> = Code::ALL
        .iter()
        .map(|c| {
            let (name, status, description) = c.info();
            serde_json::json!({
                "const": name,
                "description": description,
                "x-http-status": status.as_u16(),
            })
        })
        .collect();
    json_schema!({"type": "string", "oneOf": one_of})
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError {
            code: error.code.into(),
            error,
        }
    }
}

impl ApiError {
    pub fn new(code: Code, message: impl Into<String>, field: Option<String>) -> Self {
        let kind = match code {
            Code::Internal => ErrorCode::Internal,
            Code::NotFound => ErrorCode::NotFound,
            Code::Conflict => ErrorCode::Conflict,
            Code::Unauthorized => ErrorCode::Unauthorized,
            Code::Forbidden => ErrorCode::Forbidden,
            Code::TooManyAttempts => ErrorCode::TooManyAttempts,
            _ => ErrorCode::InvalidInput,
        };
        let error = Error {
            code: kind,
            message: message.into(),
            field,
            retry_after: None,
        };
        ApiError { code, error }
    }

    /// A request that could not be read at all (syntax): 400.
    pub fn malformed(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(Code::MalformedRequest, message, Some(field.into()))
    }

    pub fn not_found(what: &str) -> Self {
        Error::not_found(what).into()
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            Code::MethodNotAllowed,
            "this method is not allowed on this path",
            Some("method".into()),
        )
    }

    pub fn status(&self) -> StatusCode {
        self.code.status()
    }

    /// The envelope as JSON text (for answers written outside axum).
    pub fn body_json(&self) -> String {
        serde_json::to_string(&self.body()).unwrap_or_default()
    }

    /// The envelope, as it is sent.
    pub fn body(&self) -> ErrorBody {
        let message = if self.code == Code::Internal {
            Cow::Borrowed("internal error; the server log has the details")
        } else {
            Cow::Borrowed(self.error.message.as_str())
        };
        ErrorBody {
            error: ErrorDetail {
                code: self.code.as_str().to_string(),
                message: message.into_owned(),
                field: self.error.field.clone(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code == Code::Internal {
            tracing::error!(error = %self.error.message, "internal error");
        }
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if self.code == Code::Unauthorized {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(secs) = self.error.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

/// The envelope as an OpenAPI response.
pub(crate) fn error_response(ctx: &mut GenContext, description: &str) -> DocResponse {
    DocResponse {
        description: description.to_string(),
        content: [(
            "application/json".to_string(),
            MediaType {
                schema: Some(SchemaObject {
                    json_schema: ctx.schema.subschema_for::<ErrorBody>(),
                    example: None,
                    external_docs: None,
                }),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    }
}

/// Document that `op` may answer with `codes` (each status once, in the envelope, its
/// description naming the codes it carries). Extractors call this for the errors they
/// raise themselves, route groups for theirs, so each operation lists its real statuses.
pub(crate) fn document_errors(ctx: &mut GenContext, op: &mut Operation, codes: &[Code]) {
    let responses = op.responses.get_or_insert_with(Default::default);
    for code in codes {
        let (name, status, _) = code.info();
        let key = DocStatus::Code(status.as_u16());
        let line = format!("`{name}`");
        match responses.responses.get_mut(&key) {
            Some(aide::openapi::ReferenceOr::Item(r)) => {
                if !r.description.contains(&line) {
                    r.description.push_str(", ");
                    r.description.push_str(&line);
                }
            }
            _ => {
                let mut r = error_response(ctx, "");
                r.description = format!("an error in the envelope: {line}");
                responses
                    .responses
                    .insert(key, aide::openapi::ReferenceOr::Item(r));
            }
        }
    }
}

/// Documented as the default response: every error leaves in the one envelope.
impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(error_response(
            ctx,
            "an error, in the one error envelope (see ErrorDetail.code for the codes and their statuses)",
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(None, r)])
            .unwrap_or_default()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
