//! The one JSON error envelope, and the one place engine errors become HTTP statuses.
//!
//! Every error leaves the server as
//! `{"error": {"code": "invalid_input", "message": "name: ...", "field": "name"}}`.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quiver_model::{Error, ErrorCode};
use serde::Serialize;

/// An error on the request path.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub error: Error,
}

#[derive(Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error envelope's content.
#[derive(Serialize, schemars::JsonSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code: invalid_input, malformed_request, not_found,
    /// conflict, unauthorized, forbidden, method_not_allowed, rate_limited, internal.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The offending field, where there is one (`name`, `manifest.steps.0`, `q`...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidInput => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        ApiError {
            status: status_of(error.code),
            error,
        }
    }
}

impl ApiError {
    /// A request that could not be read at all (syntax): 400.
    pub fn malformed(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error: Error {
                code: ErrorCode::InvalidInput,
                message: message.into(),
                field: Some(field.into()),
            },
        }
    }

    pub fn not_found(what: &str) -> Self {
        Error::not_found(what).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = if self.status == StatusCode::BAD_REQUEST {
            "malformed_request".to_string()
        } else if self.status == StatusCode::METHOD_NOT_ALLOWED {
            "method_not_allowed".to_string()
        } else {
            self.error.code.as_str().to_string()
        };
        let message = if self.error.code == ErrorCode::Internal {
            tracing::error!(error = %self.error.message, "internal error");
            "internal error; the server log has the details".to_string()
        } else {
            self.error.message
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                field: self.error.field,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
