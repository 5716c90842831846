//! Content and download statistics: publishing a version with its content, downloading
//! it (counted), and the counts per entry, namespace and user agent. Thin handlers over
//! the engine's `content` and `downloads` services.

use axum::extract::State;
use axum::http::header::USER_AGENT;
use axum::http::HeaderMap;
use base64::Engine as _;
use quiver_engine::downloads::{AgentStats, DownloadStats};
use quiver_model::{Error, NewVersion, Version};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{Auth, JsonBody, PathParams, Query};
use crate::reply::{Content, Created, Json};
use crate::routes::{entry_location, EntryPath, NamespacePath, VersionPath};
use crate::AppState;

/// Body of `POST …/versions`: the version, and optionally its content (a module's file),
/// which quiver hashes and keeps.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishVersion {
    pub version: String,
    #[serde(default = "empty_object")]
    pub manifest: serde_json::Value,
    #[serde(default)]
    pub changelog: Option<String>,
    #[serde(default)]
    pub breaking: bool,
    /// The content as text (UTF-8), up to 2 MiB. quiver records its sha256 as
    /// `manifest.source.content_hash`; a hash the manifest declares must agree.
    #[serde(default)]
    pub content: Option<String>,
    /// The content as base64, for bytes that are not text (instead of `content`).
    #[serde(default)]
    pub content_base64: Option<String>,
}

pub(crate) fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A version's content given as text or as base64 (not both).
pub(crate) fn decode_content(
    text: Option<String>,
    base64: Option<String>,
) -> Result<Option<Vec<u8>>, Error> {
    match (text, base64) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "content_base64",
            "give content or content_base64, not both",
        )),
        (Some(text), None) => Ok(Some(text.into_bytes())),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map(Some)
            .map_err(|e| Error::invalid("content_base64", format!("not base64: {e}"))),
        (None, None) => Ok(None),
    }
}

/// The request's user agent, for the counts per client program.
pub(crate) fn user_agent(headers: &HeaderMap) -> Option<&str> {
    headers.get(USER_AGENT).and_then(|v| v.to_str().ok())
}

pub async fn publish_version(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    JsonBody(body): JsonBody<PublishVersion>,
) -> ApiResult<Created<Version>> {
    let content = decode_content(body.content, body.content_base64)?;
    let key = path.key();
    let v = NewVersion {
        version: body.version,
        manifest: body.manifest,
        changelog: body.changelog,
        breaking: body.breaking,
    };
    let v = state
        .registry
        .publish_with_content(&caller, &key, v, content)
        .await?;
    let loc = format!("{}/versions/{}", entry_location(&key), v.version);
    Ok(Created::at(loc, v))
}

pub async fn download(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<VersionPath>,
    headers: HeaderMap,
) -> ApiResult<Content> {
    let (key, version) = path.key();
    let (hash, bytes) = state
        .registry
        .version_content(&caller, &key, &version)
        .await?;
    state
        .registry
        .count_downloads(&[(key, version)], user_agent(&headers))
        .await;
    Ok(Content::new(&headers, &hash, bytes))
}

/// The window of a statistics answer.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    /// First UTC day (`2026-11-05`; default 29 days before `to`).
    #[serde(default)]
    pub from: Option<String>,
    /// Last UTC day (default today). At most 366 days in all.
    #[serde(default)]
    pub to: Option<String>,
}

impl WindowParams {
    fn dates(&self) -> Result<(Option<jiff::civil::Date>, Option<jiff::civil::Date>), Error> {
        let parse = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| {
                    s.parse::<jiff::civil::Date>().map_err(|_| {
                        Error::invalid(field, format!("`{s}` is not a date (YYYY-MM-DD)"))
                    })
                })
                .transpose()
        };
        Ok((parse("from", &self.from)?, parse("to", &self.to)?))
    }
}

pub async fn entry_stats(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<EntryPath>,
    Query(w): Query<WindowParams>,
) -> ApiResult<Json<DownloadStats>> {
    let (from, to) = w.dates()?;
    Ok(Json::ok(
        state
            .registry
            .entry_download_stats(&caller, &path.key(), from, to)
            .await?,
    ))
}

pub async fn namespace_stats(
    State(state): State<AppState>,
    Auth(caller): Auth,
    PathParams(path): PathParams<NamespacePath>,
    Query(w): Query<WindowParams>,
) -> ApiResult<Json<DownloadStats>> {
    let (from, to) = w.dates()?;
    Ok(Json::ok(
        state
            .registry
            .namespace_download_stats(&caller, &path.namespace, from, to)
            .await?,
    ))
}

pub async fn agent_stats(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(w): Query<WindowParams>,
) -> ApiResult<Json<AgentStats>> {
    let (from, to) = w.dates()?;
    Ok(Json::ok(
        state.registry.agent_stats(&caller, from, to).await?,
    ))
}
