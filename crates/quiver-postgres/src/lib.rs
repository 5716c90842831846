//! quiver's PostgreSQL store: the same [`Store`](quiver_store::Store) trait as the embedded
//! SQLite backend, for running many stateless quiver nodes over one database.
//!
//! Design decisions:
//! - **A pool of connections.** `tokio-postgres` connections in a `deadpool-postgres` pool
//!   (fast recycling, per-connection prepared-statement cache). Reads run concurrently on
//!   any connection; nothing is cached in the store, so every node reads what the primary
//!   has committed.
//! - **Migrations in step with SQLite.** `migrations/postgres/` holds the same migration
//!   names as quiver-sqlite's `migrations/sqlite/` ([`migration_names`]), and the same
//!   tables and column names with PostgreSQL types (a test fails if they drift). They run
//!   at [`PostgresStore::connect`], each in its own transaction, recorded in
//!   `schema_migrations`, under a session `pg_advisory_lock` so that several nodes starting
//!   at once migrate exactly once.
//! - **A gap-free feed in commit order, without a global lock on every write.** A
//!   `BIGSERIAL` would hand out numbers at insert time: with two concurrent transactions,
//!   seq 8 can commit before seq 7, and a follower reading `seq > 7` would never see 7; a
//!   rolled-back transaction would also leave a hole. Holding one lock from a write's
//!   first statement to its commit avoids both but serializes every commit's flush (about
//!   300 commits/s on a disk that flushes in 3 ms). So a write appends its feed rows,
//!   unnumbered, to `feed_outbox` and commits with no global lock (concurrent commits
//!   flush together); then, before it answers, it runs the sequencer
//!   ([`PostgresStore::sequence`]): under `pg_advisory_xact_lock(FEED_LOCK, schema)` one
//!   statement moves every *committed* outbox row into `feed` with the next numbers, in
//!   outbox order. Numbers are handed out only to committed rows and only under the
//!   lock, so the feed has no holes and a row numbered k+1 is visible no later than k; one
//!   sequencer run numbers the rows of every writer that committed before it. The
//!   sequencer's transaction does not wait for its flush (a flush under the lock would
//!   serialize every writer's flush again); the writer then commits, normally, a row in
//!   `feed_durable` naming the head its rows are under, and readers of the feed
//!   (`feed_since`, `feed_head`, the listener) see rows only up to the highest durable
//!   head. WAL is written in order, so once that commit is flushed (and a flushed commit
//!   is seen only then) the numbering is durable too: a crash of PostgreSQL can take back
//!   an unconfirmed numbering, whose rows return to the outbox, but never a position a
//!   follower has read. Every flush on the write path is thus outside the lock, where
//!   PostgreSQL flushes concurrent commits together. A write that reads and then changes one entry
//!   locks that entry's row (`Writer::lock_entry`), so writes to one entry stay
//!   serialized. Rare writes whose checks span rows (bulk imports, accounts, documents)
//!   still take the feed lock for their whole transaction and number their rows
//!   themselves. Rows a crashed writer left in the outbox are numbered by the next write
//!   or when a node starts. Reads take no lock. The lock is per schema, so isolated
//!   schemas (tests, several registries in one database) do not wait for each other.
//! - **NOTIFY on commit.** A write transaction that appended to the feed ends with
//!   `pg_notify(channel, '<head seq>')`, which PostgreSQL delivers only if and when the
//!   transaction commits. The channel is `quiver_feed` for the `public` schema and
//!   `quiver_feed.<schema>` otherwise. [`PostgresStore::listen`] keeps a dedicated
//!   connection LISTENing (reconnecting with backoff, re-reading the head after every
//!   reconnect, and polling the head now and then as a fallback) and hands out the newest
//!   head; the payload is a wake-up hint, followers still read `feed_since` until empty.
//!   Each subscription of the [`Database`]'s feed waker is such a listener, so a write on
//!   any node wakes the followers of every node.
//! - **One handle.** [`open`] connects and hands out the whole [`Database`]: every part
//!   is the one [`PostgresStore`] (request rate limits too, so every node shares them).
//! - **Bulk import by COPY.** [`import_batch`](quiver_store::Store::import_batch) reads the
//!   existing rows of the whole batch in two set-based queries (keys and versions passed as
//!   arrays), decides every record's outcome in Rust with exactly the SQLite backend's rules
//!   (created / updated / unchanged / rejected when a published version's manifest differs,
//!   which writes nothing for that record), then writes with binary `COPY` into the tables
//!   (ids drawn from the sequences up front) and `UPDATE … FROM unnest(…)` for changes, and
//!   appends the feed rows for changed records only, in record order — all in one
//!   transaction. A key that occurs twice in a batch is handled in a second round that sees
//!   the first, as SQLite's record-by-record loop would.
//! - **Schema isolation.** [`PostgresOptions::schema`] puts every table in a schema of its
//!   own (created if missing; every pooled connection gets `search_path` through the
//!   connection's startup options). Tests use one schema each ([`testing`]) and drop it
//!   afterwards.
//! - **A durable job queue.** [`JobQueue`](quiver_store::JobQueue) on the `jobs` table
//!   (migration `0002_jobs`): workers in any number of processes take jobs with
//!   `SELECT … FOR UPDATE SKIP LOCKED` and a lease; job writes take no feed lock.
//! - **The recipe pipeline's queue** ([`PipelineStore`](quiver_store::PipelineStore),
//!   migration `0018_pipeline`) the same way: claims take items with `FOR UPDATE SKIP
//!   LOCKED`, reports apply under the item's row lock while the lease is held, and an
//!   ecosystem's valves are read and written under their row's lock.
//! - **Errors.** Unique violations become the same `conflict` errors (field and message) as
//!   SQLite's, missing rows the same `not_found`, anything else an `internal` error with
//!   the operation as context.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use quiver_model::{Context, Error, Result};
use quiver_store::Database;
use tokio_postgres::NoTls;

mod accounts;
mod advisories;
mod cursors;
mod device;
mod downloads;
mod import;
mod jobs;
mod limits;
mod listen;
mod pipeline;
mod store;
mod telemetry;
pub mod testing;
mod throttle;
mod webhooks;

pub use listen::FeedListener;

const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_init",
        include_str!("../migrations/postgres/0001_init.sql"),
    ),
    (
        "0002_jobs",
        include_str!("../migrations/postgres/0002_jobs.sql"),
    ),
    (
        "0003_version_validation",
        include_str!("../migrations/postgres/0003_version_validation.sql"),
    ),
    (
        "0004_documents",
        include_str!("../migrations/postgres/0004_documents.sql"),
    ),
    (
        "0005_accounts",
        include_str!("../migrations/postgres/0005_accounts.sql"),
    ),
    (
        "0006_audit",
        include_str!("../migrations/postgres/0006_audit.sql"),
    ),
    (
        "0008_rate_limits",
        include_str!("../migrations/postgres/0008_rate_limits.sql"),
    ),
    (
        "0009_device_codes",
        include_str!("../migrations/postgres/0009_device_codes.sql"),
    ),
    (
        "0010_audit_client",
        include_str!("../migrations/postgres/0010_audit_client.sql"),
    ),
    (
        "0011_throttles",
        include_str!("../migrations/postgres/0011_throttles.sql"),
    ),
    (
        "0012_feed_outbox",
        include_str!("../migrations/postgres/0012_feed_outbox.sql"),
    ),
    (
        "0013_feed_durable",
        include_str!("../migrations/postgres/0013_feed_durable.sql"),
    ),
    (
        "0014_feed_cursors",
        include_str!("../migrations/postgres/0014_feed_cursors.sql"),
    ),
    (
        "0015_audit_target",
        include_str!("../migrations/postgres/0015_audit_target.sql"),
    ),
    (
        "0016_telemetry",
        include_str!("../migrations/postgres/0016_telemetry.sql"),
    ),
    (
        "0017_experiments",
        include_str!("../migrations/postgres/0017_experiments.sql"),
    ),
    (
        "0018_pipeline",
        include_str!("../migrations/postgres/0018_pipeline.sql"),
    ),
    (
        "0019_dist_tags",
        include_str!("../migrations/postgres/0019_dist_tags.sql"),
    ),
    (
        "0020_skill_preferences",
        include_str!("../migrations/postgres/0020_skill_preferences.sql"),
    ),
    (
        "0021_advisories",
        include_str!("../migrations/postgres/0021_advisories.sql"),
    ),
    (
        "0022_usage_events",
        include_str!("../migrations/postgres/0022_usage_events.sql"),
    ),
    (
        "0023_downloads",
        include_str!("../migrations/postgres/0023_downloads.sql"),
    ),
    (
        "0024_disabled",
        include_str!("../migrations/postgres/0024_disabled.sql"),
    ),
    (
        "0025_webhooks",
        include_str!("../migrations/postgres/0025_webhooks.sql"),
    ),
    (
        "0026_deletion",
        include_str!("../migrations/postgres/0026_deletion.sql"),
    ),
];

/// Connect, run pending migrations, and hand out the whole [`Database`] (see
/// [`PostgresStore::database`]).
pub async fn open(opts: PostgresOptions) -> Result<Database> {
    Ok(PostgresStore::connect_with(opts).await?.database())
}

/// Names of the PostgreSQL migrations, in order (they match the SQLite set).
pub fn migration_names() -> Vec<&'static str> {
    MIGRATIONS.iter().map(|(n, _)| *n).collect()
}

/// First key of the advisory lock held while migrating (the second is the schema's hash).
const MIGRATE_LOCK: i32 = 0x5156_0001;
/// First key of the advisory lock every write transaction holds (the second is the
/// schema's hash): it serializes feed writers.
const FEED_LOCK: i32 = 0x5156_0002;

/// How to connect.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user:password@host:port/database?...` (any libpq-style URL or key=value
    /// string that tokio-postgres accepts).
    pub url: String,
    /// Connections in the pool.
    pub max_connections: usize,
    /// Keep every table in this schema (created if missing) instead of the URL's
    /// `search_path`. Lowercase letters, digits and `_`, starting with a letter or `_`.
    pub schema: Option<String>,
    /// How often a [`FeedListener`] reads the feed head even without a notification: the
    /// polling fallback, and a liveness check of its connection.
    pub listen_poll_interval: Duration,
    /// A read replica (streaming replication of the same database) for the API's reads:
    /// entries, versions, relations, documents, lists. Writes, the change feed and the
    /// index follower's reads stay on the primary, so an index never lags the rows it
    /// indexed; a read right after a write may not see it until the replica replays it.
    pub read_url: Option<String>,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            max_connections: 16,
            schema: None,
            listen_poll_interval: Duration::from_secs(5),
            read_url: None,
        }
    }

    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    pub fn listen_poll_interval(mut self, every: Duration) -> Self {
        self.listen_poll_interval = every;
        self
    }
}

/// Whether a `--database` value names a PostgreSQL database (`postgres://` or
/// `postgresql://`) rather than an embedded SQLite path: how the binary picks its backend.
pub fn is_postgres_url(database: &str) -> bool {
    let d = database.trim_start().to_ascii_lowercase();
    d.starts_with("postgres://") || d.starts_with("postgresql://")
}

/// The URL without its password, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((userinfo, host)) = rest.rsplit_once('@') {
            if let Some((user, _)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
        return url.to_string();
    }
    // key=value form: hide password=...
    url.split_whitespace()
        .map(|kv| {
            if kv.starts_with("password=") {
                "password=***"
            } else {
                kv
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &redact_url(&self.url))
            .field("max_connections", &self.max_connections)
            .field("schema", &self.schema)
            .field("listen_poll_interval", &self.listen_poll_interval)
            .finish()
    }
}

struct Inner {
    pool: Pool,
    /// The read replica's pool, when one is configured.
    read_pool: Option<Pool>,
    /// For connections outside the pool (the listener).
    config: tokio_postgres::Config,
    schema: String,
    lock_key: i32,
    channel: String,
    listen_poll_interval: Duration,
}

/// A store in one PostgreSQL database (and schema).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

fn validate_schema(s: &str) -> Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "schema",
            format!(
                "'{s}' is not a plain schema name (lowercase letters, digits and _, \
                 at most 63 characters)"
            ),
        ))
    }
}

/// Parse the URL and apply the options that every connection shares.
fn build_pool(config: &tokio_postgres::Config, max: usize) -> Result<Pool> {
    let manager = Manager::from_config(
        config.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max.max(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .context("building the PostgreSQL pool")
}

fn pg_config(opts: &PostgresOptions) -> Result<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = opts
        .url
        .parse()
        .map_err(|e| Error::invalid("database", format!("is not a PostgreSQL URL: {e}")))?;
    if let Some(schema) = &opts.schema {
        validate_schema(schema)?;
        let mut o = config.get_options().unwrap_or_default().to_string();
        if !o.is_empty() {
            o.push(' ');
        }
        o.push_str(&format!("-c search_path={schema}"));
        config.options(&o);
    }
    if config.get_application_name().is_none() {
        config.application_name("quiver");
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(10));
    }
    config.keepalives_idle(Duration::from_secs(30));
    Ok(config)
}

/// Where the config points, without secrets, for error messages.
fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// Open one connection outside the pool, driving it on a task.
async fn connect_one(config: &tokio_postgres::Config) -> Result<tokio_postgres::Client> {
    let (client, conn) = config
        .connect(NoTls)
        .await
        .context(format!("connecting to PostgreSQL at {}", describe(config)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// Apply the migrations this schema has not seen, each in its own transaction, under a
/// session advisory lock so that concurrent starts migrate once.
async fn migrate(client: &mut tokio_postgres::Client, schema: Option<&str>) -> Result<()> {
    let target: String = match schema {
        Some(s) => s.to_string(),
        None => client
            .query_one("SELECT COALESCE(current_schema(), '')", &[])
            .await
            .context("reading the current schema")?
            .get(0),
    };
    client
        .execute(
            "SELECT pg_advisory_lock($1::int4, hashtext($2::text))",
            &[&MIGRATE_LOCK, &target],
        )
        .await
        .context("taking the migration lock")?;
    let result = migrate_locked(client, schema).await;
    let unlocked = client
        .execute(
            "SELECT pg_advisory_unlock($1::int4, hashtext($2::text))",
            &[&MIGRATE_LOCK, &target],
        )
        .await
        .context("releasing the migration lock");
    result.and(unlocked.map(|_| ()))
}

async fn migrate_locked(client: &mut tokio_postgres::Client, schema: Option<&str>) -> Result<()> {
    if let Some(s) = schema {
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}"))
            .await
            .context(format!("creating schema {s}"))?;
    }
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .context("creating schema_migrations")?;
    for (name, sql) in MIGRATIONS {
        let done: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE name = $1)",
                &[name],
            )
            .await
            .context("reading schema_migrations")?
            .get(0);
        if done {
            continue;
        }
        let tx = client.transaction().await.context("beginning migration")?;
        tx.batch_execute(sql)
            .await
            .context(format!("applying migration {name}"))?;
        tx.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES ($1, $2)",
            &[name, &store::now_ms()],
        )
        .await
        .context("recording migration")?;
        tx.commit()
            .await
            .context(format!("committing migration {name}"))?;
        tracing::info!(migration = name, "applied migration");
    }
    Ok(())
}

impl PostgresStore {
    /// Connect with default options and run pending migrations.
    pub async fn connect(url: &str) -> Result<PostgresStore> {
        Self::connect_with(PostgresOptions::new(url)).await
    }

    /// Connect and run pending migrations.
    pub async fn connect_with(opts: PostgresOptions) -> Result<PostgresStore> {
        let config = pg_config(&opts)?;
        {
            let mut client = connect_one(&config).await?;
            migrate(&mut client, opts.schema.as_deref()).await?;
        }
        let pool = build_pool(&config, opts.max_connections)?;
        let read_pool = match &opts.read_url {
            Some(url) => {
                let read_config = pg_config(&PostgresOptions {
                    url: url.clone(),
                    ..opts.clone()
                })
                .map_err(|e| e.in_field("read_database"))?;
                let pool = build_pool(&read_config, opts.max_connections)?;
                // Fail now, with the replica named, rather than on the first read.
                let _probe = pool.get().await.context(format!(
                    "connecting to the PostgreSQL read replica at {}",
                    describe(&read_config)
                ))?;
                Some(pool)
            }
            None => None,
        };
        let row = pool
            .get()
            .await
            .context(format!("connecting to PostgreSQL at {}", describe(&config)))?
            .query_one(
                "SELECT current_schema()::text, hashtext(current_schema())",
                &[],
            )
            .await
            .context("reading the current schema")?;
        let schema: String = row.get(0);
        let lock_key: i32 = row.get(1);
        let channel = if schema == "public" {
            "quiver_feed".to_string()
        } else {
            let mut c = format!("quiver_feed.{schema}");
            c.truncate(63);
            c
        };
        let store = PostgresStore {
            inner: Arc::new(Inner {
                pool,
                read_pool,
                config,
                schema,
                lock_key,
                channel,
                listen_poll_interval: opts.listen_poll_interval,
            }),
        };
        // Number what a writer that crashed after its commit left in the outbox.
        let mut client = store.pooled().await?;
        store.sequence(&mut client).await?;
        drop(client);
        Ok(store)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// The NOTIFY channel this store's writes signal on.
    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// A connection for the API's reads: from the read replica's pool when there is one.
    pub(crate) async fn read_client(&self) -> Result<deadpool_postgres::Object> {
        match &self.inner.read_pool {
            Some(pool) => pool
                .get()
                .await
                .context("taking a PostgreSQL read-replica connection"),
            None => self.client().await,
        }
    }

    /// A connection from the pool (for tests and tools that need raw SQL).
    pub async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.inner
            .pool
            .get()
            .await
            .context("taking a PostgreSQL connection")
    }

    /// The whole handle on this database: every part is this store, shared by all nodes
    /// (request rate limits too), and the feed waker LISTENs for every node's writes.
    pub fn database(&self) -> Database {
        let me = Arc::new(self.clone());
        Database {
            store: me.clone(),
            jobs: me.clone(),
            accounts: me.clone(),
            audit: me.clone(),
            rate_limiter: me.clone(),
            counters: me.clone(),
            throttle: me.clone(),
            device_codes: me.clone(),
            identities: me.clone(),
            cursors: me.clone(),
            telemetry: me.clone(),
            pipeline: me.clone(),
            advisories: me.clone(),
            downloads: me.clone(),
            webhooks: me,
            feed: Arc::new(listen::ListenWaker(self.clone())),
        }
    }

    /// Follow the feed head: a dedicated connection LISTENs on this store's channel and the
    /// listener yields the newest head after each commit (see [`FeedListener`]).
    pub fn listen(&self) -> FeedListener {
        listen::spawn(
            self.inner.config.clone(),
            self.inner.channel.clone(),
            self.inner.schema.clone(),
            self.inner.listen_poll_interval,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/test"),
            "postgres://postgres@127.0.0.1/test"
        );
        assert_eq!(
            redact_url("host=h password=secret dbname=x"),
            "host=h password=*** dbname=x"
        );
        let o = PostgresOptions::new("postgres://u:secret@h/db");
        assert!(!format!("{o:?}").contains("secret"));
    }

    #[test]
    fn postgres_urls_are_recognized() {
        assert!(is_postgres_url("postgres://postgres@127.0.0.1:5432/test"));
        assert!(is_postgres_url("postgresql://h/db"));
        assert!(!is_postgres_url("/var/lib/quiver"));
        assert!(!is_postgres_url("quiver.db"));
    }

    #[test]
    fn schema_names_are_plain() {
        assert!(validate_schema("quiver_test_1").is_ok());
        for bad in ["", "Quiver", "a-b", "1abc", "a;drop", &"a".repeat(64)] {
            assert!(validate_schema(bad).is_err(), "{bad}");
        }
    }
}
