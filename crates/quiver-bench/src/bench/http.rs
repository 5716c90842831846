//! A minimal keep-alive HTTP/1.1 client over one TCP connection (hyper's connection
//! API): no pool, no redirects, no TLS, so that what is measured is the server and the
//! loopback, not a client library's machinery.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Longest wait for one request, connection included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Empty<Bytes>>>,
    /// Sent as `X-Forwarded-For` (a server that trusts it counts this client by it).
    pub forwarded_for: Option<String>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Client {
            addr,
            sender: None,
            forwarded_for: None,
        }
    }

    async fn connect(&mut self) -> anyhow::Result<()> {
        let stream = tokio::net::TcpStream::connect(self.addr)
            .await
            .with_context(|| format!("connecting to {}", self.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        Ok(())
    }

    /// GET `path`, reading the whole body. Reconnects when the connection was closed.
    pub async fn get(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.get_inner(path))
            .await
            .map_err(|_| {
                self.sender = None;
                anyhow!("GET {path}: no answer within {REQUEST_TIMEOUT:?}")
            })?
    }

    /// GET `path` with a longer wait than [`Self::get`] allows (a first request that
    /// builds a derived view).
    pub async fn get_slow(
        &mut self,
        path: &str,
        wait: std::time::Duration,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        tokio::time::timeout(wait, self.get_inner(path))
            .await
            .map_err(|_| {
                self.sender = None;
                anyhow!("GET {path}: no answer within {wait:?}")
            })?
    }

    async fn get_inner(&mut self, path: &str) -> anyhow::Result<(StatusCode, Bytes)> {
        let ready = match &mut self.sender {
            Some(s) => s.ready().await.is_ok(),
            None => false,
        };
        if !ready {
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected");
        let mut req = Request::get(path).header(hyper::header::HOST, "127.0.0.1");
        if let Some(f) = &self.forwarded_for {
            req = req.header("x-forwarded-for", f.as_str());
        }
        let req = req.body(Empty::<Bytes>::new())?;
        let res = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(anyhow!("GET {path}: {e}"));
            }
        };
        let status = res.status();
        let body = match res.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => {
                self.sender = None;
                return Err(anyhow!("GET {path}: reading the body: {e}"));
            }
        };
        Ok((status, body))
    }
}

/// POST `body` as JSON to `path` on a connection of its own (for the few writes the bench
/// makes; the timed reads use [`Client`]).
pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let run = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = Request::post(path)
            .header(hyper::header::HOST, "127.0.0.1")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(serde_json::to_vec(body)?)))?;
        let res = sender
            .send_request(req)
            .await
            .map_err(|e| anyhow!("POST {path}: {e}"))?;
        let status = res.status();
        let body = res
            .into_body()
            .collect()
            .await
            .map_err(|e| anyhow!("POST {path}: reading the body: {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(REQUEST_TIMEOUT, run)
        .await
        .map_err(|_| anyhow!("POST {path}: no answer within {REQUEST_TIMEOUT:?}"))?
}
