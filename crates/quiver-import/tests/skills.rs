//! The skills format (upskill/ace): reading, rejections, re-import, dry run, export and
//! the round trip, over the small files in `tests/data/skills/` and, when present, the
//! real files in the shared fixtures folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quiver_import::formats::{self, ExportFilter};
use quiver_import::{Format, ImportReport};
use quiver_model::{EntryKey, Kind, NewEntry};
use quiver_sqlite::SqliteStore;
use quiver_store::Store;
use serde_json::{json, Value};

mod common;

use common::{
    assert_empty, data, json_file, real, reasons, record_names, run_keeping_rejections as run,
    snapshot, store, Sum,
};

fn sum(report: &ImportReport) -> Sum {
    common::sum(report, Format::Skills)
}

async fn package(store: &SqliteStore, name: &str) {
    store
        .create_entry(NewEntry {
            kind: Kind::Package,
            namespace: "npm".into(),
            name: name.into(),
            display_name: None,
            description: String::new(),
            category: None,
            tags: Vec::new(),
            keywords: Vec::new(),
            status: None,
            visibility: None,
            popularity: None,
        })
        .await
        .unwrap();
}

#[test]
fn reader_reads_the_small_files() {
    let root = data("skills");
    let files: Vec<PathBuf> = [
        ".upskill/skills-registry.json",
        ".upskill/package-mappings.json",
        "scraped.json",
        "apps/api/agents.json",
        "apps/cli/src/ace.config.json",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    let reader = formats::reader(Format::Skills).unwrap();
    for f in &files {
        let head = std::fs::read(root.join(f)).unwrap();
        assert!(reader.claims(f, &head), "{} not claimed", f.display());
    }
    assert!(!reader.claims(Path::new("modules.json"), b"{\"version\": \"2.0\"}"));

    let b = reader.read(&root, &files);
    let names = record_names(&b);
    assert_eq!(
        names,
        [
            "acme/alpha-skill",
            "acme/beta",
            "other-org/gamma",
            "solo-dev/solo-one",
            "solo-dev/no-count"
        ]
    );
    assert_eq!(b.counts["skills"], 5);
    assert_eq!(b.counts["leaderboard rows"], 7);
    assert_eq!(b.counts["mappings"], 3);

    // The registry skill and its leaderboard row are one record.
    let alpha = &b.records[0];
    assert_eq!(alpha.entry.display_name.as_deref(), Some("Alpha Skill"));
    assert_eq!(alpha.entry.tags, ["react", "best-practices"]);
    assert_eq!(
        alpha.origin.file,
        Path::new(".upskill/skills-registry.json")
    );
    assert_eq!(alpha.origin.line, Some(4));
    let m = alpha.revision.as_ref().unwrap();
    assert_eq!(m["repo"], "acme/skills");
    assert_eq!(m["installs"], 1500);
    assert_eq!(m["sources"], json!(["registry", "leaderboard"]));
    assert_eq!(m["leaderboard"]["installs"], "1.5K");
    let pop = alpha.entry.popularity.as_ref().unwrap();
    assert_eq!(pop.rank, Some(1));
    assert!(pop.score > 0.0 && pop.monthly_downloads.is_none());
    // The mapping overrides the registry's packages.
    let to: Vec<_> = alpha.relations.iter().map(|r| r.to.name.as_str()).collect();
    assert_eq!(to, ["react"]);
    assert_eq!(
        alpha.relations[0].source.as_deref(),
        Some("package-mappings")
    );
    let gamma = &b.records[2];
    assert_eq!(
        gamma.relations[0].to,
        EntryKey::new(Kind::Package, "npm", "next")
    );
    assert_eq!(gamma.relations[0].source.as_deref(), Some("registry"));

    // A leaderboard-only skill: named from href, owner lowercased.
    let solo = &b.records[3];
    assert_eq!(solo.origin.file, Path::new("scraped.json"));
    assert_eq!(solo.origin.line, Some(11));
    assert_eq!(solo.revision.as_ref().unwrap()["repo"], "Solo-Dev/repo");
    assert_eq!(solo.entry.popularity.as_ref().unwrap().rank, Some(2));
    // A count that cannot be read: taken without popularity, with a warning.
    assert!(b.records[4].entry.popularity.is_none());
    assert_eq!(b.warnings.len(), 1);
    assert_eq!(b.warnings[0].field.as_deref(), Some("installs"));

    let rejected = common::rejections(&b);
    assert_eq!(rejected.len(), 7, "{rejected:#?}");
    let has = |file: &str, line: u64, text: &str| {
        assert!(
            rejected
                .iter()
                .any(|(f, l, r)| f == file && *l == Some(line) && r.contains(text)),
            "no rejection {file}:{line} containing {text:?} in {rejected:#?}"
        )
    };
    has(
        ".upskill/skills-registry.json",
        31,
        "duplicate: skill acme/alpha-skill",
    );
    has(
        ".upskill/skills-registry.json",
        40,
        "id \"Bad Skill\": must not contain white space",
    );
    has(
        "scraped.json",
        19,
        "name \"debug:react\": skill names are lowercase",
    );
    has("scraped.json", 27, "skill names cannot contain '/'");
    has("scraped.json", 35, "duplicate: /Solo-Dev/repo/solo-one");
    has("scraped.json", 43, "acme already has a skill named beta");
    has(
        ".upskill/package-mappings.json",
        4,
        "no skill with id unknown-skill",
    );

    assert_eq!(b.documents.len(), 5);
    let collections: Vec<_> = b
        .documents
        .iter()
        .map(|d| (d.document.collection.as_str(), d.document.key.as_str()))
        .collect();
    assert!(collections.contains(&("skills.agents", "apps/api/agents.json")));
    assert!(collections.contains(&("skills.config", "apps/cli/src/ace.config.json")));
    assert!(collections.contains(&("skills.package_mappings", "unknown-skill")));
}

#[test]
fn a_broken_file_is_one_rejection_with_its_line() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/skills-broken");
    let reader = formats::reader(Format::Skills).unwrap();
    let b = reader.read(&root, &[PathBuf::from("scraped.json")]);
    assert!(b.records.is_empty());
    assert_eq!(b.rejected.len(), 1);
    let r = &b.rejected[0];
    assert_eq!(r.file.as_deref(), Some(Path::new("scraped.json")));
    assert_eq!(r.line, Some(5));
    assert!(r.reason.contains("not valid JSON (line 5"), "{}", r.reason);
}

#[tokio::test]
async fn import_twice_dry_run_export_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();

    // A dry run writes nothing but says what would happen.
    let s0 = store(dir.path(), "dry.db");
    let dry = sum(&run(&s0, &data("skills"), true).await);
    assert_eq!(dry.created, 5);
    assert_empty(&s0, &[Kind::Skill]).await;

    let a = store(dir.path(), "a.db");
    for p in ["react", "react-dom", "lodash"] {
        package(&a, p).await;
    }
    let first = sum(&run(&a, &data("skills"), false).await);
    assert_eq!(first.created, 5, "{:#?}", reasons(&first));
    assert_eq!(first.rejected_count, 7, "{:#?}", reasons(&first));
    assert_eq!(first.documents.created, 5);
    assert_eq!(first.warning_count, 1);
    // alpha → react, beta → lodash; gamma → next is not in the store.
    assert_eq!(first.relations.created, 2);
    assert_eq!(first.relations.rejected, 1);
    assert!(
        reasons(&first)
            .iter()
            .any(|r| r.contains("next") && r.contains("does not exist")),
        "{:#?}",
        reasons(&first)
    );
    let e = a
        .get_entry(&EntryKey::new(Kind::Skill, "acme", "alpha-skill"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.0.0"));
    assert_eq!(
        e.description,
        "Alpha Skill skill for react, react-dom from acme/skills"
    );

    // The second run changes nothing.
    let second = sum(&run(&a, &data("skills"), false).await);
    assert_eq!(second.created, 0);
    assert_eq!(second.updated, 0);
    assert_eq!(second.unchanged, 5);
    assert_eq!(second.documents.created + second.documents.updated, 0);
    assert_eq!(second.relations.created, 0);

    // Export, and compare with the originals.
    let out = dir.path().join("out");
    let summary = formats::export_format(&a, Format::Skills, &ExportFilter::default(), &out)
        .await
        .unwrap();
    assert_eq!(summary.entries, 5);
    assert_eq!(summary.files, 5);
    let original = json_file(&data("skills").join(".upskill/skills-registry.json"));
    let exported = json_file(&out.join(".upskill/skills-registry.json"));
    // The same registry, less the two rejected listings (the 4th and 5th).
    let kept: Vec<Value> = original["skills"].as_array().unwrap()[..3].to_vec();
    assert_eq!(exported, json!({ "skills": kept }));
    assert_eq!(
        json_file(&out.join(".upskill/package-mappings.json")),
        json_file(&data("skills").join(".upskill/package-mappings.json"))
    );
    for f in ["apps/api/agents.json", "apps/cli/src/ace.config.json"] {
        assert_eq!(
            json_file(&out.join(f)),
            json_file(&data("skills").join(f)),
            "{f}"
        );
    }
    // The leaderboard, less its four rejected rows (ranks 3 to 6).
    let rows: Vec<Value> = json_file(&data("skills").join("scraped.json"))
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| !(3..=6).contains(&r["rank"].as_u64().unwrap()))
        .cloned()
        .collect();
    assert_eq!(json_file(&out.join("scraped.json")), Value::Array(rows));

    // Round trip: the export imported into a fresh store gives the same store.
    let b = store(dir.path(), "b.db");
    for p in ["react", "react-dom", "lodash"] {
        package(&b, p).await;
    }
    let again = sum(&run(&b, &out, false).await);
    assert_eq!(again.created, 5, "{:#?}", reasons(&again));
    assert_eq!(again.rejected_count, 1, "{:#?}", reasons(&again));
    assert_eq!(
        snapshot(&a, &[Kind::Skill]).await,
        snapshot(&b, &[Kind::Skill]).await
    );
}

#[tokio::test]
async fn real_files_import_and_round_trip() {
    let Some(root) = real("upskill") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The npm packages the skills name, so that their relations can be made.
    let registry = json_file(&root.join(".upskill/skills-registry.json"));
    let mut packages: Vec<String> = registry["skills"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["targetPackages"].as_array().unwrap().clone())
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    packages.sort();
    packages.dedup();

    let a = store(dir.path(), "a.db");
    for p in &packages {
        package(&a, p).await;
    }
    let r = sum(&run(&a, &root, false).await);
    // MANIFEST.md: 115 registry skills, 20 mappings, 4,389 leaderboard rows.
    assert_eq!(r.counts["skills"], 115);
    assert_eq!(r.counts["mappings"], 20);
    assert_eq!(r.counts["leaderboard rows"], 4389);
    let reasons = reasons(&r);
    let count = |text: &str| reasons.iter().filter(|x| x.contains(text)).count();
    // 121 names outside the skill name rule (`debug:react`, other scripts), 3 hrefs whose
    // skill holds a '/', 2 registry skills and 13 rows listed twice, and one owner with
    // two skills of the same name in two repositories.
    assert_eq!(count("skill names are lowercase"), 121, "{reasons:#?}");
    assert_eq!(count("skill names cannot contain '/'"), 3);
    assert_eq!(count("duplicate: skill "), 2);
    assert_eq!(count("duplicate: /"), 13);
    assert_eq!(count("petekp already has a skill named tuning-panel"), 1);
    assert_eq!(r.rejected_count, 140);
    // Five counts glued to the digits ending their repository's name (hal-9000,
    // context7, example-skill2, mega-agent-v2): flagged, and ranked by the real count.
    let misscrapes: Vec<String> = r
        .warnings
        .iter()
        .map(|w| w.to_string())
        .filter(|w| w.contains("a mis-scrape of"))
        .collect();
    assert_eq!(misscrapes.len(), 5, "{misscrapes:#?}");
    assert!(
        misscrapes.iter().any(|w| w.contains("\"900014\"")
            && w.contains("\"hal-9000\"")
            && w.contains("a mis-scrape of 14")),
        "{misscrapes:#?}"
    );
    // 113 registry skills (each merged with its row) and 4,138 leaderboard-only skills.
    assert_eq!(r.created, 113 + 4138);
    assert_eq!(r.relations.created, 49);
    assert_eq!(r.relations.rejected, 0);
    assert_eq!(r.documents.created, 22);

    let commit = a
        .get_entry(&quiver_model::EntryKey::new(
            quiver_model::Kind::Skill,
            "vinta",
            "commit",
        ))
        .await
        .unwrap()
        .unwrap();
    let fourteen = quiver_import::dataset::popularity_score(14.0);
    assert!(
        (commit.popularity.score - fourteen).abs() < 1e-9,
        "ranked by 14, not 900,014: {:?} {:?}",
        commit.popularity,
        a.get_version(&commit.key(), "1.0.0")
            .await
            .unwrap()
            .map(|v| v.manifest)
    );
    let v = a
        .get_version(&commit.key(), "1.0.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        v.manifest["installs_misscrape"],
        serde_json::json!({"scraped": "900014", "corrected": 14})
    );
    assert_eq!(
        v.manifest["leaderboard"]["installs"], "900014",
        "the row as scraped"
    );

    // A second import of the same files changes nothing.
    let second = sum(&run(&a, &root, false).await);
    assert_eq!(
        (second.created, second.updated, second.unchanged),
        (0, 0, 113 + 4138)
    );
    assert_eq!(second.documents.created + second.documents.updated, 0);

    let out = dir.path().join("out");
    formats::export_format(&a, Format::Skills, &ExportFilter::default(), &out)
        .await
        .unwrap();
    // Every exported registry skill and leaderboard row is the original's (the first
    // listing, for those listed twice).
    let original: BTreeMap<(String, String), Value> = registry["skills"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|s| {
            (
                (
                    s["repo"].as_str().unwrap().to_string(),
                    s["id"].as_str().unwrap().to_string(),
                ),
                s.clone(),
            )
        })
        .collect();
    let exported = json_file(&out.join(".upskill/skills-registry.json"));
    let exported = exported["skills"].as_array().unwrap();
    assert_eq!(exported.len(), 113);
    for s in exported {
        let k = (
            s["repo"].as_str().unwrap().to_string(),
            s["id"].as_str().unwrap().to_string(),
        );
        assert_eq!(&original[&k], s);
    }
    let rows: BTreeMap<String, Value> = json_file(&root.join("scraped.json"))
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|r| (r["href"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    let exported = json_file(&out.join("scraped.json"));
    let exported = exported.as_array().unwrap();
    assert_eq!(exported.len(), 4389 - 138);
    for row in exported {
        assert_eq!(&rows[row["href"].as_str().unwrap()], row);
    }
    assert_eq!(
        json_file(&out.join(".upskill/package-mappings.json")),
        json_file(&root.join(".upskill/package-mappings.json"))
    );

    let b = store(dir.path(), "b.db");
    for p in &packages {
        package(&b, p).await;
    }
    let again = sum(&run(&b, &out, false).await);
    assert_eq!(again.created, 4251);
    assert_eq!(again.rejected_count, 0, "{:#?}", again.rejected);
    assert_eq!(
        snapshot(&a, &[Kind::Skill]).await,
        snapshot(&b, &[Kind::Skill]).await
    );
}
