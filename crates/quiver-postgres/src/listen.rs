//! Following the feed head across nodes: a dedicated connection that LISTENs for the
//! NOTIFY every committed write transaction sends.

use std::future::poll_fn;
use std::time::Duration;

use quiver_store::{FeedSubscription, FeedWaker};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

/// The newest feed head this node has heard of, kept current by a background task.
///
/// The task keeps one connection (outside the pool) that LISTENs on the store's channel.
/// After connecting, and after every reconnect, it reads the committed head, so nothing
/// committed while it was away goes unannounced; between notifications it reads the head
/// every `listen_poll_interval` as a fallback and a liveness check. If the connection
/// fails it reconnects with backoff (100 ms doubling up to 5 s).
///
/// Heads only grow and are coalesced: a follower that is busy sees the newest head, not
/// every one in between. Treat a head as a wake-up: read `feed_since(position)` until it
/// returns nothing. Dropping the listener stops the task and closes its connection.
///
/// ```ignore
/// let mut heads = store.listen();
/// while let Some(head) = heads.next().await {
///     if head > position { /* read feed_since(position, ..) until empty */ }
/// }
/// ```
pub struct FeedListener {
    rx: watch::Receiver<i64>,
    task: JoinHandle<()>,
}

impl FeedListener {
    /// Wait until the head moves past the last one returned, and return the newest.
    /// `None` only if the background task has ended (it does not, while the listener lives).
    pub async fn next(&mut self) -> Option<i64> {
        self.rx.changed().await.ok()?;
        Some(*self.rx.borrow_and_update())
    }

    /// The newest head heard of so far (0 before the first connection).
    pub fn head(&self) -> i64 {
        *self.rx.borrow()
    }

    /// A receiver of the head, for `tokio::select!` loops or several consumers.
    pub fn receiver(&self) -> watch::Receiver<i64> {
        self.rx.clone()
    }
}

/// The [`FeedWaker`] of a PostgreSQL database: each subscription LISTENs on a connection
/// of its own (see [`FeedListener`]), so it hears the writes of every node.
pub(crate) struct ListenWaker(pub(crate) crate::PostgresStore);

impl FeedWaker for ListenWaker {
    fn subscribe(&self) -> FeedSubscription {
        let listener = self.0.listen();
        FeedSubscription::new(listener.receiver(), listener)
    }
}

impl Drop for FeedListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) fn spawn(
    mut config: tokio_postgres::Config,
    channel: String,
    schema: String,
    poll: Duration,
) -> FeedListener {
    let mut app = format!("quiver-listen:{schema}");
    app.truncate(63);
    config.application_name(&app);
    let (tx, rx) = watch::channel(0i64);
    let task = tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match listen_once(&config, &channel, poll, &tx, &mut backoff).await {
                Ok(()) => tracing::warn!(channel, "feed listener connection closed; reconnecting"),
                Err(e) => {
                    tracing::warn!(channel, error = %e, "feed listener failed; reconnecting")
                }
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    FeedListener { rx, task }
}

fn bump(tx: &watch::Sender<i64>, head: i64) {
    tx.send_if_modified(|cur| {
        if head > *cur {
            *cur = head;
            true
        } else {
            false
        }
    });
}

async fn read_head(client: &tokio_postgres::Client) -> Result<i64, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT COALESCE(MAX(head), 0)::int8 FROM feed_durable", &[])
        .await?
        .get(0))
}

/// One connection's life: LISTEN, announce the head, then forward notifications until the
/// connection fails or every receiver is gone.
async fn listen_once(
    config: &tokio_postgres::Config,
    channel: &str,
    poll: Duration,
    tx: &watch::Sender<i64>,
    backoff: &mut Duration,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(NoTls).await?;
    let (ntx, mut nrx) = mpsc::unbounded_channel::<String>();
    let channel_name = channel.to_string();
    // The connection must be polled for its messages to arrive; it ends with the client.
    let driver = tokio::spawn(async move {
        loop {
            match poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if n.channel() == channel_name && ntx.send(n.payload().to_string()).is_err() {
                        return;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "feed listener connection error");
                    return;
                }
                None => return,
            }
        }
    });
    let result = async {
        client
            .batch_execute(&format!("LISTEN \"{}\"", channel.replace('"', "\"\"")))
            .await?;
        bump(tx, read_head(&client).await?);
        *backoff = Duration::from_millis(100);
        let mut ticker = tokio::time::interval(poll);
        ticker.tick().await;
        loop {
            tokio::select! {
                n = nrx.recv() => match n {
                    Some(payload) => {
                        if let Ok(head) = payload.trim().parse::<i64>() {
                            bump(tx, head);
                        }
                    }
                    None => return Ok(()),
                },
                _ = ticker.tick() => bump(tx, read_head(&client).await?),
                _ = tx.closed() => return Ok(()),
            }
        }
    }
    .await;
    drop(client);
    driver.abort();
    result
}
