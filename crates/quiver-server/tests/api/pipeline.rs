//! The recipe pipeline through the API: the seed's real queue and failure files imported,
//! a batch claimed and reported with mixed results across environments, constraints
//! derived as the seed's worked examples say, recipes published or sent to review, the
//! blockers ranking, re-queue driven by the change feed when a dependency's recipe is
//! published, leases, retries, valves, the circuit breaker, checksums and requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use quiver_engine::Caller;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;

const ENVS: [&str; 5] = [
    "linux-glibc-x86_64",
    "linux-glibc-arm64",
    "linux-musl-x86_64",
    "darwin-x86_64",
    "darwin-arm64",
];

fn tsuku() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/tsuku");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED (fixture part): {} not found", dir.display());
        None
    }
}

async fn import(app: &TestApp, dir: &Path) {
    app.registry
        .bulk()
        .import(
            &Caller::Operator,
            vec![quiver_import::pipeline::Source::new(dir)],
            quiver_import::pipeline::ImportOptions::default(),
            &quiver_import::pipeline::NoProgress,
        )
        .await
        .unwrap();
}

/// Every environment's result: those in `failed` fail with `category` and `blocked_by`.
fn results(failed: &[&str], category: &str, blocked_by: &[&str], exit: i32) -> Value {
    json!(ENVS
        .iter()
        .map(|e| if failed.contains(e) {
            json!({"environment": e, "passed": false, "category": category,
                   "exit_code": exit, "message": format!("failed on {e}"),
                   "blocked_by": blocked_by})
        } else {
            json!({"environment": e, "passed": true})
        })
        .collect::<Vec<_>>())
}

fn recipe(name: &str, run_command: bool) -> Value {
    let mut steps = vec![
        json!({"action": "download_archive", "url": "https://example.invalid/x.tgz"}),
        json!({"action": "install_binaries", "binaries": [format!("bin/{name}")]}),
    ];
    if run_command {
        steps.push(json!({"action": "run_command", "command": "./configure && make install"}));
    }
    json!({"metadata": {"name": name, "description": format!("Installs the {name} command line tool")},
           "version": {"source": "github_releases"},
           "steps": steps,
           "verify": {"command": format!("{name} --version")}})
}

async fn audit_rows(app: &TestApp, action: &str) -> Vec<quiver_store::AuditRecord> {
    let filter = quiver_store::AuditFilter {
        action: Some(action.into()),
        ..Default::default()
    };
    app.registry
        .database()
        .audit
        .list_audit(&filter, None, 50)
        .await
        .unwrap()
        .items
}

fn outcome<'a>(out: &'a Value, id: &str) -> &'a Value {
    out.as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == id)
        .unwrap_or_else(|| panic!("{id} in {out}"))
}

async fn item(app: &TestApp, id: &str) -> Value {
    let (s, b) = app
        .get(
            &format!("/api/v1/pipeline/items/{}", id.replace('/', "%2F")),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b
}

#[tokio::test]
async fn the_seed_queue_runs_through_claims_results_blockers_and_requeue() {
    let app = TestApp::builder().user("ops").user("bob").start().await;
    let bob = app.session("bob").to_string();
    // The pipeline's operators: the recipes' namespace's members.
    let ops = app.session("ops").to_string();
    let (s, b) = app
        .post("/api/v1/namespaces", Some(&ops), json!({"name": "tsuku"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // The seed's files: queue entries become items, failure lines history; the unified
    // queue exports back equal as data.
    let fixture = tsuku();
    if let Some(dir) = &fixture {
        import(&app, dir).await;
        let (s, st) = app.get("/api/v1/pipeline/status", None).await;
        assert_eq!(s, StatusCode::OK, "{st}");
        let queue: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("data/queues/priority-queue.json")).unwrap(),
        )
        .unwrap();
        let entries = queue["entries"].as_array().unwrap();
        let count = |status: &str| entries.iter().filter(|e| e["status"] == status).count() as u64;
        // (Entries sharing a source share an item.)
        assert!(
            st["totals"]["success"].as_u64().unwrap() >= count("success") - 10,
            "{}",
            st["totals"]
        );
        assert!(st["totals"]["blocked"].as_u64().unwrap() >= count("blocked"));
        let total: u64 = st["totals"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_u64().unwrap())
            .sum();
        assert!(total >= entries.len() as u64, "{total}");
        let node = item(&app, "homebrew:node").await;
        assert_eq!(node["item"]["status"], "blocked");
        assert!(!node["history"].as_array().unwrap().is_empty(), "{node}");
        let (s, f) = app
            .get("/api/v1/pipeline/failures?ecosystem=homebrew&limit=5", None)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(f["items"].as_array().unwrap().len(), 5);
        assert!(f["next"].is_i64());

        let out = tempfile::tempdir().unwrap();
        app.registry
            .bulk()
            .export_format(
                &Caller::Operator,
                quiver_import::Format::Recipes,
                &Default::default(),
                out.path(),
            )
            .await
            .unwrap();
        let back: Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("data/queues/priority-queue.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(back["entries"].as_array().unwrap().len(), entries.len());
        assert!(
            back == queue,
            "the unified queue exports back equal as data"
        );
        app.registry.pipeline_follow().await.unwrap();
        // The seed's own transitive case: gemini-cli needs node, which ada-url blocks.
        let (_, bl) = app.get("/api/v1/pipeline/blockers?limit=100", None).await;
        let ada = bl
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["dependency"] == "ada-url")
            .unwrap();
        let through: Vec<&str> = ada["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(through, ["homebrew:node", "homebrew:gemini-cli"], "{ada}");
        assert_eq!(ada["items"][1]["transitive"], true);
    }

    // Items of a test ecosystem, claimed before the seed's own (tier 1, popular).
    let ids = [
        "alpha", "musl", "combo", "png", "pngjpeg", "png16", "viewer", "net", "cmd",
    ];
    let items: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, n)| json!({"id": format!("qv:{n}"), "tier": 1, "popularity": 0.9 - i as f64 * 0.05}))
        .collect();
    let (s, b) = app
        .post(
            "/api/v1/pipeline/items",
            Some(&ops),
            json!({"items": items}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["inserted"], 9);
    let (s, b) = app
        .post(
            "/api/v1/pipeline/items",
            Some(&ops),
            json!({"items": [{"id": "nocolon"}]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "items[0].id");

    // Only operators claim.
    let claim = json!({"worker": "w1", "limit": 20, "ecosystems": ["qv"]});
    let (s, b) = app
        .post("/api/v1/pipeline/claim", Some(&bob), claim.clone())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, c) = app
        .post("/api/v1/pipeline/claim", Some(&ops), claim.clone())
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let got: Vec<&str> = c["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        got,
        ids.iter().map(|n| format!("qv:{n}")).collect::<Vec<_>>(),
        "popularity order"
    );
    assert_eq!(c["environments"].as_array().unwrap().len(), 5);
    let worker = c["worker"].as_str().unwrap().to_string();
    // Nothing left to claim; a second worker gets nothing.
    let (_, c2) = app
        .post(
            "/api/v1/pipeline/claim",
            Some(&ops),
            json!({"worker": "w2", "limit": 20, "ecosystems": ["qv"]}),
        )
        .await;
    assert_eq!(c2["items"], json!([]));

    let report = json!({"worker": "w1", "batch_id": "batch-1", "items": [
        {"id": "qv:alpha", "results": results(&[], "", &[], 0), "recipe": recipe("alpha", false)},
        {"id": "qv:musl", "results": results(&["linux-musl-x86_64"], "binary_incompatible", &[], 1), "recipe": recipe("musl", false)},
        {"id": "qv:combo", "results": results(&["linux-glibc-arm64"], "no_platform_assets", &[], 1), "recipe": recipe("combo", false)},
        {"id": "qv:png", "results": results(&["linux-glibc-x86_64", "darwin-arm64", "linux-glibc-arm64", "linux-musl-x86_64", "darwin-x86_64"], "missing_dependency", &["libpng"], 1)},
        {"id": "qv:pngjpeg", "results": results(&ENVS, "missing_dependency", &["libpng", "jpeg-turbo-qv"], 1)},
        {"id": "qv:png16", "results": results(&ENVS, "missing_dependency", &["libpng16-qv"], 1)},
        {"id": "qv:viewer", "results": results(&ENVS, "missing_dep", &["png"], 1)},
        {"id": "qv:net", "results": results(&ENVS, "network", &[], 5)},
        {"id": "qv:cmd", "results": results(&[], "", &[], 0), "recipe": recipe("cmd", true)},
    ]});
    // Bad input is refused whole, naming the field.
    let mut bad = report.clone();
    bad["items"][1]["results"][0]["blocked_by"] = json!(["x"]);
    let (s, b) = app.post("/api/v1/pipeline/results", Some(&ops), bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");
    assert_eq!(b["error"]["field"], "items[1].results[0]");
    assert_eq!(
        item(&app, "qv:alpha").await["item"]["status"],
        "in_progress"
    );
    // Another worker's report of these items applies to none.
    let mut other = report.clone();
    other["worker"] = json!("w2");
    let (s, o) = app
        .post("/api/v1/pipeline/results", Some(&ops), other)
        .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert!(
        o.as_array().unwrap().iter().all(|x| x["applied"] == false),
        "{o}"
    );

    let (s, out) = app
        .post("/api/v1/pipeline/results", Some(&ops), report)
        .await;
    assert_eq!(s, StatusCode::OK, "{out}");
    assert!(worker.ends_with("/w1"));
    let alpha = outcome(&out, "qv:alpha");
    assert_eq!(alpha["status"], "success");
    assert_eq!(
        alpha["constraints"],
        json!({}),
        "every environment passed: no constraint"
    );
    assert_eq!(alpha["recipe"]["state"], "published", "{alpha}");
    assert_eq!(
        outcome(&out, "qv:musl")["constraints"],
        json!({"supported_libc": ["glibc"]})
    );
    assert_eq!(
        outcome(&out, "qv:combo")["constraints"],
        json!({"unsupported_platforms": ["linux/arm64"]})
    );
    assert_eq!(outcome(&out, "qv:png")["status"], "blocked");
    assert_eq!(
        outcome(&out, "qv:viewer")["status"],
        "blocked",
        "missing_dep is the seed's spelling"
    );
    let net = outcome(&out, "qv:net");
    assert_eq!(net["status"], "pending", "a transient failure retries");
    assert!(net["next_retry_at"].is_string());
    let cmd = outcome(&out, "qv:cmd");
    assert_eq!(
        cmd["recipe"]["state"], "review",
        "a recipe that runs commands waits for review: {cmd}"
    );

    // The recipes carry their constraints and the matrix's verdict.
    let (s, v) = app
        .get("/api/v1/entries/recipe/tsuku/musl/versions/1.0.0", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["manifest"]["metadata"]["supported_libc"],
        json!(["glibc"])
    );
    assert_eq!(
        v["manifest"]["derived"]["validation"]["constraints"],
        json!({"supported_libc": ["glibc"]})
    );
    let (_, v) = app
        .get("/api/v1/entries/recipe/tsuku/combo/versions/1.0.0", None)
        .await;
    assert_eq!(
        v["manifest"]["metadata"]["unsupported_platforms"],
        json!(["linux/arm64"])
    );
    let (_, e) = app
        .get("/api/v1/entries/recipe/tsuku/cmd", Some(&ops))
        .await;
    assert_eq!(e["status"], "review", "{e}");
    app.registry.sync_index().await.unwrap();
    let (_, hits) = app
        .get("/api/v1/search?q=musl&kind=recipe&platform=linux", None)
        .await;
    assert!(
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["name"] == "musl"),
        "{hits}"
    );
    let names = |hits: &Value| -> Vec<String> {
        hits["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap().to_string())
            .collect()
    };
    let on = |q: &'static str, platform: &'static str| {
        let app = &app;
        async move {
            let (_, hits) = app
                .get(
                    &format!(
                        "/api/v1/search?q={q}&kind=recipe&namespace=tsuku&platform={platform}"
                    ),
                    None,
                )
                .await;
            names(&hits).contains(&q.to_string())
        }
    };
    assert!(on("alpha", "linux-musl").await);
    assert!(!on("musl", "linux-musl").await, "musl failed on musl");
    assert!(on("musl", "linux-glibc").await);
    assert!(on("musl", "linux/arm64").await);
    assert!(
        !on("combo", "linux/arm64").await,
        "combo failed on linux/arm64"
    );
    assert!(on("combo", "darwin/arm64").await);

    // The transient failure is not claimable before its retry time.
    let (_, c3) = app
        .post(
            "/api/v1/pipeline/claim",
            Some(&ops),
            json!({"worker": "w1", "limit": 5, "ecosystems": ["qv"]}),
        )
        .await;
    assert_eq!(c3["items"], json!([]));

    // What blocks an item, per environment; the history keeps every result.
    let png = item(&app, "qv:png").await;
    assert_eq!(png["blocked_by"]["darwin-arm64"], json!(["libpng"]));
    assert_eq!(png["history"].as_array().unwrap().len(), 5);
    let (_, f) = app
        .get(
            "/api/v1/pipeline/failures?category=missing_dependency&environment=darwin-arm64",
            None,
        )
        .await;
    let failed: Vec<&str> = f["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["item_id"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"qv:png") && failed.contains(&"qv:pngjpeg"),
        "{failed:?}"
    );

    // Blockers: libpng blocks png and pngjpeg directly, viewer through png.
    let (s, bl) = app.get("/api/v1/pipeline/blockers?limit=100", None).await;
    assert_eq!(s, StatusCode::OK, "{bl}");
    let libpng = bl
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["dependency"] == "libpng")
        .unwrap();
    assert_eq!(
        (libpng["direct"].as_u64(), libpng["total"].as_u64()),
        (Some(2), Some(3)),
        "{libpng}"
    );
    let listed: Vec<&str> = libpng["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["qv:png", "qv:pngjpeg", "qv:viewer"]);
    let impact = libpng["impact"].as_f64().unwrap();
    assert!((impact - (0.75 + 0.7 + 0.6)).abs() < 1e-9, "{impact}");
    let (_, gaps) = app
        .get("/api/v1/pipeline/gaps?environment=darwin-arm64", None)
        .await;
    assert!(
        gaps.as_array()
            .unwrap()
            .iter()
            .any(|g| g["category"] == "missing_dependency" && g["items"].as_u64() >= Some(3)),
        "{gaps}"
    );

    // A libpng recipe is published: exactly the items blocked only by it come back.
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&ops),
            json!({"kind": "recipe", "namespace": "tsuku", "name": "libpng"}),
        )
        .await;
    assert!(s == StatusCode::CREATED || s == StatusCode::CONFLICT, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/entries/recipe/tsuku/libpng/versions",
            Some(&ops),
            json!({"version": "99.0.0", "manifest": recipe("libpng", false)}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let mut status = String::new();
    for _ in 0..100 {
        app.registry.pipeline_follow().await.unwrap();
        status = item(&app, "qv:png").await["item"]["status"]
            .as_str()
            .unwrap()
            .to_string();
        if status == "pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, "pending", "blocked only by libpng");
    for still in ["qv:pngjpeg", "qv:png16", "qv:viewer"] {
        assert_eq!(
            item(&app, still).await["item"]["status"],
            "blocked",
            "{still}"
        );
    }
    let audit = audit_rows(&app, "pipeline.requeue").await;
    assert!(audit.iter().any(|r| r.actor == "pipeline"), "{audit:?}");
    // And it can be claimed again.
    let (_, c4) = app
        .post(
            "/api/v1/pipeline/claim",
            Some(&ops),
            json!({"worker": "w1", "limit": 5, "ecosystems": ["qv"]}),
        )
        .await;
    assert_eq!(c4["items"][0]["id"], "qv:png", "{c4}");

    // A manual re-queue by dependency, audited.
    let (s, r) = app
        .post(
            "/api/v1/pipeline/requeue",
            Some(&ops),
            json!({"dependency": "libpng16-qv", "reason": "retry after a builder fix"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(r["requeued"], json!(["qv:png16"]));
    let (s, _) = app
        .post(
            "/api/v1/pipeline/requeue",
            Some(&bob),
            json!({"ids": ["qv:pngjpeg"]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    if fixture.is_some() {
        // The export now writes the live state of items that moved.
        let out = tempfile::tempdir().unwrap();
        app.registry
            .bulk()
            .export_format(
                &Caller::Operator,
                quiver_import::Format::Recipes,
                &Default::default(),
                out.path(),
            )
            .await
            .unwrap();
        let back: Value = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("data/queues/priority-queue.json")).unwrap(),
        )
        .unwrap();
        let musl = back["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["source"] == "qv:musl")
            .unwrap();
        assert_eq!(musl["status"], "success");
    }
}

#[tokio::test]
async fn leases_valves_breaker_checksums_and_requests() {
    let app = TestApp::builder()
        .config(|c| {
            c.pipeline.breaker = quiver_store::pipeline::BreakerConfig {
                window: 10,
                min_results: 4,
                threshold: 0.75,
                cooldown_ms: 1000,
            };
        })
        .start()
        .await;
    let items: Vec<Value> = (0..8)
        .map(|i| json!({"id": format!("brk:p{i}"), "tier": 2}))
        .collect();
    app.post("/api/v1/pipeline/items", None, json!({"items": items}))
        .await;

    // A lease that runs out returns the item; the late report is refused.
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "slow", "limit": 1, "lease_seconds": 1}),
        )
        .await;
    let id = c["items"][0]["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "fast", "limit": 1}),
        )
        .await;
    assert_eq!(
        c["items"][0]["id"],
        id.as_str(),
        "the expired item first (same priority, oldest)"
    );
    let late =
        json!({"worker": "slow", "items": [{"id": id, "results": results(&[], "", &[], 0)}]});
    let (_, o) = app.post("/api/v1/pipeline/results", None, late).await;
    assert_eq!(o[0]["applied"], false, "{o}");

    // A burst of failures opens the breaker.
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    let burst: Vec<Value> = c["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| json!({"id": i["id"], "results": results(&ENVS, "install_failed", &[], 1)}))
        .collect();
    let (s, o) = app
        .post(
            "/api/v1/pipeline/results",
            None,
            json!({"worker": "w", "items": burst}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    let valve = st["valves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["ecosystem"] == "brk")
        .unwrap();
    assert_eq!(valve["breaker"], "open", "{valve}");
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    assert_eq!(c["items"], json!([]));
    assert!(
        c["held_back"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("circuit breaker open"),
        "{c}"
    );
    // After the cooldown it half-opens: one probe.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    assert_eq!(c["items"].as_array().unwrap().len(), 1, "{c}");
    let probe = c["items"][0]["id"].clone();
    let ok = json!({"worker": "w", "items": [{"id": probe, "results": results(&[], "", &[], 0)}]});
    app.post("/api/v1/pipeline/results", None, ok).await;
    let (_, st) = app.get("/api/v1/pipeline/status", None).await;
    let valve = st["valves"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["ecosystem"] == "brk")
        .unwrap();
    assert_eq!(valve["breaker"], "closed", "a success closes it: {valve}");

    // Pause, hourly limit, emergency stop.
    let (s, v) = app
        .post(
            "/api/v1/pipeline/ecosystems/brk",
            None,
            json!({"action": "pause", "reason": "upstream outage"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    assert_eq!(c["items"], json!([]));
    assert!(c["held_back"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("upstream outage"));
    // Every action, even one that carries no fields, refuses a field it does not know
    // and changes nothing.
    for action in ["resume", "reset_breaker"] {
        let (s, e) = app
            .post(
                "/api/v1/pipeline/ecosystems/brk",
                None,
                json!({"action": action, "unknown": 42}),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{action}: {e}");
    }
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    assert_eq!(c["items"], json!([]), "still paused");
    let (s, v) = app
        .post(
            "/api/v1/pipeline/ecosystems/brk",
            None,
            json!({"action": "resume"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    app.post(
        "/api/v1/pipeline/ecosystems/brk",
        None,
        json!({"action": "rate_limit", "claims_per_hour": 1}),
    )
    .await;
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    assert_eq!(c["items"].as_array().unwrap().len(), 1, "{c}");
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    assert_eq!(c["items"], json!([]), "the hour's claim is spent");
    app.post(
        "/api/v1/pipeline/ecosystems/brk",
        None,
        json!({"action": "rate_limit", "claims_per_hour": null}),
    )
    .await;
    let (s, _) = app
        .post(
            "/api/v1/pipeline/stop",
            None,
            json!({"reason": "incident 42"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 4}),
        )
        .await;
    assert_eq!(c["stopped"], "incident 42");
    assert_eq!(c["items"], json!([]));
    app.post("/api/v1/pipeline/start", None, json!({})).await;
    let (_, c) = app
        .post(
            "/api/v1/pipeline/claim",
            None,
            json!({"worker": "w", "limit": 1}),
        )
        .await;
    assert_eq!(c["items"].as_array().unwrap().len(), 1, "{c}");
    assert_eq!(audit_rows(&app, "pipeline.stop").await.len(), 1);

    // Checksum drift.
    let sum = |c: char| format!("sha256:{}", c.to_string().repeat(64));
    let obs = json!({"recipe": "ripgrep", "version": "14.1.0", "environment": "linux-glibc-x86_64",
                     "asset": "ripgrep-14.1.0-x86_64-unknown-linux-musl.tar.gz", "checksum": sum('a')});
    let (s, v) = app
        .post("/api/v1/pipeline/checksums", None, obs.clone())
        .await;
    assert_eq!(
        (s, v["outcome"].as_str()),
        (StatusCode::OK, Some("new")),
        "{v}"
    );
    let (_, v) = app
        .post("/api/v1/pipeline/checksums", None, obs.clone())
        .await;
    assert_eq!(v["outcome"], "same");
    let mut drift = obs.clone();
    drift["checksum"] = json!(sum('b'));
    let (_, v) = app.post("/api/v1/pipeline/checksums", None, drift).await;
    assert_eq!(v["outcome"], "drift");
    let (_, alerts) = app
        .get("/api/v1/pipeline/checksums/alerts?recipe=ripgrep", None)
        .await;
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    let mut bad = obs;
    bad["checksum"] = json!("md5:abc");
    let (s, b) = app.post("/api/v1/pipeline/checksums", None, bad).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "checksum");

    // Requests: counted once per client and day; they raise priority.
    let (s, r) = app
        .post(
            "/api/v1/pipeline/requests",
            None,
            json!({"id": "npm:left-pad"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{r}");
    assert_eq!(
        (r["counted"].as_bool(), r["requests"].as_i64()),
        (Some(true), Some(1))
    );
    let (_, r) = app
        .post(
            "/api/v1/pipeline/requests",
            None,
            json!({"id": "npm:left-pad"}),
        )
        .await;
    assert_eq!(
        (r["counted"].as_bool(), r["requests"].as_i64()),
        (Some(false), Some(1))
    );
    let (s, _) = app
        .post("/api/v1/pipeline/requests", None, json!({"id": "left-pad"}))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    // The metrics carry the queue.
    let (s, _) = app
        .get("/api/v1/pipeline/items?status=pending&ecosystem=brk", None)
        .await;
    assert_eq!(s, StatusCode::OK);
}
