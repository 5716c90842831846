//! Import and export over HTTP: thin handlers over the engine's `transfer` service (the
//! same runs as `quiver import` and `quiver export`; the rules are in
//! `quiver_engine::transfer`).

use aide::generate::GenContext;
use aide::openapi::{
    MediaType, Operation, ReferenceOr, RequestBody, Response as DocResponse, SchemaObject,
    StatusCode as DocStatus,
};
use aide::{OperationInput, OperationOutput};
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use quiver_engine::transfer::{
    ExportRequest, ExportShape, Format, ImportAnswer, ImportJobStatus, ImportRequest,
    QUEUED_IMPORT_BYTES,
};
use quiver_model::{Kind, Status};
use schemars::{json_schema, JsonSchema};
use serde::{Deserialize, Serialize};

use crate::error::{document_errors, ApiError, ApiResult, Code};
use crate::extract::{Auth, PathParams, Query};
use crate::params::{values, Csv, Flag};
use crate::reply::{doc_response, with_header, Json};
use crate::routes::{job_id, Described, IdPath};
use crate::AppState;

/// The query of `GET /api/v1/export`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// `jsonl` (default: every entry the caller may read, lossless), or a source system's
    /// own files (site admins): `blocks` (one `blocks.yml`), `ops-tools`, `recipes`,
    /// `skills`, `modules` (a tar archive).
    format: Option<String>,
    /// Comma-separated kinds (jsonl only).
    kind: Option<Csv<Kind>>,
    /// Comma-separated namespaces (jsonl only).
    namespace: Option<Csv<String>>,
    /// Comma-separated statuses.
    status: Option<Csv<Status>>,
    /// Comma-separated categories (the source systems' formats only).
    category: Option<Csv<String>>,
}

fn format(s: Option<&str>) -> ApiResult<Option<Format>> {
    s.filter(|s| !s.is_empty())
        .map(|s| s.parse::<Format>())
        .transpose()
        .map_err(ApiError::from)
}

/// An export's bytes, streamed, with its type and a file name to save it as.
pub struct Export(Response);

impl IntoResponse for Export {
    fn into_response(self) -> Response {
        self.0
    }
}

impl OperationOutput for Export {
    type Inner = String;

    fn operation_response(_: &mut GenContext, _: &mut Operation) -> Option<DocResponse> {
        let mut r = doc_response(
            "quiver JSONL (application/x-ndjson), streamed",
            "application/x-ndjson",
            json_schema!({"type": "string"}),
        );
        for (media, description) in [
            ("application/yaml", "blocks.yml (format=blocks)"),
            (
                "application/x-tar",
                "a tar archive of a source system's files (ops-tools, recipes, skills, modules)",
            ),
        ] {
            r.content.insert(
                media.into(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema: json_schema!({"type": "string", "format": "binary", "description": description}),
                        example: None,
                        external_docs: None,
                    }),
                    ..Default::default()
                },
            );
        }
        Some(with_header(
            r,
            "Content-Disposition",
            "attachment, with the file name to save the export as",
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

pub async fn export(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ExportParams>,
) -> ApiResult<Export> {
    let req = ExportRequest {
        format: format(p.format.as_deref())?.unwrap_or(Format::Jsonl),
        kinds: values(p.kind),
        namespaces: values(p.namespace),
        statuses: values(p.status),
        categories: values(p.category),
    };
    let format = req.format;
    let (shape, rx) = state.registry.export_stream(&caller, req).await?;
    let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let content_type = match shape {
        ExportShape::Jsonl => "application/x-ndjson",
        ExportShape::Yaml => "application/yaml",
        ExportShape::Tar => "application/x-tar",
    };
    let disposition = format!("attachment; filename=\"{}\"", shape.file_name(format));
    let mut resp = Body::from_stream(chunks).into_response();
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    Ok(Export(resp))
}

/// The query of `POST /api/v1/import`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportParams {
    /// Read, validate and report what would be created, updated, unchanged and rejected;
    /// write nothing.
    dry_run: Option<Flag>,
    /// Write the records that pass even when others are rejected (by default one rejected
    /// record refuses the whole upload with a 422 and nothing is written).
    partial: Option<Flag>,
    /// Force the format instead of detecting it: tsv, jsonl, blocks, ops-tools, recipes,
    /// skills, modules.
    format: Option<String>,
    /// The file's name, for a single file whose reader claims it by name (`blocks.yml`,
    /// `*.jsonl`); not needed for an archive or a forced format.
    filename: Option<String>,
}

/// The body of an import: a file or a tar archive (plain or gzipped), as `quiver import`
/// reads it.
pub struct Upload(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Upload {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        Bytes::from_request(req, state)
            .await
            .map(Upload)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        Code::PayloadTooLarge,
                        "the upload is larger than the server accepts (4 MiB); import larger \
                         data with `quiver import` on the server",
                        Some("body".into()),
                    )
                } else {
                    ApiError::malformed("body", format!("could not read the body: {e}"))
                }
            })
    }
}

impl OperationInput for Upload {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        operation.request_body = Some(ReferenceOr::Item(RequestBody {
            description: Some(
                "A file or archive that `quiver import` reads: quiver JSONL, a data set TSV, a \
                 source system's file, or a tar archive (plain or gzipped) of them, up to 4 MiB. \
                 Bodies over 1 MiB are imported by a job."
                    .into(),
            ),
            content: [(
                "application/octet-stream".to_string(),
                MediaType {
                    schema: Some(SchemaObject {
                        json_schema: json_schema!({"type": "string", "format": "binary"}),
                        example: None,
                        external_docs: None,
                    }),
                    ..Default::default()
                },
            )]
            .into_iter()
            .collect(),
            required: true,
            extensions: Default::default(),
        }));
        document_errors(
            ctx,
            operation,
            &[
                Code::MalformedRequest,
                Code::PayloadTooLarge,
                Code::InvalidInput,
            ],
        );
    }
}

/// A queued import: the job to poll and where.
#[derive(Serialize, JsonSchema)]
pub struct QueuedImport {
    /// The job's id.
    pub job_id: i64,
    /// The job's state (`queued` at first).
    pub state: String,
    /// Where to read the job and, once it ran, its report.
    pub poll: String,
}

/// An import's answer: its report (200), or the job that will run it (202).
pub enum ImportReply {
    Done(Json<Described<ImportAnswer>>),
    Queued(Json<QueuedImport, 202>),
}

impl IntoResponse for ImportReply {
    fn into_response(self) -> Response {
        match self {
            ImportReply::Done(r) => r.into_response(),
            ImportReply::Queued(r) => r.into_response(),
        }
    }
}

impl OperationOutput for ImportReply {
    type Inner = ImportAnswer;

    fn operation_response(ctx: &mut GenContext, op: &mut Operation) -> Option<DocResponse> {
        <Json<Described<ImportAnswer>> as OperationOutput>::operation_response(ctx, op)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        op: &mut Operation,
    ) -> Vec<(Option<DocStatus>, DocResponse)> {
        let mut out =
            <Json<Described<ImportAnswer>> as OperationOutput>::inferred_responses(ctx, op);
        out.extend(<Json<QueuedImport, 202> as OperationOutput>::inferred_responses(ctx, op));
        out
    }
}

pub async fn import(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ImportParams>,
    Upload(body): Upload,
) -> ApiResult<ImportReply> {
    let req = ImportRequest {
        dry_run: p.dry_run.is_some_and(|f| f.0),
        partial: p.partial.is_some_and(|f| f.0),
        format: format(p.format.as_deref())?,
        file_name: p.filename,
    };
    if body.len() > QUEUED_IMPORT_BYTES {
        let job = state.registry.queue_import(&caller, body, req).await?;
        let poll = format!("/api/v1/import/{}", job.id);
        return Ok(ImportReply::Queued(Json::at(
            poll.clone(),
            QueuedImport {
                job_id: job.id,
                state: job.state.as_str().to_string(),
                poll,
            },
        )));
    }
    let answer = state.registry.import_upload(&caller, body, req).await?;
    Ok(ImportReply::Done(Json::ok(Described(answer))))
}

pub async fn import_job(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(p): PathParams<IdPath>,
) -> ApiResult<Json<Described<ImportJobStatus>>> {
    let status = state.registry.import_job(&caller, job_id(&p.id)?).await?;
    Ok(Json::ok(Described(status)))
}
