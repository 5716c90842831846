//! Import pipeline and export, end to end against a SQLite store in a temporary directory.
//! Fixtures are written here or live in `tests/fixtures/`; nothing reads the real data set.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use quiver_import::jsonl::JsonlEntry;
use quiver_import::{
    detect_format, export, import, Format, ImportOptions, ImportReport, NoProgress, Progress,
    Source,
};
use quiver_model::{EntryKey, Kind};
use quiver_sqlite::SqliteStore;
use quiver_store::{EntryFilter, Store};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/roundtrip.jsonl"
);

fn store(dir: &Path, name: &str) -> SqliteStore {
    SqliteStore::open(dir.join(name)).unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn write_gz(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&p).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
    p
}

async fn run(store: &SqliteStore, files: &[&Path], opts: ImportOptions) -> ImportReport {
    let sources = files.iter().map(|p| Source::new(*p)).collect();
    import(store, sources, opts, &NoProgress).await.unwrap()
}

fn dry() -> ImportOptions {
    ImportOptions {
        dry_run: true,
        ..Default::default()
    }
}

async fn export_string(store: &SqliteStore) -> String {
    let mut out = Vec::new();
    export(store, EntryFilter::default(), &mut out)
        .await
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn rejected_lines_report_line_and_reason_and_good_lines_land() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        // 1: good
        r#"{"kind":"tool","namespace":"tpmjs","name":"text.csvParse","versions":[{"version":"1.0.0","manifest":{"inputs":[{"name":"text"}]}}]}"#,
        // 2: bad name
        r#"{"kind":"tool","namespace":"tpmjs","name":"1bad"}"#,
        // 3: bad semver
        r#"{"kind":"tool","namespace":"tpmjs","name":"text.split","versions":[{"version":"1.0"}]}"#,
        // 4: manifest failing the skill schema
        r#"{"kind":"skill","namespace":"vercel","name":"react-tips","versions":[{"version":"1.0.0","manifest":{"installs":"many"}}]}"#,
        // 5: unknown kind
        r#"{"kind":"widget","namespace":"x","name":"a"}"#,
        // 6: malformed JSON
        r#"{"kind":"tool","#,
        // 7: blank
        "   ",
        // 8: good entry, one good relation (to line 9, later in the file), one dangling
        r#"{"kind":"skill","namespace":"vercel","name":"react-best-practices","relations":[{"kind":"maps_to","to":{"kind":"package","namespace":"npm","name":"react"},"confidence":0.9},{"kind":"maps_to","to":{"kind":"package","namespace":"npm","name":"left-pad"},"confidence":0.5}]}"#,
        // 9: good
        r#"{"kind":"package","namespace":"npm","name":"react","versions":[{"version":"18.3.1"}]}"#,
        // 10: unknown field
        r#"{"kind":"package","namespace":"npm","name":"vue","tag":["x"]}"#,
        // 11: the same entry as line 9
        r#"{"kind":"package","namespace":"npm","name":"react","description":"again"}"#,
    ];
    let path = write(dir.path(), "mixed.jsonl", &lines.join("\n"));
    let s = store(dir.path(), "q.db");
    let report = run(&s, &[&path], ImportOptions::default()).await;
    let f = &report.files[0];
    assert_eq!(f.format, Format::Jsonl);
    assert_eq!(f.records, 10, "the blank line is not a record");
    assert_eq!(
        (f.created, f.updated, f.unchanged, f.rejected_count),
        (3, 0, 0, 7)
    );
    assert_eq!(f.relations.created, 1);
    assert_eq!(f.relations.rejected, 1);

    let by_line = |n: u64| {
        f.rejected
            .iter()
            .find(|r| r.line == Some(n))
            .unwrap_or_else(|| panic!("no rejection at line {n}: {:#?}", f.rejected))
    };
    let r = by_line(2);
    assert_eq!(r.field.as_deref(), Some("name"));
    assert!(r.reason.contains("tool names"), "{r}");
    let r = by_line(3);
    assert_eq!(r.field.as_deref(), Some("versions[0].version"));
    assert!(r.reason.contains("not a semantic version"), "{r}");
    let r = by_line(4);
    assert_eq!(
        r.field.as_deref(),
        Some("versions[0].manifest.installs"),
        "{r}"
    );
    let r = by_line(5);
    assert_eq!(r.field.as_deref(), Some("kind"));
    assert!(r.reason.contains("widget"), "{r}");
    let r = by_line(6);
    assert!(r.reason.starts_with("malformed JSON"), "{r}");
    let r = by_line(8);
    assert_eq!(r.field.as_deref(), Some("relations[1].to"), "{r}");
    assert!(r.reason.contains("npm/left-pad does not exist"), "{r}");
    let r = by_line(10);
    assert!(r.reason.contains("unknown field `tag`"), "{r}");
    let r = by_line(11);
    assert_eq!(r.field.as_deref(), Some("name"));
    assert!(r.reason.contains("also at line 9"), "{r}");
    for r in &f.rejected {
        assert!(!r.reason.is_empty());
    }

    for (kind, ns, name) in [
        (Kind::Tool, "tpmjs", "text.csvParse"),
        (Kind::Skill, "vercel", "react-best-practices"),
        (Kind::Package, "npm", "react"),
    ] {
        assert!(
            s.get_entry(&EntryKey::new(kind, ns, name))
                .await
                .unwrap()
                .is_some(),
            "{name}"
        );
    }
    let react = s
        .get_entry(&EntryKey::new(Kind::Package, "npm", "react"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(react.description, "", "the first occurrence wins");
    assert_eq!(s.stats().await.unwrap().entries, 3);
    assert_eq!(s.stats().await.unwrap().relations, 1);
    let text = report.to_string();
    assert!(
        text.contains("line 8: vercel/react-best-practices: relations[1].to"),
        "{text}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["totals"]["rejected"], 7);
    assert_eq!(json["files"][0]["rejected"][0]["line"], 2);
}

#[tokio::test]
async fn re_import_is_unchanged_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");
    let first = run(&s, &[Path::new(FIXTURE)], ImportOptions::default()).await;
    assert_eq!(first.totals.created, 6, "{first}");
    assert_eq!(first.totals.rejected, 0, "{first}");
    assert_eq!(first.totals.relations.created, 6, "{first}");
    let head = s.feed_head().await.unwrap();
    let before = export_string(&s).await;

    let second = run(&s, &[Path::new(FIXTURE)], ImportOptions::default()).await;
    assert_eq!(
        (
            second.totals.created,
            second.totals.updated,
            second.totals.unchanged
        ),
        (0, 0, 6),
        "{second}"
    );
    assert_eq!(second.totals.relations.unchanged, 6, "{second}");
    assert_eq!(second.totals.relations.total(), 6);
    assert_eq!(
        s.feed_head().await.unwrap(),
        head,
        "a re-run writes no feed rows"
    );
    assert_eq!(export_string(&s).await, before);
}

#[tokio::test]
async fn dry_run_writes_nothing_and_predicts_the_real_run() {
    let dir = tempfile::tempdir().unwrap();
    let s = store(dir.path(), "q.db");

    let predicted = run(&s, &[Path::new(FIXTURE)], dry()).await;
    assert!(predicted.dry_run);
    assert_eq!(predicted.totals.created, 6, "{predicted}");
    assert_eq!(predicted.totals.relations.created, 6, "{predicted}");
    assert_eq!(s.feed_head().await.unwrap(), 0);
    assert_eq!(s.stats().await.unwrap().entries, 0);
    assert!(predicted.to_string().contains("would be created"));

    let actual = run(&s, &[Path::new(FIXTURE)], ImportOptions::default()).await;
    assert_eq!(predicted.totals, actual.totals);
    let head = s.feed_head().await.unwrap();

    // A changed description, a new version, a manifest changed under an existing version,
    // a new entry, a changed relation and a new one, one unchanged line.
    let fixture = std::fs::read_to_string(FIXTURE).unwrap();
    let mut lines: Vec<String> = fixture.lines().map(str::to_string).collect();
    lines[1] = lines[1].replace("implementing the Node.js stream API", "for Node.js");
    lines[3] = lines[3].replace(
        r#""versions":[{"version":"14.1.0""#,
        r#""versions":[{"version":"14.2.0"},{"version":"14.1.0""#,
    );
    lines[5] = lines[5].replace(r#""released":"2024-06""#, r#""released":"2024-07""#);
    lines[2] = lines[2].replace(r#""confidence":0.75"#, r#""confidence":0.8"#);
    lines[4] = lines[4].replace(
        r#""relations":[]"#,
        r#""relations":[{"kind":"depends_on","to":{"kind":"tool","namespace":"tpmjs","name":"text.fresh"}}]"#,
    );
    lines.push(r#"{"kind":"tool","namespace":"tpmjs","name":"text.fresh"}"#.to_string());
    let changed = write(dir.path(), "changed.jsonl", &lines.join("\n"));

    let predicted = run(&s, &[&changed], dry()).await;
    assert_eq!(
        s.feed_head().await.unwrap(),
        head,
        "a dry run writes nothing"
    );
    let t = predicted.totals;
    assert_eq!(
        (t.created, t.updated, t.unchanged, t.rejected),
        (1, 2, 3, 1),
        "{predicted}"
    );
    let r = &t.relations;
    assert_eq!(
        (r.created, r.updated, r.unchanged, r.rejected),
        (1, 1, 5, 0),
        "{predicted}"
    );
    let conflict = &predicted.files[0].rejected[0];
    assert_eq!(conflict.line, Some(6));
    assert!(conflict.reason.contains("immutable"), "{conflict}");

    let actual = run(&s, &[&changed], ImportOptions::default()).await;
    assert_eq!(predicted.totals, actual.totals, "{predicted}\n{actual}");
    assert_eq!(predicted.files[0].rejected, actual.files[0].rejected);
}

const PYPI_TSV: &str = "name\tversion\tmonth\trank_among_15000_most_downloaded\tsummary\n\
    requests\t2.32.3\t2024-05\t4\tPython HTTP for Humans.\n\
    numpy\t2.0.0\t2024-06\t2\tFundamental package for array computing\n\
    bad name\t1.0\t2024-01\t\tx\n";
const NPM_TSV: &str = "name\tversion\tdownloads_a_month\tsummary\n\
    @types/node\t22.0.0\t100000000\tTypeScript definitions for node\n\
    left-pad\t1.3.0\t2000000\tString left pad\n";

#[tokio::test]
async fn detects_tsv_plain_and_gzip_and_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pypi = write(d, "pypi.tsv", PYPI_TSV);
    let npm = write_gz(d, "npm.data", NPM_TSV);
    let fixture = std::fs::read_to_string(FIXTURE).unwrap();
    let jsonl_gz = write_gz(d, "export.jsonl.gz", &fixture);
    let jsonl_by_content = write_gz(d, "backup.bin", &fixture);
    let empty_jsonl = write(d, "empty.jsonl", "");
    assert_eq!(detect_format(&pypi).unwrap(), Format::Tsv);
    assert_eq!(detect_format(&npm).unwrap(), Format::Tsv);
    assert_eq!(detect_format(&jsonl_gz).unwrap(), Format::Jsonl);
    assert_eq!(detect_format(&jsonl_by_content).unwrap(), Format::Jsonl);
    assert_eq!(detect_format(&empty_jsonl).unwrap(), Format::Jsonl);

    let s = store(d, "q.db");
    let report = run(&s, &[&pypi, &npm, &empty_jsonl], ImportOptions::default()).await;
    let counts: Vec<_> = report
        .files
        .iter()
        .map(|f| (f.format, f.records, f.created, f.rejected_count))
        .collect();
    assert_eq!(
        counts,
        vec![
            (Format::Tsv, 3, 2, 1),
            (Format::Tsv, 2, 2, 0),
            (Format::Jsonl, 0, 0, 0)
        ]
    );
    assert_eq!(report.files[0].rejected[0].line, Some(4));
    let node = s
        .get_entry(&EntryKey::new(Kind::Package, "npm", "@types/node"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(node.popularity.monthly_downloads, Some(100_000_000));
    assert_eq!(node.latest_version.as_deref(), Some("22.0.0"));

    let s2 = store(d, "q2.db");
    let report = run(&s2, &[&jsonl_by_content], ImportOptions::default()).await;
    assert_eq!(report.files[0].format, Format::Jsonl);
    assert_eq!(report.totals.created, 6);
}

#[tokio::test]
async fn unknown_format_fails_before_writing_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "pypi.tsv", PYPI_TSV);
    let bad = write(dir.path(), "notes.txt", "name,version\nx,1\n");
    let s = store(dir.path(), "q.db");
    let err = import(
        &s,
        vec![Source::new(&good), Source::new(&bad)],
        ImportOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("notes.txt"), "{err}");
    assert!(err.message.contains("unrecognized format"), "{err}");
    assert_eq!(s.feed_head().await.unwrap(), 0);

    let missing = dir.path().join("missing.tsv.gz");
    let err = import(
        &s,
        vec![Source::new(&missing)],
        ImportOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(err.message.contains("missing.tsv.gz"), "{err}");

    // A forced format wins over detection: the TSV read as JSONL is all rejections.
    let report = import(
        &s,
        vec![Source::new(&good).with_format(Format::Jsonl)],
        ImportOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(report.totals.rejected, 4);
}

#[derive(Default)]
struct Recorder {
    calls: Mutex<Vec<String>>,
}

impl Progress for Recorder {
    fn begin(&self, total_bytes: u64) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("begin {}", total_bytes > 0));
    }
    fn file(&self, _path: &Path, format: Format) {
        self.calls.lock().unwrap().push(format!("file {format}"));
    }
    fn advance(&self, records: u64, _bytes: u64) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("advance {records}"));
    }
    fn relations(&self, done: u64, total: u64) {
        self.calls
            .lock()
            .unwrap()
            .push(format!("relations {done}/{total}"));
    }
    fn finish(&self) {
        self.calls.lock().unwrap().push("finish".into());
    }
}

#[tokio::test]
async fn batch_boundaries_keep_counts_and_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let line = |name: &str, released: &str, rel: &str| {
        format!(
            r#"{{"kind":"package","namespace":"npm","name":"{name}","versions":[{{"version":"1.0.0","manifest":{{"released":"{released}"}}}}],"relations":[{rel}]}}"#
        )
    };
    let dep = r#"{"kind":"depends_on","to":{"kind":"package","namespace":"npm","name":"a"}}"#;
    let v1 = [
        line("a", "2024-01", ""),
        line("b", "2024-01", dep),
        line("c", "2024-01", ""),
        line("d", "2024-01", ""),
        line("e", "2024-01", dep),
    ]
    .join("\n");
    let path = write(dir.path(), "five.jsonl", &v1);
    let s = store(dir.path(), "q.db");
    let small = ImportOptions {
        batch_size: 2,
        ..Default::default()
    };
    let progress = Recorder::default();
    let report = import(&s, vec![Source::new(&path)], small.clone(), &progress)
        .await
        .unwrap();
    assert_eq!((report.totals.records, report.totals.created), (5, 5));
    assert_eq!(report.totals.relations.created, 2);
    assert_eq!(
        *progress.calls.lock().unwrap(),
        vec![
            "begin true",
            "file jsonl",
            "advance 2",
            "advance 4",
            "advance 5",
            "relations 2/2",
            "finish"
        ]
    );
    assert_eq!(s.stats().await.unwrap().entries, 5);

    // The store rejects line 4 (a published version's manifest changed) in the second
    // batch: the line number survives batching, and line 5 (third batch) still lands.
    let v2 = v1
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            3 => l.replace("2024-01", "2024-02"),
            4 => l.replace(r#""version":"1.0.0""#, r#""version":"1.1.0""#),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path2 = write(dir.path(), "five-v2.jsonl", &v2);
    let report = run(&s, &[&path2], small).await;
    let f = &report.files[0];
    assert_eq!(
        (f.created, f.updated, f.unchanged, f.rejected_count),
        (0, 1, 3, 1),
        "{report}"
    );
    assert_eq!(f.rejected[0].line, Some(4));
    assert_eq!(f.rejected[0].name.as_deref(), Some("npm/d"));
    assert!(f.rejected[0].reason.contains("immutable"));
    let e = s
        .get_entry(&EntryKey::new(Kind::Package, "npm", "e"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.1.0"));
}

/// The fixture and an export, compared as content: parsed into the line type, with the
/// defaults an import applies made explicit.
fn normalized(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| {
            let mut e: JsonlEntry = serde_json::from_str(l).unwrap();
            e.status.get_or_insert(quiver_model::Status::Published);
            e.visibility.get_or_insert(quiver_model::Visibility::Public);
            e.popularity.get_or_insert_with(Default::default);
            serde_json::to_value(e).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn export_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path(), "a.db");
    run(&a, &[Path::new(FIXTURE)], ImportOptions::default()).await;
    let first = export_string(&a).await;

    let exported = write(dir.path(), "export.jsonl", &first);
    let b = store(dir.path(), "b.db");
    let report = run(&b, &[&exported], ImportOptions::default()).await;
    assert_eq!(
        report.totals.rejected + report.totals.relations.rejected,
        0,
        "{report}"
    );
    let second = export_string(&b).await;

    let (l1, l2): (Vec<_>, Vec<_>) = (first.lines().collect(), second.lines().collect());
    assert_eq!(l1.len(), 6);
    assert_eq!(l1, l2, "export -> import -> export is a fixed point");

    let fixture = std::fs::read_to_string(FIXTURE).unwrap();
    let (want, got) = (normalized(&fixture), normalized(&first));
    for (w, g) in want.iter().zip(&got) {
        assert_eq!(w, g);
    }
    assert_eq!(want.len(), got.len());
    // Private entries are exported too, and the pypi name keeps its spelling.
    assert!(first.contains(r#""visibility":"private""#));
    assert!(first.contains("Django_REST.framework"));

    // A filter narrows the export.
    let mut out = Vec::new();
    let n = export(
        &a,
        EntryFilter {
            kinds: vec![Kind::Package],
            ..Default::default()
        },
        &mut out,
    )
    .await
    .unwrap();
    assert_eq!(n.entries, 2);
    assert_eq!(n.documents, 0, "a filtered export has no documents");
    assert_eq!(String::from_utf8(out).unwrap().lines().count(), 2);
}

/// Signals once the import has read `at` records.
struct StopAt {
    at: u64,
    notify: tokio::sync::Notify,
}

impl Progress for StopAt {
    fn advance(&self, records: u64, _bytes: u64) {
        if records >= self.at {
            self.notify.notify_one();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_converges_when_re_run() {
    let dir = tempfile::tempdir().unwrap();
    let text: String = (0..2000)
        .map(|i| {
            format!(
                r#"{{"kind":"package","namespace":"npm","name":"pkg-{i}","versions":[{{"version":"1.0.{i}"}}]}}"#
            ) + "\n"
        })
        .collect();
    let path = write(dir.path(), "many.jsonl", &text);
    let opts = ImportOptions {
        batch_size: 100,
        ..Default::default()
    };

    let s = store(dir.path(), "q.db");
    let stop = StopAt {
        at: 500,
        notify: tokio::sync::Notify::new(),
    };
    tokio::select! {
        r = import(&s, vec![Source::new(&path)], opts.clone(), &stop) => {
            panic!("the import finished before it could be interrupted: {}", r.unwrap())
        }
        _ = stop.notify.notified() => {}
    }
    // The import future is dropped mid-way; whatever it committed is whole batches.
    let partial = s.stats().await.unwrap().entries;
    assert!((500..2000).contains(&partial), "{partial}");
    assert_eq!(partial % 100, 0, "only whole batches are committed");

    let report = run(&s, &[&path], opts.clone()).await;
    let t = report.totals;
    assert_eq!(t.created + t.unchanged, 2000, "{report}");
    assert!(t.unchanged >= partial, "{report}");
    assert_eq!(t.rejected, 0);

    let clean = store(dir.path(), "clean.db");
    run(&clean, &[&path], opts).await;
    assert_eq!(export_string(&s).await, export_string(&clean).await);
}

#[tokio::test]
async fn documents_round_trip_through_jsonl() {
    use quiver_model::NewDocument;
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let a = store(dir.path(), "a.db");
    run(&a, &[Path::new(FIXTURE)], ImportOptions::default()).await;
    a.put_documents(vec![
        NewDocument::new(
            "tsuku.queue",
            "jq",
            json!({"priority": 1, "source": "homebrew:jq"}),
        ),
        NewDocument::new("tsuku.queue", "fd", json!({"priority": 2})),
        NewDocument::new("blocks.philosophy", "tpmjs/0000", json!({"text": "small"})),
    ])
    .await
    .unwrap();
    let first = export_string(&a).await;
    let doc_lines: Vec<&str> = first
        .lines()
        .filter(|l| l.starts_with(r#"{"document""#))
        .collect();
    assert_eq!(doc_lines.len(), 3, "{first}");

    // Into a fresh store, then again: documents created once, then unchanged.
    let exported = write(dir.path(), "export.jsonl", &first);
    let b = store(dir.path(), "b.db");
    let report = run(&b, &[&exported], ImportOptions::default()).await;
    assert_eq!(report.totals.documents.created, 3, "{report}");
    assert!(!report.has_rejections(), "{report}");
    assert_eq!(export_string(&b).await, first, "a fixed point");
    let again = run(&b, &[&exported], ImportOptions::default()).await;
    assert_eq!(again.totals.documents.unchanged, 3, "{again}");

    // A bad document line and a repeated key: rejected with line and reason.
    let bad = write(
        dir.path(),
        "bad.jsonl",
        concat!(
            "{\"document\": {\"collection\": \"Bad Name\", \"key\": \"k\", \"body\": 1}}\n",
            "{\"document\": {\"collection\": \"t.x\", \"key\": \"k\", \"body\": 1}}\n",
            "{\"document\": {\"collection\": \"t.x\", \"key\": \"k\", \"body\": 2}}\n",
            "{\"document\": {\"collection\": \"t.x\", \"key\": \"k2\", \"bodee\": 2}}\n",
        ),
    );
    let report = run(&b, &[&bad], ImportOptions::default()).await;
    let shown: Vec<String> = report.files[0]
        .rejected
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(report.totals.rejected, 3, "{shown:#?}");
    assert!(
        shown[0].starts_with("line 1:") && shown[0].contains("collection"),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|r| r.contains(":3: t.x/k: key:") && r.contains("bad.jsonl:2")),
        "{shown:#?}"
    );
    assert!(
        shown
            .iter()
            .any(|r| r.starts_with("line 4:") && r.contains("bodee")),
        "{shown:#?}"
    );
    let kept = b.get_document("t.x", "k").await.unwrap().unwrap();
    assert_eq!(kept.body, json!(1), "the first occurrence is kept");
}
