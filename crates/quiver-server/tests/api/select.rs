//! Tool selection through the API: ranked patterns with evaluated estimates and scores
//! checked by hand, hard constraints excluding with their reason, preferences, missing
//! inputs and variables, deprecated tools excluded with their replacement, private tools
//! only for those who may see them, bad requests refused with the field.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;

#[allow(clippy::too_many_arguments)]
fn pattern(
    time: &str,
    cost: Value,
    safe: bool,
    approval: bool,
    prefs: [f64; 5],
    inputs: &[&str],
) -> Value {
    let [speed, accuracy, cost_pref, complexity, completeness] = prefs;
    json!({
        "time_estimate_ms": time,
        "cost_estimate": cost,
        "policy": {"max_cost": 10, "production_safe": safe, "requires_approval": approval,
                   "max_execution_time": 60},
        "preference_match": {"speed": speed, "accuracy": accuracy, "cost": cost_pref,
                             "complexity": complexity, "completeness": completeness},
        "required_inputs": inputs.iter().map(|n| json!({"name": n, "type": "string"})).collect::<Vec<_>>(),
    })
}

async fn tool(app: &TestApp, token: &str, name: &str, patterns: Value, visibility: &str) {
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(token),
            json!({"kind": "tool", "namespace": "alice", "name": name,
                   "description": format!("{name} captures packets"), "visibility": visibility}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let manifest = json!({"capabilities": {"packet_capture": {"patterns": patterns}}});
    let (s, b) = app
        .post(
            &format!("/api/v1/entries/tool/alice/{name}/versions"),
            Some(token),
            json!({"version": "1.0.0", "manifest": manifest}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
}

fn ranked(sel: &Value) -> Vec<(String, String, f64)> {
    sel["candidates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["tool"]["name"].as_str().unwrap().to_string(),
                c["pattern"].as_str().unwrap().to_string(),
                (c["score"].as_f64().unwrap() * 1e6).round() / 1e6,
            )
        })
        .collect()
}

fn reason_of(sel: &Value, tool: &str, pattern: Option<&str>) -> String {
    sel["excluded"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["tool"]["name"] == tool && e["pattern"].as_str() == pattern)
        .unwrap_or_else(|| panic!("{tool} {pattern:?} is not excluded: {sel}"))["reason"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn selection_ranks_scores_and_excludes_with_reasons() {
    let app = TestApp::builder().user("alice").user("bob").start().await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    tool(
        &app,
        &alice,
        "tcpdump",
        json!({
            "capture": pattern("800 + 0.3 * packet_count", json!("ceil(packet_count / 1000)"),
                               true, false, [0.8, 0.9, 0.9, 0.6, 0.9], &["iface"]),
            "capture_verbose": pattern("2000 + packet_count", json!("ceil(packet_count / 500)"),
                                       false, false, [0.4, 1.0, 0.6, 0.5, 1.0], &[]),
        }),
        "public",
    )
    .await;
    tool(
        &app,
        &alice,
        "tshark",
        json!({"capture": pattern("1000 + 0.5 * packet_count", json!(3), true, true,
                                  [0.6, 0.95, 0.8, 0.5, 0.95], &[])}),
        "public",
    )
    .await;
    tool(
        &app,
        &alice,
        "oldcap",
        json!({"capture": pattern("10", json!(1), true, false, [1.0, 1.0, 1.0, 1.0, 1.0], &[])}),
        "public",
    )
    .await;
    let (s, b) = app
        .post(
            "/api/v1/entries/tool/alice/oldcap/deprecate",
            Some(&alice),
            json!({"message": "unmaintained", "replacement": "tool alice/tcpdump"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    tool(
        &app,
        &alice,
        "secretcap",
        json!({"capture": pattern("1", json!(0), true, false, [1.0, 1.0, 1.0, 1.0, 1.0], &[])}),
        "private",
    )
    .await;

    // The capability view counts the tools each caller may see.
    let count = |caps: &Value| caps[0]["tools"].as_u64().unwrap();
    let (_, caps) = app.get("/api/v1/capabilities", Some(&bob)).await;
    assert_eq!(caps[0]["name"], "packet_capture", "{caps}");
    assert_eq!((count(&caps), caps[0]["patterns"].as_u64()), (3, Some(4)));
    let (_, caps) = app.get("/api/v1/capabilities", Some(&alice)).await;
    assert_eq!(count(&caps), 4, "her private tool too");
    let (s, detail) = app
        .get("/api/v1/capabilities/packet_capture", Some(&bob))
        .await;
    assert_eq!(s, StatusCode::OK, "{detail}");
    let tcpdump = detail["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tool"]["name"] == "tcpdump")
        .unwrap();
    assert_eq!(
        tcpdump["patterns"][0]["time_estimate_ms"],
        "800 + 0.3 * packet_count"
    );
    assert_eq!(tcpdump["patterns"][0]["required_inputs"], json!(["iface"]));
    let (s, _) = app.get("/api/v1/capabilities/no_such_thing", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let select = |token: Option<String>, body: Value| {
        let app = &app;
        async move {
            let (s, b) = app.post("/api/v1/select", token.as_deref(), body).await;
            assert_eq!(s, StatusCode::OK, "{b}");
            b
        }
    };
    let base = json!({"capability": "packet_capture", "variables": {"packet_count": 5000}});

    // Equal weights: the mean of the five matches. By hand:
    // tcpdump/capture (0.8+0.9+0.9+0.6+0.9)/5 = 0.82, tshark (0.6+0.95+0.8+0.5+0.95)/5
    // = 0.76, tcpdump/capture_verbose (0.4+1+0.6+0.5+1)/5 = 0.70.
    let sel = select(Some(bob.clone()), base.clone()).await;
    assert_eq!(
        ranked(&sel),
        [
            ("tcpdump".into(), "capture".into(), 0.82),
            ("tshark".into(), "capture".into(), 0.76),
            ("tcpdump".into(), "capture_verbose".into(), 0.70),
        ],
        "{sel}"
    );
    let top = &sel["candidates"][0];
    assert_eq!(top["time_ms"], json!(2300.0), "800 + 0.3 * 5000");
    assert_eq!(top["cost"], json!(5.0), "ceil(5000 / 1000)");
    assert_eq!(top["missing_inputs"], json!(["iface"]));
    assert_eq!(top["version"], "1.0.0");
    let parts: f64 = top["breakdown"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_f64().unwrap())
        .sum();
    assert!((parts - 0.82).abs() < 1e-9, "the breakdown adds up: {top}");
    assert!(reason_of(&sel, "oldcap", None).contains("use tool alice/tcpdump"));
    assert!(
        !sel.to_string().contains("secretcap"),
        "someone else's private tool is not there"
    );
    // Its owner sees it (and it wins: it matches everything perfectly).
    let sel = select(Some(alice.clone()), base.clone()).await;
    assert_eq!(sel["candidates"][0]["tool"]["name"], "secretcap");
    // The same request, the same answer.
    assert_eq!(
        select(Some(bob.clone()), base.clone()).await,
        select(Some(bob.clone()), base.clone()).await
    );

    // Preferences: speed alone.
    let mut speed = base.clone();
    speed["preferences"] = json!({"speed": 1.0});
    let sel = select(Some(bob.clone()), speed).await;
    assert_eq!(
        ranked(&sel),
        [
            ("tcpdump".into(), "capture".into(), 0.8),
            ("tshark".into(), "capture".into(), 0.6),
            ("tcpdump".into(), "capture_verbose".into(), 0.4),
        ]
    );

    // Hard constraints, each with its reason.
    let mut strict = base.clone();
    strict["environment"] = json!("production");
    strict["constraints"] = json!({"approval_allowed": false, "max_cost": 4});
    let sel = select(Some(bob.clone()), strict).await;
    assert_eq!(sel["candidates"], json!([]), "{sel}");
    assert_eq!(
        reason_of(&sel, "tcpdump", Some("capture")),
        "cost 5 is over max_cost 4"
    );
    assert!(reason_of(&sel, "tshark", Some("capture")).contains("requires approval"));
    assert!(reason_of(&sel, "tcpdump", Some("capture_verbose")).contains("over max_cost 4"));
    let mut prod = base.clone();
    prod["environment"] = json!("production");
    let sel = select(Some(bob.clone()), prod).await;
    assert!(reason_of(&sel, "tcpdump", Some("capture_verbose")).contains("production_safe"));
    let mut fast = base.clone();
    fast["constraints"] = json!({"max_time_ms": 3000});
    let sel = select(Some(bob.clone()), fast).await;
    assert_eq!(ranked(&sel).len(), 1);
    assert_eq!(
        reason_of(&sel, "tshark", Some("capture")),
        "time 3500 ms is over max_time_ms 3000"
    );
    // The pattern's own policy: 20,000 packets cost 20 > its max_cost 10.
    let big = json!({"capability": "packet_capture", "variables": {"packet_count": 20000}});
    let sel = select(Some(bob.clone()), big).await;
    assert!(reason_of(&sel, "tcpdump", Some("capture")).contains("pattern's own max_cost 10"));

    // Without the variable, estimates cannot be made: the limits that need them exclude.
    let sel = select(Some(bob.clone()), json!({"capability": "packet_capture"})).await;
    assert!(reason_of(&sel, "tshark", Some("capture")).contains("needs `packet_count`"));

    // Bad requests name the field; an unknown capability selects nothing.
    for (body, field) in [
        (json!({"capability": ""}), "capability"),
        (
            json!({"capability": "x", "preferences": {"speedy": 1}}),
            "preferences.speedy",
        ),
        (
            json!({"capability": "x", "preferences": {"speed": 2}}),
            "preferences.speed",
        ),
        (json!({"capability": "x", "limit": 0}), "limit"),
    ] {
        let (s, b) = app.post("/api/v1/select", None, body).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let sel = select(None, json!({"capability": "nothing_offers_this"})).await;
    assert_eq!(
        (sel["candidates"].clone(), sel["excluded"].clone()),
        (json!([]), json!([]))
    );
}

/// The score the selection must give a pattern with equal weights: the mean of its five
/// preference matches (computed here from the tool's own manifest).
fn hand_score(pattern: &Value) -> f64 {
    let m = &pattern["preference_match"];
    ["speed", "accuracy", "cost", "complexity", "completeness"]
        .iter()
        .map(|k| m[*k].as_f64().unwrap_or(0.0).clamp(0.0, 1.0))
        .sum::<f64>()
        / 5.0
}

#[tokio::test]
async fn selection_over_the_real_ops_profiles() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/opsconductor-ng");
    if !dir.is_dir() {
        eprintln!("SKIPPED: {} not found", dir.display());
        return;
    }
    let app = TestApp::builder().start().await;
    app.registry
        .bulk()
        .import(
            &quiver_engine::Caller::Operator,
            vec![quiver_import::pipeline::Source::new(&dir)],
            quiver_import::pipeline::ImportOptions::default(),
            &quiver_import::pipeline::NoProgress,
        )
        .await
        .unwrap();

    let (s, caps) = app.get("/api/v1/capabilities", None).await;
    assert_eq!(s, StatusCode::OK, "{caps}");
    let names: Vec<&str> = caps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    let wanted = [
        "packet_capture",
        "protocol_analysis",
        "system_info",
        "network_testing",
        "dns_query",
    ];
    for w in wanted {
        assert!(names.contains(&w), "{w} in {names:?}");
    }
    let variables = json!({"N": 100, "packet_count": 5000, "duration_ms": 10000, "pages": 3,
                           "num_files": 20, "num_entries": 50, "num_directories": 10,
                           "num_processes": 40, "num_filesystems": 4, "file_size_kb": 512,
                           "network_latency": 20, "dns_latency": 10, "response_time": 100});
    for capability in wanted {
        let (s, detail) = app
            .get(&format!("/api/v1/capabilities/{capability}"), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{detail}");
        let (s, sel) = app
            .post(
                "/api/v1/select",
                None,
                json!({"capability": capability, "variables": variables, "limit": 100}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{sel}");
        let candidates = sel["candidates"].as_array().unwrap();
        assert!(!candidates.is_empty(), "{capability}: {sel}");
        // Every candidate's score is the mean of its pattern's matches, by hand, and the
        // list is in score order.
        let mut last = f64::INFINITY;
        for c in candidates {
            let tool = &c["tool"];
            let (_, v) = app
                .get(
                    &format!(
                        "/api/v1/entries/tool/{}/{}/versions/{}",
                        tool["namespace"].as_str().unwrap(),
                        tool["name"].as_str().unwrap(),
                        c["version"].as_str().unwrap()
                    ),
                    None,
                )
                .await;
            let pattern = &v["manifest"]["capabilities"][capability]["patterns"]
                [c["pattern"].as_str().unwrap()];
            let want = hand_score(pattern);
            let got = c["score"].as_f64().unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "{capability} {c}: {got} vs {want}"
            );
            assert!(got <= last, "ranked by score");
            last = got;
        }
        // Every tool listed for the capability is either a candidate or excluded.
        let offered = detail["tools"].as_array().unwrap().len();
        let mut seen: Vec<String> = candidates
            .iter()
            .chain(sel["excluded"].as_array().unwrap())
            .map(|c| c["tool"]["name"].as_str().unwrap().to_string())
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), offered, "{capability}: {sel}");
    }

    // A need in words resolves to the capability it describes.
    for (need, want) in [
        ("capture network packets on an interface", "packet_capture"),
        ("resolve a hostname with a DNS lookup", "dns_query"),
        ("analyze protocols in a capture", "protocol_analysis"),
    ] {
        let (s, sel) = app
            .post(
                "/api/v1/select",
                None,
                json!({"need": need, "variables": variables}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{need}: {sel}");
        assert_eq!(sel["capability"], want, "{need}: {}", sel["resolved"]);
        assert_eq!(sel["resolved"][0]["capability"], want);
        assert!(!sel["candidates"].as_array().unwrap().is_empty());
    }
    for body in [
        json!({"need": "zzzz qqqq"}),
        json!({"need": "capture packets", "capability": "packet_capture"}),
        json!({"need": " "}),
    ] {
        let (s, b) = app.post("/api/v1/select", None, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {b}");
        assert_eq!(b["error"]["field"], "need", "{b}");
    }
}

#[tokio::test]
async fn the_catalog_follows_every_change() {
    let app = TestApp::builder().user("alice").start().await;
    let alice = app.session("alice").to_string();
    let offers = |cap: &str| {
        json!({"capabilities": {cap: {"patterns": {
        "run": {"time_estimate_ms": "10 * N", "preference_match": {"speed": 1}}}}}})
    };
    let names = |sel: &Value| -> Vec<String> {
        sel["candidates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                format!(
                    "{}@{}",
                    c["tool"]["name"].as_str().unwrap(),
                    c["version"].as_str().unwrap()
                )
            })
            .collect()
    };
    let select = |cap: &'static str| {
        let app = &app;
        async move {
            let (s, b) = app
                .post(
                    "/api/v1/select",
                    None,
                    json!({"capability": cap, "variables": {"N": 2}}),
                )
                .await;
            assert!(s == StatusCode::OK || s == StatusCode::NOT_FOUND, "{b}");
            b
        }
    };
    for (name, version, cap) in [("a", "1.0.0", "convert"), ("b", "1.0.0", "convert")] {
        if version == "1.0.0" {
            app.post(
                "/api/v1/entries",
                Some(&alice),
                json!({"kind": "tool", "namespace": "alice", "name": name}),
            )
            .await;
        }
        let (s, b) = app
            .post(
                &format!("/api/v1/entries/tool/alice/{name}/versions"),
                Some(&alice),
                json!({"version": version, "manifest": offers(cap)}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        // Each write is seen by the next selection.
        let sel = select("convert").await;
        assert!(names(&sel).contains(&format!("{name}@{version}")), "{sel}");
    }
    assert_eq!(names(&select("convert").await), ["a@1.0.0", "b@1.0.0"]);
    // `a` 2.0.0 offers another capability instead.
    let (s, _) = app
        .post(
            "/api/v1/entries/tool/alice/a/versions",
            Some(&alice),
            json!({"version": "2.0.0", "manifest": offers("compress")}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    assert_eq!(names(&select("convert").await), ["b@1.0.0"]);
    assert_eq!(names(&select("compress").await), ["a@2.0.0"]);
    let (_, caps) = app.get("/api/v1/capabilities", None).await;
    let caps: Vec<&str> = caps
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(caps, ["compress", "convert"]);
    // A yank of `a`'s 2.0.0 falls back to 1.0.0, which offers `convert` again.
    let (s, b) = app
        .post(
            "/api/v1/entries/tool/alice/a/versions/2.0.0/yank",
            Some(&alice),
            json!({"reason": "broken"}),
        )
        .await;
    assert!(s.is_success(), "{b}");
    assert_eq!(names(&select("convert").await), ["a@1.0.0", "b@1.0.0"]);
    let (_, caps) = app.get("/api/v1/capabilities", None).await;
    assert_eq!(caps.as_array().unwrap().len(), 1, "{caps}");
    // A need finds the capability by its new words.
    let (s, sel) = app
        .post(
            "/api/v1/select",
            None,
            json!({"need": "convert files", "variables": {"N": 1}}),
        )
        .await;
    assert_eq!(
        (s, sel["capability"].as_str()),
        (StatusCode::OK, Some("convert")),
        "{sel}"
    );
}

#[tokio::test]
async fn search_finds_capabilities_patterns_and_inputs_and_filters_by_platform() {
    use crate::entries::hit_names;
    let app = TestApp::builder().user("alice").start().await;
    let alice = app.session("alice").to_string();
    let publish =
        |kind: &'static str, name: &'static str, description: &'static str, manifest: Value| {
            let app = &app;
            let alice = alice.clone();
            async move {
                let (s, b) = app
                    .post(
                        "/api/v1/entries",
                        Some(&alice),
                        json!({"kind": kind, "namespace": "alice", "name": name,
                           "description": description}),
                    )
                    .await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
                let (s, b) = app
                    .post(
                        &format!("/api/v1/entries/{kind}/alice/{name}/versions"),
                        Some(&alice),
                        json!({"version": "1.0.0", "manifest": manifest}),
                    )
                    .await;
                assert_eq!(s, StatusCode::CREATED, "{b}");
            }
        };
    publish(
        "tool",
        "systemctl",
        "Control the system and service manager",
        json!({"platform": "linux", "capabilities": {"list_services": {
            "description": "Which units run",
            "patterns": {"all_units": {"time_estimate_ms": 200,
                "typical_use_cases": ["audit running daemons"],
                "required_inputs": [{"name": "unit_filter"}]}}}}}),
    )
    .await;
    publish(
        "tool",
        "launchctl",
        "Manage launchd jobs",
        json!({"platform": "darwin", "capabilities": {"list_services": {
            "patterns": {"jobs": {"time_estimate_ms": 100}}}}}),
    )
    .await;
    publish("tool", "lister", "Lists things", json!({})).await;
    publish(
        "recipe",
        "brewonly",
        "Installs on macs",
        json!({"steps": [{"action": "homebrew", "formula": "x", "when": {"os": ["darwin"]}}]}),
    )
    .await;
    publish(
        "recipe",
        "anywhere",
        "Installs anywhere",
        json!({"steps": [{"action": "download", "url": "https://example.invalid/x"}]}),
    )
    .await;

    // A capability's name, a pattern's name, a typical use and an input name find the tool.
    let both = app
        .search_until("list_services", |b| hit_names(b).len() >= 2)
        .await;
    let mut names = hit_names(&both);
    names.truncate(2);
    names.sort();
    assert_eq!(names, ["alice/launchctl", "alice/systemctl"], "{both}");
    for q in ["all_units", "daemons", "unit_filter"] {
        let found = app
            .search_until(q, |b| hit_names(b).contains(&"alice/systemctl".to_string()))
            .await;
        assert_eq!(hit_names(&found)[0], "alice/systemctl", "{q}: {found}");
    }
    // Platforms filter tools and recipes alike (once the last write is indexed).
    app.search_until("anywhere", |b| {
        hit_names(b).contains(&"alice/anywhere".to_string())
    })
    .await;
    let (s, b) = app
        .get("/api/v1/search?q=list_services&platform=linux", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(hit_names(&b), ["alice/systemctl"]);
    let (_, b) = app.get("/api/v1/search?platform=darwin", None).await;
    let mut darwin = hit_names(&b);
    darwin.sort();
    assert_eq!(
        darwin,
        ["alice/anywhere", "alice/brewonly", "alice/launchctl"]
    );
    let (_, b) = app
        .get("/api/v1/search?kind=recipe&platform=Linux", None)
        .await;
    assert_eq!(hit_names(&b), ["alice/anywhere"]);
    // And are a facet, on the API and on the website's search page.
    let (_, b) = app.get("/api/v1/search?facets=true", None).await;
    let counts: Vec<(String, u64)> = b["facets"]["platform"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["value"].as_str().unwrap().to_string(),
                c["count"].as_u64().unwrap(),
            )
        })
        .collect();
    // Operating systems count every entry there; a recipe's `os/arch` pairs and
    // `linux-<libc>` are values of their own.
    let oses: Vec<(String, u64)> = counts
        .iter()
        .filter(|(v, _)| !v.contains('/') && !v.contains('-'))
        .cloned()
        .collect();
    assert_eq!(
        oses,
        [("darwin".to_string(), 3), ("linux".to_string(), 2)],
        "{b}"
    );
    assert!(counts.contains(&("darwin/arm64".to_string(), 2)), "{b}");
    let page = reqwest::get(app.url("/search?kind=tool&platform=darwin"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("launchctl") && !page.contains("systemctl"),
        "{page}"
    );
    assert!(page.contains("Platform"), "a platform facet: {page}");
}
