//! Request extractors: the caller, JSON bodies with field-precise errors, and typed query
//! and path parameters. Each also describes itself to the OpenAPI document
//! ([`aide::OperationInput`]), so a handler's signature is its documentation.

use std::collections::BTreeSet;

use aide::generate::GenContext;
use aide::openapi::{MediaType, Operation, ReferenceOr, RequestBody, SchemaObject};
use aide::OperationInput;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use quiver_engine::Caller;
use quiver_model::Error;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::error::{document_errors, ApiError, ApiResult, Code};
use crate::AppState;

/// The caller of a request: anonymous without an `Authorization` header; the bootstrap
/// admin with the configured admin token; else the user of an API token, resolved by the
/// engine (revocation, expiry, rights). A token that does not resolve is refused (401)
/// rather than silently downgraded to anonymous.
pub struct Auth(pub Caller);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        bearer_caller(&parts.headers, state).await.map(Auth)
    }
}

/// The caller `headers` authenticate, as [`Auth`] finds it (also used by the MCP
/// endpoint's middleware).
pub(crate) async fn bearer_caller(headers: &HeaderMap, state: &AppState) -> ApiResult<Caller> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(Caller::Anonymous);
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
    if state.is_admin_token(token) {
        return Ok(Caller::BootstrapAdmin);
    }
    Ok(state.registry.resolve_token(token).await?)
}

/// Documented as optional bearer authentication: anonymous callers are served too, with
/// what anonymous callers may see.
impl OperationInput for Auth {
    fn operation_input(_ctx: &mut GenContext, operation: &mut Operation) {
        let bearer = [("bearer".to_string(), Vec::new())].into_iter().collect();
        if operation.security.is_empty() {
            operation.security = vec![bearer, Default::default()];
        }
        document_errors(_ctx, operation, &[Code::Unauthorized, Code::Forbidden]);
    }
}

/// A JSON body. Syntax errors are 400; a body of the wrong shape is 422 and names the
/// field (`versions[0].manifest`, `kind`...).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let ct_ok = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !ct_ok {
            return Err(ApiError::malformed(
                "content-type",
                "the body must be JSON (Content-Type: application/json)",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    Code::PayloadTooLarge,
                    "the body is larger than the server accepts (4 MiB)",
                    Some("body".into()),
                )
            } else {
                ApiError::malformed("body", format!("could not read the body: {e}"))
            }
        })?;
        // Every body is a JSON object (serde would also read a struct from an array).
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(
                if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() {
                    Error::invalid("body", "must be a JSON object").into()
                } else {
                    ApiError::malformed("body", "the body is not valid JSON")
                },
            );
        }
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

fn json_body_doc<T: JsonSchema>(ctx: &mut GenContext, operation: &mut Operation, required: bool) {
    let json_schema = ctx.schema.subschema_for::<T>();
    let description = ctx
        .resolve_schema(&json_schema)
        .get("description")
        .and_then(|d| d.as_str())
        .map(String::from);
    operation.request_body = Some(ReferenceOr::Item(RequestBody {
        description,
        content: [(
            "application/json".to_string(),
            MediaType {
                schema: Some(SchemaObject {
                    json_schema,
                    example: None,
                    external_docs: None,
                }),
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
        required,
        extensions: Default::default(),
    }));
}

/// What a JSON body can be refused for.
const BODY_ERRORS: [Code; 3] = [
    Code::MalformedRequest,
    Code::PayloadTooLarge,
    Code::InvalidInput,
];

impl<T: JsonSchema> OperationInput for JsonBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        json_body_doc::<T>(ctx, operation, true);
        document_errors(ctx, operation, &BODY_ERRORS);
    }
}

/// A JSON body that may be left out (no body, or no `Content-Type`): then `T::default()`.
pub struct OptionalJsonBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let empty = req.headers().get(CONTENT_LENGTH).is_some_and(|v| v == "0")
            || !req.headers().contains_key(CONTENT_TYPE);
        if empty {
            return Ok(OptionalJsonBody(T::default()));
        }
        JsonBody::<T>::from_request(req, state)
            .await
            .map(|b| OptionalJsonBody(b.0))
    }
}

impl<T: JsonSchema> OperationInput for OptionalJsonBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        json_body_doc::<T>(ctx, operation, false);
        document_errors(ctx, operation, &BODY_ERRORS);
    }
}

/// serde_json appends " at line 1 column 42"; the field already says where.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The names a parameter struct accepts (the properties of its schema).
fn accepted<T: JsonSchema>() -> Vec<String> {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
    schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Deserialize a parameter struct from name/value pairs: repeated names join their values
/// with commas (`kind=tool&kind=skill` is `kind=tool,skill`), an empty value counts as
/// absent, and an error names the parameter at fault.
fn from_pairs<T: DeserializeOwned + JsonSchema>(
    pairs: impl IntoIterator<Item = (String, String)>,
) -> ApiResult<T> {
    let mut map: Map<String, Value> = Map::new();
    for (k, v) in pairs {
        match map.get_mut(&k) {
            Some(Value::String(old)) => {
                old.push(',');
                old.push_str(&v);
            }
            _ => {
                map.insert(k, Value::String(v));
            }
        }
    }
    for v in map.values_mut() {
        if v.as_str() == Some("") {
            *v = Value::Null;
        }
    }
    let keys: BTreeSet<String> = map.keys().cloned().collect();
    match serde_path_to_error::deserialize(Value::Object(map)) {
        Ok(t) => Ok(t),
        Err(e) => {
            let names = accepted::<T>();
            if let Some(unknown) = keys.iter().find(|k| !names.contains(k)) {
                return Err(Error::invalid(
                    unknown.clone(),
                    format!(
                        "unknown query parameter '{unknown}' (accepted: {})",
                        names.join(", ")
                    ),
                )
                .into());
            }
            let field = e.path().to_string();
            let message = e.into_inner().to_string();
            // Values that parse with the model's own rules name their field already.
            if message.starts_with(&format!("{field}: ")) {
                Err(Error {
                    code: quiver_model::ErrorCode::InvalidInput,
                    message,
                    field: Some(field),
                    retry_after: None,
                }
                .into())
            } else {
                Err(Error::invalid(field, message).into())
            }
        }
    }
}

/// Typed query parameters: a struct with `deny_unknown_fields`, so an unknown parameter
/// is a 422 naming it, as is a bad value.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + JsonSchema, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> ApiResult<Self> {
        let pairs = match parts.uri.query() {
            None => Vec::new(),
            Some(q) => axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
                &format!("/?{q}")
                    .parse()
                    .map_err(|_| ApiError::malformed("query", "the query string is not valid"))?,
            )
            .map(|axum::extract::Query(v)| v)
            .map_err(|e| {
                ApiError::malformed("query", format!("the query string is not valid: {e}"))
            })?,
        };
        from_pairs(pairs).map(Query)
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::extract::Query<T> as OperationInput>::operation_input(ctx, operation);
        // An empty value counts as absent (`from_pairs`; HTML forms send them), so the
        // document accepts `""` beside each parameter's own schema.
        for p in &mut operation.parameters {
            if let aide::openapi::ReferenceOr::Item(aide::openapi::Parameter::Query {
                parameter_data,
                ..
            }) = p
            {
                if let aide::openapi::ParameterSchemaOrContent::Schema(s) =
                    &mut parameter_data.format
                {
                    let own = s.json_schema.clone();
                    s.json_schema = schemars::json_schema!({"anyOf": [own, {"const": ""}]});
                }
            }
        }
        document_errors(
            ctx,
            operation,
            &[Code::MalformedRequest, Code::InvalidInput],
        );
    }
}

/// Typed path parameters (percent-decoded), with the same errors as [`Query`]: a value
/// that does not parse is a 422 naming the parameter.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + JsonSchema, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let raw = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::malformed("path", e.body_text()))?;
        let pairs: Vec<(String, String)> = raw
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        from_pairs(pairs).map(PathParams)
    }
}

impl<T: JsonSchema> OperationInput for PathParams<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        <axum::extract::Path<T> as OperationInput>::operation_input(ctx, operation);
        document_errors(ctx, operation, &[Code::InvalidInput, Code::NotFound]);
    }
}
