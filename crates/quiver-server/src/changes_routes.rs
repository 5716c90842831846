//! The public change feed: `GET /api/v1/changes` (pages, with an optional long poll) and
//! `GET /api/v1/changes/stream` (Server-Sent Events, resumable with `Last-Event-ID`).
//! Thin handlers over the engine's `changes` service, which decides what each caller may
//! see.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use futures_util::stream;
use quiver_engine::changes::{Changes, MAX_WAIT};
use quiver_model::Error;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::error::ApiResult;
use crate::extract::{Auth, Query};
use crate::params::Param;
use crate::reply::{EventStream, Json};
use crate::AppState;

/// Where to read from.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangesParams {
    /// The position to read after (default 0: from the start); a previous answer's `next`.
    #[serde(default)]
    pub since: Option<Param<i64>>,
    /// At most this many changes (1 to 1,000, default 100).
    #[serde(default)]
    pub limit: Option<Param<usize>>,
    /// Seconds to wait for a first change when there is none yet (0 to 60, default 0).
    #[serde(default)]
    pub wait: Option<Param<u64>>,
}

pub async fn changes(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<ChangesParams>,
) -> ApiResult<Json<Changes>> {
    let wait = p.wait.map_or(0, |w| w.0);
    if wait > MAX_WAIT.as_secs() {
        return Err(Error::invalid("wait", format!("0 to {} seconds", MAX_WAIT.as_secs())).into());
    }
    let page = state
        .registry
        .wait_changes(
            &caller,
            p.since.map_or(0, |s| s.0),
            p.limit.map_or(100, |l| l.0),
            Duration::from_secs(wait),
        )
        .await?;
    Ok(Json::ok(page))
}

/// Where a stream starts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// The position to stream after (default: `Last-Event-ID`, else 0).
    #[serde(default)]
    pub since: Option<Param<i64>>,
}

/// A stream's state between events.
struct Tail {
    state: AppState,
    caller: quiver_engine::Caller,
    next: i64,
    buffered: std::collections::VecDeque<quiver_engine::changes::Change>,
}

pub async fn stream(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Query(p): Query<StreamParams>,
    headers: HeaderMap,
) -> ApiResult<EventStream> {
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| Error::invalid("Last-Event-ID", "a feed position"))
        })
        .transpose()?;
    let since = p.since.map(|s| s.0).or(resume).unwrap_or(0);
    if since < 0 {
        return Err(Error::invalid("since", "a feed position, 0 or more").into());
    }
    // Refuse a bad caller or position now, not as a broken stream.
    state.registry.changes(&caller, since, 1).await?;
    let tail = Tail {
        state,
        caller,
        next: since,
        buffered: Default::default(),
    };
    let events = stream::unfold(tail, |mut t| async move {
        loop {
            if let Some(c) = t.buffered.pop_front() {
                let event = Event::default()
                    .id(c.seq.to_string())
                    .event("change")
                    .json_data(&c)
                    .unwrap_or_else(|_| Event::default().comment("unencodable change"));
                return Some((Ok::<_, std::convert::Infallible>(event), t));
            }
            // Long polls of 25 s: the keep-alive comments flow meanwhile.
            match t
                .state
                .registry
                .wait_changes(&t.caller, t.next, 100, Duration::from_secs(25))
                .await
            {
                Ok(page) => {
                    t.next = page.next;
                    t.buffered.extend(page.items);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change stream ended");
                    return None;
                }
            }
        }
    });
    Ok(EventStream(
        Sse::new(events)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    ))
}
