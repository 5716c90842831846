//! What the search tests share: entries and a store with its index built in a temporary
//! folder.
#![allow(dead_code)] // each test binary uses its own part of this module

use quiver_model::{EntryKey, Kind, NewEntry, NewVersion, Popularity, Status, Visibility};
use quiver_search::{SearchIndex, SearchQuery, SearchResults};
use quiver_sqlite::SqliteStore;
use quiver_store::Store;

pub struct Fixture {
    pub _dir: tempfile::TempDir,
    pub store: SqliteStore,
    pub index: SearchIndex,
    pub index_dir: std::path::PathBuf,
}

/// A public, published entry of `kind` with the given popularity.
pub fn entry(kind: Kind, ns: &str, name: &str, description: &str, pop: f64) -> NewEntry {
    NewEntry {
        kind,
        namespace: ns.to_string(),
        name: name.to_string(),
        display_name: None,
        description: description.to_string(),
        category: None,
        tags: vec![],
        keywords: vec![],
        status: Some(Status::Published),
        visibility: Some(Visibility::Public),
        popularity: Some(Popularity {
            score: pop,
            ..Default::default()
        }),
    }
}

/// A public, published package.
pub fn package(ns: &str, name: &str, description: &str, pop: f64) -> NewEntry {
    entry(Kind::Package, ns, name, description, pop)
}

/// A store holding `entries`, each with a version 1.0.0 of the given manifest when one
/// is given, and its index caught up.
pub async fn fixture_with(entries: Vec<(NewEntry, Option<serde_json::Value>)>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("db")).unwrap();
    for (e, manifest) in entries {
        let key = EntryKey::new(e.kind, &e.namespace, &e.name);
        let kind = e.kind;
        store.create_entry(e).await.unwrap();
        if let Some(m) = manifest {
            let v = quiver_store::valid_version(
                kind,
                NewVersion {
                    version: "1.0.0".into(),
                    manifest: m,
                    changelog: None,
                    breaking: false,
                },
            )
            .unwrap();
            store.publish_version(&key, v).await.unwrap();
        }
    }
    let index_dir = dir.path().join("index");
    let index = SearchIndex::open(&index_dir).unwrap();
    index.catch_up(&store).await.unwrap();
    Fixture {
        _dir: dir,
        store,
        index,
        index_dir,
    }
}

/// A store holding `entries` (no versions) and its index.
pub async fn fixture(entries: Vec<NewEntry>) -> Fixture {
    fixture_with(entries.into_iter().map(|e| (e, None)).collect()).await
}

/// `namespace/name` of each hit.
pub fn names(r: &SearchResults) -> Vec<String> {
    r.hits
        .iter()
        .map(|h| format!("{}/{}", h.namespace, h.name))
        .collect()
}

/// The hits of a plain text query.
pub fn top(ix: &SearchIndex, q: &str) -> Vec<String> {
    names(&ix.search(&SearchQuery::text(q)).unwrap())
}
