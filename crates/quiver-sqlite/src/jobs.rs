//! [`JobQueue`] on SQLite: every state change runs in the single writer's `IMMEDIATE`
//! transaction, so a `take` reads and claims its job with no other writer in between
//! (one in-process worker is the intended setup; several are safe, just serialized).

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Context, Error, Result};
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::{is_unique_violation, parse_enum, ts, SqliteStore};
use quiver_store::jobs::{
    after_failure, decode_job_cursor, job_page, lease_expired_error, lease_ms, no_such_job,
    not_held, Job, JobCounts, JobFilter, JobId, JobQueue, JobState, NewJob,
};
use quiver_store::Page;

const JOB_COLS: &str = "id, kind, payload, priority, dedup_key, state, attempts, max_attempts, \
     run_at, locked_by, locked_until, last_error, created_at, updated_at, finished_at";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Job> {
    let payload: String = r.get(2)?;
    Ok(Job {
        id: r.get(0)?,
        kind: r.get(1)?,
        payload: super::json_col(&payload)?,
        priority: r.get(3)?,
        dedup_key: r.get(4)?,
        state: parse_enum(r.get(5)?)?,
        attempts: r.get(6)?,
        max_attempts: r.get(7)?,
        run_at: ts(r.get(8)?),
        locked_by: r.get(9)?,
        locked_until: r.get::<_, Option<i64>>(10)?.map(ts),
        last_error: r.get(11)?,
        created_at: ts(r.get(12)?),
        updated_at: ts(r.get(13)?),
        finished_at: r.get::<_, Option<i64>>(14)?.map(ts),
    })
}

fn get_job_conn(conn: &Connection, id: JobId) -> Result<Option<Job>> {
    conn.prepare_cached(&format!("SELECT {JOB_COLS} FROM jobs WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], job_from_row).optional())
        .context("reading a job")
}

fn active_by_key(conn: &Connection, key: &str) -> Result<Option<JobId>> {
    conn.prepare_cached(
        "SELECT id FROM jobs WHERE dedup_key = ?1 AND state IN ('queued', 'running')",
    )
    .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
    .context("reading a job by dedup key")
}

/// The held job, or the reason it is not held.
/// Queue one job in a write transaction (or answer the unfinished job holding its key).
fn enqueue_tx(tx: &Transaction<'_>, job: &NewJob, now: i64) -> Result<JobId> {
    if let Some(key) = &job.dedup_key {
        if let Some(id) = active_by_key(tx, key)? {
            return Ok(id);
        }
    }
    let run_at = job.run_at.map_or(now, |t| t.as_millisecond());
    let payload = serde_json::to_string(&job.payload).context("encoding a payload")?;
    tx.prepare_cached(
        "INSERT INTO jobs (kind, payload, priority, dedup_key, state, attempts, \
         max_attempts, run_at, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 'queued', 0, ?5, ?6, ?7, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            job.kind,
            payload,
            job.priority,
            job.dedup_key,
            job.max_attempts,
            run_at,
            now
        ])
    })
    .context("enqueueing a job")?;
    Ok(tx.last_insert_rowid())
}

fn held(conn: &Connection, id: JobId, worker_id: &str) -> Result<Job> {
    let job = get_job_conn(conn, id)?.ok_or_else(|| no_such_job(id))?;
    if job.state != JobState::Running || job.locked_by.as_deref() != Some(worker_id) {
        return Err(not_held(id, worker_id));
    }
    Ok(job)
}

#[async_trait]
impl JobQueue for SqliteStore {
    async fn enqueue_at(&self, job: NewJob, now: Timestamp) -> Result<JobId> {
        job.validate()?;
        let now = now.as_millisecond();
        self.write(move |tx| enqueue_tx(tx, &job, now)).await
    }

    async fn enqueue_many_at(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<JobId>> {
        for job in &jobs {
            job.validate()?;
        }
        let now = now.as_millisecond();
        self.write(move |tx| jobs.iter().map(|job| enqueue_tx(tx, job, now)).collect())
            .await
    }

    async fn take_at(
        &self,
        worker_id: &str,
        kinds: &[String],
        lease: Duration,
        now: Timestamp,
    ) -> Result<Option<Job>> {
        let worker_id = worker_id.to_string();
        let kinds = serde_json::to_string(kinds).context("encoding kinds")?;
        let now = now.as_millisecond();
        let until = now + lease_ms(lease);
        self.write(move |tx| loop {
            let candidate = tx
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS} FROM jobs \
                     WHERE ((state = 'queued' AND run_at <= ?1) \
                            OR (state = 'running' AND locked_until <= ?1)) \
                       AND (?2 = '[]' OR kind IN (SELECT value FROM json_each(?2))) \
                     ORDER BY priority DESC, run_at, id LIMIT 1"
                ))
                .and_then(|mut s| s.query_row(params![now, kinds], job_from_row).optional())
                .context("finding a due job")?;
            let Some(job) = candidate else {
                return Ok(None);
            };
            if job.state == JobState::Running && job.attempts >= job.max_attempts {
                // Its worker died during the last attempt: dead letter, not another run.
                let err = lease_expired_error(job.locked_by.as_deref(), job.attempts);
                tx.execute(
                    "UPDATE jobs SET state = 'dead', locked_by = NULL, locked_until = NULL, \
                     last_error = ?2, updated_at = ?3, finished_at = ?3 WHERE id = ?1",
                    params![job.id, err, now],
                )
                .context("dead-lettering a job")?;
                continue;
            }
            tx.prepare_cached(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, locked_by = ?2, \
                 locked_until = ?3, updated_at = ?4 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![job.id, worker_id, until, now]))
            .context("taking a job")?;
            return get_job_conn(tx, job.id);
        })
        .await
    }

    async fn complete_at(&self, id: JobId, worker_id: &str, now: Timestamp) -> Result<Job> {
        let worker_id = worker_id.to_string();
        let now = now.as_millisecond();
        self.write(move |tx| {
            held(tx, id, &worker_id)?;
            tx.execute(
                "UPDATE jobs SET state = 'succeeded', locked_by = NULL, locked_until = NULL, \
                 updated_at = ?2, finished_at = ?2 WHERE id = ?1",
                params![id, now],
            )
            .context("completing a job")?;
            get_job_conn(tx, id)?.ok_or_else(|| no_such_job(id))
        })
        .await
    }

    async fn fail_at(
        &self,
        id: JobId,
        worker_id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<Job> {
        let worker_id = worker_id.to_string();
        let error = error.to_string();
        let now = now.as_millisecond();
        self.write(move |tx| {
            let job = held(tx, id, &worker_id)?;
            let (state, run_at) = after_failure(job.attempts, job.max_attempts, now);
            let finished = (state == JobState::Dead).then_some(now);
            tx.execute(
                "UPDATE jobs SET state = ?2, run_at = ?3, locked_by = NULL, \
                 locked_until = NULL, last_error = ?4, updated_at = ?5, finished_at = ?6 \
                 WHERE id = ?1",
                params![id, state.as_str(), run_at, error, now, finished],
            )
            .context("failing a job")?;
            get_job_conn(tx, id)?.ok_or_else(|| no_such_job(id))
        })
        .await
    }

    async fn retry_at(&self, id: JobId, now: Timestamp) -> Result<Job> {
        let now = now.as_millisecond();
        self.write(move |tx| {
            let job = get_job_conn(tx, id)?.ok_or_else(|| no_such_job(id))?;
            if job.state != JobState::Dead {
                return Err(Error::conflict(
                    "state",
                    format!("job {id} is {}, only dead jobs are retried", job.state),
                ));
            }
            tx.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?2, \
                 updated_at = ?2, finished_at = NULL WHERE id = ?1",
                params![id, now],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    Error::conflict(
                        "dedup_key",
                        format!("an unfinished job already has job {id}'s dedup key"),
                    )
                } else {
                    Error::internal("retrying a job", e)
                }
            })?;
            get_job_conn(tx, id)?.ok_or_else(|| no_such_job(id))
        })
        .await
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        self.read(move |c| get_job_conn(c, id)).await
    }

    async fn list_jobs(
        &self,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page<Job>> {
        let before = cursor
            .map(decode_job_cursor)
            .transpose()?
            .unwrap_or(i64::MAX);
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let states = serde_json::to_string(&states).context("encoding states")?;
        let kinds = serde_json::to_string(&filter.kinds).context("encoding kinds")?;
        let limit = limit.clamp(1, 1000);
        self.read(move |c| {
            let items = c
                .prepare_cached(&format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE id < ?1 \
                       AND (?2 = '[]' OR state IN (SELECT value FROM json_each(?2))) \
                       AND (?3 = '[]' OR kind IN (SELECT value FROM json_each(?3))) \
                     ORDER BY id DESC LIMIT ?4"
                ))
                .and_then(|mut s| {
                    s.query_map(
                        params![before, states, kinds, limit as i64 + 1],
                        job_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .context("listing jobs")?;
            Ok(job_page(items, limit))
        })
        .await
    }

    async fn prune_jobs(&self, finished_before: Timestamp) -> Result<u64> {
        let before = finished_before.as_millisecond();
        self.write(move |tx| {
            let n = tx
                .execute(
                    "DELETE FROM jobs WHERE state = 'succeeded' AND finished_at < ?1",
                    [before],
                )
                .context("pruning jobs")?;
            Ok(n as u64)
        })
        .await
    }

    async fn reclaim_at(&self, prefix: &str, except: &str, now: Timestamp) -> Result<u64> {
        let (prefix, except, now) = (prefix.to_string(), except.to_string(), now.as_millisecond());
        self.write(move |tx| {
            let n = tx
                .execute(
                    "UPDATE jobs SET locked_until = ?3, updated_at = ?3 \
                     WHERE state = 'running' AND substr(locked_by, 1, length(?1)) = ?1 \
                       AND locked_by <> ?2 AND locked_until > ?3",
                    params![prefix, except, now],
                )
                .context("reclaiming jobs")?;
            Ok(n as u64)
        })
        .await
    }

    async fn job_counts(&self) -> Result<JobCounts> {
        self.read(|c| {
            let mut counts = JobCounts::default();
            let mut s = c
                .prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")
                .context("counting jobs")?;
            let rows = s
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
                .context("counting jobs")?;
            for (state, n) in rows {
                counts.add(state.parse()?, n as u64);
            }
            Ok(counts)
        })
        .await
    }
}
