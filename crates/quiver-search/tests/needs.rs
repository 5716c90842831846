//! Search for needs (issue 16): each ranking rule over a small hand-built corpus, with a
//! case that fails without the rule.

use quiver_model::{EntryKey, Kind, NewEntry, NewVersion, Popularity, Status, Visibility};
use quiver_search::{SearchIndex, SearchQuery};
use quiver_sqlite::SqliteStore;
use quiver_store::Store;
use serde_json::json;

struct Fixture {
    _dir: tempfile::TempDir,
    index: SearchIndex,
}

fn entry(kind: Kind, ns: &str, name: &str, description: &str, pop: f64) -> NewEntry {
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

fn pkg(ns: &str, name: &str, description: &str, pop: f64) -> (NewEntry, Option<serde_json::Value>) {
    (entry(Kind::Package, ns, name, description, pop), None)
}

async fn fixture(entries: Vec<(NewEntry, Option<serde_json::Value>)>) -> Fixture {
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
    let index = SearchIndex::open(&dir.path().join("index")).unwrap();
    index.catch_up(&store).await.unwrap();
    Fixture { _dir: dir, index }
}

fn search(ix: &SearchIndex, q: SearchQuery) -> Vec<String> {
    ix.search(&q)
        .unwrap()
        .hits
        .iter()
        .map(|h| format!("{}/{}", h.namespace, h.name))
        .collect()
}

fn top(ix: &SearchIndex, q: &str) -> Vec<String> {
    search(ix, SearchQuery::text(q))
}

#[tokio::test]
async fn an_ecosystem_word_is_a_preference_not_a_required_word() {
    let f = fixture(vec![
        pkg("pypi", "lxml", "Powerful XML processing library", 0.8),
        pkg(
            "npm",
            "xml2js",
            "Simple XML processing to JavaScript objects",
            0.9,
        ),
        pkg("pypi", "xml-tiny", "Tiny XML processing", 0.2),
    ])
    .await;
    // `python` is in no description: as a required word it would find nothing.
    let got = top(&f.index, "xml processing in python");
    assert_eq!(
        got.first().map(String::as_str),
        Some("pypi/lxml"),
        "{got:?}"
    );
    // npm is preferred the same way, and the other ecosystem still answers below.
    let got = top(&f.index, "xml processing for node");
    assert_eq!(
        got.first().map(String::as_str),
        Some("npm/xml2js"),
        "{got:?}"
    );
    assert!(got.contains(&"pypi/lxml".to_string()), "{got:?}");
    // Alone, the word is a name like any other.
    assert!(top(&f.index, "python").is_empty());
}

#[tokio::test]
async fn question_fillers_are_not_required() {
    let f = fixture(vec![
        pkg("pypi", "PyYAML", "YAML parser and emitter for Python", 0.85),
        pkg(
            "npm",
            "yaml-howto",
            "How to use YAML files: a tutorial",
            0.3,
        ),
    ])
    .await;
    let got = top(&f.index, "how do i use a yaml emitter");
    assert_eq!(
        got.first().map(String::as_str),
        Some("pypi/PyYAML"),
        "{got:?}"
    );
}

#[tokio::test]
async fn abbreviations_and_synonyms_come_from_the_lexicon() {
    let f = fixture(vec![
        (
            entry(
                Kind::Tool,
                "ops",
                "podlist",
                "List Kubernetes pods in a namespace",
                0.0,
            ),
            None,
        ),
        pkg(
            "npm",
            "prism-lite",
            "Syntax highlighting for code blocks",
            0.6,
        ),
    ])
    .await;
    let tools = |q: &str| {
        search(
            &f.index,
            SearchQuery {
                kinds: vec![Kind::Tool],
                ..SearchQuery::text(q)
            },
        )
    };
    assert_eq!(tools("k8s"), ["ops/podlist"]);
    assert_eq!(tools("k8s pods"), ["ops/podlist"]);
    // highlighter / highlighting meet through the stemmer and the lexicon.
    assert_eq!(top(&f.index, "syntax highlighter"), ["npm/prism-lite"]);
}

#[tokio::test]
async fn a_long_query_may_miss_one_word_but_not_its_rarest() {
    let f = fixture(vec![
        pkg("npm", "fast-csv", "Fast CSV parser", 0.7),
        pkg("npm", "read-pkg", "Read a package.json file", 0.9),
        pkg("npm", "read-file", "Read a file", 0.2),
        pkg("npm", "fs-read", "Read file contents", 0.2),
        pkg("npm", "file-reader", "Reads files line by line", 0.2),
        pkg(
            "npm",
            "csv",
            "CSV generation, parsing and transformation",
            0.75,
        ),
    ])
    .await;
    // Four words, one missing: found (a strict AND finds nothing, and the OR fallback
    // would let anything matching one word in).
    let got = top(&f.index, "fast csv parser streaming");
    assert!(got.contains(&"npm/fast-csv".to_string()), "{got:?}");
    // `read` and `file` (common words) without `csv` (the rarest) is not an answer.
    let got = top(&f.index, "read csv files");
    assert!(!got.contains(&"npm/read-pkg".to_string()), "{got:?}");
    assert!(got.contains(&"npm/csv".to_string()), "{got:?}");
}

#[tokio::test]
async fn a_name_inside_a_longer_query_brings_that_entry() {
    let f = fixture(vec![
        pkg(
            "pypi",
            "pandas",
            "Powerful data structures for data analysis",
            0.9,
        ),
        pkg("pypi", "groupby-helpers", "groupby helpers", 0.2),
    ])
    .await;
    let r = f
        .index
        .search(&SearchQuery::text("how to use pandas groupby"))
        .unwrap();
    assert_eq!(r.hits[0].name, "pandas", "{:?}", r.hits);
    assert_eq!(r.hits[0].reason.as_deref(), Some("name matches \"pandas\""));
}

#[tokio::test]
async fn curated_entries_of_the_exact_name_are_not_drowned_by_look_alikes() {
    let f = fixture(vec![
        (
            entry(
                Kind::Recipe,
                "tsuku",
                "terraform",
                "Infrastructure as Code tool",
                0.0,
            ),
            None,
        ),
        pkg(
            "npm",
            "@cspell/dict-terraform",
            "Terraform dictionary for cspell",
            0.9,
        ),
        pkg(
            "pypi",
            "flask",
            "A simple framework for building web apps",
            0.85,
        ),
        (
            entry(Kind::Skill, "someone", "flask", "Flask skill", 0.1),
            None,
        ),
    ])
    .await;
    let r = f.index.search(&SearchQuery::text("terraform")).unwrap();
    assert_eq!(r.hits[0].name, "terraform", "{:?}", r.hits);
    assert_eq!(r.hits[0].kind, Kind::Recipe);
    assert_eq!(r.hits[0].reason.as_deref(), Some("exact name"));
    // A popular package of that very name keeps the lead.
    let got = top(&f.index, "flask");
    assert_eq!(got, ["pypi/flask", "someone/flask"]);
}

#[tokio::test]
async fn manifest_content_is_searched_below_the_description_and_says_which_field() {
    let ops = json!({
        "capabilities": {
            "packet_capture": {
                "description": "Record traffic",
                "patterns": {"capture_packets": {"description": "Capture packets",
                    "typical_use_cases": ["debug a flaky connection"],
                    "required_inputs": [{"name": "interface"}]}}
            }
        }
    });
    let f = fixture(vec![
        (
            entry(Kind::Tool, "ops", "sniffer", "Network traffic tool", 0.0),
            Some(ops),
        ),
        (
            entry(Kind::Tool, "ops", "pcap", "Packet capture to files", 0.0),
            None,
        ),
        (
            entry(Kind::Recipe, "tsuku", "ripgrep", "Search directories for a regex", 0.0),
            Some(json!({"metadata": {"name": "ripgrep", "homepage": "https://github.com/BurntSushi/ripgrep"},
                        "steps": [{"action": "github_archive", "binaries": ["rg"]}]})),
        ),
    ])
    .await;
    let tools = |q: &str| {
        f.index
            .search(&SearchQuery {
                kinds: vec![Kind::Tool],
                ..SearchQuery::text(q)
            })
            .unwrap()
            .hits
    };
    let hits = tools("packet capture");
    let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    // Both match; the description outweighs the manifest.
    assert_eq!(names, ["pcap", "sniffer"]);
    assert_eq!(
        hits[1].reason.as_deref(),
        Some("matches capability packet_capture")
    );
    let hits = tools("flaky connection");
    assert_eq!(hits[0].name, "sniffer");
    assert_eq!(
        hits[0].reason.as_deref(),
        Some("matches use case debug a flaky connection")
    );
    let hits = tools("interface");
    assert_eq!(hits[0].reason.as_deref(), Some("matches input interface"));
    // A recipe's binary.
    let r = f.index.search(&SearchQuery::text("rg")).unwrap();
    assert_eq!(r.hits[0].name, "ripgrep");
    assert_eq!(r.hits[0].reason.as_deref(), Some("matches binary rg"));
}
