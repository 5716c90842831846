//! The `ops-tools` format (opsconductor): tool profiles in their canonical and legacy
//! layouts, the optimization profiles and the shared JSON Schemas, read, imported,
//! exported and imported again. Small invented files live in `tests/data/ops/`; the real
//! files, when present, in the shared fixtures folder.

use std::path::Path;

use quiver_import::formats::{self, ExportFilter};
use quiver_import::{FileReport, Format, ImportReport};
use quiver_model::{EntryKey, Kind};
use quiver_store::Store;
use serde_json::{json, Value};

mod common;

use common::{data, line_containing, real, run, snapshot, store, yaml_file};

/// The report of the ops-tools files of an import.
fn ops(report: &ImportReport) -> &FileReport {
    let mut it = report.files.iter().filter(|f| f.format == Format::OpsTools);
    let f = it.next().expect("no ops-tools files in the report");
    assert!(it.next().is_none(), "more than one ops-tools report");
    f
}

fn rejection<'a>(f: &'a FileReport, file: &str) -> &'a quiver_import::Rejected {
    f.rejected
        .iter()
        .find(|r| r.file.as_deref() == Some(Path::new(file)))
        .unwrap_or_else(|| panic!("no rejection for {file}: {:#?}", f.rejected))
}

#[test]
fn reads_the_small_catalog() {
    let root = data("ops");
    let b = common::read_dir(Format::OpsTools, &root);
    let names: Vec<&str> = b.records.iter().map(|r| r.entry.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["Copy-Thing", "Get-Thing", "listy", "probe"]);

    let probe = b.records.iter().find(|r| r.entry.name == "probe").unwrap();
    assert_eq!(probe.origin.file, Path::new("tools/linux/probe.yaml"));
    assert_eq!(
        probe.origin.line,
        Some(line_containing(
            &root.join("tools/linux/probe.yaml"),
            "tool_name:"
        ))
    );
    assert_eq!(probe.entry.namespace, "opsconductor");
    assert_eq!(probe.entry.kind, Kind::Tool);
    assert_eq!(probe.entry.description, "Probe hosts and ports");
    assert_eq!(probe.entry.category.as_deref(), Some("network"));
    assert_eq!(probe.entry.display_name.as_deref(), Some("Host Probe"));
    assert_eq!(probe.entry.tags, ["Network", "probe"]);
    assert_eq!(probe.entry.keywords, ["reachability", "sweep"]);
    assert_eq!(probe.versions.len(), 1);
    assert_eq!(probe.versions[0].version, "1.2.0");
    let m = &probe.versions[0].manifest;
    assert_eq!(m["quiver_source_path"], "linux/probe.yaml");
    assert_eq!(
        m["capabilities"]["sweep"]["patterns"]["batch_sweep"]["cost_estimate"],
        "ceil(N / 100)"
    );
    // The manifest is the whole file, plus the source path.
    let mut original = yaml_file(&root.join("tools/linux/probe.yaml"));
    original["quiver_source_path"] = json!("linux/probe.yaml");
    assert_eq!(*m, original);

    // The legacy layouts, mapped.
    let get = b
        .records
        .iter()
        .find(|r| r.entry.name == "Get-Thing")
        .unwrap();
    let m = &get.versions[0].manifest;
    assert_eq!(m["tool_name"], "Get-Thing");
    assert_eq!(m["metadata"]["tags"], json!(["thing", "read"]));
    assert_eq!(m["metadata"]["execution_method"], "powershell");
    assert_eq!(m["capabilities"], json!({}));
    assert!(m.get("name").is_none() && m.get("tags").is_none());
    assert_eq!(get.entry.tags, ["thing", "read"]);
    let copy = b
        .records
        .iter()
        .find(|r| r.entry.name == "Copy-Thing")
        .unwrap();
    let m = &copy.versions[0].manifest;
    let pattern = &m["capabilities"]["thing_copy"]["patterns"]["copy_one"];
    assert_eq!(
        m["capabilities"]["thing_copy"]["description"],
        "Copy things"
    );
    assert_eq!(pattern["description"], "Copy one thing");
    assert_eq!(pattern["required_inputs"][0]["name"], "source");
    assert_eq!(pattern["optional_inputs"][0]["name"], "force");
    assert_eq!(
        pattern["policy"],
        json!({"requires_approval": true, "production_safe": false, "max_execution_time": 120})
    );
    assert_eq!(copy.entry.keywords, ["thing_copy"]);
    // Capabilities as a list (one real file has them so).
    let listy = b.records.iter().find(|r| r.entry.name == "listy").unwrap();
    assert_eq!(listy.entry.keywords, ["metrics"]);

    // Rejections: file, line and a reason a person can act on.
    let find = |file: &str| {
        b.rejected
            .iter()
            .find(|r| r.file.as_deref() == Some(Path::new(file)))
            .unwrap_or_else(|| panic!("no rejection for {file}: {:#?}", b.rejected))
    };
    let r = find("tools/network/broken_expr.yaml");
    assert_eq!(
        r.line,
        Some(line_containing(
            &root.join("tools/network/broken_expr.yaml"),
            "time_estimate_ms"
        ))
    );
    assert_eq!(
        r.field.as_deref(),
        Some("capabilities.capture.patterns.live.time_estimate_ms")
    );
    assert!(r.reason.contains("`800 + * packet_count`"), "{}", r.reason);
    assert!(r.reason.contains("at character 7"), "{}", r.reason);
    let r = find("tools/network/bad_yaml.yaml");
    assert!(
        r.reason.starts_with("not valid YAML at line"),
        "{}",
        r.reason
    );
    assert!(r.line.is_some_and(|l| l >= 4), "{r:?}");
    let r = find("tools/templates/tool_template.yaml");
    assert!(r.reason.contains("template, not a tool"), "{}", r.reason);
    let r = find("tools/network/no_name.yaml");
    assert_eq!(r.field.as_deref(), Some("tool_name"));
    assert!(
        r.reason.contains("metadata.name is `axis_thing`"),
        "{}",
        r.reason
    );
    let r = find("tools/cloud/bad_name.yaml");
    assert!(
        r.reason.contains("dot-separated identifiers"),
        "{}",
        r.reason
    );
    let r = find("tools/windows/probe.yaml");
    assert!(
        r.reason
            .contains("canonical profile tools/linux/probe.yaml"),
        "{}",
        r.reason
    );
    assert_eq!(r.line, Some(1));
    let r = find("shared/schemas/Broken.json");
    assert!(
        r.reason.contains("not valid JSON at line 4"),
        "{}",
        r.reason
    );
    assert_eq!(b.rejected.len(), 7, "{:#?}", b.rejected);

    // Warnings: the mapped layouts, and the unknown variables.
    let w: Vec<String> = b.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 4, "{w:#?}");
    assert!(w
        .iter()
        .any(|w| w.contains("get_thing.yaml:1: Get-Thing: legacy `name/version`")));
    assert!(w
        .iter()
        .any(|w| w.contains("copy_thing.yaml:1: Copy-Thing: legacy `tool:` wrapper")));
    let probe_line = line_containing(&root.join("tools/linux/probe.yaml"), "hop_penalty");
    assert!(
        w.iter()
            .any(|w| w.contains(&format!("probe.yaml:{probe_line}: probe:"))
                && w.contains("uses `hop_penalty`")),
        "{w:#?}"
    );
    assert!(w
        .iter()
        .any(|w| w.contains("tools.ps.capabilities") && w.contains("`jitter`")));

    // Documents: the profiles (one per tool, plus the file's own fields) and a schema.
    let docs: Vec<(&str, &str)> = b
        .documents
        .iter()
        .map(|d| (d.document.collection.as_str(), d.document.key.as_str()))
        .collect();
    assert_eq!(
        docs,
        [
            ("ops.schemas", "Step"),
            ("ops.optimization_profiles", "_file"),
            ("ops.optimization_profiles", "asset-query"),
            ("ops.optimization_profiles", "ps"),
        ]
    );
    let c = |k: &str| b.counts.get(k).copied().unwrap_or(0);
    assert_eq!(c("tool files"), 10);
    // probe, listy, the template, broken_expr, bad_name (bad_yaml is not read as one).
    assert_eq!(c("canonical profiles"), 5);
    assert_eq!(c("legacy name/version files"), 2);
    assert_eq!(c("tool: wrapper files"), 1);
    // probe 2, listy 1, template 1, broken_expr 1, bad_name 0, wrapper 1, legacy 0+0.
    assert_eq!(c("capabilities"), 6);
    assert_eq!(c("patterns"), 6);
    // probe 5 (2 + 2 + a condition), listy 2, broken_expr 2, profiles 4.
    assert_eq!(c("expressions"), 13);
    assert_eq!(c("expression errors"), 1);
    assert_eq!(c("unknown variables"), 2);
    assert_eq!(c("optimization profiles"), 2);
    assert_eq!(c("schemas"), 2);
}

#[tokio::test]
async fn imports_twice_dry_runs_and_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let root = data("ops");

    // A dry run writes nothing.
    let a = store(tmp.path(), "a.db");
    let dry = run(&a, &root, true).await;
    assert_eq!(ops(&dry).created, 4);
    assert_eq!(
        snapshot(&a, &[]).await,
        json!({"entries": {}, "documents": {}})
    );

    let first = run(&a, &root, false).await;
    let f = ops(&first);
    assert_eq!((f.created, f.updated, f.unchanged), (4, 0, 0));
    assert_eq!(f.rejected_count, 7, "{:#?}", f.rejected);
    assert_eq!(f.documents.created, 4);
    assert_eq!(f.warning_count, 4);
    let r = rejection(f, "tools/network/broken_expr.yaml");
    assert_eq!(r.name.as_deref(), Some("broken_expr"));
    let probe = a
        .get_entry(&EntryKey::new(Kind::Tool, "opsconductor", "probe"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(probe.latest_version.as_deref(), Some("1.2.0"));
    assert_eq!(probe.tags, ["network", "probe"]);

    // The second run changes nothing.
    let second = run(&a, &root, false).await;
    let s = ops(&second);
    assert_eq!((s.created, s.updated, s.unchanged), (0, 0, 4));
    assert_eq!(
        (
            s.documents.created,
            s.documents.updated,
            s.documents.unchanged
        ),
        (0, 0, 4)
    );

    // Export, and import the export into a fresh store: the same store.
    let out = tmp.path().join("out");
    let summary = formats::export_format(&a, Format::OpsTools, &ExportFilter::default(), &out)
        .await
        .unwrap();
    assert_eq!((summary.entries, summary.documents), (4, 4));
    assert_eq!(summary.files, 4 + 1 + 1);
    let b = store(tmp.path(), "b.db");
    let again = run(&b, &out, false).await;
    let g = ops(&again);
    assert_eq!((g.created, g.rejected_count), (4, 0), "{:#?}", g.rejected);
    assert_eq!(snapshot(&a, &[]).await, snapshot(&b, &[]).await);

    // Canonical files come back equal as data; mapped legacy files in the canonical form.
    for f in [
        "tools/linux/probe.yaml",
        "tools/linux/listy.yaml",
        "tool_optimization_profiles.yaml",
    ] {
        assert_eq!(yaml_file(&out.join(f)), yaml_file(&root.join(f)), "{f}");
    }
    let step: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("shared/schemas/Step.json")).unwrap(),
    )
    .unwrap();
    let orig: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("shared/schemas/Step.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(step, orig);
    let get = yaml_file(&out.join("tools/windows/get_thing.yaml"));
    assert_eq!(get["tool_name"], "Get-Thing");
    assert_eq!(get["metadata"]["tags"], json!(["thing", "read"]));
    let text = std::fs::read_to_string(out.join("tools/windows/copy_thing.yaml")).unwrap();
    assert!(text.starts_with("tool_name: Copy-Thing\n"), "{text}");
    assert!(!text.contains("quiver_source_path"));

    // Importing the export over the first store changes nothing either.
    let third = run(&a, &out, false).await;
    let t = ops(&third);
    assert_eq!((t.created, t.updated, t.unchanged), (0, 0, 4));

    // A filtered export writes only the entries it admits (documents always).
    let only = tmp.path().join("only");
    let filter = ExportFilter {
        categories: vec!["system".into()],
        statuses: vec![],
        ..Default::default()
    };
    let s = formats::export_format(&a, Format::OpsTools, &filter, &only)
        .await
        .unwrap();
    assert_eq!(s.entries, 2);
    assert!(only.join("tools/windows/get_thing.yaml").is_file());
    assert!(!only.join("tools/linux/probe.yaml").exists());
}

#[tokio::test]
async fn a_changed_profile_is_an_update() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src/tools/linux");
    std::fs::create_dir_all(&src).unwrap();
    let text = std::fs::read_to_string(data("ops").join("tools/linux/listy.yaml")).unwrap();
    std::fs::write(src.join("listy.yaml"), &text).unwrap();
    let a = store(tmp.path(), "a.db");
    let root = tmp.path().join("src");
    assert_eq!(ops(&run(&a, &root, false).await).created, 1);
    // A new version of the profile is a new version of the tool.
    std::fs::write(
        src.join("listy.yaml"),
        text.replace("version: '1.0'", "version: '1.1'"),
    )
    .unwrap();
    let r = run(&a, &root, false).await;
    assert_eq!(ops(&r).updated, 1, "{:#?}", ops(&r));
    let key = EntryKey::new(Kind::Tool, "opsconductor", "listy");
    let e = a.get_entry(&key).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.1.0"));

    // A profile without a version is published as revisions: 1.0.0, then the next patch
    // when it changes, and nothing when it does not.
    let unversioned = text.replace("version: '1.0'\n", "");
    assert_ne!(unversioned, text);
    let plain = unversioned.replace("tool_name: listy", "tool_name: plain");
    std::fs::write(src.join("plain.yaml"), &plain).unwrap();
    let r = run(&a, &root, false).await;
    assert_eq!(
        (ops(&r).created, ops(&r).unchanged),
        (1, 1),
        "{:#?}",
        ops(&r)
    );
    let plain_key = EntryKey::new(Kind::Tool, "opsconductor", "plain");
    let e = a.get_entry(&plain_key).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.0.0"));
    assert_eq!(ops(&run(&a, &root, false).await).unchanged, 2);
    std::fs::write(src.join("plain.yaml"), plain.replace("Get them", "Get all")).unwrap();
    assert_eq!(ops(&run(&a, &root, false).await).updated, 1);
    let e = a.get_entry(&plain_key).await.unwrap().unwrap();
    assert_eq!(e.latest_version.as_deref(), Some("1.0.1"));
}

#[tokio::test]
async fn real_catalog() {
    let Some(root) = real("opsconductor-ng") else {
        return;
    };
    let b = common::read_dir(Format::OpsTools, &root);
    let c = |k: &str| b.counts.get(k).copied().unwrap_or(0);
    // MANIFEST.md: 224 tool files (plus a README), 185 canonical incl. the template, 26
    // legacy name/version, 11 `tool:` wrappers, 1 VAPIX file without tool_name; 212
    // capabilities and 266 patterns in the canonical files; 55 distinct time estimates.
    assert_eq!(c("tool files"), 223);
    assert_eq!(c("canonical profiles"), 185);
    assert_eq!(c("legacy name/version files"), 26);
    assert_eq!(c("tool: wrapper files"), 11);
    assert_eq!(
        c("capabilities") - 11,
        212,
        "the wrappers have one capability each"
    );
    assert_eq!(c("patterns") - 11, 266);
    assert_eq!(c("distinct time_estimate_ms expressions"), 55);
    assert_eq!(c("expression errors"), 0);
    assert_eq!(c("schemas"), 6);

    let tmp = tempfile::tempdir().unwrap();
    let a = store(tmp.path(), "a.db");
    let report = run(&a, &root, false).await;
    let f = ops(&report);
    eprintln!("{report}");
    // 184 canonical tools (the template is not one), 26 - 4 legacy, 11 wrappers.
    assert_eq!(f.created, 184 + 22 + 11, "{:#?}", f.rejected);
    let mut reasons: Vec<String> = f.rejected.iter().map(|r| r.to_string()).collect();
    reasons.sort();
    assert_eq!(f.rejected_count, 6, "{reasons:#?}");
    for (file, says) in [
        ("tools/templates/tool_template.yaml", "template, not a tool"),
        (
            "tools/network/vapix/device-config/axis_vapix_network_settings.yaml",
            "metadata.name",
        ),
        (
            "tools/windows/ping.yaml",
            "canonical profile tools/linux/ping.yaml",
        ),
        (
            "tools/windows/netstat.yaml",
            "canonical profile tools/linux/netstat.yaml",
        ),
        (
            "tools/windows/nslookup.yaml",
            "canonical profile tools/linux/nslookup.yaml",
        ),
        (
            "tools/windows/whoami.yaml",
            "canonical profile tools/linux/whoami.yaml",
        ),
    ] {
        let r = rejection(f, file);
        assert!(r.reason.contains(says), "{file}: {}", r.reason);
    }
    // The profiles file's tools, its own fields, and the six schemas.
    let profiles = c("optimization profiles");
    assert!(profiles > 0);
    assert_eq!(f.documents.created, profiles + 1 + 6);
    assert_eq!(f.warning_count, b.warnings.len() as u64);
    assert!(
        f.warning_count >= 22 + 11,
        "every mapped legacy file is a warning"
    );

    // Round trip over the real files.
    let out = tmp.path().join("out");
    let summary = formats::export_format(&a, Format::OpsTools, &ExportFilter::default(), &out)
        .await
        .unwrap();
    assert_eq!(summary.entries, 217);
    let b2 = store(tmp.path(), "b.db");
    let again = run(&b2, &out, false).await;
    let g = ops(&again);
    assert_eq!((g.created, g.rejected_count), (217, 0), "{:#?}", g.rejected);
    assert_eq!(snapshot(&a, &[]).await, snapshot(&b2, &[]).await);
    // Every taken canonical file comes back equal as data.
    let mut compared = 0;
    for r in &b.records {
        let rel = &r.origin.file;
        let text = std::fs::read_to_string(root.join(rel)).unwrap();
        if text.lines().any(|l| l.starts_with("tool_name:")) {
            let (exported, original) = (yaml_file(&out.join(rel)), yaml_file(&root.join(rel)));
            assert_eq!(exported, original, "{}", rel.display());
            compared += 1;
        }
    }
    assert_eq!(compared, 184);
    assert_eq!(
        yaml_file(&out.join("tool_optimization_profiles.yaml")),
        yaml_file(&root.join("tool_optimization_profiles.yaml"))
    );
}
