//! The recipes format (tsuku): reading, rejections, re-import, dry run, export and the
//! round trip, over the small tree in `tests/data/recipes/` and, when present, the real
//! files in the shared fixtures folder.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quiver_import::formats::recipes::RecipesReader;
use quiver_import::formats::{self, ExportFilter, Reader};
use quiver_import::{import, Format, ImportOptions, ImportReport, NoProgress, Rejected, Source};
use quiver_model::{EntryKey, Kind};
use quiver_store::Store;
use serde_json::{json, Value};

mod common;

use common::{data, real, record_names, run_keeping_rejections as run, snapshot, store, Sum};

fn sum(report: &ImportReport) -> Sum {
    common::sum(report, Format::Recipes)
}

/// The rejection whose file ends with `file`.
fn rejection<'a>(rejected: &'a [Rejected], file: &str) -> Vec<&'a Rejected> {
    rejected
        .iter()
        .filter(|r| r.file.as_ref().is_some_and(|f| f.ends_with(file)))
        .collect()
}

/// A tsuku file as a value: TOML as JSON, JSON, or JSON Lines as an array of values.
fn parse(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    match path.extension().and_then(|e| e.to_str()) {
        Some("toml") => {
            let t: toml::Table = toml::from_str(&text).unwrap();
            serde_json::to_value(t).unwrap()
        }
        Some("jsonl") => Value::Array(
            serde_json::Deserializer::from_str(&text)
                .into_iter::<Value>()
                .map(Result::unwrap)
                .collect(),
        ),
        _ => serde_json::from_str(&text).unwrap(),
    }
}

fn files_under(root: &Path) -> BTreeSet<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(root).unwrap().to_path_buf())
        .collect()
}

fn doc_count(s: &Value, collection: &str) -> usize {
    s["documents"][collection]
        .as_object()
        .map_or(0, serde_json::Map::len)
}

#[test]
fn reader_reads_recipes_with_derived_fields_and_origins() {
    let root = data("recipes");
    let files: Vec<PathBuf> = files_under(&root).into_iter().collect();
    let reader = RecipesReader;
    for f in &files {
        let head = std::fs::read(root.join(f)).unwrap();
        assert!(reader.claims(f, &head), "not claimed: {}", f.display());
    }
    let b = reader.read(&root, &files);

    let names = record_names(&b);
    assert_eq!(
        names,
        [
            "tsuku-embedded/zlib",
            "tsuku/alpha",
            "tsuku/beta",
            "tsuku/delta-cli",
            "tsuku/Eta_Tool"
        ]
    );
    let beta = &b.records[2];
    assert_eq!(beta.origin.file, Path::new("recipes/b/beta.toml"));
    assert_eq!(beta.origin.line, Some(3));
    assert_eq!(beta.entry.category.as_deref(), Some("library"));
    assert_eq!(
        beta.entry.tags,
        [
            "download_archive",
            "run_command",
            "install_binaries",
            "run-command"
        ]
    );
    let m = beta.revision.as_ref().unwrap();
    assert_eq!(m["metadata"]["homepage"], "https://beta.example");
    assert_eq!(m["steps"][1]["command"], "./configure && make install");
    assert_eq!(
        m["derived"],
        json!({
            "platforms": {"os": ["darwin"], "arch": ["arm64"]},
            "unsupported_platforms": [],
            "actions": ["download_archive", "run_command", "install_binaries"],
            "steps": 3,
            "flags": {"run_command": true, "run_command_steps": [2]},
        })
    );
    let alpha = &b.records[1];
    let d = &alpha.revision.as_ref().unwrap()["derived"];
    assert_eq!(d["platforms"], json!({"os": ["linux"], "libc": ["glibc"]}));
    assert_eq!(d["unsupported_platforms"], json!(["darwin/amd64"]));
    assert_eq!(d["flags"]["run_command"], json!(false));
    assert_eq!(
        alpha.revision.as_ref().unwrap()["version"]["tag_prefix"],
        "v"
    );

    // delta.toml names itself delta-cli (and Eta.toml Eta_Tool): taken, with a warning.
    assert_eq!(b.warnings.len(), 2, "{:?}", b.warnings);
    assert_eq!(
        b.warnings[0].file.as_deref(),
        Some(Path::new("recipes/d/delta.toml"))
    );
    assert!(b.warnings[0].reason.contains("differs from the file name"));

    assert_eq!(b.counts["recipes"], 6);
    assert_eq!(b.counts["embedded recipes"], 1);
    assert_eq!(b.counts["run_command steps"], 1);
    assert_eq!(b.counts["queue entries"], 3);
    assert_eq!(b.counts["failure lines"], 5);
    assert_eq!(b.counts["failure lines (recipe, platform)"], 2);
    assert_eq!(b.counts["failure lines (ecosystem, environment)"], 1);
    assert_eq!(b.counts["package failures"], 2);
    assert_eq!(b.counts["metrics records"], 3);
    assert_eq!(b.counts["dependency mappings"], 4);

    // Queue entries keep their own fields; the file's fields are in tsuku.files.
    let doc = |c: &str, k: &str| {
        b.documents
            .iter()
            .find(|d| d.document.collection == c && d.document.key == k)
            .unwrap_or_else(|| panic!("no document {c}/{k}"))
    };
    let beta_q = doc("tsuku.priority_queue", "beta");
    assert_eq!(beta_q.document.body["failure_count"], 2);
    assert_eq!(beta_q.origin.line, Some(21));
    let pq = doc("tsuku.files", "data/queues/priority-queue.json");
    assert_eq!(pq.document.body["keys"], json!(["alpha", "beta"]));
    assert_eq!(
        pq.document.body["rest"]["updated_at"],
        "2026-01-02T03:04:05Z"
    );
    let hb = doc("tsuku.files", "data/queues/priority-queue-homebrew.json");
    assert_eq!(hb.document.body["rest"]["tiers"]["3"], "Standard");
    assert_eq!(
        doc("tsuku.dep_mapping", "homebrew:xz").document.body,
        json!({"ecosystem": "homebrew", "dependency": "xz", "status": "pending", "recipe": null})
    );
    assert_eq!(
        doc("tsuku.failures", "homebrew-2026-01-02T03-04-05Z.jsonl:1")
            .document
            .body["failures"][0]["blocked_by"],
        json!(["zlib"])
    );
    assert_eq!(
        doc("tsuku.metrics", "batch-runs.jsonl#2").document.body["batch_id"],
        "2026-01-03-homebrew"
    );
    assert_eq!(
        doc("tsuku.discovery_seeds", "disambiguations:alpha")
            .document
            .body["builder"],
        "homebrew"
    );
    doc("tsuku.disambiguations", "audit/beta");
    doc("tsuku.disambiguations", "curated.jsonl:1");
    doc("tsuku.discovery", "alpha");
    doc("tsuku.batch_results", "2026-01-02");
    doc("tsuku.schemas", "priority-queue.schema.json");
    doc("tsuku.examples", "failure-record.json");
}

#[tokio::test]
async fn import_reports_what_it_could_not_take() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");
    let report = run(&s, &data("recipes"), false).await;
    let sum = sum(&report);

    assert_eq!(sum.created, 4, "alpha, beta, delta-cli, zlib");
    assert_eq!(sum.updated + sum.unchanged, 0);
    assert_eq!(
        sum.documents.created, 39,
        "23 records and 16 file descriptions"
    );
    assert_eq!(sum.documents.rejected, 0);
    assert_eq!(sum.rejected_count, 9, "{:#?}", sum.rejected);
    assert_eq!(sum.rejected.len(), 9);

    let one = |file: &str| {
        let r = rejection(&sum.rejected, file);
        assert_eq!(r.len(), 1, "{file}: {r:?}");
        r[0].clone()
    };
    let broken = one("recipes/c/broken.toml");
    assert_eq!(broken.line, Some(3));
    assert!(broken.reason.contains("TOML"), "{}", broken.reason);
    let echo = one("recipes/e/echo.toml");
    assert_eq!(echo.field.as_deref(), Some("metadata.name"));
    let eta = one("recipes/e/Eta.toml");
    assert!(eta.name.as_deref().is_some_and(|n| n.ends_with("Eta_Tool")));
    assert_eq!(eta.line, Some(2));
    assert!(eta.reason.contains("lowercase"), "{}", eta.reason);
    let discovery = one("recipes/discovery/b/be/beta.json");
    assert!(
        discovery.reason.contains("not valid JSON"),
        "{}",
        discovery.reason
    );
    let nameless = one("data/queues/priority-queue.json");
    assert_eq!(nameless.field.as_deref(), Some("entries[1].name"));
    let dup = one("data/queues/priority-queue-homebrew.json");
    assert_eq!(dup.line, Some(12));
    assert!(dup.reason.contains("duplicate"), "{}", dup.reason);
    let weird = one("data/legacy/dep-mapping.json");
    assert_eq!(weird.line, Some(6));
    assert_eq!(weird.name.as_deref(), Some("homebrew:weird"));
    let failures = rejection(
        &sum.rejected,
        "data/failures/batch-2026-01-02T03-04-05Z.jsonl",
    );
    let lines: Vec<_> = failures.iter().map(|r| r.line).collect();
    assert_eq!(lines, [Some(4), Some(5)]);
    assert!(failures[0].reason.contains("neither failure line shape"));
    assert!(failures[1].reason.contains("not valid JSON"));

    // What was taken is in the store.
    let alpha = s
        .get_entry(&EntryKey::new(Kind::Recipe, "tsuku", "alpha"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alpha.latest_version.as_deref(), Some("1.0.0"));
    assert_eq!(alpha.description, "A made-up tool installed from bottles");
    let snap = snapshot(&s, &[]).await;
    assert_eq!(doc_count(&snap, "tsuku.priority_queue"), 2);
    assert_eq!(doc_count(&snap, "tsuku.homebrew_queue"), 2);
    assert_eq!(doc_count(&snap, "tsuku.failures"), 3);
    assert_eq!(doc_count(&snap, "tsuku.files"), 16);
    assert!(snap["entries"].get("recipe/tsuku-embedded/zlib").is_some());
}

#[tokio::test]
async fn second_import_changes_nothing_and_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");

    let dry = sum(&run(&s, &data("recipes"), true).await);
    assert_eq!(dry.created, 4);
    assert_eq!(dry.rejected_count, 9);
    assert_eq!(s.feed_head().await.unwrap(), 0, "a dry run wrote something");
    assert!(s.document_collections().await.unwrap().is_empty());

    run(&s, &data("recipes"), false).await;
    let head = s.feed_head().await.unwrap();
    let again = sum(&run(&s, &data("recipes"), false).await);
    assert_eq!((again.created, again.updated), (0, 0));
    assert_eq!(again.unchanged, 4);
    assert_eq!((again.documents.created, again.documents.updated), (0, 0));
    assert_eq!(again.documents.unchanged, 39);
    assert_eq!(s.feed_head().await.unwrap(), head, "the second run wrote");
}

#[tokio::test]
async fn a_changed_recipe_gets_the_next_revision() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("recipes/a")).unwrap();
    let file = src.join("recipes/a/alpha.toml");
    std::fs::copy(data("recipes").join("recipes/a/alpha.toml"), &file).unwrap();
    let s = store(dir.path(), "q.db");
    run(&s, &src, false).await;
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("pattern = \"{version}\"", "pattern = \"alpha {version}\"");
    std::fs::write(&file, text).unwrap();
    let second = sum(&run(&s, &src, false).await);
    assert_eq!(second.updated, 1);
    let key = EntryKey::new(Kind::Recipe, "tsuku", "alpha");
    let e = s.get_entry(&key).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.0.1"));
}

#[tokio::test]
async fn forced_format_takes_a_single_file_and_rejects_what_is_not_tsukus() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");
    let queue = data("recipes").join("data/queues/priority-queue-homebrew.json");
    let report = import(
        &s,
        vec![Source::new(&queue)],
        ImportOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let got = sum(&report);
    assert_eq!(got.documents.created, 3, "two packages and the file");

    let stray = dir.path().join("notes.json");
    std::fs::write(&stray, "{}").unwrap();
    let report = import(
        &s,
        vec![Source::new(&stray).with_format(Format::Recipes)],
        ImportOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let got = sum(&report);
    assert_eq!(got.rejected.len(), 1);
    assert!(got.rejected[0].reason.contains("not a tsuku file"));
}

/// Export `s` to a folder, compare each exported file with the original under `root`
/// (when one exists at the same path and is not in `partial`), and return the export
/// folder and how many files were compared.
async fn export_and_compare(
    s: &dyn Store,
    root: &Path,
    out: &Path,
    partial: &BTreeSet<PathBuf>,
) -> usize {
    let summary = formats::export_format(s, Format::Recipes, &ExportFilter::default(), out)
        .await
        .unwrap();
    let exported = files_under(out);
    assert_eq!(summary.files as usize, exported.len());
    let mut compared = 0;
    for f in &exported {
        let original = root.join(f);
        if !original.is_file() || partial.contains(f) {
            continue;
        }
        assert_eq!(
            parse(&out.join(f)),
            parse(&original),
            "{} differs from the original",
            f.display()
        );
        compared += 1;
    }
    compared
}

#[tokio::test]
async fn export_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path(), "a.db");
    let first = sum(&run(&a, &data("recipes"), false).await);
    let partial: BTreeSet<PathBuf> = first
        .rejected
        .iter()
        .filter_map(|r| r.file.clone())
        .collect();

    let out = dir.path().join("export");
    let compared = export_and_compare(&a, &data("recipes"), &out, &partial).await;
    let exported = files_under(&out);
    // 4 recipes (delta-cli under its own name) and 16 data files.
    assert_eq!(exported.len(), 20, "{exported:?}");
    assert!(exported.contains(Path::new("recipes/d/delta-cli.toml")));
    assert!(exported.contains(Path::new("internal/recipe/recipes/zlib.toml")));
    assert_eq!(compared, 15, "every fully taken file equals its original");

    // Files with a rejected record come back without it.
    let pq = parse(&out.join("data/queues/priority-queue.json"));
    let mut want = parse(&data("recipes").join("data/queues/priority-queue.json"));
    want["entries"].as_array_mut().unwrap().remove(1);
    assert_eq!(pq, want);
    let deps = parse(&out.join("data/legacy/dep-mapping.json"));
    assert_eq!(
        deps,
        json!({"homebrew": {"zlib": "zlib", "openssl@3": "openssl", "xz": "pending"}})
    );
    let failures = parse(&out.join("data/failures/batch-2026-01-02T03-04-05Z.jsonl"));
    assert_eq!(failures.as_array().unwrap().len(), 2);
    // The export drops quiver's derived fields.
    let beta = std::fs::read_to_string(out.join("recipes/b/beta.toml")).unwrap();
    assert!(!beta.contains("derived"), "{beta}");

    // Importing the export into a fresh store gives the same store.
    let b = store(dir.path(), "b.db");
    let second = sum(&run(&b, &out, false).await);
    assert!(second.rejected.is_empty(), "{:#?}", second.rejected);
    assert!(second.warnings.is_empty(), "{:#?}", second.warnings);
    let (sa, sb) = (snapshot(&a, &[]).await, snapshot(&b, &[]).await);
    assert_eq!(sa["entries"], sb["entries"]);
    assert_eq!(sa["documents"], sb["documents"]);

    // The export filter applies to recipes: only libraries.
    let libs = dir.path().join("libs");
    let filter = ExportFilter {
        categories: vec!["library".to_string()],
        statuses: vec![],
        ..Default::default()
    };
    let summary = formats::export_format(&a, Format::Recipes, &filter, &libs)
        .await
        .unwrap();
    assert_eq!(summary.entries, 2, "beta and zlib");
}

#[tokio::test]
async fn real_fixtures() {
    let Some(root) = real("tsuku") else { return };
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path(), "a.db");
    let report = run(&a, &root, false).await;
    let got = sum(&report);
    eprintln!("counts: {:#?}", got.counts);
    eprintln!("rejected: {:#?}", got.rejected);
    eprintln!("warnings: {:#?}", got.warnings);

    // MANIFEST.md: 1,449 registry recipes, 19 embedded, all valid TOML.
    assert_eq!(got.counts["recipes"], 1449);
    assert_eq!(got.counts["embedded recipes"], 19);
    assert_eq!(got.created, 1449 + 19);
    assert_eq!(got.rejected_count, 0, "{:#?}", got.rejected);
    assert_eq!(got.counts["discovery entries"], 825);
    assert_eq!(got.counts["queue entries"], 5305);
    assert_eq!(got.counts["homebrew queue packages"], 5144);
    assert_eq!(got.counts["dependency mappings"], 32);
    assert_eq!(got.counts["discovery seeds"], 156 + 20);
    assert_eq!(got.counts["disambiguation audits"], 203);
    let lines = got.counts["failure lines"];
    assert_eq!(
        lines,
        got.counts["failure lines (recipe, platform)"]
            + got.counts["failure lines (ecosystem, environment)"],
        "every failure line is one of the two shapes"
    );

    let snap = snapshot(&a, &[]).await;
    let stored_docs: usize = snap["documents"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c.as_object().unwrap().len())
        .sum();
    assert_eq!(got.documents.created as usize, stored_docs);
    assert_eq!(got.documents.rejected, 0);
    let entries = snap["entries"].as_object().unwrap();
    let in_ns = |ns: &str| {
        entries
            .keys()
            .filter(|k| k.starts_with(&format!("recipe/{ns}/")))
            .count()
    };
    assert_eq!(in_ns("tsuku"), 1449);
    assert_eq!(in_ns("tsuku-embedded"), 19);
    let run_command = entries
        .values()
        .filter(|e| e["manifest"]["derived"]["flags"]["run_command"] == json!(true))
        .count();
    assert!(run_command > 0);
    assert_eq!(
        run_command,
        entries
            .values()
            .filter(|e| e["tags"]
                .as_array()
                .unwrap()
                .contains(&json!("run-command")))
            .count()
    );
    assert_eq!(doc_count(&snap, "tsuku.discovery"), 825);
    assert_eq!(doc_count(&snap, "tsuku.priority_queue"), 5305);
    assert_eq!(doc_count(&snap, "tsuku.homebrew_queue"), 5144);
    assert_eq!(doc_count(&snap, "tsuku.legacy_priority_queue"), 5);
    assert_eq!(doc_count(&snap, "tsuku.dep_mapping"), 32);
    assert_eq!(doc_count(&snap, "tsuku.failures") as u64, lines);
    assert_eq!(doc_count(&snap, "tsuku.discovery_seeds"), 176);
    assert_eq!(doc_count(&snap, "tsuku.disambiguations"), 203 + 1);
    assert_eq!(doc_count(&snap, "tsuku.schemas"), 2);
    assert_eq!(doc_count(&snap, "tsuku.examples"), 2);
    assert_eq!(doc_count(&snap, "tsuku.batch_results"), 1);
    let all_files = files_under(&root);
    let recipe_files = all_files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "toml"))
        .count();
    assert_eq!(
        doc_count(&snap, "tsuku.files"),
        all_files.len() - recipe_files,
        "a description of every data file"
    );

    // A second import changes nothing.
    let again = sum(&run(&a, &root, false).await);
    assert_eq!((again.created, again.updated), (0, 0));
    assert_eq!((again.documents.created, again.documents.updated), (0, 0));
    assert_eq!(again.documents.unchanged as usize, stored_docs);

    // Round trip: every file comes back equal, and a re-import gives the same store.
    let out = dir.path().join("export");
    let compared = export_and_compare(&a, &root, &out, &BTreeSet::new()).await;
    assert_eq!(files_under(&out), all_files);
    assert_eq!(compared, all_files.len());
    let b = store(dir.path(), "b.db");
    let second = sum(&run(&b, &out, false).await);
    assert_eq!(second.rejected_count, 0);
    assert_eq!(snapshot(&b, &[]).await, snap);
}

#[tokio::test]
async fn export_appends_queue_entries_added_after_the_import() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");
    run(&s, &data("recipes"), false).await;
    let added =
        json!({"name": "omega", "source": "cargo:omega", "priority": 3, "status": "pending"});
    let outcomes = s
        .put_documents(vec![quiver_model::NewDocument::new(
            "tsuku.priority_queue",
            "omega",
            added.clone(),
        )])
        .await
        .unwrap();
    assert_eq!(outcomes.len(), 1);
    let out = dir.path().join("export");
    formats::export_format(&s, Format::Recipes, &ExportFilter::default(), &out)
        .await
        .unwrap();
    let pq = parse(&out.join("data/queues/priority-queue.json"));
    let names: Vec<_> = pq["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].clone())
        .collect();
    assert_eq!(names, [json!("alpha"), json!("beta"), json!("omega")]);
    assert_eq!(pq["entries"][2], added);
}
