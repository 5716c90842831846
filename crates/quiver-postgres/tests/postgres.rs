//! PostgreSQL-specific guarantees beyond the shared conformance suite: the schema agrees
//! with SQLite's, migrations survive concurrent starts, the feed stays gap-free and in
//! commit order under concurrent writers, LISTEN/NOTIFY wakes followers (and survives a
//! dropped connection), and bulk import behaves exactly like SQLite's.
//!
//! Needs `QUIVER_TEST_POSTGRES_URL`; without it every test prints `SKIPPED` and passes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quiver_conformance::new_entry;
use quiver_model::{
    Deprecation, EntryKey, ErrorCode, FeedEntity, FeedOp, Kind, NewVersion, Popularity, Status,
};
use quiver_postgres::testing::{test_url, TestSchema};
use quiver_postgres::PostgresStore;
use quiver_sqlite::SqliteStore;
use quiver_store::{valid_version, EntryFilter, ImportOutcome, ImportRecord, ImportVersion, Store};
use serde_json::json;

type Columns = BTreeMap<String, BTreeSet<String>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_agree() {
    let Some(url) = test_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.db");
    drop(SqliteStore::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    let mut sqlite = Columns::new();
    for t in tables {
        let cols: BTreeSet<String> = conn
            .prepare(&format!("PRAGMA table_info({t})"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(1))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        sqlite.insert(t, cols);
    }

    let schema = TestSchema::new(&url);
    let store = schema.store().await.unwrap();
    let client = store.client().await.unwrap();
    let mut postgres = Columns::new();
    for r in client
        .query(
            "SELECT c.table_name::text, c.column_name::text FROM information_schema.columns c \
             JOIN information_schema.tables t \
               ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
             WHERE c.table_schema = $1 AND t.table_type = 'BASE TABLE'",
            &[&store.schema()],
        )
        .await
        .unwrap()
    {
        postgres
            .entry(r.get(0))
            .or_default()
            .insert(r.get::<_, String>(1));
    }
    assert!(sqlite.contains_key("entries") && sqlite.contains_key("schema_migrations"));
    assert_eq!(
        sqlite, postgres,
        "the SQLite and PostgreSQL schemas disagree on tables or columns: add the same \
         migration to both sets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_sets_match_and_run_once_under_concurrent_starts() {
    assert_eq!(
        quiver_postgres::migration_names(),
        quiver_sqlite::migration_names(),
        "the two backends' migration sets must stay in step"
    );
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let opts = schema.options().max_connections(1);
            tokio::spawn(PostgresStore::connect_with(opts))
        })
        .collect();
    let mut stores = Vec::new();
    for s in starts {
        stores.push(s.await.unwrap().expect("every node starts"));
    }
    let client = stores[0].client().await.unwrap();
    let applied: Vec<String> = client
        .query("SELECT name FROM schema_migrations ORDER BY name", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(applied, quiver_postgres::migration_names());
    // A restart applies nothing.
    drop(client);
    schema.store().await.unwrap();
}

/// Two stores (two "nodes") on one schema, many concurrent writers, some of them refused;
/// a reader polling the feed meanwhile must never see seq k+1 before k.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_the_feed_gap_free_and_in_commit_order() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let a = Arc::new(schema.store().await.unwrap());
    let b = Arc::new(schema.store().await.unwrap());

    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let a = a.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut last = 0i64;
            let mut polls = 0u64;
            loop {
                let finished = done.load(Ordering::SeqCst);
                let events = a.feed_since(last, 1000).await.unwrap();
                polls += 1;
                for e in &events {
                    assert_eq!(
                        e.seq,
                        last + 1,
                        "the reader saw seq {} right after {last}: a gap",
                        e.seq
                    );
                    last = e.seq;
                }
                if finished && events.is_empty() {
                    return (last, polls);
                }
            }
        })
    };

    let mut writers = Vec::new();
    for w in 0..8usize {
        let store: Arc<PostgresStore> = if w % 2 == 0 { a.clone() } else { b.clone() };
        writers.push(tokio::spawn(async move {
            let (mut ok, mut refused) = (0u64, 0u64);
            for i in 0..25usize {
                let ns = format!("ns{}", i % 3);
                // Every fifth write reuses writer 0's name: one of them wins, the rest
                // conflict and roll back (their feed rows must leave no hole).
                let name = if i % 5 == 0 {
                    format!("shared{i}")
                } else {
                    format!("w{w}-{i}")
                };
                match store
                    .create_entry(new_entry(Kind::Tool, &ns, &name, "concurrent"))
                    .await
                {
                    Ok(_) => ok += 1,
                    Err(e) => {
                        assert_eq!(e.code, ErrorCode::Conflict, "{e:?}");
                        refused += 1;
                    }
                }
            }
            (ok, refused)
        }));
    }
    let (mut ok, mut refused) = (0u64, 0u64);
    for w in writers {
        let (o, r) = w.await.unwrap();
        ok += o;
        refused += r;
    }
    done.store(true, Ordering::SeqCst);
    let (seen, polls) = reader.await.unwrap();

    assert_eq!(ok + refused, 200);
    assert_eq!(refused, 7 * 5, "each shared name is created once");
    let events = a.feed_since(0, 10_000).await.unwrap();
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<i64> = (1..=events.len() as i64).collect();
    assert_eq!(seqs, want, "the feed is 1..N without a gap");
    let creates = events
        .iter()
        .filter(|e| e.entity == FeedEntity::Entry && e.op == FeedOp::Create)
        .count() as u64;
    let namespaces = events
        .iter()
        .filter(|e| e.entity == FeedEntity::Namespace)
        .count();
    assert_eq!(creates, ok);
    assert_eq!(namespaces, 3);
    assert_eq!(seen, events.len() as i64, "the reader saw every row");
    assert_eq!(b.feed_head().await.unwrap(), seen);
    assert!(polls > 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_wakes_followers_and_survives_a_dropped_connection() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let follower = schema.store().await.unwrap();
    let writer = schema.store().await.unwrap();
    assert_eq!(follower.channel(), writer.channel());
    assert_ne!(
        follower.channel(),
        "quiver_feed",
        "a test schema has its own channel"
    );
    let mut heads = follower.listen();

    // Wait until the listener's connection is up before writing.
    let client = writer.client().await.unwrap();
    let app = format!("quiver-listen:{}", schema.name());
    let app = &app[..app.len().min(63)];
    let listening = || async {
        client
            .query_one(
                "SELECT COUNT(*)::int8 FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    for _ in 0..100 {
        if listening().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listening().await, 1, "the listener connected");

    writer
        .create_entry(new_entry(Kind::Tool, "n", "first", "d"))
        .await
        .unwrap();
    let head = writer.feed_head().await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let h = heads.next().await.unwrap();
            if h >= head {
                return h;
            }
        }
    })
    .await
    .expect("notified within 5 s");
    assert_eq!(got, head);

    // Kill the listener's connection; it reconnects and catches up on what it missed.
    let killed: i64 = client
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid))::int8 FROM pg_stat_activity \
             WHERE application_name = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    writer
        .create_entry(new_entry(Kind::Tool, "n", "second", "d"))
        .await
        .unwrap();
    let head = writer.feed_head().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if heads.next().await.unwrap() >= head {
                return;
            }
        }
    })
    .await
    .expect("the listener reconnected and saw the new head");
    assert_eq!(heads.head(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_report_size() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.store().await.unwrap();
    store
        .create_entry(new_entry(Kind::Tool, "n", "a", "d"))
        .await
        .unwrap();
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.entries, 1);
    assert_eq!(stats.feed_head, 2);
    assert!(stats.size_bytes.unwrap() > 0);
}

// --- import: the same batches on both backends give the same outcomes and state ---

fn version(kind: Kind, v: &str, summary: &str) -> ImportVersion {
    valid_version(
        kind,
        NewVersion {
            version: v.into(),
            manifest: json!({"summary": summary}),
            changelog: Some(format!("changes in {v}")),
            breaking: false,
        },
    )
    .unwrap()
    .into()
}

fn yanked(mut v: ImportVersion, reason: &str) -> ImportVersion {
    v.yanked = true;
    v.yank_reason = Some(reason.into());
    v
}

fn rec(ns: &str, name: &str, desc: &str, versions: Vec<ImportVersion>) -> ImportRecord {
    ImportRecord {
        entry: quiver_model::NewEntry {
            popularity: Some(Popularity {
                score: 0.25,
                monthly_downloads: Some(1234),
                rank: Some(7),
            }),
            ..new_entry(Kind::Package, ns, name, desc)
        },
        deprecation: None,
        versions,
    }
}

fn batches() -> Vec<Vec<ImportRecord>> {
    let p = Kind::Package;
    let mut dep = rec("npm", "old-thing", "deprecated", vec![]);
    dep.entry.status = Some(Status::Deprecated);
    dep.deprecation = Some(Deprecation {
        message: "use new-thing".into(),
        replacement: Some("new-thing".into()),
    });
    let mut tool = rec("custom", "web.fetch", "a tool", vec![]);
    tool.entry.kind = Kind::Tool;
    tool.entry.tags = vec!["x".into(), "y".into(), "x".into()];
    let mut dep2 = dep.clone();
    dep2.entry.tags = vec!["legacy".into()];
    let mut tampered = rec(
        "pypi",
        "foo-bar",
        "tampered",
        vec![version(p, "1.0.0", "evil")],
    );
    tampered.entry.description = "should not land".into();
    let b1 = vec![
        rec("pypi", "Foo_Bar", "foo", vec![version(p, "1.0.0", "one")]),
        rec(
            "npm",
            "left-pad",
            "pads",
            vec![
                version(p, "1.0.0", "a"),
                yanked(version(p, "1.1.0", "b"), "broken"),
                version(p, "2.0.0-beta.1", "c"),
            ],
        ),
        // The same PyPI project under another spelling: a second round, an update.
        rec(
            "pypi",
            "foo.bar",
            "foo, again",
            vec![version(p, "1.0.0", "one")],
        ),
        dep,
        rec("npm", "no-versions", "none", vec![]),
        rec(
            "npm",
            "pre-only",
            "pre",
            vec![version(p, "0.1.0-alpha", "p")],
        ),
        tool,
    ];
    let b2 = vec![
        rec(
            "npm",
            "left-pad",
            "pads",
            vec![
                version(p, "1.0.0", "a"),
                version(p, "1.1.0", "b"), // unyanked
                version(p, "3.0.0", "d"), // new
            ],
        ),
        tampered,
        dep2,
        rec("npm", "no-versions", "none", vec![]),
        rec("npm", "fresh", "new", vec![version(p, "1.0.0", "f")]),
        rec(
            "npm",
            "fresh",
            "new",
            vec![
                version(p, "1.0.0", "f"),
                yanked(version(p, "1.0.1", "g"), "oops"),
            ],
        ),
        rec(
            "npm",
            "pre-only",
            "pre",
            vec![yanked(version(p, "0.1.0-alpha", "p"), "bad")],
        ),
        rec("yarn", "brand-new-ns", "ns", vec![]),
    ];
    let b3 = b2.clone();
    vec![b1, b2, b3]
}

/// Everything a client can read, without ids and timestamps (which differ by backend).
async fn snapshot(s: &dyn Store) -> String {
    let mut out = String::new();
    let entries = s
        .list_entries(&EntryFilter::default(), None, 1000)
        .await
        .unwrap()
        .items;
    let mut names: BTreeMap<i64, EntryKey> = BTreeMap::new();
    for mut e in entries {
        names.insert(e.id, e.key());
        let versions: Vec<_> = s
            .list_versions(&e.key())
            .await
            .unwrap()
            .into_iter()
            .map(|mut v| {
                v.published_at = jiff::Timestamp::UNIX_EPOCH;
                v
            })
            .collect();
        let tagged = s
            .list_entries(
                &EntryFilter {
                    tags: e.tags.clone(),
                    ..Default::default()
                },
                None,
                1000,
            )
            .await
            .unwrap()
            .items
            .iter()
            .any(|t| t.id == e.id);
        e.id = 0;
        e.created_at = jiff::Timestamp::UNIX_EPOCH;
        e.updated_at = jiff::Timestamp::UNIX_EPOCH;
        out.push_str(&format!(
            "{e:?}\n  tags indexed: {tagged}\n  {versions:?}\n"
        ));
    }
    for ev in s.feed_since(0, 10_000).await.unwrap() {
        let key = ev.entry_id.and_then(|id| names.get(&id));
        out.push_str(&format!(
            "feed {} {:?} {:?} {}\n",
            ev.seq,
            ev.entity,
            ev.op,
            key.map(|k| k.to_string()).unwrap_or_default()
        ));
    }
    for ns in ["npm", "pypi", "custom", "yarn"] {
        let n = s.get_namespace(ns).await.unwrap().map(|n| n.name);
        out.push_str(&format!("namespace {ns}: {n:?}\n"));
    }
    let stats = s.stats().await.unwrap();
    out.push_str(&format!(
        "stats {} {} {} {}\n",
        stats.entries, stats.versions, stats.relations, stats.feed_head
    ));
    out
}

fn outcome(o: &ImportOutcome) -> String {
    match o {
        ImportOutcome::Rejected(e) => format!("rejected {:?} {:?} {}", e.code, e.field, e.message),
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_matches_sqlite() {
    let Some(url) = test_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path().join("q.db")).unwrap();
    let schema = TestSchema::new(&url);
    let pg = schema.store().await.unwrap();
    for (n, batch) in batches().into_iter().enumerate() {
        let a: Vec<String> = sqlite
            .import_batch(batch.clone())
            .await
            .unwrap()
            .iter()
            .map(outcome)
            .collect();
        let b: Vec<String> = pg
            .import_batch(batch)
            .await
            .unwrap()
            .iter()
            .map(outcome)
            .collect();
        assert_eq!(a, b, "outcomes of batch {n}");
        assert_eq!(
            snapshot(&sqlite).await,
            snapshot(&pg).await,
            "state after batch {n}"
        );
    }
    let outcomes: Vec<String> = pg
        .import_batch(batches()[1].clone())
        .await
        .unwrap()
        .iter()
        .map(outcome)
        .collect();
    assert!(outcomes.iter().any(|o| o.starts_with("rejected Conflict")));
    assert!(outcomes.iter().all(|o| o != "Created"));

    // A record naming one new version twice fails the whole batch, on both backends.
    let p = Kind::Package;
    let bad = vec![
        rec("npm", "ok-one", "fine", vec![version(p, "1.0.0", "x")]),
        rec(
            "npm",
            "twice",
            "dup",
            vec![version(p, "1.0.0", "x"), version(p, "1.0.0", "x")],
        ),
    ];
    let head = pg.feed_head().await.unwrap();
    let a = sqlite.import_batch(bad.clone()).await.unwrap_err();
    let b = pg.import_batch(bad).await.unwrap_err();
    assert_eq!((a.code, a.field, a.message), (b.code, b.field, b.message));
    assert_eq!(
        pg.feed_head().await.unwrap(),
        head,
        "a failed batch writes nothing"
    );
    assert!(pg
        .get_entry(&EntryKey::new(p, "npm", "ok-one"))
        .await
        .unwrap()
        .is_none());
}

/// A batch large enough to exercise the COPY path with many rows, re-imported unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_round_trip() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let pg = schema.store().await.unwrap();
    let p = Kind::Package;
    let batch: Vec<ImportRecord> = (0..5000)
        .map(|i| {
            rec(
                if i % 2 == 0 { "npm" } else { "pypi" },
                &format!("pkg-{i}"),
                &format!("package number {i} with ünïcödé and \t tabs"),
                vec![version(p, &format!("1.{}.0", i % 7), "m")],
            )
        })
        .collect();
    let outcomes = pg.import_batch(batch.clone()).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == ImportOutcome::Created));
    let stats = pg.stats().await.unwrap();
    assert_eq!((stats.entries, stats.versions), (5000, 5000));
    assert_eq!(stats.feed_head, 2 + 5000 * 2);
    let outcomes = pg.import_batch(batch).await.unwrap();
    assert!(outcomes.iter().all(|o| *o == ImportOutcome::Unchanged));
    assert_eq!(pg.feed_head().await.unwrap(), stats.feed_head);
    let e = pg
        .get_entry(&EntryKey::new(p, "pypi", "PKG_4999"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.1.0"));
    assert_eq!(
        e.description,
        "package number 4999 with ünïcödé and \t tabs"
    );
}

/// With a read replica configured, the API's reads go to it and everything else to the
/// primary. (The "replica" here is a second schema that does not replicate, so where each
/// read went shows in its answer.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_the_read_replica() {
    let Some(url) = test_url() else { return };
    let (primary, replica) = (TestSchema::new(&url), TestSchema::new(&url));
    let on_primary = primary.store().await.unwrap();
    let on_replica = replica.store().await.unwrap();
    let in_schema = |s: &TestSchema| {
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-csearch_path%3D{}", s.name())
    };
    let mut opts = quiver_postgres::PostgresOptions::new(in_schema(&primary)).max_connections(2);
    opts.read_url = Some(in_schema(&replica));
    let store = PostgresStore::connect_with(opts).await.unwrap();

    let written = store
        .create_entry(new_entry(Kind::Tool, "acme", "written", "on the primary"))
        .await
        .unwrap();
    let key = EntryKey::new(Kind::Tool, "acme", "written");
    // The write went to the primary, with its feed row.
    assert!(on_primary.get_entry(&key).await.unwrap().is_some());
    assert_eq!(
        store.feed_head().await.unwrap(),
        on_primary.feed_head().await.unwrap()
    );
    // The index follower's reads stay on the primary.
    assert_eq!(
        store.get_entries_by_id(&[written.id]).await.unwrap().len(),
        1
    );
    // The API's reads go to the replica, which has not seen the write.
    assert!(store.get_entry(&key).await.unwrap().is_none());
    let listed = store
        .list_entries(&EntryFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(listed.items.is_empty());
    // And they see what the replica has.
    on_replica
        .create_entry(new_entry(
            Kind::Tool,
            "acme",
            "replicated",
            "on the replica",
        ))
        .await
        .unwrap();
    let replicated = EntryKey::new(Kind::Tool, "acme", "replicated");
    assert!(store.get_entry(&replicated).await.unwrap().is_some());

    // A replica that cannot be reached fails the connection, naming it.
    let mut bad = quiver_postgres::PostgresOptions::new(in_schema(&primary)).max_connections(1);
    bad.read_url = Some("postgres://postgres@127.0.0.1:1/test".into());
    let err = PostgresStore::connect_with(bad).await.unwrap_err();
    assert!(err.message.contains("read replica"), "{}", err.message);
}

/// A writer that crashed between its commit and numbering its feed rows leaves them in the
/// outbox: the next node to start numbers them, so no committed change is lost to the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_left_in_the_outbox_are_numbered_when_a_node_starts() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let a = schema.store().await.unwrap();
    let e = a
        .create_entry(new_entry(Kind::Tool, "acme", "left.behind", "outbox"))
        .await
        .unwrap();
    let head = a.feed_since(0, 100).await.unwrap().len() as i64;
    a.client()
        .await
        .unwrap()
        .execute(
            "INSERT INTO feed_outbox (entity, entity_id, entry_id, op, at) \
             VALUES ('entry', $1, $1, 'update', 0)",
            &[&e.id],
        )
        .await
        .unwrap();
    assert_eq!(a.feed_since(head, 100).await.unwrap().len(), 0);
    let b = schema.store().await.unwrap();
    let after = b.feed_since(head, 100).await.unwrap();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_eq!(after[0].seq, head + 1);
    assert_eq!(after[0].entity_id, e.id);
}

/// Publishes to one entry from two nodes at once: each entry's writes are serialized by
/// its row lock, so the latest version is the highest and every version is in the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_to_one_entry_keep_its_latest_version() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let a = Arc::new(schema.store().await.unwrap());
    let b = Arc::new(schema.store().await.unwrap());
    let e = a
        .create_entry(new_entry(
            Kind::Tool,
            "acme",
            "hot.entry",
            "concurrent publishes",
        ))
        .await
        .unwrap();
    let key = e.key();
    let tasks: Vec<_> = (0..12u64)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let key = key.clone();
            tokio::spawn(async move {
                let v = valid_version(
                    Kind::Tool,
                    quiver_model::NewVersion {
                        version: format!("1.{i}.0"),
                        manifest: json!({}),
                        changelog: None,
                        breaking: false,
                    },
                )
                .unwrap();
                store.publish_version(&key, v).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let got = a.get_entry(&key).await.unwrap().unwrap();
    assert_eq!(got.latest_version.as_deref(), Some("1.11.0"));
    let versions = a
        .feed_since(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| ev.entity == FeedEntity::Version && ev.op == FeedOp::Create)
        .count();
    assert_eq!(versions, 12);
}

/// Readers see the feed only up to its durable head: a numbering whose flush is not yet
/// confirmed (the sequencer commits without waiting for it) stays invisible until the
/// writer's flushed commit names it, so a crash of PostgreSQL cannot take back a position
/// a follower has read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_see_the_feed_only_up_to_its_durable_head() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let a = schema.store().await.unwrap();
    let e = a
        .create_entry(new_entry(Kind::Tool, "acme", "durable.head", "feed"))
        .await
        .unwrap();
    let head = a.feed_head().await.unwrap();
    assert_eq!(a.feed_since(0, 100).await.unwrap().len() as i64, head);
    let c = a.client().await.unwrap();
    c.execute(
        "INSERT INTO feed (seq, entity, entity_id, entry_id, op, at) \
         VALUES ($1, 'entry', $2, $2, 'update', 0)",
        &[&(head + 1), &e.id],
    )
    .await
    .unwrap();
    assert!(a.feed_since(head, 100).await.unwrap().is_empty());
    assert_eq!(a.feed_head().await.unwrap(), head);
    c.execute(
        "INSERT INTO feed_durable (head) VALUES ($1)",
        &[&(head + 1)],
    )
    .await
    .unwrap();
    assert_eq!(a.feed_since(head, 100).await.unwrap().len(), 1);
    assert_eq!(a.feed_head().await.unwrap(), head + 1);
}
