//! Search for needs (issue 16): each ranking rule over a small hand-built corpus, with a
//! case that fails without the rule.

mod common;

use common::{entry, fixture_with as fixture, names, package, top};
use quiver_model::{Kind, NewEntry};
use quiver_search::{SearchIndex, SearchQuery};
use serde_json::json;

fn pkg(ns: &str, name: &str, description: &str, pop: f64) -> (NewEntry, Option<serde_json::Value>) {
    (package(ns, name, description, pop), None)
}

fn search(ix: &SearchIndex, q: SearchQuery) -> Vec<String> {
    names(&ix.search(&q).unwrap())
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

#[tokio::test]
async fn generic_words_of_a_sentence_are_scored_not_required() {
    let f = fixture(vec![
        pkg("pypi", "lxml", "Powerful XML processing library", 0.8),
        pkg("pypi", "xml-parse-tiny", "Parse XML", 0.3),
        pkg(
            "pypi",
            "parse",
            "Parse strings using a format specification",
            0.85,
        ),
    ])
    .await;
    // "parse" says what to do, "xml" what with: the popular XML package answers even
    // though it never says "parse", and `parse` (a package of that generic name) does
    // not come first.
    let got = top(&f.index, "parse xml in python");
    assert_eq!(
        got.first().map(String::as_str),
        Some("pypi/lxml"),
        "{got:?}"
    );
    assert!(!got.contains(&"pypi/parse".to_string()), "{got:?}");
    // Typed as keywords, every word is still required.
    assert_eq!(top(&f.index, "parse xml"), ["pypi/xml-parse-tiny"]);
}

#[tokio::test]
async fn lexicon_words_meet_their_other_forms_through_the_stem() {
    let f = fixture(vec![pkg(
        "pypi",
        "matplotlib",
        "Python plotting package",
        0.7,
    )])
    .await;
    // The lexicon says `chart = plot`; `charts` is that word in another form.
    assert_eq!(top(&f.index, "charts"), ["pypi/matplotlib"]);
}

#[tokio::test]
async fn a_word_said_twice_counts_once() {
    let f = fixture(vec![
        pkg("npm", "cypress", "Front end testing tool", 0.75),
        pkg(
            "npm",
            "end-of-stream",
            "Call a callback when a stream has ended",
            0.9,
        ),
    ])
    .await;
    // Counted twice, `end` alone would make up two of the three words a sentence of
    // four must hold.
    let got = top(&f.index, "end to end browser testing");
    assert_eq!(got, ["npm/cypress"], "{got:?}");
}

#[tokio::test]
async fn a_sentence_may_miss_any_one_word() {
    let f = fixture(vec![
        pkg("npm", "pino", "Super fast, all natural json logger", 0.8),
        pkg("npm", "structured-log", "Structured logs", 0.2),
        pkg("npm", "json-structure", "Structured JSON values", 0.2),
        pkg("npm", "json-a", "JSON utilities", 0.1),
        pkg("npm", "json-b", "Small JSON helpers", 0.1),
        pkg("npm", "log-a", "Logging", 0.1),
        pkg("npm", "log-b", "A logger", 0.1),
    ])
    .await;
    // The rarest word ("structured") is the one the popular answer lacks.
    let got = top(&f.index, "structured json logging for node");
    assert_eq!(got.first().map(String::as_str), Some("npm/pino"), "{got:?}");
}

#[tokio::test]
async fn a_two_word_sentence_needs_its_rarer_word_and_a_full_match_leads() {
    let f = fixture(vec![
        pkg(
            "npm",
            "chokidar",
            "Cross-platform file watching library",
            0.8,
        ),
        pkg("npm", "watch-changes", "Watch for changes", 0.8),
        pkg("npm", "on-change", "Observe changes of an object", 0.85),
        pkg("npm", "diff", "Show the changes between two texts", 0.9),
        pkg("npm", "deep-diff", "Changes of objects", 0.3),
        pkg("npm", "jsdiff", "Text changes", 0.3),
    ])
    .await;
    // `watch` is rarer than `changes`: it is required, `changes` adds to the score.
    let got = top(&f.index, "watch files for changes");
    assert!(got.contains(&"npm/chokidar".to_string()), "{got:?}");
    assert!(!got.contains(&"npm/on-change".to_string()), "{got:?}");
    // Of like popularity, the entry holding both words leads.
    assert_eq!(
        got.first().map(String::as_str),
        Some("npm/watch-changes"),
        "{got:?}"
    );
}

#[tokio::test]
async fn a_synonym_of_an_earlier_word_counts_once() {
    let f = fixture(vec![
        pkg(
            "npm",
            "archiver",
            "A streaming interface for archive generation",
            0.8,
        ),
        pkg("npm", "compression", "Compression middleware", 0.9),
    ])
    .await;
    // `zip = compress = archive` in the lexicon: "zip archives" is one need said
    // twice, scored as once (counted twice, every entry of the group would score
    // double and earn the bonus for holding every word).
    let scores = |q: &str| -> Vec<(String, f32)> {
        f.index
            .search(&SearchQuery::text(q))
            .unwrap()
            .hits
            .into_iter()
            .map(|h| (h.name, h.score))
            .collect()
    };
    let once = scores("make zip in node");
    assert_eq!(once.len(), 2, "{once:?}");
    assert_eq!(scores("make zip archives in node"), once);
}
