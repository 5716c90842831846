//! Typed answers: each builds its HTTP response and describes it to the OpenAPI document
//! ([`aide::OperationOutput`]), so a handler's return type is its documented answer.

use aide::generate::GenContext;
use aide::openapi::{
    Header, MediaType, Operation, ReferenceOr, Response as DocResponse, SchemaObject,
    StatusCode as DocStatus,
};
use aide::OperationOutput;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quiver_model::Error;

use schemars::{json_schema, JsonSchema};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// A response document with `schema` as the body of `media_type`.
pub(crate) fn doc_response(
    description: &str,
    media_type: &str,
    schema: schemars::Schema,
) -> DocResponse {
    DocResponse {
        description: description.to_string(),
        content: [(
            media_type.to_string(),
            MediaType {
                schema: Some(SchemaObject {
                    json_schema: schema,
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

fn json_doc<T: JsonSchema>(ctx: &mut GenContext, description: &str) -> DocResponse {
    let schema = ctx.schema.subschema_for::<T>();
    doc_response(description, "application/json", schema)
}

pub(crate) fn with_header(mut r: DocResponse, name: &str, description: &str) -> DocResponse {
    r.headers.insert(
        name.to_string(),
        ReferenceOr::Item(Header {
            description: Some(description.to_string()),
            style: Default::default(),
            required: false,
            deprecated: None,
            format: aide::openapi::ParameterSchemaOrContent::Schema(SchemaObject {
                json_schema: json_schema!({"type": "string"}),
                example: None,
                external_docs: None,
            }),
            example: None,
            examples: Default::default(),
            extensions: Default::default(),
        }),
    );
    r
}

/// A JSON answer with status `S` (200 by default) and, for created resources, their
/// `Location`.
pub struct Json<T, const S: u16 = 200> {
    value: T,
    location: Option<String>,
}

/// `201 Created` with the new resource's `Location`.
pub type Created<T> = Json<T, 201>;
/// `202 Accepted` with the `Location` to poll.
pub type Accepted<T> = Json<T, 202>;

impl<T, const S: u16> Json<T, S> {
    pub fn at(location: String, value: T) -> Self {
        Json {
            value,
            location: Some(location),
        }
    }
}

impl<T> Json<T, 200> {
    pub fn ok(value: T) -> Self {
        Json {
            value,
            location: None,
        }
    }
}

impl<T> Json<T, 201> {
    pub fn created(value: T) -> Self {
        Json {
            value,
            location: None,
        }
    }
}

impl<T: Serialize, const S: u16> IntoResponse for Json<T, S> {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(S).unwrap_or(StatusCode::OK);
        let mut resp = (status, axum::Json(self.value)).into_response();
        if let Some(loc) = self.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            resp.headers_mut().insert(LOCATION, loc);
        }
        resp
    }
}

impl<T: JsonSchema, const S: u16> OperationOutput for Json<T, S> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        let r = json_doc::<T>(ctx, "success");
        Some(if S == 201 || S == 202 {
            with_header(r, "Location", "where the resource is (to read or poll)")
        } else {
            r
        })
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(S)), r)])
            .unwrap_or_default()
    }
}

/// A JSON answer with a strong ETag over its bytes; `304 Not Modified` when the client
/// already has it (`If-None-Match`).
pub struct Etagged<T> {
    value: Option<T>,
    if_none_match: Option<HeaderValue>,
    /// The body, when it was encoded ahead ([`Etagged::encode_apart`]).
    encoded: Option<Vec<u8>>,
}

impl<T> Etagged<T> {
    pub fn new(request_headers: &HeaderMap, value: T) -> Self {
        Etagged {
            value: Some(value),
            if_none_match: request_headers.get(IF_NONE_MATCH).cloned(),
            encoded: None,
        }
    }
}

impl<T: Serialize + Send + 'static> Etagged<T> {
    /// Encode the body on a blocking thread: for large answers (megabytes of manifests),
    /// so that encoding them does not hold up the async workers serving everyone else.
    pub async fn encode_apart(mut self) -> ApiResult<Self> {
        let Some(value) = self.value.take() else {
            return Ok(self);
        };
        let bytes = tokio::task::spawn_blocking(move || serde_json::to_vec(&value))
            .await
            .map_err(|e| Error::internal("encoding a response", e))?
            .map_err(|e| Error::internal("encoding a response", e))?;
        self.encoded = Some(bytes);
        Ok(self)
    }
}

impl<T: Serialize> IntoResponse for Etagged<T> {
    fn into_response(self) -> Response {
        let encoded = match (self.encoded, &self.value) {
            (Some(b), _) => Ok(b),
            (None, value) => serde_json::to_vec(value),
        };
        let body = match encoded {
            Ok(b) => b,
            Err(e) => {
                return ApiError::from(Error::internal("encoding a response", e)).into_response()
            }
        };
        let tag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
        let matches = self
            .if_none_match
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
        let etag = HeaderValue::from_str(&tag).expect("hex is a valid header value");
        if matches {
            return (StatusCode::NOT_MODIFIED, [(ETAG, etag)]).into_response();
        }
        (
            StatusCode::OK,
            [
                (ETAG, etag),
                (CONTENT_TYPE, HeaderValue::from_static("application/json")),
            ],
            body,
        )
            .into_response()
    }
}

impl<T: JsonSchema> OperationOutput for Etagged<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(with_header(
            json_doc::<T>(ctx, "success"),
            "ETag",
            "a strong validator of the body; send it back in If-None-Match",
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let Some(ok) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        vec![
            (Some(DocStatus::Code(200)), ok),
            (
                Some(DocStatus::Code(304)),
                DocResponse {
                    description: "not modified: the If-None-Match ETag is current".into(),
                    ..Default::default()
                },
            ),
        ]
    }
}

/// An answer with extra headers (`Cache-Control: no-store`, a cookie...), documented as
/// the answer it wraps.
pub struct Headed<R> {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub inner: R,
}

/// `Cache-Control: no-store` on an answer carrying a secret.
pub fn no_store<R>(inner: R) -> Headed<R> {
    Headed {
        headers: vec![(CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        inner,
    }
}

impl<R: IntoResponse> IntoResponse for Headed<R> {
    fn into_response(self) -> Response {
        let mut resp = self.inner.into_response();
        for (k, v) in self.headers {
            // Several cookies may be set at once; every other header is set once.
            if k == axum::http::header::SET_COOKIE {
                resp.headers_mut().append(k, v);
            } else {
                resp.headers_mut().insert(k, v);
            }
        }
        resp
    }
}

impl<R: OperationOutput> OperationOutput for Headed<R> {
    type Inner = R::Inner;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        R::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        R::inferred_responses(ctx, op)
    }
}

/// A streamed body of JSON lines (`application/x-ndjson`), one `T` per line.
pub struct NdJson<T> {
    body: axum::body::Body,
    _rows: std::marker::PhantomData<fn() -> T>,
}

impl<T> NdJson<T> {
    pub fn new(body: axum::body::Body) -> Self {
        NdJson {
            body,
            _rows: std::marker::PhantomData,
        }
    }
}

impl<T> IntoResponse for NdJson<T> {
    fn into_response(self) -> Response {
        (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            )],
            self.body,
        )
            .into_response()
    }
}

impl<T: JsonSchema> OperationOutput for NdJson<T> {
    type Inner = T;

    fn operation_response(ctx: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        let schema = ctx.schema.subschema_for::<T>();
        Some(doc_response(
            "JSON lines: one JSON object per line, streamed",
            "application/x-ndjson",
            schema,
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(200)), r)])
            .unwrap_or_default()
    }
}

/// Text in the Prometheus exposition format.
pub struct Prometheus(pub String);

impl IntoResponse for Prometheus {
    fn into_response(self) -> Response {
        (
            [(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            )],
            self.0,
        )
            .into_response()
    }
}

impl OperationOutput for Prometheus {
    type Inner = String;

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(doc_response(
            "metrics in the Prometheus text format",
            "text/plain",
            json_schema!({"type": "string"}),
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(200)), r)])
            .unwrap_or_default()
    }
}

/// An HTML page with its status (a form shown again with a message answers 4xx).
pub struct Page {
    pub status: StatusCode,
    pub html: String,
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        (self.status, axum::response::Html(self.html)).into_response()
    }
}

impl OperationOutput for Page {
    type Inner = String;

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(doc_response(
            "an HTML page",
            "text/html",
            json_schema!({"type": "string"}),
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let Some(page) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        vec![
            (Some(DocStatus::Code(200)), page.clone()),
            (
                None,
                DocResponse {
                    description: "the page again, with what went wrong".into(),
                    ..page
                },
            ),
        ]
    }
}

/// A redirect with status `S` to `location`: [`Found`] (302) or [`SeeOther`] (303, after
/// a form post).
pub struct Redirect<const S: u16> {
    pub location: HeaderValue,
}

/// `302 Found` to `location`.
pub type Found = Redirect<302>;
/// `303 See Other` to `location`: where a browser goes after a form post.
pub type SeeOther = Redirect<303>;

impl SeeOther {
    /// A redirect to a path of this site.
    pub fn to(path: &'static str) -> Self {
        Redirect {
            location: HeaderValue::from_static(path),
        }
    }
}

impl<const S: u16> IntoResponse for Redirect<S> {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(S).unwrap_or(StatusCode::FOUND);
        (status, [(LOCATION, self.location)]).into_response()
    }
}

impl<const S: u16> OperationOutput for Redirect<S> {
    type Inner = ();

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(with_header(
            DocResponse {
                description: "a redirect".into(),
                ..Default::default()
            },
            "Location",
            "where to go",
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(S)), r)])
            .unwrap_or_default()
    }
}

/// A page, or a redirect (a form post that worked, a page that needs a signed-in user).
pub enum PageOr {
    Page(Headed<Page>),
    Redirect(Headed<SeeOther>),
}

impl IntoResponse for PageOr {
    fn into_response(self) -> Response {
        match self {
            PageOr::Page(p) => p.into_response(),
            PageOr::Redirect(r) => r.into_response(),
        }
    }
}

impl From<Headed<Page>> for PageOr {
    fn from(p: Headed<Page>) -> Self {
        PageOr::Page(p)
    }
}

impl OperationOutput for PageOr {
    type Inner = String;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        Page::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let mut out = SeeOther::inferred_responses(ctx, op);
        out.extend(Page::inferred_responses(ctx, op));
        out
    }
}

/// One of two JSON answers (`A` with status `SA`, `B` with `SB`), both documented.
pub enum Either<A, const SA: u16, B, const SB: u16> {
    A(A),
    B(B),
}

impl<A: Serialize, const SA: u16, B: Serialize, const SB: u16> IntoResponse
    for Either<A, SA, B, SB>
{
    fn into_response(self) -> Response {
        match self {
            Either::A(a) => Json::<A, SA> {
                value: a,
                location: None,
            }
            .into_response(),
            Either::B(b) => Json::<B, SB> {
                value: b,
                location: None,
            }
            .into_response(),
        }
    }
}

impl<A: JsonSchema, const SA: u16, B: JsonSchema, const SB: u16> OperationOutput
    for Either<A, SA, B, SB>
{
    type Inner = A;

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let mut r = Json::<A, SA>::inferred_responses(ctx, op);
        r.extend(Json::<B, SB>::inferred_responses(ctx, op));
        r
    }
}

/// A stylesheet (or another static text asset), already a response with its headers.
pub struct Stylesheet(pub Response);

impl IntoResponse for Stylesheet {
    fn into_response(self) -> Response {
        self.0
    }
}

impl OperationOutput for Stylesheet {
    type Inner = String;

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(doc_response(
            "a stylesheet",
            "text/css",
            json_schema!({"type": "string"}),
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let Some(css) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        ok_or_not_modified(css)
    }
}

/// The documented answers of a cacheable asset: `ok` (200 and the default), or 304.
fn ok_or_not_modified(ok: DocResponse) -> Vec<(Option<DocStatus>, DocResponse)> {
    vec![
        (Some(DocStatus::Code(200)), ok.clone()),
        (
            Some(DocStatus::Code(304)),
            DocResponse {
                description: "not modified (If-None-Match)".into(),
                ..DocResponse::default()
            },
        ),
        (None, ok),
    ]
}

/// A version's content: its bytes, with its sha256 as a strong `ETag` and caching for a
/// year (content by hash never changes), or 304 for a matching `If-None-Match`.
pub struct Content(pub Response);

impl Content {
    pub fn new(request_headers: &HeaderMap, hash: &str, bytes: Vec<u8>) -> Self {
        let etag = format!("\"sha256:{hash}\"");
        let fresh = request_headers
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
        let headers = [
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            ),
            (
                ETAG,
                HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"content\"")),
            ),
        ];
        if fresh {
            return Content((StatusCode::NOT_MODIFIED, headers).into_response());
        }
        let digest = HeaderValue::from_str(&format!("sha256:{hash}"))
            .unwrap_or(HeaderValue::from_static("sha256:"));
        Content(
            (
                StatusCode::OK,
                headers,
                [
                    (
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/octet-stream"),
                    ),
                    (HeaderName::from_static("x-content-sha256"), digest),
                ],
                bytes,
            )
                .into_response(),
        )
    }
}

impl IntoResponse for Content {
    fn into_response(self) -> Response {
        self.0
    }
}

impl OperationOutput for Content {
    type Inner = Vec<u8>;

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        let r = doc_response(
            "the content's bytes",
            "application/octet-stream",
            json_schema!({"type": "string", "format": "binary"}),
        );
        Some(with_header(
            with_header(
                r,
                "ETag",
                "\"sha256:<hex>\": the content's hash; send it back in If-None-Match",
            ),
            "X-Content-SHA256",
            "sha256:<hex>, to verify the bytes against",
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let Some(ok) = Self::operation_response(ctx, op) else {
            return Vec::new();
        };
        ok_or_not_modified(ok)
    }
}

/// A stream of Server-Sent Events (`text/event-stream`), already a response.
pub struct EventStream(pub Response);

impl IntoResponse for EventStream {
    fn into_response(self) -> Response {
        self.0
    }
}

impl OperationOutput for EventStream {
    type Inner = String;

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        Some(doc_response(
            "Server-Sent Events: each event's id is its feed position and its data one change as JSON; comments keep the connection alive",
            "text/event-stream",
            json_schema!({"type": "string"}),
        ))
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        Self::operation_response(ctx, op)
            .map(|r| vec![(Some(DocStatus::Code(200)), r)])
            .unwrap_or_default()
    }
}
