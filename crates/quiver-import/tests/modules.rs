//! The modules format (mlld registry): reading, rejections, re-import, dry run, export
//! and the round trip, over the small files in `tests/data/modules/` and, when present,
//! the real files in the shared fixtures folder.

use std::path::{Path, PathBuf};

use quiver_import::formats::{self, ExportFilter};
use quiver_import::{Format, ImportReport};
use quiver_model::{EntryKey, Kind};
use quiver_store::Store;
use serde_json::json;

mod common;

use common::{
    assert_empty, data, json_file, real, reasons, run_keeping_rejections as run, snapshot, store,
    Sum,
};

fn sum(report: &ImportReport) -> Sum {
    common::sum(report, Format::Modules)
}

/// Every file under `root`, relative to it.
fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn reader_reads_the_small_files() {
    let root = data("modules");
    let files = files(&root);
    let reader = formats::reader(Format::Modules).unwrap();
    for f in &files {
        let head = std::fs::read(root.join(f)).unwrap();
        assert!(reader.claims(f, &head), "{} not claimed", f.display());
    }
    let b = reader.read(&root, &files);

    let names: Vec<String> = b
        .records
        .iter()
        .map(|r| format!("@{}/{}", r.entry.namespace, r.entry.name))
        .collect();
    assert_eq!(names, ["@demo/calc", "@demo/greet"]);
    let calc = &b.records[0];
    assert_eq!(calc.origin.file, Path::new("modules.json"));
    assert_eq!(calc.origin.line, Some(5));
    assert_eq!(calc.entry.description, "Arithmetic helpers");
    // Only the listed version: 1.0.0 has no file.
    let versions: Vec<_> = calc.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["2.0.0"]);
    let m = &calc.versions[0].manifest;
    assert_eq!(m["mlldVersion"], "*");
    assert!(m.get("owners").is_none() && m.get("availableVersions").is_none());

    let greet = &b.records[1];
    assert_eq!(greet.entry.description, "Polite greetings");
    assert_eq!(greet.entry.keywords, ["greeting", "polite"]);
    let versions: Vec<_> = greet.versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(versions, ["1.0.0", "1.1.0"]);
    assert_eq!(
        greet.versions[0].manifest,
        json_file(&root.join("modules/demo/greet/1.0.0.json"))
    );

    assert_eq!(b.counts["modules"], 4);
    assert_eq!(b.counts["versions"], 3);
    assert_eq!(b.counts["version files"], 3);
    assert_eq!(b.counts["registry listings"], 6);
    assert_eq!(b.counts["registry listings repeated"], 1);
    assert_eq!(b.counts["legacy files"], 3);
    assert_eq!(b.counts["advisories"], 0);

    let rejected = common::rejections(&b);
    assert_eq!(rejected.len(), 7, "{rejected:#?}");
    let has = |file: &str, line: Option<u64>, text: &str| {
        assert!(
            rejected
                .iter()
                .any(|(f, l, r)| f == file && *l == line && r.contains(text)),
            "no rejection {file}:{line:?} containing {text:?} in {rejected:#?}"
        )
    };
    has("modules.json", Some(86), "namespace: must be lowercase");
    has(
        "modules.json",
        Some(92),
        "key \"not-a-key\" is not \"@namespace/name\"",
    );
    has(
        "modules/demo/greet/2.0.0.json",
        Some(1),
        "named for 2.0.0 but holds \"2.0.1\"",
    );
    has("modules/demo/greet/notes.json", None, "not metadata.json");
    has(
        "modules/demo/orphan/metadata.json",
        Some(1),
        "no version file",
    );
    has("legacy/draft/_index/modules.json", None, "a derived index");
    has(
        "legacy/later/broken.json",
        Some(6),
        "not valid JSON (line 6",
    );

    let warnings: Vec<String> = b.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    assert!(warnings[0].contains("modules.generated.json") && warnings[0].contains("differs"));
    assert!(warnings[1].contains("1.0.0 has no version file"));

    let mut docs: Vec<String> = b
        .documents
        .iter()
        .map(|d| format!("{} {}", d.document.collection, d.document.key))
        .collect();
    docs.sort();
    assert_eq!(
        docs,
        [
            "modules.advisories legacy/draft/me/advisories.json",
            "modules.allowlist allowlist.json",
            "modules.dist_tags @demo/calc",
            "modules.dist_tags @demo/greet",
            "modules.index modules.generated.json",
            "modules.index modules.json",
            "modules.legacy legacy/draft/me/registry.json",
            "modules.marketplace .claude-plugin/marketplace.json",
            "modules.metadata @demo/calc",
            "modules.metadata @demo/greet",
        ]
    );
}

#[tokio::test]
async fn import_twice_dry_run_export_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();

    let s0 = store(dir.path(), "dry.db");
    let dry = sum(&run(&s0, &data("modules"), true).await);
    assert_eq!(dry.created, 2);
    assert_empty(&s0, &[Kind::Module]).await;

    let a = store(dir.path(), "a.db");
    let first = sum(&run(&a, &data("modules"), false).await);
    assert_eq!(first.created, 2, "{:#?}", reasons(&first));
    assert_eq!(first.rejected_count, 7, "{:#?}", reasons(&first));
    assert_eq!(first.documents.created, 10);
    assert_eq!(first.warning_count, 2);
    let greet = EntryKey::new(Kind::Module, "demo", "greet");
    let e = a.get_entry(&greet).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.1.0"));
    assert_eq!(a.list_versions(&greet).await.unwrap().len(), 2);

    let second = sum(&run(&a, &data("modules"), false).await);
    assert_eq!(
        (second.created, second.updated, second.unchanged),
        (0, 0, 2)
    );
    assert_eq!(second.documents.created + second.documents.updated, 0);
    assert_eq!(second.documents.unchanged, 10);

    let out = dir.path().join("out");
    let summary = formats::export_format(&a, Format::Modules, &ExportFilter::default(), &out)
        .await
        .unwrap();
    assert_eq!(summary.entries, 2);
    // Files given back as they were.
    for f in [
        "modules/demo/greet/1.0.0.json",
        "modules/demo/greet/1.1.0.json",
        "modules/demo/greet/metadata.json",
        "modules/demo/greet/tags.json",
        "allowlist.json",
        ".claude-plugin/marketplace.json",
        "legacy/draft/me/registry.json",
        "legacy/draft/me/advisories.json",
    ] {
        assert_eq!(
            json_file(&out.join(f)),
            json_file(&data("modules").join(f)),
            "{f}"
        );
    }
    // The index, less the two listings it could not take, and with calc's versions as
    // imported (its 1.0.0 has no file).
    let mut expected = json_file(&data("modules").join("modules.json"));
    let listed = expected["modules"].as_object_mut().unwrap();
    listed.remove("@Bad/name");
    listed.remove("not-a-key");
    listed["@demo/calc"]["availableVersions"] = json!(["2.0.0"]);
    assert_eq!(json_file(&out.join("modules.json")), expected);
    let generated = json_file(&out.join("modules.generated.json"));
    assert_eq!(generated["generated"], "2026-08-19T00:00:01.000Z");
    assert_eq!(generated["modules"], expected["modules"]);
    assert!(out.join("modules/demo/calc/2.0.0.json").is_file());
    assert!(!out.join("legacy/draft/_index/modules.json").exists());

    let b = store(dir.path(), "b.db");
    let again = sum(&run(&b, &out, false).await);
    assert_eq!(again.created, 2, "{:#?}", reasons(&again));
    assert_eq!(again.rejected_count, 0, "{:#?}", reasons(&again));
    assert_eq!(again.warning_count, 0);
    assert_eq!(
        snapshot(&a, &[Kind::Module]).await,
        snapshot(&b, &[Kind::Module]).await
    );
}

#[tokio::test]
async fn real_files_import_and_round_trip() {
    let Some(root) = real("mlld-registry") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path(), "a.db");
    let r = sum(&run(&a, &root, false).await);
    // MANIFEST.md: 21 modules, 53 versions (one file each).
    assert_eq!(r.counts["modules"], 21);
    assert_eq!(r.counts["versions"], 53);
    assert_eq!(r.counts["version files"], 53);
    // modules.json and modules.generated.json list the same 21 modules.
    assert_eq!(r.counts["registry listings"], 42);
    assert_eq!(r.counts["registry listings repeated"], 21);
    assert_eq!(r.created, 21, "{:#?}", reasons(&r));
    assert_eq!(r.warning_count, 0);
    // The four derived `_index` files, and the legacy test registry with text after
    // its JSON.
    let reasons = reasons(&r);
    assert_eq!(r.rejected_count, 5, "{reasons:#?}");
    assert_eq!(
        reasons
            .iter()
            .filter(|x| x.contains("a derived index"))
            .count(),
        4
    );
    assert!(reasons
        .iter()
        .any(|x| x.contains("legacy/later/modules/test/registry.json")
            && x.contains("not valid JSON")));
    // 2 index files, 21 metadata, 21 dist-tags, allowlist, marketplace, one advisories
    // file, 8 legacy files.
    assert_eq!(r.documents.created, 55);
    let claude = EntryKey::new(Kind::Module, "mlld", "claude");
    assert_eq!(a.list_versions(&claude).await.unwrap().len(), 14);
    let e = a.get_entry(&claude).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("3.3.3"));

    // A second import of the same files changes nothing.
    let second = sum(&run(&a, &root, false).await);
    assert_eq!(
        (second.created, second.updated, second.unchanged),
        (0, 0, 21)
    );
    assert_eq!(second.documents.created + second.documents.updated, 0);

    let out = dir.path().join("out");
    formats::export_format(&a, Format::Modules, &ExportFilter::default(), &out)
        .await
        .unwrap();
    // Every current-format file comes back semantically equal; the derived indexes and
    // the unparsable legacy file do not come back.
    let mut compared = 0;
    for f in files(&root) {
        let s = f.to_string_lossy();
        if s.contains("_index/") || s.ends_with("modules/test/registry.json") {
            assert!(!out.join(&f).exists(), "{s}");
            continue;
        }
        assert_eq!(json_file(&out.join(&f)), json_file(&root.join(&f)), "{s}");
        compared += 1;
    }
    assert_eq!(compared, files(&root).len() - 5);
    assert_eq!(files(&out).len(), compared);

    let b = store(dir.path(), "b.db");
    let again = sum(&run(&b, &out, false).await);
    assert_eq!(again.created, 21);
    assert_eq!(again.rejected_count, 0, "{:#?}", again.rejected);
    assert_eq!(
        snapshot(&a, &[Kind::Module]).await,
        snapshot(&b, &[Kind::Module]).await
    );
}
