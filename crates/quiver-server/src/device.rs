//! Device-code sign-in routes (RFC 8628): `POST /api/v1/device/code`,
//! `POST /api/v1/device/approve`, `POST /api/v1/device/token`. The protocol lives in the
//! engine (`quiver_engine::device`); these shape its answers. A poll that gets no token is
//! a 400 in the one error envelope whose `code` is the RFC's error code
//! (`authorization_pending`, `slow_down`, `expired_token`, `access_denied`,
//! `invalid_grant`).

use axum::extract::State;
use axum::http::header::HOST;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use quiver_engine::accounts::NewTokenSecret;
use quiver_engine::device::{
    DeviceAuthorization, DeviceCodeRequest, DeviceDecided, DeviceDecision, DevicePoll,
    DeviceTokenRequest,
};

use crate::error::{ApiError, ApiResult, Code};
use crate::extract::{Auth, JsonBody};
use crate::reply::{no_store, Headed, Json, Page};
use crate::AppState;

/// The server's base URL as this client reached it (for the verification page's address
/// when none is configured).
pub(crate) fn own_base(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|h| h.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}")
}

pub async fn device_code(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(r): JsonBody<DeviceCodeRequest>,
) -> ApiResult<Headed<Json<DeviceAuthorization>>> {
    let a = state.registry.start_device(r, &own_base(&headers)).await?;
    Ok(no_store(Json::ok(a)))
}

pub async fn device_approve(
    State(state): State<AppState>,
    Auth(caller): Auth,
    JsonBody(d): JsonBody<DeviceDecision>,
) -> ApiResult<Json<DeviceDecided>> {
    Ok(Json::ok(state.registry.decide_device(&caller, d).await?))
}

pub async fn device_token(
    State(state): State<AppState>,
    JsonBody(r): JsonBody<DeviceTokenRequest>,
) -> Result<Headed<Json<NewTokenSecret>>, Headed<ApiError>> {
    let poll = state
        .registry
        .poll_device(r)
        .await
        .map_err(|e| no_store(e.into()))?;
    let code = poll
        .error_code()
        .and_then(Code::from_name)
        .unwrap_or(Code::InvalidGrant);
    let message = match poll {
        DevicePoll::Token(t) => return Ok(no_store(Json::ok(t))),
        DevicePoll::Pending => {
            "the request is waiting for approval; poll again after the interval".to_string()
        }
        DevicePoll::SlowDown { interval } => {
            format!("polling too fast; wait {interval} seconds between polls")
        }
        DevicePoll::Expired => "the code expired; start the sign-in again".to_string(),
        DevicePoll::Denied => "the request was denied".to_string(),
        DevicePoll::InvalidGrant => {
            "unknown device code, or its token was already handed out".to_string()
        }
    };
    Err(no_store(ApiError::new(
        code,
        message,
        Some("device_code".into()),
    )))
}

// ---- the verification page ------------------------------------------------------------

/// Query of `GET /device` (a link may carry the code).
#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct PageQuery {
    #[serde(default)]
    user_code: Option<String>,
}

/// Form of `POST /device`.
// No `Debug`: it holds a password.
#[derive(serde::Deserialize, schemars::JsonSchema)]
pub struct PageForm {
    #[serde(default)]
    user_code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    /// `approve` or `deny` (the button pressed).
    #[serde(default)]
    decision: String,
}

/// What the page shows: the form (with the code filled in and a problem, if any), or the
/// outcome of a decision.
#[derive(Default, serde::Serialize)]
struct View<'a> {
    user_code: &'a str,
    problem: Option<&'a str>,
    approved: Option<Approved<'a>>,
    denied: Option<Denied<'a>>,
}

#[derive(serde::Serialize)]
struct Approved<'a> {
    client: &'a str,
    user: &'a str,
    scopes: String,
}

#[derive(serde::Serialize)]
struct Denied<'a> {
    client: &'a str,
}

/// The page, in the website's layout (`templates/web/device.html`), HTML-escaped by the
/// template engine.
fn render(view: &View) -> Result<String, minijinja::Error> {
    crate::web::templates()
        .get_template("device.html")?
        .render(view)
}

fn html(status: StatusCode, view: View) -> Headed<Page> {
    let (status, doc) = match render(&view) {
        Ok(doc) => (status, doc),
        Err(e) => {
            tracing::error!(error = %e, "rendering the device page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; the server log has the details".to_string(),
            )
        }
    };
    // The site's headers (no script, no framing), and never cached: the form is a
    // password form.
    let mut headers = crate::web::page_headers();
    headers.retain(|(k, _)| k != axum::http::header::CACHE_CONTROL);
    let mut page = no_store(Page { status, html: doc });
    page.headers.extend(headers);
    page
}

fn form<'a>(user_code: &'a str, problem: Option<&'a str>) -> View<'a> {
    View {
        user_code,
        problem,
        ..View::default()
    }
}

/// `GET /device`: the page a device's user types the code at.
pub async fn page(axum::extract::Query(q): axum::extract::Query<PageQuery>) -> Headed<Page> {
    html(
        StatusCode::OK,
        form(q.user_code.as_deref().unwrap_or(""), None),
    )
}

/// `POST /device`: approve or deny with a user name and password.
pub async fn page_submit(
    State(state): State<AppState>,
    axum::extract::Form(f): axum::extract::Form<PageForm>,
) -> Headed<Page> {
    let deny = match f.decision.as_str() {
        "approve" => false,
        "deny" => true,
        _ => {
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                form(&f.user_code, Some("Choose Approve or Deny.")),
            )
        }
    };
    let decided = state
        .registry
        .decide_device_with_password(
            &f.name,
            &f.password,
            DeviceDecision {
                user_code: f.user_code.clone(),
                deny,
            },
        )
        .await;
    match decided {
        Ok(d) if deny => html(
            StatusCode::OK,
            View {
                denied: Some(Denied {
                    client: &d.client_name,
                }),
                ..View::default()
            },
        ),
        Ok(d) => {
            let scopes: Vec<&str> = d.scopes.iter().map(|s| s.as_str()).collect();
            html(
                StatusCode::OK,
                View {
                    approved: Some(Approved {
                        client: &d.client_name,
                        user: &f.name,
                        scopes: scopes.join(", "),
                    }),
                    ..View::default()
                },
            )
        }
        Err(e) => {
            let status = crate::error::status_of(e.code);
            let message = if e.code == quiver_model::ErrorCode::Internal {
                tracing::error!(error = %e.message, "internal error");
                "internal error; the server log has the details".to_string()
            } else {
                e.message
            };
            let mut page = html(status, form(&f.user_code, Some(&message)));
            if let Some(secs) = e.retry_after {
                page.headers
                    .push((axum::http::header::RETRY_AFTER, HeaderValue::from(secs)));
            }
            page
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_escapes_what_it_shows() {
        let page = render(&form("\"><script>x</script>", Some("<b>no</b>"))).unwrap();
        assert!(
            !page.contains("<script>") && !page.contains("<b>"),
            "{page}"
        );
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;"), "{page}");
        assert!(page.contains("&lt;b&gt;no"), "{page}");
        assert!(
            page.contains("<form class=\"stack\" method=\"post\" action=\"/device\">"),
            "{page}"
        );
        let done = render(&View {
            approved: Some(Approved {
                client: "build <box>",
                user: "erin",
                scopes: "publish-new".into(),
            }),
            ..View::default()
        })
        .unwrap();
        assert!(
            done.contains("Approved: <strong>build &lt;box&gt;</strong>"),
            "{done}"
        );
        assert!(!done.contains("action=\"/device\""), "{done}");
    }
}
