//! [`JobQueue`] on PostgreSQL: any number of workers in any number of processes.
//!
//! `take` runs `SELECT … FOR UPDATE SKIP LOCKED` and the claiming `UPDATE` in one
//! transaction: concurrent takers skip each other's rows instead of queueing behind them,
//! and a row another taker claimed meanwhile is rechecked and skipped, so a job is never
//! handed to two workers while its lease runs. Job writes take no feed lock (they are not
//! in the change feed) and never wait for entry writers.

use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use quiver_model::{Context, Error, Result};
use quiver_store::jobs::{
    after_failure, decode_job_cursor, job_page, lease_expired_error, lease_ms, no_such_job,
    not_held, Job, JobCounts, JobFilter, JobId, JobQueue, JobState, NewJob,
};
use quiver_store::Page;
use tokio_postgres::error::SqlState;
use tokio_postgres::Row;

use crate::store::BoxError;
use crate::PostgresStore;

const JOB_COLS: &str = "id, kind, payload, priority, dedup_key, state, attempts, max_attempts, \
     run_at, locked_by, locked_until, last_error, created_at, updated_at, finished_at";

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn decode_job(r: &Row) -> std::result::Result<Job, BoxError> {
    let payload: String = r.try_get(2)?;
    let state: String = r.try_get(5)?;
    Ok(Job {
        id: r.try_get(0)?,
        kind: r.try_get(1)?,
        payload: serde_json::from_str(&payload)?,
        priority: r.try_get(3)?,
        dedup_key: r.try_get(4)?,
        state: state.parse::<JobState>().map_err(|e| e.to_string())?,
        attempts: r.try_get::<_, i32>(6)?.max(0) as u32,
        max_attempts: r.try_get::<_, i32>(7)?.max(0) as u32,
        run_at: ts(r.try_get(8)?),
        locked_by: r.try_get(9)?,
        locked_until: r.try_get::<_, Option<i64>>(10)?.map(ts),
        last_error: r.try_get(11)?,
        created_at: ts(r.try_get(12)?),
        updated_at: ts(r.try_get(13)?),
        finished_at: r.try_get::<_, Option<i64>>(14)?.map(ts),
    })
}

fn job_from_row(r: &Row) -> Result<Job> {
    decode_job(r).context("decoding a job")
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

/// Lock the job `worker_id` holds, or say why it is not held.
async fn lock_held(
    tx: &deadpool_postgres::Transaction<'_>,
    id: JobId,
    worker_id: &str,
) -> Result<Job> {
    let row = tx
        .query_opt(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1 FOR UPDATE"),
            &[&id],
        )
        .await
        .context("reading a job")?
        .ok_or_else(|| no_such_job(id))?;
    let job = job_from_row(&row)?;
    if job.state != JobState::Running || job.locked_by.as_deref() != Some(worker_id) {
        return Err(not_held(id, worker_id));
    }
    Ok(job)
}

async fn reread(tx: &deadpool_postgres::Transaction<'_>, id: JobId) -> Result<Job> {
    let row = tx
        .query_one(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
            &[&id],
        )
        .await
        .context("reading a job")?;
    job_from_row(&row)
}

#[async_trait]
impl JobQueue for PostgresStore {
    async fn enqueue_at(&self, job: NewJob, now: Timestamp) -> Result<JobId> {
        let ids = self.enqueue_many_at(vec![job], now).await?;
        ids.first()
            .copied()
            .ok_or_else(|| Error::internal("enqueueing a job", "no id answered"))
    }

    async fn enqueue_many_at(&self, jobs: Vec<NewJob>, now: Timestamp) -> Result<Vec<JobId>> {
        for job in &jobs {
            job.validate()?;
        }
        let now = now.as_millisecond();
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning an enqueue")?;
        let find = tx
            .prepare_cached(
                "SELECT id FROM jobs WHERE dedup_key = $1 AND state IN ('queued', 'running')",
            )
            .await
            .context("preparing a dedup lookup")?;
        // A key taken by a concurrent enqueue makes the insert do nothing (no error, so
        // the transaction goes on); the lookup after it finds the winner.
        let insert = tx
            .prepare_cached(
                "INSERT INTO jobs (kind, payload, priority, dedup_key, state, attempts, \
                 max_attempts, run_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'queued', 0, $5, $6, $7, $7) \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .await
            .context("preparing the enqueue")?;
        let mut ids = Vec::with_capacity(jobs.len());
        for job in &jobs {
            let payload = serde_json::to_string(&job.payload).context("encoding a payload")?;
            let run_at = job.run_at.map_or(now, |t| t.as_millisecond());
            let max_attempts = job.max_attempts as i32;
            // Look the key up, insert, and when a concurrent enqueue of the key won (the
            // insert did nothing) look it up again; a key that keeps changing hands (its
            // job finished meanwhile) is tried a few times.
            let mut id = None;
            for _ in 0..5 {
                if let Some(key) = &job.dedup_key {
                    id = tx
                        .query_opt(&find, &[key])
                        .await
                        .context("reading a job by dedup key")?
                        .map(|r| r.get::<_, i64>(0));
                    if id.is_some() {
                        break;
                    }
                }
                id = tx
                    .query_opt(
                        &insert,
                        &[
                            &job.kind,
                            &payload,
                            &job.priority,
                            &job.dedup_key,
                            &max_attempts,
                            &run_at,
                            &now,
                        ],
                    )
                    .await
                    .context("enqueueing a job")?
                    .map(|r| r.get::<_, i64>(0));
                if id.is_some() {
                    break;
                }
            }
            let id = id.ok_or_else(|| {
                Error::internal("enqueueing a job", "its dedup key kept changing hands")
            })?;
            ids.push(id);
        }
        tx.commit().await.context("committing an enqueue")?;
        Ok(ids)
    }

    async fn take_at(
        &self,
        worker_id: &str,
        kinds: &[String],
        lease: Duration,
        now: Timestamp,
    ) -> Result<Option<Job>> {
        let now = now.as_millisecond();
        let until = now + lease_ms(lease);
        let kinds: Vec<&str> = kinds.iter().map(String::as_str).collect();
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a take")?;
        let find = tx
            .prepare_cached(&format!(
                "SELECT {JOB_COLS} FROM jobs \
                 WHERE ((state = 'queued' AND run_at <= $1) \
                        OR (state = 'running' AND locked_until <= $1)) \
                   AND (cardinality($2::text[]) = 0 OR kind = ANY($2::text[])) \
                 ORDER BY priority DESC, run_at, id LIMIT 1 \
                 FOR UPDATE SKIP LOCKED"
            ))
            .await
            .context("preparing the take")?;
        let taken = loop {
            let Some(row) = tx
                .query_opt(&find, &[&now, &kinds])
                .await
                .context("finding a due job")?
            else {
                break None;
            };
            let job = job_from_row(&row)?;
            if job.state == JobState::Running && job.attempts >= job.max_attempts {
                // Its worker died during the last attempt: dead letter, not another run.
                let err = lease_expired_error(job.locked_by.as_deref(), job.attempts);
                tx.execute(
                    "UPDATE jobs SET state = 'dead', locked_by = NULL, locked_until = NULL, \
                     last_error = $2, updated_at = $3, finished_at = $3 WHERE id = $1",
                    &[&job.id, &err, &now],
                )
                .await
                .context("dead-lettering a job")?;
                continue;
            }
            let row = tx
                .query_one(
                    &format!(
                        "UPDATE jobs SET state = 'running', attempts = attempts + 1, \
                         locked_by = $2, locked_until = $3, updated_at = $4 \
                         WHERE id = $1 RETURNING {JOB_COLS}"
                    ),
                    &[&job.id, &worker_id, &until, &now],
                )
                .await
                .context("taking a job")?;
            break Some(job_from_row(&row)?);
        };
        tx.commit().await.context("committing a take")?;
        Ok(taken)
    }

    async fn complete_at(&self, id: JobId, worker_id: &str, now: Timestamp) -> Result<Job> {
        let now = now.as_millisecond();
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a completion")?;
        lock_held(&tx, id, worker_id).await?;
        tx.execute(
            "UPDATE jobs SET state = 'succeeded', locked_by = NULL, locked_until = NULL, \
             updated_at = $2, finished_at = $2 WHERE id = $1",
            &[&id, &now],
        )
        .await
        .context("completing a job")?;
        let job = reread(&tx, id).await?;
        tx.commit().await.context("committing a completion")?;
        Ok(job)
    }

    async fn fail_at(
        &self,
        id: JobId,
        worker_id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<Job> {
        let now = now.as_millisecond();
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a failure")?;
        let job = lock_held(&tx, id, worker_id).await?;
        let (state, run_at) = after_failure(job.attempts, job.max_attempts, now);
        let finished = (state == JobState::Dead).then_some(now);
        tx.execute(
            "UPDATE jobs SET state = $2, run_at = $3, locked_by = NULL, locked_until = NULL, \
             last_error = $4, updated_at = $5, finished_at = $6 WHERE id = $1",
            &[&id, &state.as_str(), &run_at, &error, &now, &finished],
        )
        .await
        .context("failing a job")?;
        let job = reread(&tx, id).await?;
        tx.commit().await.context("committing a failure")?;
        Ok(job)
    }

    async fn retry_at(&self, id: JobId, now: Timestamp) -> Result<Job> {
        let now = now.as_millisecond();
        let mut c = self.pooled().await?;
        let tx = c.transaction().await.context("beginning a retry")?;
        let row = tx
            .query_opt(
                &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await
            .context("reading a job")?
            .ok_or_else(|| no_such_job(id))?;
        let job = job_from_row(&row)?;
        if job.state != JobState::Dead {
            return Err(Error::conflict(
                "state",
                format!("job {id} is {}, only dead jobs are retried", job.state),
            ));
        }
        tx.execute(
            "UPDATE jobs SET state = 'queued', attempts = 0, run_at = $2, updated_at = $2, \
             finished_at = NULL WHERE id = $1",
            &[&id, &now],
        )
        .await
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
        let job = reread(&tx, id).await?;
        tx.commit().await.context("committing a retry")?;
        Ok(job)
    }

    async fn get_job(&self, id: JobId) -> Result<Option<Job>> {
        let c = self.pooled().await?;
        c.query_opt(
            &format!("SELECT {JOB_COLS} FROM jobs WHERE id = $1"),
            &[&id],
        )
        .await
        .context("reading a job")?
        .as_ref()
        .map(job_from_row)
        .transpose()
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
        let kinds: Vec<&str> = filter.kinds.iter().map(String::as_str).collect();
        let limit = limit.clamp(1, 1000);
        let c = self.pooled().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {JOB_COLS} FROM jobs WHERE id < $1 \
                       AND (cardinality($2::text[]) = 0 OR state = ANY($2::text[])) \
                       AND (cardinality($3::text[]) = 0 OR kind = ANY($3::text[])) \
                     ORDER BY id DESC LIMIT $4"
                ),
                &[&before, &states, &kinds, &(limit as i64 + 1)],
            )
            .await
            .context("listing jobs")?;
        let items = rows.iter().map(job_from_row).collect::<Result<Vec<_>>>()?;
        Ok(job_page(items, limit))
    }

    async fn prune_jobs(&self, finished_before: Timestamp) -> Result<u64> {
        let before = finished_before.as_millisecond();
        let c = self.pooled().await?;
        c.execute(
            "DELETE FROM jobs WHERE state = 'succeeded' AND finished_at < $1",
            &[&before],
        )
        .await
        .context("pruning jobs")
    }

    async fn reclaim_at(&self, prefix: &str, except: &str, now: Timestamp) -> Result<u64> {
        let now = now.as_millisecond();
        let c = self.pooled().await?;
        c.execute(
            "UPDATE jobs SET locked_until = $3, updated_at = $3 \
             WHERE state = 'running' AND left(locked_by, length($1)) = $1 \
               AND locked_by <> $2 AND locked_until > $3",
            &[&prefix, &except, &now],
        )
        .await
        .context("reclaiming jobs")
    }

    async fn job_counts(&self) -> Result<JobCounts> {
        let c = self.pooled().await?;
        let rows = c
            .query("SELECT state, COUNT(*)::int8 FROM jobs GROUP BY state", &[])
            .await
            .context("counting jobs")?;
        let mut counts = JobCounts::default();
        for r in rows {
            let state: String = r.get(0);
            let n: i64 = r.get(1);
            counts.add(state.parse()?, n as u64);
        }
        Ok(counts)
    }
}
