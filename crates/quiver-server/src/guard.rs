//! The outermost layer: what every request and answer goes through before routing.
//!
//! - A path and query longer than [`MAX_URI`] is a 414, headers larger than
//!   [`MAX_HEADERS`] in all a 431, both in the JSON envelope. (hyper keeps its own outer
//!   bounds, about 400 KiB of head and 100 headers, and answers those itself.)
//! - Every answer carries `X-Content-Type-Options: nosniff`.
//! - An error answered in plain text by a layer or extractor outside quiver's own code (a
//!   form that does not parse, a path that does not decode) leaves in the JSON envelope
//!   like every other error.
//! - **A body the handler did not read** (a 404 or 405 from the router, a 401 before the
//!   body was wanted, a 429) is read and dropped after the answer is ready, so the
//!   connection stays usable for the client's next request. A body that does not arrive
//!   within [`DRAIN_TIME`] or is larger than [`DRAIN_BYTES`] is not waited for: the answer
//!   then says `Connection: close` and the connection closes after it, so a client never
//!   sends a request on a connection the server is about to drop.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body::{Body as _, Frame, SizeHint};
use http_body_util::BodyExt as _;

use crate::error::{ApiError, Code};

/// The longest path and query accepted, in bytes.
pub const MAX_URI: usize = 8 * 1024;
/// The most header bytes accepted (names and values).
pub const MAX_HEADERS: usize = 32 * 1024;
/// How long an unread body is waited for after the answer is ready.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);
/// The most bytes of an unread body read to keep its connection.
pub const DRAIN_BYTES: usize = 1024 * 1024;

const NOSNIFF: (HeaderName, HeaderValue) = (
    HeaderName::from_static("x-content-type-options"),
    HeaderValue::from_static("nosniff"),
);

/// What became of a request's body once the handler is done with it.
#[derive(Default)]
enum Leftover {
    /// Read to its end, or there was none.
    #[default]
    Done,
    /// Dropped before its end: the rest, to drain.
    Unread(Body),
    /// Its stream failed (too large, too slow, cut off): the connection is not reusable.
    Broken,
}

/// The request body as handlers see it: it hands what they leave unread back to
/// [`guard`]. (Written here because no crate tracks an unread remainder this way.)
struct Tracked {
    inner: Option<Body>,
    leftover: Arc<Mutex<Leftover>>,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let Some(body) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.inner = None,
            Poll::Ready(Some(Err(_))) => {
                this.inner = None;
                *this.leftover.lock().unwrap_or_else(|e| e.into_inner()) = Leftover::Broken;
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if let Some(body) = self.inner.take() {
            if !body.is_end_stream() {
                *self.leftover.lock().unwrap_or_else(|e| e.into_inner()) = Leftover::Unread(body);
            }
        }
    }
}

/// Read up to [`DRAIN_BYTES`] of `body` within [`DRAIN_TIME`]: whether it ended.
async fn drain(mut body: Body) -> bool {
    let read = async {
        let mut seen = 0usize;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    seen += f.data_ref().map_or(0, |d| d.len());
                    if seen > DRAIN_BYTES {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, read)
        .await
        .unwrap_or(false)
}

fn has_body(req: &Request) -> bool {
    let h = req.headers();
    match h.get(CONTENT_LENGTH) {
        Some(v) => v != "0",
        None => h.contains_key(TRANSFER_ENCODING),
    }
}

/// The code an error status of a foreign answer becomes.
fn code_for(status: StatusCode) -> Code {
    Code::ALL
        .into_iter()
        .find(|c| c.status() == status)
        .unwrap_or(if status.is_server_error() {
            Code::Internal
        } else {
            Code::MalformedRequest
        })
}

/// A plain-text error answer from outside quiver's handlers, in the envelope.
async fn enveloped(resp: Response) -> Response {
    let status = resp.status();
    let text = match resp.into_body().collect().await {
        Ok(b) => String::from_utf8_lossy(&b.to_bytes()).trim().to_string(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    ApiError::new(code_for(status), message, None).into_response()
}

fn is_foreign_error(resp: &Response) -> bool {
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    match resp.headers().get(CONTENT_TYPE) {
        None => true,
        Some(ct) => ct.as_bytes().starts_with(b"text/plain"),
    }
}

pub async fn guard(req: Request, next: Next) -> Response {
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI {
        return finish(
            ApiError::new(
                Code::UriTooLong,
                format!("the path and query are {uri_len} bytes; at most {MAX_URI} are accepted"),
                Some("uri".into()),
            )
            .into_response(),
            true,
        );
    }
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    if header_bytes > MAX_HEADERS {
        return finish(
            ApiError::new(
                Code::HeadersTooLarge,
                format!("the headers are {header_bytes} bytes; at most {MAX_HEADERS} are accepted"),
                Some("headers".into()),
            )
            .into_response(),
            true,
        );
    }
    let leftover = Arc::new(Mutex::new(Leftover::Done));
    let req = if has_body(&req) {
        let slot = leftover.clone();
        req.map(move |b| {
            Body::new(Tracked {
                inner: Some(b),
                leftover: slot,
            })
        })
    } else {
        req
    };
    let mut resp = next.run(req).await;
    if is_foreign_error(&resp) {
        resp = enveloped(resp).await;
    }
    let left = std::mem::take(&mut *leftover.lock().unwrap_or_else(|e| e.into_inner()));
    let reusable = match left {
        Leftover::Done => true,
        Leftover::Broken => false,
        Leftover::Unread(body) => drain(body).await,
    };
    finish(resp, !reusable)
}

fn finish(mut resp: Response, close: bool) -> Response {
    let h = resp.headers_mut();
    h.insert(NOSNIFF.0, NOSNIFF.1);
    if close {
        h.insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_statuses_map_to_codes_of_the_table() {
        assert_eq!(code_for(StatusCode::BAD_REQUEST), Code::MalformedRequest);
        assert_eq!(code_for(StatusCode::NOT_FOUND), Code::NotFound);
        assert_eq!(
            code_for(StatusCode::PAYLOAD_TOO_LARGE),
            Code::PayloadTooLarge
        );
        assert_eq!(
            code_for(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            Code::MalformedRequest
        );
        assert_eq!(code_for(StatusCode::BAD_GATEWAY), Code::Internal);
    }
}
