//! SIGKILL between writes, many times over: afterwards every acknowledged write has
//! exactly one audit row and every audit row of a write has its write, because a write
//! and its row commit in one transaction. Runs on SQLite, and on PostgreSQL when
//! `QUIVER_TEST_POSTGRES_URL` is set.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::Server;
use quiver_model::{EntryKey, Kind};
use quiver_store::{AuditFilter, Database, EntryFilter};

/// Server runs, each killed while writers are busy.
const ROUNDS: usize = 8;
const WRITERS: usize = 4;

/// What the clients saw acknowledged: audit target → action.
type Acked = Arc<Mutex<BTreeMap<String, &'static str>>>;

/// One writer: create an entry, publish two versions of it, again and again, noting every
/// write the server acknowledged, until the server goes away.
async fn writer(base: String, round: usize, w: usize, acked: Acked) {
    let http = reqwest::Client::new();
    for i in 0.. {
        let name = format!("crash-{round}-{w}-{i}");
        let path = format!("package/acme/{name}");
        let key = format!("package acme/{name}"); // as the audit log names it
        let r = http
            .post(format!("{base}/api/v1/entries"))
            .json(&serde_json::json!({
                "kind": "package", "namespace": "acme", "name": name,
                "description": "written while the server is killed"
            }))
            .send()
            .await;
        match r {
            Ok(r) if r.status() == 201 => {
                acked.lock().unwrap().insert(key.clone(), "entry.create");
            }
            Ok(r) => panic!("create answered {}: {:?}", r.status(), r.text().await),
            Err(_) => return, // the server is gone
        }
        for v in ["1.0.0", "1.1.0"] {
            let r = http
                .post(format!("{base}/api/v1/entries/{path}/versions"))
                .json(&serde_json::json!({"version": v, "manifest": {"n": i}}))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 201 => {
                    acked
                        .lock()
                        .unwrap()
                        .insert(format!("{key}@{v}"), "version.publish");
                }
                Ok(r) => panic!("publish answered {}: {:?}", r.status(), r.text().await),
                Err(_) => return,
            }
        }
    }
}

async fn kill_between_writes(data_dir: &Path, extra: &[&str], db: Database) {
    let acked: Acked = Arc::default();
    for round in 0..ROUNDS {
        let server = Server::start(data_dir, extra);
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| tokio::spawn(writer(server.base.clone(), round, w, acked.clone())))
            .collect();
        // Kill at a different moment each round, mid-write.
        tokio::time::sleep(Duration::from_millis(150 + 60 * round as u64)).await;
        server.kill9();
        for t in tasks {
            t.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the writers got writes in: {}",
        acked.len()
    );

    // Every row of these actions, by target.
    let mut rows: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for action in ["entry.create", "version.publish"] {
        let filter = AuditFilter {
            action: Some(action.into()),
            ..AuditFilter::default()
        };
        let mut cursor = None;
        loop {
            let page = db
                .audit
                .list_audit(&filter, cursor.as_deref(), 500)
                .await
                .unwrap();
            for r in page.items {
                assert_eq!(r.outcome, "allowed");
                rows.entry(r.target).or_default().push(r.action);
            }
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
    }
    // Every acknowledged write has exactly one row.
    for (target, action) in &acked {
        assert_eq!(
            rows.get(target).map(Vec::as_slice),
            Some(&[action.to_string()][..]),
            "the acknowledged {action} of {target} has exactly one audit row"
        );
    }
    // Every row has its write (acknowledged or not: a write the kill cut off before its
    // answer may be in, but then with its row).
    for (target, actions) in &rows {
        assert_eq!(actions.len(), 1, "one row for {target}: {actions:?}");
        let (entry, version) = match target.split_once('@') {
            Some((e, v)) => (e, Some(v)),
            None => (target.as_str(), None),
        };
        let name = entry.strip_prefix("package acme/").unwrap();
        let key = EntryKey::new(Kind::Package, "acme", name);
        let stored = db.store.get_entry(&key).await.unwrap();
        assert!(stored.is_some(), "the row of {target} has its entry");
        if let Some(v) = version {
            assert!(
                db.store.get_version(&key, v).await.unwrap().is_some(),
                "the row of {target} has its version"
            );
        }
    }
    // Every write has its row, acknowledged or not (a write committed just before the
    // kill, whose answer never went out, is still in with its row).
    let filter = EntryFilter {
        namespaces: vec!["acme".into()],
        ..EntryFilter::default()
    };
    let (mut cursor, mut writes) = (None, 0);
    loop {
        let page = db
            .store
            .list_entries(&filter, cursor.as_deref(), 500)
            .await
            .unwrap();
        for e in &page.items {
            let target = format!("package acme/{}", e.name);
            assert!(rows.contains_key(&target), "the entry {target} has its row");
            for v in db.store.list_versions(&e.key()).await.unwrap() {
                let target = format!("{target}@{}", v.version);
                assert!(
                    rows.contains_key(&target),
                    "the version {target} has its row"
                );
                writes += 1;
            }
            writes += 1;
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(writes, rows.len(), "as many writes as rows");
    eprintln!(
        "{} acknowledged writes, {} audit rows, over {ROUNDS} kills",
        acked.len(),
        rows.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_between_writes_keeps_writes_and_audit_rows_together_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // Create the store first, so this handle reads what the servers wrote.
    let db = quiver_backends::open(quiver_backends::Location::in_data_dir(&data), None)
        .await
        .unwrap();
    kill_between_writes(&data, &["--rate-limits", "off"], db).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_between_writes_keeps_writes_and_audit_rows_together_on_postgres() {
    let Some(url) = quiver_postgres::testing::test_url() else {
        return;
    };
    let schema = quiver_postgres::testing::TestSchema::new(&url);
    schema.store().await.unwrap(); // creates and migrates the schema
    let sep = if url.contains('?') { '&' } else { '?' };
    let database = format!("{url}{sep}options=-csearch_path%3D{}", schema.name());
    let db = quiver_backends::open_database(&database).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let extra = ["--database", &database, "--rate-limits", "off"];
    kill_between_writes(dir.path(), &extra, db).await;
}
