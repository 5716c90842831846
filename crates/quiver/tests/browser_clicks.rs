//! The website driven as a person drives it: headless Chromium under ChromeDriver
//! (Debian's `chromium` and `chromium-driver`, which `.ci/run` installs), over WebDriver
//! (fantoccini), against `quiver serve --demo --review` on loopback. Type a search on the
//! home page and open a result; sign in, create a token and see it once; publish a version
//! with an error, then without; a moderator approves an entry in the queue; a private
//! entry is visible to its owner and not once signed out; search and entry pages work with
//! JavaScript switched off. axe-core (from its npm package, which `.ci/run` installs under
//! `target/axe`) finds no serious or critical violation on the home, search, entry,
//! sign-in and dashboard pages, and the recipe pipeline's dashboard and an item's page;
//! an operator pauses an ecosystem from the pipeline's dashboard. Screenshots at 1280 and 375 px go to
//! `target/tmp/screenshots/`. Prints SKIPPED for what the machine lacks.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Server, PASSWORD};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// A program from `env`, else `name` on the path.
fn program(env: &str, name: &str) -> Option<PathBuf> {
    if let Ok(p) = std::env::var(env) {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// axe-core's script: `QUIVER_TEST_AXE`, else `target/axe/node_modules/axe-core/axe.min.js`.
fn axe_script() -> Option<String> {
    let path = std::env::var("QUIVER_TEST_AXE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/axe/node_modules/axe-core/axe.min.js")
        });
    std::fs::read_to_string(path).ok()
}

/// ChromeDriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(bin: &PathBuf) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Driver { child, url }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A headless browser session (`javascript: false` switches page scripts off).
async fn session(driver: &Driver, chromium: &PathBuf, javascript: bool) -> Client {
    let mut caps = serde_json::Map::new();
    let mut opts = json!({
        "binary": chromium,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1400", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"],
    });
    if !javascript {
        opts["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
    }
    caps.insert("goog:chromeOptions".into(), opts);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session")
}

/// The text of the element `css`, once the page has one (a click's page may still be
/// loading).
async fn text_of(c: &Client, css: &str) -> String {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn fill(c: &Client, css: &str, value: &str) {
    let el = c
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    el.clear().await.unwrap();
    el.send_keys(value).await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn path_of(c: &Client) -> String {
    let u = c.current_url().await.unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// Wait until the browser is at `want` (a click's navigation may still be under way).
async fn at(c: &Client, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let now = path_of(c).await;
        if now == want {
            return;
        }
        if Instant::now() > deadline {
            let page = c.source().await.unwrap_or_default();
            let main = page.split("<main").nth(1).unwrap_or(&page).to_string();
            panic!("at {now}, not {want}: {main}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    for width in [1280u32, 375] {
        c.set_window_size(width, 1400).await.unwrap();
        let png = c.screenshot().await.unwrap();
        assert!(png.len() > 5_000, "a screenshot of {name}");
        std::fs::write(shots.join(format!("{name}-{width}.png")), png).unwrap();
    }
    c.set_window_size(1280, 1400).await.unwrap();
}

/// axe-core's serious and critical violations on the current page.
async fn axe(c: &Client, script: &str) -> Vec<String> {
    c.execute(script, vec![]).await.expect("inject axe-core");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, {resultTypes: ['violations']})
                .then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                       nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))))
                .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));",
            vec![],
        )
        .await
        .expect("run axe-core");
    found
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
        .map(|v| {
            format!(
                "{} ({}): {} at {}",
                v["id"], v["impact"], v["help"], v["nodes"]
            )
        })
        .collect()
}

/// A JSON API call.
async fn api(server: &Server, method: &str, path: &str, token: Option<&str>, body: Value) -> Value {
    let http = reqwest::Client::new();
    let mut rb = http.request(method.parse().unwrap(), server.url(path));
    if let Some(t) = token {
        rb = rb.bearer_auth(t);
    }
    if !body.is_null() {
        rb = rb.json(&body);
    }
    let r = rb.send().await.unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {v}");
    v
}

async fn sign_in(c: &Client, server: &Server, name: &str) {
    c.goto(&server.url("/signin")).await.unwrap();
    fill(c, "#name", name).await;
    fill(c, "#password", PASSWORD).await;
    click(c, "form.stack button[type=submit]").await;
    at(c, "/dashboard").await;
}

async fn sign_out(c: &Client) {
    click(c, "form[action='/signout'] button").await;
    at(c, "/").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_site_clicked_through_in_a_real_browser() {
    let (Some(chromium), Some(chromedriver)) = (
        program("QUIVER_TEST_CHROMIUM", "chromium"),
        program("QUIVER_TEST_CHROMEDRIVER", "chromedriver"),
    ) else {
        eprintln!(
            "SKIPPED: no chromium and chromedriver (install Debian's chromium and chromium-driver)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"), &["--demo", "--review"]);
    let code = server.setup_code.clone().expect("a setup code");
    // Ada, the site admin (by the setup code); Olga, a new publisher.
    api(
        &server,
        "POST",
        "/api/v1/users",
        None,
        json!({"name": "ada", "password": PASSWORD, "setup_code": code}),
    )
    .await;
    api(
        &server,
        "POST",
        "/api/v1/users",
        None,
        json!({"name": "olga", "password": PASSWORD}),
    )
    .await;
    let olga = api(
        &server,
        "POST",
        "/api/v1/session",
        None,
        json!({"name": "olga", "password": PASSWORD}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    for (name, visibility) in [("text.csv", "public"), ("secret.thing", "private")] {
        api(
            &server,
            "POST",
            "/api/v1/entries",
            Some(&olga),
            json!({"kind": "tool", "namespace": "olga", "name": name,
                   "description": format!("olga's {name}"), "visibility": visibility}),
        )
        .await;
    }

    // Executions of the demo's tcpdump that run slower than its estimate, for the drift
    // list and the pattern's chart.
    let runs: Vec<Value> = (0..40)
        .map(|i| {
            let n = 1000.0 + 500.0 * f64::from(i);
            json!({"idempotency_key": format!("run-{i}"), "tool": "opsconductor/tcpdump",
                   "version": "1.0.0", "capability": "packet_capture", "pattern": "capture",
                   "variables": {"packet_count": n}, "time_ms": 500.0 + 0.9 * n,
                   "success": i % 9 != 0})
        })
        .collect();
    let out = api(
        &server,
        "POST",
        "/api/v1/telemetry",
        Some(&olga),
        json!({ "events": runs }),
    )
    .await;
    assert_eq!(out["accepted"], 40, "{out}");

    // The recipe pipeline, run by Ada (an admin may operate it): items claimed and failed
    // on a missing dependency (one id with a `/`), a checksum that changed, a paused
    // ecosystem, for the dashboard and an item's page.
    let ada = api(
        &server,
        "POST",
        "/api/v1/session",
        None,
        json!({"name": "ada", "password": PASSWORD}),
    )
    .await["token"]
        .as_str()
        .unwrap()
        .to_string();
    api(
        &server,
        "POST",
        "/api/v1/pipeline/items",
        Some(&ada),
        json!({"items": [
            {"id": "homebrew:imagemagick", "tier": 1, "popularity": 0.8},
            {"id": "github:sharkdp/bat", "tier": 1, "popularity": 0.7},
            {"id": "cargo:fd-find", "tier": 2, "popularity": 0.5},
        ]}),
    )
    .await;
    let claimed = api(
        &server,
        "POST",
        "/api/v1/pipeline/claim",
        Some(&ada),
        json!({"worker": "runner-1", "limit": 2, "ecosystems": ["homebrew", "github"]}),
    )
    .await;
    assert_eq!(claimed["items"].as_array().unwrap().len(), 2, "{claimed}");
    let failed = |dep: &str| {
        json!([{"environment": "linux-glibc-x86_64", "passed": false,
                "category": "missing_dependency", "exit_code": 1,
                "message": format!("error: {dep} not found\n<build log>"), "blocked_by": [dep]},
               {"environment": "darwin-arm64", "passed": false, "category": "no_bottles",
                "exit_code": 2, "message": "no bottle for darwin-arm64"}])
    };
    api(
        &server,
        "POST",
        "/api/v1/pipeline/results",
        Some(&ada),
        json!({"worker": "runner-1", "batch_id": "2026-12-04T10", "items": [
            {"id": "homebrew:imagemagick", "results": failed("libpng")},
            {"id": "github:sharkdp/bat", "results": failed("oniguruma")},
        ]}),
    )
    .await;
    for c in ['a', 'b'] {
        api(
            &server,
            "POST",
            "/api/v1/pipeline/checksums",
            Some(&ada),
            json!({"recipe": "ripgrep", "version": "14.1.0", "environment": "linux-glibc-x86_64",
                   "asset": "ripgrep-14.1.0-x86_64-unknown-linux-musl.tar.gz",
                   "checksum": format!("sha256:{}", c.to_string().repeat(64))}),
        )
        .await;
    }
    api(
        &server,
        "POST",
        "/api/v1/pipeline/ecosystems/cargo",
        Some(&ada),
        json!({"action": "pause", "reason": "crates.io maintenance"}),
    )
    .await;

    let driver = Driver::start(&chromedriver);
    let c = session(&driver, &chromium, true).await;
    let axe_js = axe_script();
    let mut violations = vec![];

    // Search from the home page as a person does, and open a result.
    c.goto(&server.url("/")).await.unwrap();
    fill(&c, "form.search.big input[name=q]", "ripgrep").await;
    click(&c, "form.search.big button").await;
    at(&c, "/search?q=ripgrep").await;
    click(&c, "a[href='/recipe/tsuku/ripgrep']").await;
    at(&c, "/recipe/tsuku/ripgrep").await;
    assert!(c.source().await.unwrap().contains("tsuku install ripgrep"));
    if let Some(js) = &axe_js {
        for path in [
            "/",
            "/search?q=csv",
            "/recipe/tsuku/ripgrep",
            "/tool/tpmjs/web.fetchText",
            "/select?capability=packet_capture&vars=packet_count%3D5000",
            "/telemetry/drift",
            "/telemetry/opsconductor/tcpdump/packet_capture/capture",
            "/experiments",
            "/pipeline",
            "/pipeline/items/github:sharkdp%2Fbat",
            "/skills/suggest?packages=react%2C+next%2C+pypi%3Apytest",
            "/advisories",
            "/signin",
        ] {
            c.goto(&server.url(path)).await.unwrap();
            violations.extend(
                axe(&c, js)
                    .await
                    .into_iter()
                    .map(|v| format!("{path}: {v}")),
            );
        }
    }
    c.goto(&server.url("/telemetry/drift")).await.unwrap();
    assert!(c
        .source()
        .await
        .unwrap()
        .contains("500 + 0.9 * packet_count"));
    screenshot(&c, "drift").await;
    c.goto(&server.url("/telemetry/opsconductor/tcpdump/packet_capture/capture"))
        .await
        .unwrap();
    screenshot(&c, "pattern").await;
    c.goto(&server.url("/pipeline")).await.unwrap();
    assert!(c.source().await.unwrap().contains("crates.io maintenance"));
    screenshot(&c, "pipeline").await;
    click(&c, "a[href='/pipeline/items/github:sharkdp%2Fbat']").await;
    at(&c, "/pipeline/items/github:sharkdp%2Fbat").await;
    assert!(c.source().await.unwrap().contains("oniguruma"));
    screenshot(&c, "pipeline-item").await;
    c.goto(&server.url("/skills/suggest?packages=react%2C+next%2C+pypi%3Apytest"))
        .await
        .unwrap();
    assert!(c.source().await.unwrap().contains("react-best-practices"));
    screenshot(&c, "suggest").await;
    c.goto(&server.url("/signin")).await.unwrap();
    screenshot(&c, "signin").await;

    // Olga signs in, creates a token and sees it once.
    sign_in(&c, &server, "olga").await;
    if let Some(js) = &axe_js {
        violations.extend(
            axe(&c, js)
                .await
                .into_iter()
                .map(|v| format!("/dashboard: {v}")),
        );
    }
    screenshot(&c, "dashboard").await;
    c.goto(&server.url("/tokens")).await.unwrap();
    fill(&c, "#token-name", "laptop").await;
    click(&c, "input[name=scope_yank]").await;
    click(&c, "form[action='/tokens'] button[type=submit]").await;
    let token = text_of(&c, "#new-token").await;
    assert!(token.starts_with("qvr_"), "{token}");
    screenshot(&c, "tokens").await;
    c.goto(&server.url("/tokens")).await.unwrap();
    let listed = c.source().await.unwrap();
    assert!(
        listed.contains("laptop") && !listed.contains(&token),
        "shown once"
    );
    let me = reqwest::Client::new()
        .get(server.url("/api/v1/user"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(me.status().is_success(), "the new token works");

    // Her webhooks: the list (none yet) and the form that adds one.
    c.goto(&server.url("/webhooks")).await.unwrap();
    assert!(c.source().await.unwrap().contains("No webhooks yet"));
    if let Some(js) = &axe_js {
        violations.extend(
            axe(&c, js)
                .await
                .into_iter()
                .map(|v| format!("/webhooks: {v}")),
        );
    }
    screenshot(&c, "webhooks").await;

    // Publish a version with an error, then without.
    c.goto(&server.url("/tool/olga/text.csv")).await.unwrap();
    click(&c, "a.publish-link").await;
    fill(&c, "#p-version", "1.0.0").await;
    fill(&c, "#p-manifest", "{\"summary\": ").await;
    click(&c, "form[action='/publish'] button[type=submit]").await;
    let problem = text_of(&c, "#e-manifest").await;
    assert!(problem.contains("not JSON"), "{problem}");
    screenshot(&c, "publish-error").await;
    fill(&c, "#p-manifest", "{\"summary\": \"Parse CSV\"}").await;
    click(&c, "form[action='/publish'] button[type=submit]").await;
    at(&c, "/tool/olga/text.csv").await;
    assert!(c.source().await.unwrap().contains("1.0.0"));

    // Her private entry: hers to see, nobody's once she signs out.
    c.goto(&server.url("/tool/olga/secret.thing"))
        .await
        .unwrap();
    assert!(c.source().await.unwrap().contains("olga's secret.thing"));
    c.goto(&server.url("/dashboard")).await.unwrap();
    sign_out(&c).await;
    c.goto(&server.url("/tool/olga/secret.thing"))
        .await
        .unwrap();
    assert_eq!(c.title().await.unwrap(), "Not found · quiver");
    assert!(!c.source().await.unwrap().contains("olga's secret.thing"));

    // A new publisher's first version waits for review: Ada approves it in the queue.
    sign_in(&c, &server, "ada").await;
    c.goto(&server.url("/reviews")).await.unwrap();
    assert!(c.source().await.unwrap().contains("tool olga/text.csv"));
    screenshot(&c, "reviews").await;
    click(&c, "article.review button[value=approve]").await;
    // The form posts from /reviews back to /reviews: the address does not tell when the
    // approval has landed, the entry's status does.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let entry = api(
            &server,
            "GET",
            "/api/v1/entries/tool/olga/text.csv",
            None,
            Value::Null,
        )
        .await;
        if entry["status"] == "published" {
            break;
        }
        assert!(Instant::now() < deadline, "not approved: {entry}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    at(&c, "/reviews").await;

    // Ada, an operator, pauses an ecosystem from the pipeline's dashboard.
    c.goto(&server.url("/pipeline")).await.unwrap();
    if let Some(js) = &axe_js {
        violations.extend(
            axe(&c, js)
                .await
                .into_iter()
                .map(|v| format!("/pipeline (an operator): {v}")),
        );
    }
    screenshot(&c, "pipeline-operator").await;
    let pause = "form[action='/pipeline/ecosystems/homebrew'] input[name=reason]";
    fill(&c, pause, "bottles down").await;
    click(
        &c,
        "form[action='/pipeline/ecosystems/homebrew'] input[value=pause] ~ button",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = api(&server, "GET", "/api/v1/pipeline/status", None, Value::Null).await;
        let paused = st["valves"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["ecosystem"] == "homebrew" && v["paused"] == true);
        if paused {
            break;
        }
        assert!(Instant::now() < deadline, "not paused: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    at(&c, "/pipeline").await;
    assert!(c.source().await.unwrap().contains("bottles down"));

    c.goto(&server.url("/audit?action=entry.status"))
        .await
        .unwrap();
    assert!(c.source().await.unwrap().contains("ada (token "));
    screenshot(&c, "audit").await;
    c.close().await.unwrap();

    // Without JavaScript: search from the home page and an entry page still work.
    let nojs = session(&driver, &chromium, false).await;
    nojs.goto(&server.url("/")).await.unwrap();
    fill(&nojs, "form.search.big input[name=q]", "csv").await;
    click(&nojs, "form.search.big button").await;
    at(&nojs, "/search?q=csv").await;
    let first = nojs
        .find(Locator::Css("a.hit-name"))
        .await
        .expect("a result")
        .attr("href")
        .await
        .unwrap()
        .expect("a link");
    nojs.find(Locator::Css("a.hit-name"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    at(&nojs, &first).await;
    assert!(nojs
        .source()
        .await
        .unwrap()
        .contains("<h2 id=\"use\">Use it</h2>"));
    nojs.close().await.unwrap();

    match axe_js {
        Some(_) => assert!(violations.is_empty(), "axe-core found:\n{}", violations.join("\n")),
        None => eprintln!("SKIPPED axe-core: no target/axe/node_modules/axe-core (npm install --prefix target/axe axe-core)"),
    }
}
