//! An entry is created only with a name that follows its kind's whole naming rule (the
//! lexical rule and the convention the `naming` gate checks), so a refused name writes
//! nothing: no entry, no feed row, no audit row.

use quiver_engine::store::{AuditFilter, EntryFilter};
use quiver_engine::{Caller, EngineConfig, Registry};
use quiver_model::{EntryKey, ErrorCode, Kind, NewEntry};

fn entry(kind: Kind, name: &str) -> NewEntry {
    NewEntry {
        kind,
        namespace: "acme".into(),
        name: name.into(),
        display_name: None,
        description: "an entry whose name is under test".into(),
        category: None,
        tags: vec![],
        keywords: vec![],
        status: None,
        visibility: None,
        popularity: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_against_their_kinds_convention_are_refused_at_creation() {
    let dir = tempfile::tempdir().unwrap();
    let db = quiver_sqlite::open(dir.path().join("quiver.db")).unwrap();
    let registry = Registry::open(db, EngineConfig::new(dir.path()))
        .await
        .unwrap();
    let admin = Caller::BootstrapAdmin;
    for (kind, name) in [
        (Kind::Tool, "BadName"),
        (Kind::Tool, "text.CsvParse"),
        (Kind::Recipe, "nginx-"),
        (Kind::Skill, "pdf__tools"),
        (Kind::Module, "Env"),
    ] {
        let err = registry
            .create_entry(&admin, entry(kind, name))
            .await
            .expect_err(name);
        assert_eq!(err.code, ErrorCode::InvalidInput, "{kind} {name}: {err:?}");
        assert_eq!(err.field.as_deref(), Some("name"), "{kind} {name}: {err:?}");
        let key = EntryKey {
            kind,
            namespace: "acme".into(),
            name: name.into(),
        };
        let missing = registry.get_entry(&admin, &key).await.unwrap_err();
        assert_eq!(missing.code, ErrorCode::NotFound, "{kind} {name}");
    }
    let listed = registry
        .list_entries(&admin, EntryFilter::default(), None, 100)
        .await
        .unwrap();
    assert!(listed.items.is_empty(), "{:?}", listed.items);
    let audit = registry
        .list_audit(&admin, AuditFilter::default(), None, 100)
        .await
        .unwrap();
    assert!(audit.items.is_empty(), "{:?}", audit.items);

    // Names that follow the rule are created, and leave their audit row.
    for (kind, name) in [
        (Kind::Tool, "text.csvParse"),
        (Kind::Recipe, "nginx"),
        (Kind::Skill, "pdf-tools"),
        (Kind::Module, "env-vars"),
    ] {
        registry
            .create_entry(&admin, entry(kind, name))
            .await
            .unwrap_or_else(|e| panic!("{kind} {name}: {e:?}"));
    }
    let audit = registry
        .list_audit(&admin, AuditFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(audit.items.len(), 4, "{:?}", audit.items);
}
