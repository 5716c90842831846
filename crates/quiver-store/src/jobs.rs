//! The durable job queue: jobs live in the store's `jobs` table (migration `0002_jobs`),
//! so they survive restarts and, on PostgreSQL, are shared by every node.
//!
//! Design decisions:
//! - **At-least-once, leased.** [`JobQueue::take`] hands a job to one worker with a lease
//!   (`locked_by`, `locked_until`) and counts the attempt. A worker finishes it with
//!   [`complete`](JobQueue::complete) or [`fail`](JobQueue::fail); only the worker that holds
//!   the job may do either. A worker that dies leaves its lease to expire, after which the
//!   job is takeable again: handlers must therefore be idempotent.
//! - **Backoff and dead letters.** A failed attempt is retried after [`backoff`] (1 s × 2^(n-1)
//!   after the n-th attempt, capped at one hour, no jitter); after `max_attempts` attempts
//!   the job is `dead` and stays so until [`retry`](JobQueue::retry). A job whose lease
//!   expired after its last attempt (its worker died every time) is dead-lettered by the
//!   next `take` instead of being run again.
//! - **Deduplication.** A job with a `dedup_key` is unique among unfinished (queued or
//!   running) jobs: enqueueing the same key again returns the existing job's id.
//! - **Explicit clocks.** The `*_at` methods take the current time, so tests (and tools)
//!   can step through backoff and lease expiry without sleeping; the plain methods use the
//!   system clock.
//! - **No dialect.** PostgreSQL takes with `SELECT … FOR UPDATE SKIP LOCKED`, SQLite inside
//!   its single writer transaction; neither shows through this trait.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::Page;

/// A job's id.
pub type JobId = i64;

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for `run_at`, then for a worker.
    Queued,
    /// Held by a worker until its lease ends.
    Running,
    Succeeded,
    /// Failed `max_attempts` times; kept until retried.
    Dead,
}

impl JobState {
    pub const ALL: [JobState; 4] = [
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "state",
                    format!("'{s}' is not queued, running, succeeded or dead"),
                )
            })
    }
}

/// The attempts a job gets unless told otherwise.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// A job to enqueue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewJob {
    /// Which handler runs it (for example `validate_version`).
    pub kind: String,
    pub payload: serde_json::Value,
    /// Higher runs first.
    pub priority: i32,
    /// At most one unfinished job per key.
    pub dedup_key: Option<String>,
    /// At least 1.
    pub max_attempts: u32,
    /// Not before this time (`None`: now).
    pub run_at: Option<Timestamp>,
}

impl NewJob {
    /// A job of `kind` with defaults: priority 0, no dedup key, [`DEFAULT_MAX_ATTEMPTS`],
    /// due now.
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        NewJob {
            kind: kind.into(),
            payload,
            priority: 0,
            dedup_key: None,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            run_at: None,
        }
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub fn dedup_key(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }

    pub fn run_at(mut self, at: Timestamp) -> Self {
        self.run_at = Some(at);
        self
    }

    /// Check the fields a backend relies on.
    pub fn validate(&self) -> Result<()> {
        if self.kind.trim().is_empty() || self.kind.len() > 100 {
            return Err(Error::invalid("kind", "must be 1 to 100 characters"));
        }
        if self.max_attempts == 0 || self.max_attempts > 1000 {
            return Err(Error::invalid("max_attempts", "must be between 1 and 1000"));
        }
        if matches!(&self.dedup_key, Some(k) if k.is_empty() || k.len() > 500) {
            return Err(Error::invalid("dedup_key", "must be 1 to 500 characters"));
        }
        Ok(())
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: JobId,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: i32,
    pub dedup_key: Option<String>,
    pub state: JobState,
    /// Attempts started (a `take` counts one).
    pub attempts: u32,
    pub max_attempts: u32,
    /// When a queued job becomes due.
    pub run_at: Timestamp,
    pub locked_by: Option<String>,
    /// End of the running attempt's lease.
    pub locked_until: Option<Timestamp>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// Which jobs a listing returns. Empty vectors mean "any".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobFilter {
    pub states: Vec<JobState>,
    pub kinds: Vec<String>,
}

/// Jobs by state: the queue depth for metrics and health pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub queued: u64,
    pub running: u64,
    pub succeeded: u64,
    pub dead: u64,
}

impl JobCounts {
    pub fn get(&self, state: JobState) -> u64 {
        match state {
            JobState::Queued => self.queued,
            JobState::Running => self.running,
            JobState::Succeeded => self.succeeded,
            JobState::Dead => self.dead,
        }
    }

    pub fn add(&mut self, state: JobState, n: u64) {
        match state {
            JobState::Queued => self.queued += n,
            JobState::Running => self.running += n,
            JobState::Succeeded => self.succeeded += n,
            JobState::Dead => self.dead += n,
        }
    }
}

/// The first retry's delay.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// The longest delay between attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);

/// The delay before the next attempt after `attempts` failed ones (1 s, 2 s, 4 s, … capped
/// at [`BACKOFF_CAP`]).
pub fn backoff(attempts: u32) -> Duration {
    let exp = attempts.saturating_sub(1).min(31);
    BACKOFF_BASE
        .checked_mul(1u32 << exp)
        .unwrap_or(BACKOFF_CAP)
        .min(BACKOFF_CAP)
}

/// What `fail` does with a job: back to the queue at `run_at`, or dead.
pub fn after_failure(attempts: u32, max_attempts: u32, now_ms: i64) -> (JobState, i64) {
    if attempts >= max_attempts {
        (JobState::Dead, now_ms)
    } else {
        (
            JobState::Queued,
            now_ms + backoff(attempts).as_millis() as i64,
        )
    }
}

/// The error a backend reports when a worker completes or fails a job it does not hold.
pub fn not_held(id: JobId, worker_id: &str) -> Error {
    Error::conflict(
        "locked_by",
        format!("job {id} is not running under worker '{worker_id}' (its lease may have been taken over)"),
    )
}

/// The error for an unknown job.
pub fn no_such_job(id: JobId) -> Error {
    Error::not_found(format!("job {id}"))
}

/// The `last_error` of a job whose lease expired after its last attempt.
pub fn lease_expired_error(worker: Option<&str>, attempts: u32) -> String {
    format!(
        "lease expired: worker '{}' did not finish attempt {attempts}",
        worker.unwrap_or("?")
    )
}

/// The cursor after job `id` in a listing (newest first).
pub fn encode_job_cursor(id: JobId) -> String {
    quiver_model::cursor::encode("jobs", &id)
}

pub fn decode_job_cursor(c: &str) -> Result<JobId> {
    quiver_model::cursor::decode("jobs", c)
}

/// Build a page from `limit + 1` rows read newest first.
pub fn job_page(mut items: Vec<Job>, limit: usize) -> Page<Job> {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|j| encode_job_cursor(j.id))
    } else {
        None
    };
    Page { items, next_cursor }
}

/// Milliseconds of a lease, at least one.
pub fn lease_ms(lease: Duration) -> i64 {
    (lease.as_millis() as i64).max(1)
}

/// The durable job queue. Implemented by every store backend.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueue a job; with a `dedup_key` held by a queued or running job, return that job's
    /// id instead of creating another.
    async fn enqueue_at(&self, job: NewJob, now: Timestamp) -> Result<JobId>;

    /// Enqueue many jobs in one transaction (each deduplicated as by
    /// [`Self::enqueue_at`]): all are queued or none. For derived work queued in bulk
    /// (the quality gates of an import's versions).
    async fn enqueue_many_at(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<JobId>>;

    /// Take the most urgent due job of one of `kinds` (any kind when empty): highest
    /// priority, then oldest `run_at`. The job becomes `running` under `worker_id` until
    /// `now + lease`, and its attempt is counted. A running job whose lease has expired is
    /// due again (its worker died), unless that was its last attempt: then it is
    /// dead-lettered here. `None` when nothing is due.
    async fn take_at(
        &self,
        worker_id: &str,
        kinds: &[String],
        lease: Duration,
        now: Timestamp,
    ) -> Result<Option<Job>>;

    /// Mark a job held by `worker_id` succeeded. Conflict if the worker does not hold it.
    async fn complete_at(&self, id: JobId, worker_id: &str, now: Timestamp) -> Result<Job>;

    /// Record a failed attempt of a job held by `worker_id`: queued again after
    /// [`backoff`], or dead after `max_attempts`. Conflict if the worker does not hold it.
    async fn fail_at(&self, id: JobId, worker_id: &str, error: &str, now: Timestamp)
        -> Result<Job>;

    /// A dead job back to the queue, due now, with its attempts reset. Conflict unless the
    /// job is dead (or if an unfinished job has taken its dedup key meanwhile).
    async fn retry_at(&self, id: JobId, now: Timestamp) -> Result<Job>;

    async fn get_job(&self, id: JobId) -> Result<Option<Job>>;

    /// Jobs matching the filter, newest first, `limit` at a time.
    async fn list_jobs(
        &self,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>>;

    /// Jobs by state.
    async fn job_counts(&self) -> Result<JobCounts>;

    /// Delete succeeded jobs that finished before `finished_before` (dead jobs stay until
    /// retried): the table's history does not grow without bound. Returns how many.
    async fn prune_jobs(&self, finished_before: Timestamp) -> Result<u64>;
    /// End at `now` the leases of running jobs held by workers whose id starts with
    /// `prefix`, other than `except` (a node's earlier runs, which died): they are due at
    /// once, as if their leases had expired. The number of jobs released.
    async fn reclaim_at(&self, prefix: &str, except: &str, now: Timestamp) -> Result<u64>;

    async fn reclaim(&self, prefix: &str, except: &str) -> Result<u64> {
        self.reclaim_at(prefix, except, Timestamp::now()).await
    }

    async fn enqueue(&self, job: NewJob) -> Result<JobId> {
        self.enqueue_at(job, Timestamp::now()).await
    }

    async fn enqueue_many(&self, jobs: Vec<NewJob>) -> Result<Vec<JobId>> {
        self.enqueue_many_at(jobs, Timestamp::now()).await
    }

    async fn take(
        &self,
        worker_id: &str,
        kinds: &[String],
        lease: Duration,
    ) -> Result<Option<Job>> {
        self.take_at(worker_id, kinds, lease, Timestamp::now())
            .await
    }

    async fn complete(&self, id: JobId, worker_id: &str) -> Result<Job> {
        self.complete_at(id, worker_id, Timestamp::now()).await
    }

    async fn fail(&self, id: JobId, worker_id: &str, error: &str) -> Result<Job> {
        self.fail_at(id, worker_id, error, Timestamp::now()).await
    }

    async fn retry(&self, id: JobId) -> Result<Job> {
        self.retry_at(id, Timestamp::now()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(13), Duration::from_secs(3600));
        assert_eq!(backoff(1000), BACKOFF_CAP);
        assert_eq!(after_failure(3, 3, 10), (JobState::Dead, 10));
        assert_eq!(after_failure(2, 3, 10), (JobState::Queued, 2010));
    }

    #[test]
    fn states_and_cursors_round_trip() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!("done".parse::<JobState>().is_err());
        assert_eq!(decode_job_cursor(&encode_job_cursor(42)).unwrap(), 42);
        assert!(decode_job_cursor("nope").is_err());
    }
}
