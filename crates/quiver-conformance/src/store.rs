//! The conformance suite: what every [`Store`] backend must do.
//!
//! Each check takes a fresh, empty store. A backend's test file instantiates all of them
//! with [`conformance_suite!`](crate::conformance_suite), passing an async factory:
//!
//! ```ignore
//! quiver_conformance::conformance_suite!(async { my_backend_for_tests().await });
//! ```
//!
//! The factory returns a [`TestDatabase`](crate::TestDatabase), which keeps whatever the
//! backend needs alive for the test (a temporary directory, a schema to drop) and
//! releases it on drop.

use std::sync::Arc;

use quiver_model::{
    EntryKey, EntryPatch, ErrorCode, FeedEntity, FeedOp, Kind, NewEntry, NewVersion, Popularity,
    Relation, RelationKind, Status, Visibility,
};
use serde_json::json;

use quiver_store::{
    valid_version, Direction, EntryFilter, ImportCounts, ImportOutcome, ImportRecord, RateLimiter,
    Store,
};

/// A validated new entry for tests.
pub fn new_entry(kind: Kind, ns: &str, name: &str, description: &str) -> NewEntry {
    let mut e = NewEntry {
        kind,
        namespace: ns.into(),
        name: name.into(),
        display_name: None,
        description: description.into(),
        category: Some("testing".into()),
        tags: vec!["alpha".into(), "beta".into()],
        keywords: vec![],
        status: None,
        visibility: None,
        popularity: None,
    };
    quiver_model::validate::new_entry(&mut e).expect("test entry is valid");
    e
}

fn version(kind: Kind, v: &str) -> quiver_store::ValidVersion {
    valid_version(
        kind,
        NewVersion {
            version: v.into(),
            manifest: json!({"summary": format!("release {v}")}),
            changelog: Some(format!("changes in {v}")),
            breaking: false,
        },
    )
    .expect("test version is valid")
}

pub(crate) fn key(kind: Kind, ns: &str, name: &str) -> EntryKey {
    EntryKey::new(kind, ns, name)
}

pub async fn create_and_get(s: &dyn Store) {
    let created = s
        .create_entry(new_entry(Kind::Tool, "tpmjs", "text.csvParse", "Parse CSV"))
        .await
        .unwrap();
    assert_eq!(created.status, Status::Draft);
    assert_eq!(created.visibility, Visibility::Public);
    assert_eq!(created.tags, vec!["alpha", "beta"]);
    let got = s
        .get_entry(&key(Kind::Tool, "tpmjs", "text.csvParse"))
        .await
        .unwrap()
        .expect("entry exists");
    assert_eq!(got, created);
    assert!(s
        .get_entry(&key(Kind::Tool, "tpmjs", "text.csvparse"))
        .await
        .unwrap()
        .is_none());
    assert!(s
        .get_entry(&key(Kind::Skill, "tpmjs", "text.csvParse"))
        .await
        .unwrap()
        .is_none());
    let ns = s
        .get_namespace("tpmjs")
        .await
        .unwrap()
        .expect("namespace created");
    assert_eq!(ns.name, "tpmjs");
}

pub async fn duplicate_names_conflict(s: &dyn Store) {
    s.create_entry(new_entry(Kind::Package, "pypi", "Django_Rest", "x"))
        .await
        .unwrap();
    let err = s
        .create_entry(new_entry(Kind::Package, "pypi", "django-rest", "y"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert_eq!(err.field.as_deref(), Some("name"));
    // Lookup is by the normalized key too.
    let e = s
        .get_entry(&key(Kind::Package, "pypi", "DJANGO.rest"))
        .await
        .unwrap()
        .expect("normalized lookup");
    assert_eq!(e.name, "Django_Rest");
    // The same name in another kind or namespace is another entry.
    s.create_entry(new_entry(Kind::Package, "npm", "django-rest", "z"))
        .await
        .unwrap();
    let head_before = s.feed_head().await.unwrap();
    let _ = s
        .create_entry(new_entry(Kind::Package, "npm", "django-rest", "again"))
        .await
        .unwrap_err();
    assert_eq!(
        s.feed_head().await.unwrap(),
        head_before,
        "a refused write leaves no feed row"
    );
}

pub async fn update_entry(s: &dyn Store) {
    let k = key(Kind::Skill, "upskill", "react-best-practices");
    s.create_entry(new_entry(k.kind, &k.namespace, &k.name, "old"))
        .await
        .unwrap();
    let patch = EntryPatch {
        description: Some("new description".into()),
        tags: Some(vec!["react".into()]),
        category: Some(String::new()),
        ..Default::default()
    };
    let e = s.update_entry(&k, patch).await.unwrap();
    assert_eq!(e.description, "new description");
    assert_eq!(e.tags, vec!["react"]);
    assert_eq!(e.category, None);
    assert!(e.updated_at >= e.created_at);
    assert_eq!(e.disabled, None);

    // Disabled with a reason, kept across reads and other edits; enabled again.
    let since = jiff::Timestamp::from_millisecond(1_780_000_000_000).unwrap();
    let disabled = quiver_model::Disabled {
        reason: "broken on arm64".into(),
        since,
    };
    let patch = EntryPatch {
        disabled: Some(Some(disabled.clone())),
        ..Default::default()
    };
    let e = s.update_entry(&k, patch).await.unwrap();
    assert_eq!(e.disabled.as_ref(), Some(&disabled));
    let patch = EntryPatch {
        description: Some("newer description".into()),
        ..Default::default()
    };
    s.update_entry(&k, patch).await.unwrap();
    let got = s.get_entry(&k).await.unwrap().unwrap();
    assert_eq!(got.disabled.as_ref(), Some(&disabled));
    let by_id = s.get_entries_by_id(&[got.id]).await.unwrap();
    assert_eq!(by_id[0].disabled.as_ref(), Some(&disabled));
    let patch = EntryPatch {
        disabled: Some(None),
        ..Default::default()
    };
    let e = s.update_entry(&k, patch).await.unwrap();
    assert_eq!(e.disabled, None);
    assert_eq!(s.get_entry(&k).await.unwrap().unwrap().disabled, None);
    let filter = EntryFilter {
        tags: vec!["alpha".into()],
        ..Default::default()
    };
    assert!(s
        .list_entries(&filter, None, 10)
        .await
        .unwrap()
        .items
        .is_empty());
    let missing = s
        .update_entry(&key(Kind::Skill, "upskill", "nope"), EntryPatch::default())
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
}

pub async fn versions_are_immutable_and_ordered(s: &dyn Store) {
    let k = key(Kind::Module, "mlld", "env");
    s.create_entry(new_entry(k.kind, &k.namespace, &k.name, "env helpers"))
        .await
        .unwrap();
    for v in ["1.0.0", "1.10.0", "1.2.0", "2.0.0-beta.1"] {
        s.publish_version(&k, version(k.kind, v)).await.unwrap();
    }
    let e = s.get_entry(&k).await.unwrap().unwrap();
    assert_eq!(
        e.status,
        Status::Published,
        "first version publishes a draft"
    );
    assert_eq!(
        e.latest_version.as_deref(),
        Some("1.10.0"),
        "releases beat pre-releases"
    );
    let err = s
        .publish_version(&k, version(k.kind, "1.2.0"))
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict);
    assert_eq!(err.field.as_deref(), Some("version"));
    let vs: Vec<String> = s
        .list_versions(&k)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(vs, vec!["2.0.0-beta.1", "1.10.0", "1.2.0", "1.0.0"]);

    // Latest versions many at once: an entry without versions is absent, an unknown id too.
    let bare = s
        .create_entry(new_entry(k.kind, &k.namespace, "bare", "no versions"))
        .await
        .unwrap();
    let latest = s.latest_versions(&[e.id, bare.id, 987_654]).await.unwrap();
    assert_eq!(latest.len(), 1, "{latest:?}");
    assert_eq!(
        (latest[0].0, latest[0].1.version.as_str()),
        (e.id, "1.10.0")
    );
    assert_eq!(
        latest[0].1,
        s.get_version(&k, "1.10.0").await.unwrap().unwrap(),
        "the whole version, manifest included"
    );
    assert!(s.latest_versions(&[]).await.unwrap().is_empty());

    // The same order a page at a time, manifests only when asked for.
    let first = s.list_versions_page(&k, None, 3, false).await.unwrap();
    let names: Vec<&str> = first.items.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(names, ["2.0.0-beta.1", "1.10.0", "1.2.0"]);
    assert!(first.items.iter().all(|v| v.manifest.is_null()));
    assert_eq!(
        first.items[2].sha256.len(),
        64,
        "the rest of the row is there"
    );
    let cursor = first.next_cursor.expect("a second page");
    let second = s
        .list_versions_page(&k, Some(&cursor), 3, true)
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_eq!(second.items[0].version, "1.0.0");
    assert_eq!(
        second.items[0].manifest,
        json!({"summary": "release 1.0.0"})
    );
    assert!(second.next_cursor.is_none());
    let bad = s
        .list_versions_page(&k, Some("nonsense"), 3, false)
        .await
        .unwrap_err();
    assert_eq!(bad.field.as_deref(), Some("cursor"));
    // The entry's manifest bytes: the stored canonical manifests, summed.
    let expected: u64 = ["2.0.0-beta.1", "1.10.0", "1.2.0", "1.0.0"]
        .iter()
        .map(|v| format!("{{\"summary\":\"release {v}\"}}").len() as u64)
        .sum();
    assert_eq!(s.manifest_bytes(&k).await.unwrap(), expected);
    let v = s.get_version(&k, "1.2.0").await.unwrap().unwrap();
    assert_eq!(v.manifest, json!({"summary": "release 1.2.0"}));
    assert_eq!(v.sha256.len(), 64);
    assert!(s.get_version(&k, "9.9.9").await.unwrap().is_none());
    let missing = s
        .publish_version(
            &key(Kind::Module, "mlld", "nope"),
            version(Kind::Module, "1.0.0"),
        )
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
}

pub async fn yank_and_unyank(s: &dyn Store) {
    let k = key(Kind::Recipe, "tsuku", "ripgrep");
    s.create_entry(new_entry(k.kind, &k.namespace, &k.name, "rg"))
        .await
        .unwrap();
    s.publish_version(&k, version(k.kind, "14.0.0"))
        .await
        .unwrap();
    s.publish_version(&k, version(k.kind, "14.1.0"))
        .await
        .unwrap();
    let v = s
        .set_yanked(&k, "14.1.0", true, Some("broken build".into()))
        .await
        .unwrap();
    assert!(v.yanked);
    assert_eq!(v.yank_reason.as_deref(), Some("broken build"));
    let e = s.get_entry(&k).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("14.0.0"));
    let v = s.set_yanked(&k, "14.1.0", false, None).await.unwrap();
    assert!(!v.yanked && v.yank_reason.is_none());
    let e = s.get_entry(&k).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("14.1.0"));
    let err = s.set_yanked(&k, "0.0.1", true, None).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

/// Dist-tags: set, moved, removed, to existing versions only, one audit row per change.
pub async fn dist_tags(s: &dyn Store) {
    let k = key(Kind::Module, "alice", "fmt");
    s.create_entry(new_entry(k.kind, &k.namespace, &k.name, "fmt"))
        .await
        .unwrap();
    for v in ["1.0.0", "2.0.0-beta.1"] {
        s.publish_version(&k, version(k.kind, v)).await.unwrap();
    }
    assert!(s.dist_tags(&k).await.unwrap().is_empty());
    let t0 = jiff::Timestamp::from_millisecond(1_700_000_000_000).unwrap();
    let tags = s
        .set_dist_tag_audited(&k, "stable", Some("1.0.0"), t0, None)
        .await
        .unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(
        (tags[0].tag.as_str(), tags[0].version.as_str()),
        ("stable", "1.0.0")
    );
    assert_eq!(tags[0].updated_at, t0);
    let tags = s
        .set_dist_tag_audited(&k, "beta", Some("2.0.0-beta.1"), t0, None)
        .await
        .unwrap();
    assert_eq!(
        tags.iter()
            .map(|t| (t.tag.as_str(), t.version.as_str()))
            .collect::<Vec<_>>(),
        [("beta", "2.0.0-beta.1"), ("stable", "1.0.0")],
        "by tag"
    );
    let t1 = jiff::Timestamp::from_millisecond(1_700_000_001_000).unwrap();
    let tags = s
        .set_dist_tag_audited(&k, "stable", Some("2.0.0-beta.1"), t1, None)
        .await
        .unwrap();
    assert_eq!(tags[1].version, "2.0.0-beta.1");
    assert_eq!(tags[1].updated_at, t1);
    // A version that does not exist: refused, nothing changed.
    let err = s
        .set_dist_tag_audited(&k, "stable", Some("9.9.9"), t1, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert_eq!(s.dist_tags(&k).await.unwrap(), tags);
    let tags = s
        .set_dist_tag_audited(&k, "beta", None, t1, None)
        .await
        .unwrap();
    assert_eq!(tags.len(), 1);
    assert_eq!(tags[0].tag, "stable");
    // Removing a tag that is not there changes nothing.
    assert_eq!(
        s.set_dist_tag_audited(&k, "beta", None, t1, None)
            .await
            .unwrap(),
        tags
    );
    let other = key(Kind::Module, "alice", "nope");
    assert!(s.dist_tags(&other).await.unwrap().is_empty());
    // What resolution reads, many entries at once, in the order asked.
    let sets = s
        .resolution_sets(&[other.clone(), k.clone()])
        .await
        .unwrap();
    assert!(sets[0].is_none());
    let set = sets[1].as_ref().unwrap();
    assert_eq!(set.entry.key(), k);
    assert_eq!(
        set.versions
            .iter()
            .map(|v| v.version.as_str())
            .collect::<Vec<_>>(),
        ["2.0.0-beta.1", "1.0.0"],
        "newest first"
    );
    assert!(set.versions.iter().all(|v| v.manifest.is_null()));
    assert_eq!(set.tags, tags);
    let got = s
        .versions_of(&[
            (k.clone(), "1.0.0".to_string()),
            (k.clone(), "3.0.0".to_string()),
            (other.clone(), "1.0.0".to_string()),
        ])
        .await
        .unwrap();
    assert_eq!(got[0].as_ref().unwrap().version, "1.0.0");
    assert!(!got[0].as_ref().unwrap().manifest.is_null());
    assert!(got[1].is_none() && got[2].is_none());
    let err = s
        .set_dist_tag_audited(&other, "stable", Some("1.0.0"), t1, None)
        .await
        .unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
}

/// Usage events: idempotent by id, unknown entries named; co-installs counted by
/// distinct project, above a least number of projects.
pub async fn usage_events_and_co_installs(s: &dyn Store) {
    use quiver_store::UsageEvent;
    for name in ["react", "next", "vue"] {
        s.create_entry(new_entry(Kind::Package, "npm", name, name))
            .await
            .unwrap();
    }
    let at = jiff::Timestamp::from_millisecond(1_700_000_000_000).unwrap();
    let ev = |id: String, name: &str, project: &str| UsageEvent {
        id,
        kind: "install".into(),
        entry: key(Kind::Package, "npm", name),
        version: None,
        project: Some(project.into()),
        at,
    };
    let mut batch = Vec::new();
    // react and next together in 4 projects (twice in p0); react and vue in 1.
    for p in 0..4 {
        batch.push(ev(format!("r{p}"), "react", &format!("p{p}")));
        batch.push(ev(format!("n{p}"), "next", &format!("p{p}")));
    }
    batch.push(ev("n0-again".into(), "next", "p0"));
    batch.push(ev("v0".into(), "vue", "p0"));
    batch.push(ev("x".into(), "left-pad", "p0"));
    let out = s.record_events(batch.clone()).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (10, 0));
    assert_eq!(out.unknown, [10]);
    let again = s.record_events(batch).await.unwrap();
    assert_eq!(
        (again.accepted, again.duplicates),
        (0, 10),
        "idempotent by id"
    );
    let react = key(Kind::Package, "npm", "react");
    let got = s.co_installed(&react, 1, 10).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|c| (c.entry.name.as_str(), c.projects))
            .collect::<Vec<_>>(),
        [("next", 4), ("vue", 1)],
        "distinct projects, most first"
    );
    let got = s.co_installed(&react, 2, 10).await.unwrap();
    assert_eq!(got.len(), 1, "vue is below the least support");
    assert!(s.co_installed(&react, 5, 10).await.unwrap().is_empty());
    assert!(s
        .co_installed(&key(Kind::Package, "npm", "nope"), 1, 10)
        .await
        .unwrap()
        .is_empty());
}

pub async fn validation_is_recorded(s: &dyn Store) {
    let k = key(Kind::Tool, "acme", "text.checked");
    s.create_entry(new_entry(k.kind, &k.namespace, &k.name, "d"))
        .await
        .unwrap();
    let v = s
        .publish_version(&k, version(k.kind, "1.0.0"))
        .await
        .unwrap();
    assert_eq!(v.validation, None, "pending until the job runs");
    let head = s.feed_head().await.unwrap();
    let result = quiver_model::Validation {
        passed: false,
        errors: vec!["manifest.steps.0: missing action".into()],
        sha256: v.sha256.clone(),
        checked_at: jiff::Timestamp::from_millisecond(1_700_000_000_000).unwrap(),
        gates: vec![quiver_model::gates::GateResult {
            gate: "schema".into(),
            level: quiver_model::gates::GateLevel::Required,
            passed: false,
            findings: vec!["manifest.steps.0: missing action".into()],
        }],
        warnings: vec!["examples: the manifest has no examples".into()],
        gates_version: quiver_model::gates::GATES_VERSION,
    };
    let got = s.set_validation(&k, "1.0.0", result.clone()).await.unwrap();
    assert_eq!(got.validation.as_ref(), Some(&result));
    assert_eq!(
        s.get_version(&k, "1.0.0")
            .await
            .unwrap()
            .unwrap()
            .validation,
        Some(result)
    );
    let events = s.feed_since(head, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].entity, events[0].op),
        (FeedEntity::Version, FeedOp::Update)
    );
    let missing = s
        .set_validation(&k, "9.9.9", got.validation.unwrap())
        .await
        .unwrap_err();
    assert_eq!(missing.code, ErrorCode::NotFound);
}

pub async fn list_filters_and_pages(s: &dyn Store) {
    for i in 0..25 {
        let kind = if i % 2 == 0 { Kind::Tool } else { Kind::Skill };
        let ns = if i % 3 == 0 { "one" } else { "two" };
        let mut e = new_entry(kind, ns, &format!("item{i}"), "d");
        if i % 5 == 0 {
            e.visibility = Some(Visibility::Private);
        }
        s.create_entry(e).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s
            .list_entries(&EntryFilter::default(), cursor.as_deref(), 7)
            .await
            .unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.iter().map(|e| e.name.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "pages cover every entry exactly once");
    let f = EntryFilter {
        kinds: vec![Kind::Tool],
        namespaces: vec!["one".into()],
        visibilities: vec![Visibility::Public, Visibility::Unlisted],
        ..Default::default()
    };
    let names: Vec<String> = s
        .list_entries(&f, None, 100)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|e| e.name)
        .collect();
    // i even, i % 3 == 0, i % 5 != 0: 6, 12, 18, 24
    assert_eq!(names, vec!["item6", "item12", "item18", "item24"]);

    // Private entries only in the granted namespaces; public ones everywhere.
    // Private: i % 5 == 0 → item0 (one), item5 (two), item10 (two), item15 (one), item20 (two).
    let private_names = |f: EntryFilter| async move {
        let items = s.list_entries(&f, None, 100).await.unwrap().items;
        let public = items
            .iter()
            .filter(|e| e.visibility == Visibility::Public)
            .count();
        let private: Vec<String> = items
            .into_iter()
            .filter(|e| e.visibility == Visibility::Private)
            .map(|e| e.name)
            .collect();
        (public, private)
    };
    let granted = |ns: &[&str]| EntryFilter {
        visibilities: vec![Visibility::Public, Visibility::Private],
        private_namespaces: Some(ns.iter().map(|n| n.to_string()).collect()),
        ..Default::default()
    };
    assert_eq!(
        private_names(granted(&["one"])).await,
        (20, vec!["item0".to_string(), "item15".to_string()])
    );
    assert_eq!(
        private_names(granted(&["two", "elsewhere"])).await,
        (
            20,
            vec![
                "item5".to_string(),
                "item10".to_string(),
                "item20".to_string()
            ]
        )
    );
    assert_eq!(private_names(granted(&[])).await, (20, vec![]));
    // Combined with a namespace filter, both apply.
    let f = EntryFilter {
        namespaces: vec!["two".into()],
        ..granted(&["one"])
    };
    let (public, private) = private_names(f).await;
    assert_eq!((public, private.len()), (13, 0));
    // Visibilities keep their meaning: granting a namespace does not add private entries
    // the visibilities leave out.
    let f = EntryFilter {
        visibilities: vec![Visibility::Public],
        ..granted(&["one"])
    };
    assert_eq!(private_names(f).await, (20, vec![]));
    // None: no restriction beyond the visibilities.
    assert_eq!(private_names(EntryFilter::default()).await.1.len(), 5);

    let bad = s
        .list_entries(&EntryFilter::default(), Some("garbage"), 5)
        .await
        .unwrap_err();
    assert_eq!(bad.field.as_deref(), Some("cursor"));
}

pub async fn relations(s: &dyn Store) {
    let skill = key(Kind::Skill, "upskill", "react-best-practices");
    let pkg = key(Kind::Package, "npm", "react");
    let tool = key(Kind::Tool, "tpmjs", "web.fetchText");
    for k in [&skill, &pkg, &tool] {
        s.create_entry(new_entry(k.kind, &k.namespace, &k.name, "d"))
            .await
            .unwrap();
    }
    let rel = Relation {
        kind: RelationKind::MapsTo,
        from: pkg.clone(),
        to: skill.clone(),
        confidence: Some(0.8),
        source: Some("curated".into()),
        step_order: None,
    };
    s.add_relation(rel.clone()).await.unwrap();
    // Adding the same relation again writes nothing.
    let head = s.feed_head().await.unwrap();
    s.add_relation(rel.clone()).await.unwrap();
    assert_eq!(
        s.feed_head().await.unwrap(),
        head,
        "an identical relation is a no-op"
    );
    // Idempotent on (kind, from, to): a different one updates.
    s.add_relation(Relation {
        confidence: Some(0.9),
        ..rel.clone()
    })
    .await
    .unwrap();
    s.add_relation(Relation {
        kind: RelationKind::Implements,
        from: pkg.clone(),
        to: tool.clone(),
        confidence: None,
        source: None,
        step_order: None,
    })
    .await
    .unwrap();
    let out = s.list_relations(&pkg, Direction::Outgoing).await.unwrap();
    assert_eq!(out.len(), 2);
    let maps = out.iter().find(|r| r.kind == RelationKind::MapsTo).unwrap();
    assert_eq!(maps.confidence, Some(0.9));
    assert_eq!(maps.to, skill);
    let incoming = s.list_relations(&skill, Direction::Incoming).await.unwrap();
    assert_eq!(incoming.len(), 1);
    // Many targets at once, one relation kind, with the entries they start from.
    let missing = key(Kind::Skill, "upskill", "missing");
    let got = s
        .incoming(
            &[skill.clone(), missing.clone(), pkg.clone()],
            RelationKind::MapsTo,
        )
        .await
        .unwrap();
    assert_eq!(got.len(), 3);
    let to_skill = got[0].as_ref().unwrap();
    assert_eq!(to_skill.entry.key(), skill);
    assert_eq!(to_skill.relations.len(), 1);
    assert_eq!(to_skill.relations[0].0, *maps);
    assert_eq!(to_skill.relations[0].1.key(), pkg);
    assert!(got[1].is_none());
    assert!(got[2].as_ref().unwrap().relations.is_empty());
    assert!(s
        .list_relations(&skill, Direction::Outgoing)
        .await
        .unwrap()
        .is_empty());
    let err = s
        .add_relation(Relation {
            to: key(Kind::Skill, "upskill", "missing"),
            ..rel
        })
        .await
        .unwrap_err();
    assert_eq!(err.field.as_deref(), Some("to"));
}

pub async fn feed_records_every_write(s: &dyn Store) {
    assert_eq!(s.feed_head().await.unwrap(), 0);
    let k = key(Kind::Tool, "t", "a.b");
    let e = s
        .create_entry(new_entry(k.kind, &k.namespace, &k.name, "d"))
        .await
        .unwrap();
    s.update_entry(
        &k,
        EntryPatch {
            description: Some("d2".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    s.publish_version(&k, version(k.kind, "0.1.0"))
        .await
        .unwrap();
    s.set_yanked(&k, "0.1.0", true, None).await.unwrap();
    let events = s.feed_since(0, 100).await.unwrap();
    let shape: Vec<(FeedEntity, FeedOp)> = events.iter().map(|e| (e.entity, e.op)).collect();
    assert_eq!(
        shape,
        vec![
            (FeedEntity::Namespace, FeedOp::Create),
            (FeedEntity::Entry, FeedOp::Create),
            (FeedEntity::Entry, FeedOp::Update),
            (FeedEntity::Version, FeedOp::Create),
            (FeedEntity::Version, FeedOp::Update),
        ]
    );
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.seq, i as i64 + 1, "the feed is gap-free");
    }
    assert!(events[1..].iter().all(|ev| ev.entry_id == Some(e.id)));
    assert_eq!(s.feed_head().await.unwrap(), 5);
    assert_eq!(s.feed_since(3, 100).await.unwrap().len(), 2);
    assert_eq!(s.feed_since(0, 2).await.unwrap().len(), 2);
    // A version event names its version through its row id.
    let names = s
        .version_names_by_id(&[events[3].entity_id, 987_654])
        .await
        .unwrap();
    assert_eq!(names, [(events[3].entity_id, "0.1.0".to_string())]);
    assert!(s.version_names_by_id(&[]).await.unwrap().is_empty());
}

pub async fn import_is_idempotent(s: &dyn Store) {
    let rec = |name: &str, desc: &str, score: f64, v: &str| ImportRecord {
        entry: NewEntry {
            popularity: Some(Popularity {
                score,
                monthly_downloads: Some(10),
                rank: None,
            }),
            ..new_entry(Kind::Package, "npm", name, desc)
        },
        deprecation: None,
        versions: vec![version(Kind::Package, v).into()],
    };
    let batch = vec![
        rec("left-pad", "pads", 0.5, "1.0.0"),
        rec("@types/node", "types", 0.9, "20.1.0"),
    ];
    let count = |outcomes: Vec<ImportOutcome>| {
        let mut c = ImportCounts::default();
        outcomes.iter().for_each(|o| c.add(o));
        (c.created, c.updated, c.unchanged, c.rejected)
    };
    assert_eq!(
        count(s.import_batch(batch.clone()).await.unwrap()),
        (2, 0, 0, 0)
    );
    let head = s.feed_head().await.unwrap();
    assert_eq!(count(s.import_batch(batch).await.unwrap()), (0, 0, 2, 0));
    assert_eq!(
        s.feed_head().await.unwrap(),
        head,
        "unchanged records write no feed"
    );
    let outcomes = s
        .import_batch(vec![
            rec("left-pad", "pads strings", 0.5, "1.0.0"),
            rec("@types/node", "types", 0.9, "20.2.0"),
        ])
        .await
        .unwrap();
    assert_eq!(count(outcomes), (0, 2, 0, 0));
    // A published version with a different manifest is refused; the rest of the batch lands.
    let mut changed = rec("left-pad", "pads strings again", 0.5, "1.0.0");
    changed.versions[0] = valid_version(
        Kind::Package,
        NewVersion {
            version: "1.0.0".into(),
            manifest: json!({"summary": "tampered"}),
            changelog: None,
            breaking: false,
        },
    )
    .unwrap()
    .into();
    let mut yanked = rec("@types/node", "types", 0.9, "20.2.0");
    yanked.versions[0].yanked = true;
    yanked.versions[0].yank_reason = Some("bad types".into());
    let outcomes = s.import_batch(vec![changed, yanked]).await.unwrap();
    assert!(matches!(&outcomes[0], ImportOutcome::Rejected(e) if e.code == ErrorCode::Conflict));
    assert_eq!(outcomes[1], ImportOutcome::Updated);
    let lp = s
        .get_entry(&key(Kind::Package, "npm", "left-pad"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        lp.description, "pads strings",
        "a rejected record writes nothing"
    );
    let v = s
        .get_version(&key(Kind::Package, "npm", "@types/node"), "20.2.0")
        .await
        .unwrap()
        .unwrap();
    assert!(v.yanked);
    let e = s
        .get_entry(&key(Kind::Package, "npm", "@types/node"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        e.latest_version.as_deref(),
        Some("20.1.0"),
        "20.2.0 is yanked"
    );
    assert_eq!(e.status, Status::Published);
    assert_eq!(e.popularity.score, 0.9);
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.entries, stats.versions), (2, 3));
}

pub async fn entries_by_id(s: &dyn Store) {
    let a = s
        .create_entry(new_entry(Kind::Tool, "x", "a", "d"))
        .await
        .unwrap();
    let b = s
        .create_entry(new_entry(Kind::Tool, "x", "b", "d"))
        .await
        .unwrap();
    let mut got = s.get_entries_by_id(&[b.id, a.id, 999_999]).await.unwrap();
    got.sort_by_key(|e| e.id);
    assert_eq!(got, vec![a, b]);
}

pub async fn documents(s: &dyn Store) {
    use quiver_model::NewDocument;
    let head = s.feed_head().await.unwrap();
    let docs = vec![
        NewDocument::new("tsuku.queue", "b", json!({"priority": 2})),
        NewDocument::new("tsuku.queue", "a", json!({"priority": 1, "tags": ["x"]})),
        NewDocument::new("blocks.philosophy", "0", json!("small pieces")),
        NewDocument::new("Bad Collection", "k", json!(1)),
        NewDocument::new("tsuku.queue", "", json!(1)),
    ];
    let out = s.put_documents(docs.clone()).await.unwrap();
    assert!(out[..3].iter().all(|o| *o == ImportOutcome::Created));
    for (i, field) in [(3, "collection"), (4, "key")] {
        match &out[i] {
            ImportOutcome::Rejected(e) => {
                assert_eq!(e.code, ErrorCode::InvalidInput);
                assert_eq!(e.field.as_deref(), Some(field));
            }
            o => panic!("document {i}: expected a rejection, got {o:?}"),
        }
    }
    assert_eq!(
        s.feed_head().await.unwrap(),
        head + 3,
        "one feed row per write"
    );
    let ev = s.feed_since(head, 10).await.unwrap();
    assert!(ev.iter().all(|e| e.entity == FeedEntity::Document
        && e.op == FeedOp::Create
        && e.entry_id.is_none()));

    // Unchanged bodies write nothing; a key order change inside a body is no change.
    let again = s
        .put_documents(vec![
            NewDocument::new("tsuku.queue", "a", json!({"tags": ["x"], "priority": 1})),
            NewDocument::new("tsuku.queue", "b", json!({"priority": 3})),
        ])
        .await
        .unwrap();
    assert_eq!(again, [ImportOutcome::Unchanged, ImportOutcome::Updated]);
    assert_eq!(s.feed_head().await.unwrap(), head + 4);

    let b = s.get_document("tsuku.queue", "b").await.unwrap().unwrap();
    assert_eq!(b.body, json!({"priority": 3}));
    assert_eq!(b.sha256.len(), 64);
    assert!(s.get_document("tsuku.queue", "zz").await.unwrap().is_none());

    // Pages in key order, then the collections with their counts.
    for k in ["c", "d", "e"] {
        s.put_documents(vec![NewDocument::new("tsuku.queue", k, json!(k))])
            .await
            .unwrap();
    }
    let mut keys = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = s
            .list_documents("tsuku.queue", cursor.as_deref(), 2)
            .await
            .unwrap();
        keys.extend(page.items.iter().map(|d| d.key.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(keys, ["a", "b", "c", "d", "e"]);
    let err = s.list_documents("tsuku.queue", Some("nonsense"), 2).await;
    assert_eq!(err.unwrap_err().field.as_deref(), Some("cursor"));
    assert_eq!(
        s.document_collections().await.unwrap(),
        vec![
            ("blocks.philosophy".to_string(), 1),
            ("tsuku.queue".to_string(), 5)
        ]
    );
}

/// The durable counters ([`Database::counters`](quiver_store::Database::counters)):
/// concurrent hits from several tasks are each counted exactly once, the verdict flips
/// after `limit`, and subjects and classes count apart.
pub async fn counters(c: Arc<dyn RateLimiter>) {
    use std::time::Duration;
    const DAY: Duration = Duration::from_secs(24 * 60 * 60);
    let limit = 30;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                let mut allowed = 0u64;
                for _ in 0..5 {
                    if c.hit("user:1", "auto-publish", DAY, limit)
                        .await
                        .unwrap()
                        .is_allowed()
                    {
                        allowed += 1;
                    }
                }
                allowed
            })
        })
        .collect();
    let mut allowed = 0;
    for t in tasks {
        allowed += t.await.unwrap();
    }
    // 40 hits, 30 allowed: exactly `limit`, whatever the interleaving.
    assert_eq!(allowed, limit);
    // The 41st hit is counted too and still limited, until the window (the UTC day) ends.
    match c.hit("user:1", "auto-publish", DAY, limit).await.unwrap() {
        quiver_store::Verdict::Limited { retry_after } => assert!(retry_after <= DAY),
        other => panic!("expected Limited, got {other:?}"),
    }
    // The count is exact (41 so far, limited hits included): with a limit of 42 the 42nd
    // hit is the last one allowed, the 43rd is over.
    assert!(matches!(
        c.hit("user:1", "auto-publish", DAY, 42).await.unwrap(),
        quiver_store::Verdict::Allowed { remaining: 0, .. }
    ));
    assert!(!c
        .hit("user:1", "auto-publish", DAY, 42)
        .await
        .unwrap()
        .is_allowed());
    // Other subjects and classes have their own counts.
    for (subject, class) in [("user:2", "auto-publish"), ("user:1", "other-class")] {
        assert!(matches!(
            c.hit(subject, class, DAY, 1).await.unwrap(),
            quiver_store::Verdict::Allowed { remaining: 0, .. }
        ));
        assert!(!c.hit(subject, class, DAY, 1).await.unwrap().is_allowed());
    }
}

/// Instantiate every conformance check as a `#[tokio::test]` for one backend.
#[macro_export]
macro_rules! conformance_suite {
    ($factory:expr) => {
        $crate::conformance_suite!(@each $factory;
            create_and_get,
            duplicate_names_conflict,
            update_entry,
            versions_are_immutable_and_ordered,
            yank_and_unyank,
            dist_tags,
            usage_events_and_co_installs,
            validation_is_recorded,
            list_filters_and_pages,
            relations,
            feed_records_every_write,
            import_is_idempotent,
            entries_by_id,
            documents
        );
        $crate::conformance_suite!(@arc $factory; counters);
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn derived_work() {
            let Some(ts) = $factory.await else { return };
            $crate::derived::run(&ts).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn disable_a_version() {
            let Some(ts) = $factory.await else { return };
            $crate::deletion::disable_a_version(&ts.db).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn delete_a_version() {
            let Some(ts) = $factory.await else { return };
            $crate::deletion::delete_a_version(&ts.db).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn delete_an_entry() {
            let Some(ts) = $factory.await else { return };
            $crate::deletion::delete_an_entry(&ts.db).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn telemetry() {
            let Some(ts) = $factory.await else { return };
            $crate::telemetry::run(&ts.db).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn experiments() {
            let Some(ts) = $factory.await else { return };
            $crate::telemetry::experiments(&ts.db).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn pipeline() {
            let Some(ts) = $factory.await else { return };
            $crate::pipeline::run(&ts.db).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn pipeline_valves() {
            let Some(ts) = $factory.await else { return };
            $crate::pipeline::valves(&ts.db).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn pipeline_concurrent_claims() {
            let Some(ts) = $factory.await else { return };
            let other = ts.open_another().await;
            $crate::pipeline::concurrent_claims(ts.db.clone(), other).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn downloads() {
            let Some(ts) = $factory.await else { return };
            let other = ts.open_another().await;
            $crate::downloads::run(&ts.db, &other).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn webhooks() {
            let Some(ts) = $factory.await else { return };
            let other = ts.open_another().await;
            $crate::webhooks::run(&ts.db, &other).await;
            drop(ts);
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn a_write_wakes_a_subscriber() {
            let Some(ts) = $factory.await else { return };
            $crate::feed::a_write_wakes_a_subscriber(&ts).await;
            drop(ts);
        }
    };
    (@arc $factory:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(ts) = $factory.await else { return };
                $crate::store::$name(ts.db.counters.clone()).await;
                drop(ts);
            }
        )+
    };
    (@each $factory:expr; $($name:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let Some(ts) = $factory.await else { return };
                $crate::store::$name(&*ts.db.store).await;
                drop(ts);
            }
        )+
    };
}
