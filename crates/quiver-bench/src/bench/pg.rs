//! Peer (b): PostgreSQL full-text search with pg_trgm, the approach the first seed
//! recommends (section 2.2): a generated tsvector column with a GIN index, a trigram GIN
//! index on the name, and a query that combines `@@ websearch_to_tsquery` with
//! `name % q`, ranked by `ts_rank + similarity`, popularity breaking ties, `LIMIT 10`.
//!
//! Everything lives in a fresh schema `quiver_bench_<random>` that is dropped at the end,
//! also when the run fails (see [`drop_schema`]).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use futures_util::SinkExt;
use tokio_postgres::{Client, NoTls, Statement};

use super::data::Row;

/// Longest wait for loading and indexing.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest wait for one query.
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Pg {
    client: Client,
    search: Statement,
}

pub struct Loaded {
    pub load_secs: f64,
    pub index_secs: f64,
    /// Table, TOAST and indexes.
    pub total_bytes: u64,
    pub index_bytes: u64,
}

/// A schema name that no one else uses: `quiver_bench_` and 12 hex digits.
pub fn schema_name(seed: u64) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut rng = super::data::Rng::new(seed ^ nanos ^ u64::from(std::process::id()));
    format!("quiver_bench_{:012x}", rng.next_u64() & 0xffff_ffff_ffff)
}

/// One field in COPY's text format: backslash, tab, newline and carriage return escaped.
pub fn copy_escape(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

pub async fn connect(url: &str) -> anyhow::Result<Client> {
    let mut config: tokio_postgres::Config = url.parse().context("parsing the PostgreSQL URL")?;
    config.connect_timeout(Duration::from_secs(5));
    let (client, conn) = tokio::time::timeout(Duration::from_secs(10), config.connect(NoTls))
        .await
        .map_err(|_| anyhow!("no answer within 10 s"))??;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("bench: PostgreSQL connection: {e}");
        }
    });
    // NOTICEs ("extension already exists", "drop cascades") are not news here.
    client
        .batch_execute("SET client_min_messages = warning")
        .await?;
    Ok(client)
}

const SEARCH_SQL: &str = "SELECT namespace, name FROM packages \
     WHERE tsv @@ websearch_to_tsquery('english', $1) OR name % $1 \
     ORDER BY ts_rank(tsv, websearch_to_tsquery('english', $1)) + similarity(name, $1) DESC, \
              popularity DESC \
     LIMIT 10";

impl Pg {
    /// Create the schema, load the rows with COPY, build the indexes.
    pub async fn load(client: Client, schema: &str, rows: &[Row]) -> anyhow::Result<(Pg, Loaded)> {
        tokio::time::timeout(LOAD_TIMEOUT, Self::load_inner(client, schema, rows))
            .await
            .map_err(|_| anyhow!("loading did not finish within {LOAD_TIMEOUT:?}"))?
    }

    async fn load_inner(
        client: Client,
        schema: &str,
        rows: &[Row],
    ) -> anyhow::Result<(Pg, Loaded)> {
        let started = Instant::now();
        client
            .batch_execute(&format!(
                "CREATE EXTENSION IF NOT EXISTS pg_trgm;
                 CREATE SCHEMA {schema};
                 SET search_path = {schema}, public;
                 SET statement_timeout = '1800s';
                 SET maintenance_work_mem = '256MB';
                 CREATE TABLE packages (
                     id bigint NOT NULL,
                     namespace text NOT NULL,
                     name text NOT NULL,
                     summary text NOT NULL,
                     popularity double precision NOT NULL,
                     tsv tsvector GENERATED ALWAYS AS (
                         setweight(to_tsvector('english', name), 'A') ||
                         setweight(to_tsvector('english', summary), 'B')
                     ) STORED
                 );"
            ))
            .await
            .context("creating the schema")?;
        let sink = client
            .copy_in("COPY packages (id, namespace, name, summary, popularity) FROM STDIN")
            .await?;
        let mut sink = std::pin::pin!(sink);
        let mut buf = String::with_capacity(1 << 20);
        for (i, r) in rows.iter().enumerate() {
            buf.push_str(&(i + 1).to_string());
            buf.push('\t');
            buf.push_str(r.namespace);
            buf.push('\t');
            copy_escape(&r.name, &mut buf);
            buf.push('\t');
            copy_escape(&r.summary, &mut buf);
            buf.push('\t');
            buf.push_str(&r.popularity.to_string());
            buf.push('\n');
            if buf.len() >= 1 << 20 {
                sink.send(Bytes::from(std::mem::take(&mut buf))).await?;
                buf.reserve(1 << 20);
            }
        }
        if !buf.is_empty() {
            sink.send(Bytes::from(buf)).await?;
        }
        sink.as_mut().finish().await.context("COPY")?;
        let load_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        client
            .batch_execute(
                "CREATE INDEX packages_tsv ON packages USING GIN (tsv);
                 CREATE INDEX packages_name_trgm ON packages USING GIN (name gin_trgm_ops);
                 ANALYZE packages;
                 SET statement_timeout = '60s';",
            )
            .await
            .context("building the indexes")?;
        let index_secs = started.elapsed().as_secs_f64();
        let sizes = client
            .query_one(
                "SELECT pg_total_relation_size('packages')::bigint, \
                        pg_indexes_size('packages')::bigint",
                &[],
            )
            .await?;
        let search = client.prepare(SEARCH_SQL).await?;
        Ok((
            Pg { client, search },
            Loaded {
                load_secs,
                index_secs,
                total_bytes: sizes.get::<_, i64>(0).max(0) as u64,
                index_bytes: sizes.get::<_, i64>(1).max(0) as u64,
            },
        ))
    }

    /// The first 10 results for what a user typed.
    pub async fn search(&self, input: &str) -> anyhow::Result<Vec<(String, String)>> {
        let rows = tokio::time::timeout(QUERY_TIMEOUT, self.client.query(&self.search, &[&input]))
            .await
            .map_err(|_| anyhow!("no answer within {QUERY_TIMEOUT:?}"))??;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }
}

/// `url` with every connection's `search_path` set to `schema` (a libpq `options`
/// parameter, which quiver's store passes on to the server).
pub fn url_with_schema(url: &str, schema: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-csearch_path%3D{schema}")
}

/// Bytes on disk of a schema's tables, their TOAST and indexes.
pub async fn schema_bytes(url: &str, schema: &str) -> anyhow::Result<u64> {
    let client = connect(url).await?;
    let row = client
        .query_one(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::int8 \
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
              WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'm')",
            &[&schema],
        )
        .await
        .context("measuring the schema's size")?;
    Ok(row.get::<_, i64>(0) as u64)
}

/// Drop the bench's schema (on a connection of its own, so that it works whatever state
/// the loading connection is in).
pub async fn drop_schema(url: &str, schema: &str) -> anyhow::Result<()> {
    let client = connect(url).await?;
    tokio::time::timeout(
        Duration::from_secs(120),
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")),
    )
    .await
    .map_err(|_| anyhow!("DROP SCHEMA did not finish within 120 s"))??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_fields_are_escaped() {
        let mut s = String::new();
        copy_escape("a\tb\\c\nd\re", &mut s);
        assert_eq!(s, "a\\tb\\\\c\\nd\\re");
        let name = schema_name(1);
        assert!(
            name.starts_with("quiver_bench_") && name.len() == 25,
            "{name}"
        );
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
    }
}
