//! Which backend a database URL names, and opening it: the one place that knows every
//! backend, so that the engine knows none.
//!
//! - `postgres://…` or `postgresql://…`: PostgreSQL ([`quiver_postgres::open`]), for many
//!   nodes over one database, optionally with a read replica for the API's reads;
//! - `sqlite:PATH`, `sqlite://PATH` or a plain file path: the embedded SQLite store
//!   ([`quiver_sqlite::open`]). [`store_path`] is where a data directory keeps it.
//!
//! Anything else with a `scheme://` is refused rather than taken for a file name, so a
//! mistyped PostgreSQL URL does not quietly create an SQLite file.
//!
//! The binary and the tests call [`open_database`] (or [`open`] with a [`Location`]);
//! both give a [`Database`] with every part present.

use std::fmt;
use std::path::{Path, PathBuf};

use quiver_model::{Error, Result};
use quiver_postgres::{redact_url, PostgresOptions};
use quiver_store::Database;

pub use quiver_postgres::is_postgres_url;

pub use quiver_sqlite::set_mmap_size as set_sqlite_mmap_size;

/// Where the embedded store lives in a data directory.
pub fn store_path(data_dir: &Path) -> PathBuf {
    data_dir.join("quiver.db")
}

/// A database a URL names.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// An SQLite database file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Location {
    /// The backend and address `url` names (see the crate's documentation).
    pub fn parse(url: &str) -> Result<Location> {
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(Error::invalid("database", "is empty"));
        }
        if is_postgres_url(trimmed) {
            return Ok(Location::Postgres(trimmed.to_string()));
        }
        if let Some(rest) = strip_prefix_ignore_case(trimmed, "sqlite:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(Error::invalid(
                    "database",
                    "sqlite: needs a file path (sqlite:/var/lib/quiver/quiver.db)",
                ));
            }
            return Ok(Location::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            {
                return Err(Error::invalid(
                    "database",
                    format!(
                        "'{}' names no backend quiver has: use postgres://…, sqlite:PATH or a file path",
                        redact_url(trimmed)
                    ),
                ));
            }
        }
        Ok(Location::Sqlite(PathBuf::from(trimmed)))
    }

    /// The embedded store of a data directory.
    pub fn in_data_dir(data_dir: &Path) -> Location {
        Location::Sqlite(store_path(data_dir))
    }
}

/// Without the password of a PostgreSQL URL.
impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Location::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Open the database `url` names (see [`Location::parse`]), running pending migrations.
pub async fn open_database(url: &str) -> Result<Database> {
    open(Location::parse(url)?, None).await
}

/// Open a database, with a read replica for the API's reads when `read_url` is given
/// (PostgreSQL only: see `quiver_postgres::PostgresOptions::read_url`).
pub async fn open(location: Location, read_url: Option<&str>) -> Result<Database> {
    match location {
        Location::Postgres(url) => {
            let mut opts = PostgresOptions::new(url);
            if let Some(read) = read_url {
                if !is_postgres_url(read) {
                    return Err(Error::invalid(
                        "read_database",
                        format!(
                            "'{}' is not a PostgreSQL URL (postgres://...)",
                            redact_url(read)
                        ),
                    ));
                }
                opts.read_url = Some(read.to_string());
            }
            quiver_postgres::open(opts).await
        }
        Location::Sqlite(path) => {
            if read_url.is_some() {
                return Err(Error::invalid(
                    "read_database",
                    "a read replica needs a PostgreSQL database (--database postgres://...)",
                ));
            }
            quiver_sqlite::open(path)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend() {
        let sqlite = |p: &str| Location::Sqlite(PathBuf::from(p));
        for (url, want) in [
            (
                "postgres://u@h/db",
                Location::Postgres("postgres://u@h/db".into()),
            ),
            (
                "PostgreSQL://h/db",
                Location::Postgres("PostgreSQL://h/db".into()),
            ),
            ("sqlite:/var/q.db", sqlite("/var/q.db")),
            ("sqlite:///var/q.db", sqlite("/var/q.db")),
            ("SQLITE:rel/q.db", sqlite("rel/q.db")),
            (
                "/var/lib/quiver/quiver.db",
                sqlite("/var/lib/quiver/quiver.db"),
            ),
            ("quiver.db", sqlite("quiver.db")),
            ("C:\\data\\q.db", sqlite("C:\\data\\q.db")),
        ] {
            assert_eq!(Location::parse(url).unwrap(), want, "{url}");
        }
    }

    #[test]
    fn unknown_schemes_and_empty_urls_are_refused() {
        for url in [
            "postgress://u:secret@h/db",
            "mysql://h/db",
            "",
            "  ",
            "sqlite:",
        ] {
            let e = Location::parse(url).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("database"), "{url}");
            assert!(!e.message.contains("secret"), "{}", e.message);
        }
    }

    #[test]
    fn debug_hides_the_password() {
        let l = Location::parse("postgres://u:secret@h/db").unwrap();
        assert!(!format!("{l:?}").contains("secret"));
    }

    #[tokio::test]
    async fn an_sqlite_url_opens_a_whole_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("q.db");
        let db = open_database(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        assert_eq!(db.backend(), "sqlite");
        assert!(path.exists());
        let e = open(Location::Sqlite(path), Some("postgres://h/db"))
            .await
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("read_database"));
    }
}
