//! Authoring: checking a version before publishing it, disabling or enabling an entry or
//! one version, and deleting an entry or a version under the deletion policy. Thin
//! handlers over the engine's `authoring` and `deletion` services.

use axum::extract::State;
use quiver_engine::authoring::{
    BulkReport, BulkUpdate, EntryDraft, ValidationReport, VersionDraft,
};
use quiver_model::{Entry, NewVersion, Tombstone, Version};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::download_routes::{decode_content, empty_object};
use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, OptionalJsonBody, PathParams};
use crate::reply::Json;
use crate::routes::{EntryPath, VersionPath};
use crate::AppState;

/// Body of `POST …/versions/validate`: what `POST …/versions` takes, and for a name that
/// does not exist yet the entry's fields.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateVersion {
    pub version: String,
    #[serde(default = "empty_object")]
    pub manifest: serde_json::Value,
    #[serde(default)]
    pub changelog: Option<String>,
    #[serde(default)]
    pub breaking: bool,
    /// The content as text, checked as a publish would (its hash against a declared one).
    #[serde(default)]
    pub content: Option<String>,
    /// The content as base64 (instead of `content`).
    #[serde(default)]
    pub content_base64: Option<String>,
    /// The entry's fields (description, tags, ...), to check the first version of a name
    /// not created yet; ignored when the entry exists.
    #[serde(default)]
    pub entry: Option<EntryDraft>,
}

pub async fn validate_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(body): JsonBody<ValidateVersion>,
) -> ApiResult<Json<ValidationReport>> {
    let draft = VersionDraft {
        version: NewVersion {
            version: body.version,
            manifest: body.manifest,
            changelog: body.changelog,
            breaking: body.breaking,
        },
        content: decode_content(body.content, body.content_base64)?,
        entry: body.entry,
    };
    let report = state
        .registry
        .validate_version(&caller, &path.key(), draft)
        .await?;
    Ok(Json::ok(report))
}

/// Body of `POST …/disable`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableRequest {
    /// Why (1 to 500 characters): shown wherever the entry is marked disabled.
    pub reason: String,
}

pub async fn disable(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(body): JsonBody<DisableRequest>,
) -> ApiResult<Json<Entry>> {
    let e = state
        .registry
        .disable_entry(&caller, &path.key(), &body.reason)
        .await?;
    Ok(Json::ok(e))
}

pub async fn enable(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
) -> ApiResult<Json<Entry>> {
    let e = state.registry.enable_entry(&caller, &path.key()).await?;
    Ok(Json::ok(e))
}

pub async fn bulk_update(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(body): JsonBody<BulkUpdate>,
) -> ApiResult<Json<BulkReport>> {
    Ok(Json::ok(state.registry.bulk_update(&caller, body).await?))
}

/// Body of `POST …/versions/{version}/disable`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableVersionRequest {
    /// Why (1 to 500 characters): shown wherever the version is marked disabled.
    pub reason: String,
}

pub async fn disable_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<VersionPath>,
    JsonBody(body): JsonBody<DisableVersionRequest>,
) -> ApiResult<Json<Version>> {
    let (key, version) = path.key();
    let v = state
        .registry
        .disable_version(&caller, &key, &version, &body.reason)
        .await?;
    Ok(Json::ok(v))
}

pub async fn enable_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<VersionPath>,
) -> ApiResult<Json<Version>> {
    let (key, version) = path.key();
    let v = state
        .registry
        .enable_version(&caller, &key, &version)
        .await?;
    Ok(Json::ok(v))
}

/// Body of `DELETE` on an entry or a version (optional).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteRequest {
    /// Why (1 to 500 characters; required of site admins): kept on the tombstone, in the
    /// audit log, and shown when the deleted name is read.
    #[serde(default)]
    pub reason: Option<String>,
}

pub async fn delete_entry(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    OptionalJsonBody(body): OptionalJsonBody<DeleteRequest>,
) -> ApiResult<Json<Tombstone>> {
    let t = state
        .registry
        .delete_entry(&caller, &path.key(), body.reason.as_deref())
        .await?;
    Ok(Json::ok(t))
}

pub async fn delete_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<VersionPath>,
    OptionalJsonBody(body): OptionalJsonBody<DeleteRequest>,
) -> ApiResult<Json<Tombstone>> {
    let (key, version) = path.key();
    let t = state
        .registry
        .delete_version(&caller, &key, &version, body.reason.as_deref())
        .await?;
    Ok(Json::ok(t))
}
