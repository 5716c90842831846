//! The job worker: takes jobs from a [`JobQueue`], runs their [`Handler`], and records the
//! outcome.
//!
//! - **Handlers must be idempotent.** Delivery is at least once: a worker that dies (or a
//!   handler that outlives its lease) leaves the job to be taken again, possibly while the
//!   first run's effects are already written. A handler should check whether its work is
//!   already done (for example "this version already has a validation result") and make
//!   its writes upserts.
//! - **Polling, with a wake-up.** An idle worker takes again after `poll_interval`, or as
//!   soon as its [`Notify`] is signalled (enqueue on the same node calls
//!   [`WorkerHandle::wake`]); on PostgreSQL other nodes' jobs are found by polling.
//! - **Leases, no renewal.** Each attempt holds its job for `lease` (60 s by default); a
//!   handler still running when the lease ends is abandoned and the attempt failed, since
//!   another worker may have taken the job.
//! - **Graceful shutdown.** [`WorkerHandle::shutdown`] stops taking new jobs and returns
//!   once the job in hand has finished and its outcome is recorded.
//! - **One in-process worker on SQLite** (its writes are serialized anyway); on PostgreSQL
//!   any number of workers across processes, each with its own `worker_id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::jobs::{Job, JobQueue};

/// Runs the jobs of one kind. See the module docs: `run` must be idempotent.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// The job kind this handler runs.
    fn kind(&self) -> &str;
    /// Do the job. `Err` fails the attempt with that message (retried with backoff, dead
    /// after the job's `max_attempts`).
    async fn run(&self, job: &Job) -> Result<(), String>;
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Unique among live workers (for example `<hostname>-<pid>`).
    pub worker_id: String,
    /// How long an idle worker waits before looking for due jobs again.
    pub poll_interval: Duration,
    /// How long an attempt holds its job.
    pub lease: Duration,
    /// The worker-id prefix of this worker's earlier runs (say `<node>:` when ids are
    /// `<node>:<pid>`): jobs they held when they died are taken back when this worker
    /// starts, instead of after their leases run out.
    pub reclaim_prefix: Option<String>,
}

impl WorkerOptions {
    pub fn new(worker_id: impl Into<String>) -> Self {
        WorkerOptions {
            worker_id: worker_id.into(),
            poll_interval: Duration::from_secs(1),
            lease: Duration::from_secs(60),
            reclaim_prefix: None,
        }
    }

    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }
}

/// A worker for a set of handlers.
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    handlers: HashMap<String, Arc<dyn Handler>>,
    kinds: Vec<String>,
    opts: WorkerOptions,
    notify: Arc<Notify>,
}

impl Worker {
    pub fn new(queue: Arc<dyn JobQueue>, opts: WorkerOptions) -> Self {
        Worker {
            queue,
            handlers: HashMap::new(),
            kinds: Vec::new(),
            opts,
            notify: Arc::new(Notify::new()),
        }
    }

    /// Add a handler (replacing any other of the same kind).
    pub fn handler(mut self, handler: impl Handler) -> Self {
        let kind = handler.kind().to_string();
        if !self.kinds.contains(&kind) {
            self.kinds.push(kind.clone());
        }
        self.handlers.insert(kind, Arc::new(handler));
        self
    }

    /// The kinds this worker takes.
    pub fn kinds(&self) -> &[String] {
        &self.kinds
    }

    /// Signal this to make an idle worker look for jobs now.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Take one due job, run it and record the outcome: the job as recorded, or `None`
    /// when nothing was due. Errors are the queue's (the handler's go into the job).
    pub async fn run_once(&self) -> quiver_model::Result<Option<Job>> {
        if self.kinds.is_empty() {
            return Ok(None);
        }
        let Some(job) = self
            .queue
            .take(&self.opts.worker_id, &self.kinds, self.opts.lease)
            .await?
        else {
            return Ok(None);
        };
        let Some(handler) = self.handlers.get(&job.kind).cloned() else {
            // take() only returns our kinds; be safe anyway.
            let msg = format!("no handler for kind '{}'", job.kind);
            return self
                .queue
                .fail(job.id, &self.opts.worker_id, &msg)
                .await
                .map(Some);
        };
        let id = job.id;
        let kind = job.kind.clone();
        let started = std::time::Instant::now();
        let mut task = tokio::spawn(async move { handler.run(&job).await });
        let outcome = match tokio::time::timeout(self.opts.lease, &mut task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) if e.is_panic() => Err("the handler panicked".to_string()),
            Ok(Err(e)) => Err(format!("the handler was cancelled: {e}")),
            Err(_) => {
                task.abort();
                Err(format!(
                    "the handler outlived its lease of {:?}",
                    self.opts.lease
                ))
            }
        };
        let recorded = match &outcome {
            Ok(()) => self.queue.complete(id, &self.opts.worker_id).await,
            Err(msg) => self.queue.fail(id, &self.opts.worker_id, msg).await,
        };
        match &recorded {
            Ok(j) => tracing::info!(
                job = id,
                kind = %kind,
                state = %j.state,
                attempts = j.attempts,
                elapsed_ms = started.elapsed().as_millis() as u64,
                error = outcome.as_ref().err().map(String::as_str),
                "job attempt finished"
            ),
            Err(e) => tracing::warn!(
                job = id,
                kind = %kind,
                error = %e,
                "could not record a job's outcome (its lease may have been taken over)"
            ),
        }
        recorded.map(Some)
    }

    /// Run until `shutdown` turns true (or its sender is dropped), finishing the job in
    /// hand first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        tracing::info!(worker = %self.opts.worker_id, kinds = ?self.kinds, "job worker started");
        if let Some(prefix) = &self.opts.reclaim_prefix {
            match self.queue.reclaim(prefix, &self.opts.worker_id).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(jobs = n, "took back the jobs of this node's last run"),
                Err(e) => tracing::warn!(error = %e, "could not take back the last run's jobs"),
            }
        }
        loop {
            if *shutdown.borrow() {
                break;
            }
            let idle = match self.run_once().await {
                Ok(Some(_)) => false,
                Ok(None) => true,
                Err(e) => {
                    tracing::warn!(worker = %self.opts.worker_id, error = %e, "taking a job failed");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = tokio::time::sleep(self.opts.poll_interval) => {}
                    _ = self.notify.notified() => {}
                    changed = shutdown.changed() => {
                        if changed.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        tracing::info!(worker = %self.opts.worker_id, "job worker stopped");
    }

    /// Run on a task of its own.
    pub fn spawn(self) -> WorkerHandle {
        let (tx, rx) = watch::channel(false);
        let notify = self.notify.clone();
        let task = tokio::spawn(self.run(rx));
        WorkerHandle {
            shutdown: tx,
            notify,
            task,
        }
    }
}

/// A running worker.
pub struct WorkerHandle {
    shutdown: watch::Sender<bool>,
    notify: Arc<Notify>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Make the worker look for jobs now (after an enqueue on this node).
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// Stop taking jobs; returns when the job in hand is finished and recorded.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        if let Err(e) = self.task.await {
            tracing::warn!(error = %e, "the job worker task failed");
        }
    }
}
