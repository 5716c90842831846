//! Connections: how many, from whom, and for how long.
//!
//! `axum::serve` accepts every connection and keeps it as long as the client likes, so a
//! client that opens connections and sends nothing (slowloris) holds a file descriptor
//! each until the process runs out. quiver accepts with its own loop over hyper instead
//! (hyper's connection builder has the timers; axum's `serve` does not expose them):
//!
//! - **A header-read timeout** ([`ConnectionLimits::header_timeout`]): a client must send
//!   a request's whole head within it, both on a new connection and between requests on
//!   a kept-alive one (so it is the idle keep-alive timeout too). Then the connection is
//!   closed.
//! - **A body timeout** ([`ConnectionLimits::body_timeout`]): a request body that takes
//!   longer to arrive is cut off (the handler sees a read error, the client a 4xx).
//! - **At most [`ConnectionLimits::max_connections`] open connections in total and
//!   [`ConnectionLimits::max_per_client`] per client address.** A connection over either
//!   limit is answered at once with a 503 (the JSON envelope, `Retry-After`,
//!   `Connection: close`) and closed, without reading its request. The per-client count
//!   is by the connection's address: behind a reverse proxy every client shares the
//!   proxy's, so set it to 0 (no per-client limit) there.
//!
//! Shutting down stops accepting, lets requests in flight finish and closes idle
//! connections (hyper-util's graceful shutdown).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt as _;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::error::{ApiError, Code};

/// Limits on connections; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Open connections in all (0: no limit).
    pub max_connections: usize,
    /// Open connections per client address (0: no limit).
    pub max_per_client: usize,
    /// Time for a request's head to arrive, and for a kept-alive connection to start its
    /// next request.
    pub header_timeout: Duration,
    /// Time for a request's body to arrive.
    pub body_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4096,
            max_per_client: 256,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
        }
    }
}

/// Open connections, in all and per client address.
#[derive(Default)]
struct Counts {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// The count of one admitted connection, given back when it is dropped.
struct Admitted {
    counts: Arc<Mutex<Counts>>,
    ip: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_client.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_client.remove(&self.ip);
            }
        }
    }
}

fn admit(counts: &Arc<Mutex<Counts>>, limits: &ConnectionLimits, ip: IpAddr) -> Option<Admitted> {
    let mut c = counts.lock().unwrap_or_else(|e| e.into_inner());
    let mine = c.per_client.get(&ip).copied().unwrap_or(0);
    if (limits.max_connections > 0 && c.total >= limits.max_connections)
        || (limits.max_per_client > 0 && mine >= limits.max_per_client)
    {
        return None;
    }
    c.total += 1;
    *c.per_client.entry(ip).or_insert(0) += 1;
    Some(Admitted {
        counts: counts.clone(),
        ip,
    })
}

/// The whole 503 answer to a connection over a limit, as bytes on the wire.
fn over_limit_answer() -> Vec<u8> {
    let body = ApiError::new(
        Code::Unavailable,
        "too many open connections (from this client or in all); retry shortly",
        None,
    )
    .body_json();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nx-content-type-options: nosniff\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn refuse(mut stream: TcpStream) {
    let answer = over_limit_answer();
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(&answer).await?;
        stream.shutdown().await
    })
    .await;
}

/// Accept errors that concern one connection only (the next accept may well succeed).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Serve `app` on `listener` under `limits` until `shutdown` resolves, then finish the
/// requests in flight. Handlers see the client's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let counts = Arc::new(Mutex::new(Counts::default()));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Some(admitted) = admit(&counts, &limits, addr.ip()) else {
            metrics::counter!("quiver_connections_refused_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo::<SocketAddr>(addr));
            let app = app.clone();
            async move {
                let resp = app.oneshot(req.map(axum::body::Body::new)).await;
                Ok::<_, Infallible>(match resp {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            let _ = conn.await;
            drop(admitted);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_limit_per_client_and_in_all_and_give_back() {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let limits = ConnectionLimits {
            max_connections: 3,
            max_per_client: 2,
            ..Default::default()
        };
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let a1 = admit(&counts, &limits, a).unwrap();
        let _a2 = admit(&counts, &limits, a).unwrap();
        assert!(
            admit(&counts, &limits, a).is_none(),
            "a third from one client"
        );
        let _b1 = admit(&counts, &limits, b).unwrap();
        assert!(admit(&counts, &limits, b).is_none(), "a fourth in all");
        drop(a1);
        assert!(admit(&counts, &limits, b).is_some(), "a slot came back");
    }

    #[test]
    fn the_refusal_is_a_whole_json_answer() {
        let s = String::from_utf8(over_limit_answer()).unwrap();
        let (head, body) = s.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "unavailable");
    }
}
