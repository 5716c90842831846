//! Bulk import and export through the engine: a site-administration action, one audit
//! row per run, a refused run writes nothing and leaves a denied row.

use quiver_engine::{Caller, EngineConfig, Registry};
use quiver_import::pipeline::{ImportOptions, NoProgress, Source};
use quiver_store::{AuditFilter, EntryFilter};

const LINE: &str = r#"{"kind":"tool","namespace":"acme","name":"text.csvParse","description":"Parse CSV text into typed rows","status":"published","versions":[{"version":"1.0.0","manifest":{}}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_admins_run_bulk_work_and_each_run_is_one_audit_row() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, format!("{LINE}\n")).unwrap();
    let db = quiver_sqlite::open(dir.path().join("quiver.db")).unwrap();
    let registry = Registry::open(db, EngineConfig::new(dir.path().join("data")))
        .await
        .unwrap();
    let bulk = registry.bulk();
    let src = || vec![Source::new(&file)];

    // Refused for anyone but a site admin: nothing written, a denied row.
    for caller in [Caller::Anonymous, Caller::Open] {
        let err = bulk
            .import(&caller, src(), ImportOptions::default(), &NoProgress)
            .await
            .unwrap_err();
        assert!(err.message.contains("site admins"), "{err}");
    }
    let err = bulk
        .export_jsonl(&Caller::Anonymous, EntryFilter::default(), Vec::new())
        .await
        .unwrap_err();
    assert!(err.message.contains("site admins"), "{err}");
    assert_eq!(registry.store().stats().await.unwrap().entries, 0);

    let run = bulk
        .import(
            &Caller::Operator,
            src(),
            ImportOptions::default(),
            &NoProgress,
        )
        .await
        .unwrap();
    assert_eq!(run.report.totals.created, 1);
    assert_eq!(run.gates_queued, Some(1));
    let mut out = Vec::new();
    let n = bulk
        .export_jsonl(&Caller::BootstrapAdmin, EntryFilter::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(n.entries, 1);

    let rows = registry
        .database()
        .audit
        .list_audit(&AuditFilter::default(), None, 100)
        .await
        .unwrap()
        .items;
    let seen: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|r| (r.action.as_str(), r.actor.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("export.run", "admin-token", "allowed"),
            ("import.run", "operator (command line)", "allowed"),
            ("export.run", "anonymous", "denied"),
            ("import.run", "open", "denied"),
            ("import.run", "anonymous", "denied"),
        ]
    );
}
