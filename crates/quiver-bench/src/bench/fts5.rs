//! Peer (a): SQLite FTS5, set up the way its documentation suggests.
//!
//! A table `packages(namespace, name, summary, popularity)` and an external-content FTS5
//! table over `name` and `summary` (unicode61 tokenizer), loaded in one transaction with
//! prepared statements, then merged with FTS5's `optimize`. A search is the OR of the
//! query's terms (each quoted; the last one also as a prefix, for search-as-you-type),
//! ranked by `bm25` with the name weighted 10 to 1 over the summary, popularity breaking
//! ties, `LIMIT 10`; a package whose name is the query (ignoring case) comes first, the
//! one rule a developer adds on seeing that bm25 alone ranks `requests` below dozens of
//! `*-requests` packages (it takes FTS5 from 0% to 100% hit@3 on exact names).

use std::path::Path;
use std::time::Instant;

use rusqlite::{params, Connection};

use super::data::Row;

pub struct Fts5 {
    conn: Connection,
}

/// What loading took.
pub struct Loaded {
    pub load_secs: f64,
    pub index_secs: f64,
}

const SEARCH_SQL: &str = "SELECT p.namespace, p.name FROM packages_fts f \
     JOIN packages p ON p.id = f.rowid \
     WHERE packages_fts MATCH ?1 \
     ORDER BY p.name = ?2 COLLATE NOCASE DESC, bm25(packages_fts, 10.0, 1.0), \
              p.popularity DESC \
     LIMIT 10";

/// Quote one term for an FTS5 query: a string in double quotes, quotes doubled.
pub fn quote_term(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// The FTS5 MATCH expression for what a user typed: the terms split the way the
/// unicode61 tokenizer splits text (on anything not a letter or digit), each quoted so
/// that no user input is read as FTS5 syntax, joined with OR; the last term also matches
/// as a prefix. `None` when the input has no term at all.
pub fn match_expr(input: &str) -> Option<String> {
    let terms: Vec<&str> = input
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .collect();
    let (last, rest) = terms.split_last()?;
    let mut parts: Vec<String> = rest.iter().map(|t| quote_term(t)).collect();
    parts.push(format!("{}*", quote_term(last)));
    Some(parts.join(" OR "))
}

impl Fts5 {
    /// Create the database at `path` and load the rows.
    pub fn load(path: &Path, rows: &[Row]) -> anyhow::Result<(Fts5, Loaded)> {
        let started = Instant::now();
        let mut conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE packages (
                 id INTEGER PRIMARY KEY,
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 summary TEXT NOT NULL,
                 popularity REAL NOT NULL
             );
             CREATE VIRTUAL TABLE packages_fts USING fts5(
                 name, summary,
                 content = 'packages', content_rowid = 'id',
                 tokenize = 'unicode61 remove_diacritics 2'
             );",
        )?;
        {
            let tx = conn.transaction()?;
            {
                let mut ins = tx.prepare(
                    "INSERT INTO packages (id, namespace, name, summary, popularity) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                let mut fts = tx.prepare(
                    "INSERT INTO packages_fts (rowid, name, summary) VALUES (?1, ?2, ?3)",
                )?;
                for (i, r) in rows.iter().enumerate() {
                    let id = i as i64 + 1;
                    ins.execute(params![id, r.namespace, r.name, r.summary, r.popularity])?;
                    fts.execute(params![id, r.name, r.summary])?;
                }
            }
            tx.commit()?;
        }
        let load_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        conn.execute_batch(
            "INSERT INTO packages_fts (packages_fts) VALUES ('optimize');
             PRAGMA wal_checkpoint(TRUNCATE);",
        )?;
        let index_secs = started.elapsed().as_secs_f64();
        Ok((
            Fts5 { conn },
            Loaded {
                load_secs,
                index_secs,
            },
        ))
    }

    /// The first 10 results for what a user typed.
    pub fn search(&self, input: &str) -> anyhow::Result<Vec<(String, String)>> {
        let Some(expr) = match_expr(input) else {
            return Ok(vec![]);
        };
        let mut stmt = self.conn.prepare_cached(SEARCH_SQL)?;
        let rows = stmt.query_map([expr.as_str(), input.trim()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_escaped() {
        assert_eq!(quote_term("a\"b"), "\"a\"\"b\"");
        assert_eq!(match_expr("requests").unwrap(), "\"requests\"*");
        assert_eq!(
            match_expr("python client for elasticsearch").unwrap(),
            "\"python\" OR \"client\" OR \"for\" OR \"elasticsearch\"*"
        );
        assert_eq!(match_expr("@types/node").unwrap(), "\"types\" OR \"node\"*");
        // FTS5 operators and punctuation in user input are only separators.
        assert_eq!(
            match_expr("NOT (x) AND \"y\" OR z*").unwrap(),
            "\"NOT\" OR \"x\" OR \"AND\" OR \"y\" OR \"OR\" OR \"z\"*"
        );
        assert_eq!(match_expr(" -*- \"\" "), None);
    }

    #[test]
    fn loads_and_ranks() {
        let dir = tempfile::tempdir().unwrap();
        let row = |ns: &'static str, name: &str, summary: &str, popularity: f64| Row {
            namespace: ns,
            name: name.into(),
            summary: summary.into(),
            popularity,
        };
        let rows = vec![
            row("pypi", "pyyaml", "YAML parser and emitter for Python", 0.9),
            row("npm", "js-yaml", "YAML 1.2 parser and serializer", 0.95),
            row("pypi", "yaml-tools", "Tools", 0.1),
            row("pypi", "requests", "Python HTTP for Humans.", 0.99),
        ];
        let (db, loaded) = Fts5::load(&dir.path().join("fts.db"), &rows).unwrap();
        assert!(loaded.load_secs >= 0.0);
        let got = db.search("yaml parser").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(
            db.search("YAML-tools").unwrap()[0],
            ("pypi".to_string(), "yaml-tools".to_string()),
            "the exact name first"
        );
        assert!(
            got[..2].contains(&("npm".into(), "js-yaml".into())),
            "{got:?}"
        );
        assert_eq!(
            db.search("requests").unwrap(),
            vec![("pypi".to_string(), "requests".to_string())]
        );
        assert!(db.search("NOT \"").unwrap().is_empty());
        assert!(db.search("reqeusts").unwrap().is_empty());
    }
}
