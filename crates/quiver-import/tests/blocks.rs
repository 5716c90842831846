//! The `blocks` format (TPMJS): `blocks.yml` catalogs and npm manifests with a `tpmjs`
//! field, read, imported, exported and imported again. Small invented files live in
//! `tests/data/blocks/`; the real files, when present, in the shared fixtures folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quiver_import::formats::{self, ExportFilter};
use quiver_import::{import, Format, ImportOptions, NoProgress, Source};
use quiver_model::{EntryKey, Kind, Status};
use quiver_store::Store;
use serde_json::{json, Value};

mod common;

use common::{json_file, line_starting, run, snapshot, store, yaml_file};

fn data(rel: &str) -> PathBuf {
    common::data("blocks").join(rel)
}

/// The fields of a package.json that quiver keeps (the others are not exported).
fn kept_package_fields(mut v: Value) -> Value {
    let keep = [
        "name",
        "version",
        "description",
        "keywords",
        "repository",
        "homepage",
        "license",
        "tpmjs",
        "dependencies",
    ];
    let obj = v.as_object_mut().unwrap();
    obj.retain(|k, _| keep.contains(&k.as_str()));
    // A repository object keeps its URL and directory; its type is written as git.
    if let Some(Value::Object(r)) = obj.get_mut("repository") {
        if r.contains_key("directory") {
            r.insert("type".into(), json!("git"));
        } else if let Some(url) = r.get("url").cloned() {
            obj.insert("repository".into(), url);
        }
    }
    v
}

// ---------------------------------------------------------------------------------------
// Small invented files.

#[test]
fn reads_catalog_packages_and_rejects_with_file_line_and_reason() {
    let root = data("catalog");
    let b = common::read_dir(Format::Blocks, &root);
    let yml = root.join("blocks.yml");

    let counts: BTreeMap<&str, u64> = b.counts.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(counts["tool blocks"], 4);
    assert_eq!(counts["shared rules"], 3);
    assert_eq!(counts["philosophy lines"], 2);
    assert_eq!(counts["entities"], 2);
    assert_eq!(counts["signals"], 1);
    assert_eq!(counts["measures"], 1);
    // broken/ cannot be parsed, so it is not counted as a manifest.
    assert_eq!(counts["package manifests"], 3);
    assert_eq!(counts["tool definitions"], 4);

    let names: Vec<String> = b
        .records
        .iter()
        .map(|r| format!("{}/{}/{}", r.entry.kind, r.entry.namespace, r.entry.name))
        .collect();
    for want in [
        "tool/tpmjs/text.wordCount",
        "tool/tpmjs/web.fetchPage",
        "package/npm/@mini/fetch-page",
        "package/npm/@mini/greeter",
        "tool/tpmjs/text-analysis.helloTool",
        "tool/tpmjs/text-analysis.byeTool",
    ] {
        assert!(names.contains(&want.to_string()), "{want} not in {names:?}");
    }
    assert_eq!(names.len(), 6, "{names:?}");

    // A block: its own fields, the catalog, and schemas derived from inputs/outputs.
    let wc = b
        .records
        .iter()
        .find(|r| r.entry.name == "text.wordCount")
        .unwrap();
    assert_eq!(
        wc.origin.line,
        Some(line_starting(&yml, "  text.wordCount:"))
    );
    assert_eq!(wc.entry.category.as_deref(), Some("text"));
    let m = wc.revision.as_ref().unwrap();
    assert_eq!(m["catalog"], json!("mini-tools"));
    assert_eq!(m["path"], json!("word-count"));
    assert_eq!(
        m["outputs"][0]["measures"],
        json!(["working_implementation"])
    );
    assert_eq!(m["input_schema"]["required"], json!(["text"]));
    assert_eq!(
        m["input_schema"]["properties"]["locale"]["enum"],
        json!(["en", "de"])
    );
    assert_eq!(
        m["output_schema"]["properties"]["counts"]["title"],
        json!("WordCount")
    );

    // The package whose folder is a block's path implements that block.
    let fetch = b
        .records
        .iter()
        .find(|r| r.entry.name == "@mini/fetch-page")
        .unwrap();
    assert_eq!(fetch.versions[0].version, "0.2.0");
    let fm = &fetch.versions[0].manifest;
    assert_eq!(fm["repository"], json!("https://example.invalid/mini.git"));
    assert_eq!(fm["repository_directory"], json!("packages/fetch-page"));
    assert_eq!(fm["tpmjs"]["category"], json!("web"));
    assert!(fm.get("scripts").is_none());
    assert_eq!(fetch.relations.len(), 1);
    assert_eq!(fetch.relations[0].to.name, "web.fetchPage");

    // Tools no block describes become entries of their own.
    let greeter = b
        .records
        .iter()
        .find(|r| r.entry.name == "@mini/greeter")
        .unwrap();
    let targets: Vec<&str> = greeter
        .relations
        .iter()
        .map(|r| r.to.name.as_str())
        .collect();
    assert_eq!(
        targets,
        ["text-analysis.helloTool", "text-analysis.byeTool"]
    );
    let hello = b
        .records
        .iter()
        .find(|r| r.entry.name == "text-analysis.helloTool")
        .unwrap();
    let hm = hello.revision.as_ref().unwrap();
    assert_eq!(hm["input_schema"]["required"], json!(["name"]));
    assert_eq!(hm["package"], json!("@mini/greeter"));
    assert_eq!(hm["output_schema"]["type"], json!("string"));

    // Rejections: file, line, field and a reason.
    let find = |field: &str| {
        b.rejected
            .iter()
            .find(|r| r.field.as_deref() == Some(field))
            .unwrap_or_else(|| panic!("no rejection of {field}: {:?}", b.rejected))
    };
    let bad = find("inputs");
    assert_eq!(bad.file.as_deref(), Some(Path::new("blocks.yml")));
    assert_eq!(bad.line, Some(line_starting(&yml, "  bad.inputs:")));
    assert!(bad.reason.contains("must be a list"), "{}", bad.reason);
    let rule = find("blocks.domain_rules[2].id");
    assert_eq!(
        rule.line,
        Some(line_starting(&yml, "    - description: \"A rule without"))
    );
    let nameless = find("tpmjs.tools[2].name");
    assert_eq!(
        nameless.file.as_deref(),
        Some(Path::new("packages/greeter/package.json"))
    );
    let version = find("version");
    assert_eq!(version.name.as_deref(), Some("@mini/noversion"));
    let broken = b
        .rejected
        .iter()
        .find(|r| r.file.as_deref() == Some(Path::new("packages/broken/package.json")))
        .unwrap();
    assert_eq!(broken.line, Some(5));
    assert!(
        broken.reason.contains("not valid JSON"),
        "{}",
        broken.reason
    );
    let nine = find("name");
    assert_eq!(nine.name.as_deref(), Some("tpmjs/9lives.tool"));
    assert_eq!(nine.line, Some(line_starting(&yml, "  9lives.tool:")));
    assert!(
        nine.reason.contains("dot-separated identifiers"),
        "{}",
        nine.reason
    );
    assert_eq!(b.rejected.len(), 6, "{:?}", b.rejected);

    // Documents: the catalog, 2 philosophy lines, 2 entities, a signal, a measure, 2 rules.
    let docs: Vec<String> = b
        .documents
        .iter()
        .map(|d| format!("{} {}", d.document.collection, d.document.key))
        .collect();
    assert_eq!(docs.len(), 9, "{docs:?}");
    for want in [
        "blocks.catalog mini-tools",
        "blocks.philosophy mini-tools/0001",
        "blocks.entities mini-tools/webpage",
        "blocks.signals mini-tools/readability",
        "blocks.measures mini-tools/working_implementation",
        "blocks.rules mini-tools/no_stubs",
    ] {
        assert!(docs.contains(&want.to_string()), "{want} not in {docs:?}");
    }
    let entity = b
        .documents
        .iter()
        .find(|d| d.document.key == "mini-tools/webpage")
        .unwrap();
    assert_eq!(
        entity.origin.line,
        Some(line_starting(&yml, "    webpage:"))
    );
    assert_eq!(entity.document.body["kinds"], json!(["html", "text"]));
}

#[test]
fn a_broken_yaml_file_is_one_rejection_with_its_line() {
    let root = data("broken");
    let b = common::read_dir(Format::Blocks, &root);
    assert!(b.records.is_empty());
    assert!(b.documents.is_empty());
    assert_eq!(b.rejected.len(), 1, "{:?}", b.rejected);
    let r = &b.rejected[0];
    assert_eq!(r.file.as_deref(), Some(Path::new("blocks.yml")));
    // The parser stops at the end of the file and names where the string began.
    assert_eq!(r.line, Some(8), "{}", r.reason);
    assert!(r.reason.contains("not valid YAML"), "{}", r.reason);
    assert!(r.reason.contains("line 6 column 18"), "{}", r.reason);
}

#[tokio::test]
async fn import_twice_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");
    let first = run(&s, &data("catalog"), false).await;
    assert_eq!(first.files.len(), 1, "{:?}", first.files);
    let f = &first.files[0];
    assert_eq!(f.format, Format::Blocks);
    assert_eq!(f.created, 6, "{:?}", f.rejected);
    assert_eq!(f.relations.created, 3);
    assert_eq!(f.documents.created, 9);
    assert_eq!(f.rejected_count, 6, "{:?}", f.rejected);
    let nine = f
        .rejected
        .iter()
        .find(|r| r.name.as_deref() == Some("tpmjs/9lives.tool"))
        .unwrap();
    assert_eq!(
        nine.line,
        Some(line_starting(&data("catalog/blocks.yml"), "  9lives.tool:"))
    );
    assert_eq!(nine.field.as_deref(), Some("name"));

    let second = run(&s, &data("catalog"), false).await;
    let f = &second.files[0];
    assert_eq!((f.created, f.updated, f.unchanged), (0, 0, 6));
    assert_eq!(f.relations.created, 0);
    assert_eq!(f.documents.created + f.documents.updated, 0);
    assert_eq!(f.documents.unchanged, 9);

    let tool = s
        .get_entry(&EntryKey::new(Kind::Tool, "tpmjs", "text.wordCount"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tool.latest_version.as_deref(), Some("1.0.0"));
    assert_eq!(tool.status, Status::Published);
}

#[tokio::test]
async fn a_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");
    let report = run(&s, &data("catalog"), true).await;
    assert!(report.dry_run);
    assert_eq!(report.files[0].created, 6);
    assert_eq!(s.feed_head().await.unwrap(), 0);
    assert!(s.document_collections().await.unwrap().is_empty());
}

#[tokio::test]
async fn export_then_import_gives_an_equal_store() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path(), "a.db");
    run(&a, &data("catalog"), false).await;

    let out = dir.path().join("export");
    let summary = formats::export_format(&a, Format::Blocks, &ExportFilter::default(), &out)
        .await
        .unwrap();
    // blocks.yml and the two packages; 2 blocks + 2 packages; 9 documents.
    assert_eq!(
        (summary.files, summary.entries, summary.documents),
        (3, 4, 9)
    );

    // The catalog is the original without what was rejected.
    let mut original = yaml_file(&data("catalog/blocks.yml"));
    let blocks = original["blocks"].as_object_mut().unwrap();
    blocks.remove("bad.inputs");
    blocks.remove("9lives.tool");
    blocks["domain_rules"].as_array_mut().unwrap().truncate(2);
    assert_eq!(yaml_file(&out.join("blocks.yml")), original);

    // Packages: the fields quiver keeps.
    for p in ["fetch-page", "greeter"] {
        let rel = format!("packages/{p}/package.json");
        assert_eq!(
            json_file(&out.join(&rel)),
            kept_package_fields(json_file(&data(&format!("catalog/{rel}")))),
            "{rel}"
        );
    }

    let b = store(dir.path(), "b.db");
    let again = run(&b, &out, false).await;
    assert_eq!(
        again.files[0].rejected_count, 1,
        "{:?}",
        again.files[0].rejected
    );
    assert_eq!(snapshot(&a, &[]).await, snapshot(&b, &[]).await);
}

#[tokio::test]
async fn export_to_a_file_filters_by_category_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");
    run(&s, &data("catalog"), false).await;

    let out = dir.path().join("text.yml");
    let filter = ExportFilter {
        categories: vec!["text".into()],
        statuses: vec![Status::Published],
        ..Default::default()
    };
    let summary = formats::export_format(&s, Format::Blocks, &filter, &out)
        .await
        .unwrap();
    assert_eq!((summary.files, summary.entries), (1, 1));
    let y = yaml_file(&out);
    let ids: Vec<&String> = y["blocks"].as_object().unwrap().keys().collect();
    assert_eq!(ids, ["domain_rules", "text.wordCount"]);
    assert_eq!(y["validators"], json!(["schema", "domain"]));

    let none = ExportFilter {
        categories: vec![],
        statuses: vec![Status::Deprecated],
        ..Default::default()
    };
    formats::export_format(&s, Format::Blocks, &none, &out)
        .await
        .unwrap();
    let y = yaml_file(&out);
    assert_eq!(y["blocks"].as_object().unwrap().len(), 1);
    assert_eq!(y["philosophy"].as_array().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// The real files.

#[tokio::test]
async fn real_tpmjs_files_import_export_and_import_again() {
    let Some(root) = common::real("tpmjs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path(), "a.db");
    let report = run(&a, &root, false).await;
    assert_eq!(report.files.len(), 1, "{:?}", report.files);
    let f = &report.files[0];
    let count = |u: &str| f.counts.get(u).copied().unwrap_or(0);
    // As MANIFEST.md counts them.
    assert_eq!(count("tool blocks"), 156);
    assert_eq!(count("shared rules"), 28);
    assert_eq!(count("philosophy lines"), 9);
    assert_eq!(count("entities"), 83);
    assert_eq!(count("signals"), 8);
    assert_eq!(count("measures"), 8);
    assert_eq!(count("package manifests"), 165);
    assert_eq!(count("tool definitions"), 175);
    // 156 blocks, 165 packages, and the 19 tools of the 9 packages outside the catalog.
    assert_eq!(f.rejected_count, 0, "{:?}", f.rejected);
    assert_eq!(f.created, 156 + 165 + 19);
    assert_eq!(f.relations.created, 175);
    assert_eq!(f.relations.rejected, 0);
    // The catalog, 9 philosophy lines, 83 + 8 + 8 domain items, 28 shared rules.
    assert_eq!(f.documents.created, 1 + 9 + 83 + 8 + 8 + 28);
    assert!(report.unread.is_empty(), "{:?}", report.unread);

    let out = dir.path().join("export");
    formats::export_format(&a, Format::Blocks, &ExportFilter::default(), &out)
        .await
        .unwrap();
    assert_eq!(
        yaml_file(&out.join("blocks.yml")),
        yaml_file(&root.join("blocks.yml"))
    );
    let mut packages = 0;
    for e in walkdir::WalkDir::new(root.join("tool-manifests")) {
        let e = e.unwrap();
        if e.file_name() != "package.json" {
            continue;
        }
        let rel = e.path().strip_prefix(&root).unwrap();
        assert_eq!(
            json_file(&out.join(rel)),
            kept_package_fields(json_file(e.path())),
            "{}",
            rel.display()
        );
        packages += 1;
    }
    assert_eq!(packages, 165);

    let b = store(dir.path(), "b.db");
    let again = run(&b, &out, false).await;
    assert_eq!(again.files[0].rejected_count, 0);
    assert_eq!(snapshot(&a, &[]).await, snapshot(&b, &[]).await);
}

/// Copy the small catalog into a temporary folder, to change it.
fn copy_catalog(to: &Path) {
    let from = data("catalog");
    for e in walkdir::WalkDir::new(&from) {
        let e = e.unwrap();
        let target = to.join(e.path().strip_prefix(&from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

#[tokio::test]
async fn a_changed_block_is_published_as_the_next_revision() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    copy_catalog(&src);
    let s = store(dir.path(), "q.db");
    run(&s, &src, false).await;

    let yml = src.join("blocks.yml");
    let text = std::fs::read_to_string(&yml).unwrap().replace(
        "Counts the words of a text",
        "Counts the words and characters of a text",
    );
    std::fs::write(&yml, text).unwrap();
    let report = run(&s, &src, false).await;
    let f = &report.files[0];
    assert_eq!((f.created, f.updated, f.unchanged), (0, 1, 5), "{f:?}");

    let key = EntryKey::new(Kind::Tool, "tpmjs", "text.wordCount");
    let e = s.get_entry(&key).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.0.1"));
    assert_eq!(e.description, "Counts the words and characters of a text");
    let v = s.get_version(&key, "1.0.1").await.unwrap().unwrap();
    assert_eq!(
        v.manifest["description"],
        json!("Counts the words and characters of a text")
    );
}

#[tokio::test]
async fn a_forced_format_rejects_files_it_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("plain")).unwrap();
    std::fs::write(src.join("notes.txt"), "hello\n").unwrap();
    std::fs::write(
        src.join("plain/package.json"),
        "{\n  \"name\": \"plain\",\n  \"version\": \"1.0.0\"\n}\n",
    )
    .unwrap();
    let s = store(dir.path(), "q.db");
    let report = import(
        &s,
        vec![Source::new(&src).with_format(Format::Blocks)],
        ImportOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    let rejected: Vec<_> = report.files.iter().flat_map(|f| &f.rejected).collect();
    let txt = rejected
        .iter()
        .find(|r| r.file.as_deref() == Some(Path::new("notes.txt")))
        .unwrap_or_else(|| panic!("{rejected:?}"));
    assert!(
        txt.reason.contains("not a blocks catalog"),
        "{}",
        txt.reason
    );
    let plain = rejected
        .iter()
        .find(|r| r.file.as_deref() == Some(Path::new("plain/package.json")))
        .unwrap_or_else(|| panic!("{rejected:?}"));
    assert_eq!(plain.field.as_deref(), Some("tpmjs"));
    assert_eq!(plain.name.as_deref(), Some("plain"));
    assert_eq!(s.feed_head().await.unwrap(), 0);
}
