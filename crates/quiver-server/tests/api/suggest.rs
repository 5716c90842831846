//! Skill suggestions through the API: the upskill fixtures' skills and package mappings
//! imported over packages made for them, a real `package.json` built from the mapped
//! packages, PEP 503 and npm-scope matching, manifests of every supported format, bulk
//! suggestions, a package's skills, bad input, and private skills that never leak.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use quiver_engine::Caller;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::web_account::Browser;

const ADMIN: &str = "admin-secret";

fn upskill() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/upskill");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("SKIPPED (fixture part): {} not found", dir.display());
        None
    }
}

async fn import(app: &TestApp, path: &Path) {
    app.registry
        .bulk()
        .import(
            &Caller::Operator,
            vec![quiver_import::pipeline::Source::new(path)],
            quiver_import::pipeline::ImportOptions::default(),
            &quiver_import::pipeline::NoProgress,
        )
        .await
        .unwrap();
}

/// The npm packages the fixture's skills map to (registry and curated mappings).
fn mapped_packages(dir: &Path) -> (BTreeSet<String>, Value) {
    let mappings: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".upskill/package-mappings.json")).unwrap(),
    )
    .unwrap();
    let registry: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join(".upskill/skills-registry.json")).unwrap(),
    )
    .unwrap();
    let mut all = BTreeSet::new();
    for list in mappings.as_object().unwrap().values() {
        all.extend(
            list.as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string()),
        );
    }
    for s in registry["skills"].as_array().unwrap() {
        for p in s["targetPackages"].as_array().into_iter().flatten() {
            all.insert(p.as_str().unwrap().to_string());
        }
    }
    (all, mappings)
}

fn line(v: Value) -> String {
    format!("{v}\n")
}

/// Packages (those the fixture maps to, a scoped npm one and a PyPI one), and skills of
/// our own: one for the scoped package, one for the PyPI package, and a private one.
fn own_records(npm: &BTreeSet<String>) -> String {
    let mut out = String::new();
    for p in npm
        .iter()
        .map(String::as_str)
        .chain(["@tanstack/react-query"])
    {
        out.push_str(&line(
            json!({"kind": "package", "namespace": "npm", "name": p,
            "description": format!("the {p} package"), "popularity": {"score": 0.5}}),
        ));
    }
    out.push_str(&line(json!({"kind": "package", "namespace": "pypi",
        "name": "Flask-SQLAlchemy", "description": "SQLAlchemy for Flask"})));
    out.push_str(&line(
        json!({"kind": "skill", "namespace": "tanstack", "name": "query-patterns",
        "description": "Data fetching with TanStack Query", "popularity": {"score": 0.2},
        "relations": [{"kind": "maps_to", "to": {"kind": "package", "namespace": "npm",
            "name": "@tanstack/react-query"}, "confidence": 0.9, "source": "curated"}]}),
    ));
    out.push_str(&line(
        json!({"kind": "skill", "namespace": "pallets", "name": "flask-db",
        "description": "Databases in Flask apps",
        "relations": [{"kind": "maps_to", "to": {"kind": "package", "namespace": "pypi",
            "name": "Flask-SQLAlchemy"}, "confidence": 0.7, "source": "inferred"}]}),
    ));
    out.push_str(&line(
        json!({"kind": "skill", "namespace": "secretco", "name": "internal-react",
        "description": "Our private React rules", "visibility": "private",
        "popularity": {"score": 1.0},
        "relations": [{"kind": "maps_to", "to": {"kind": "package", "namespace": "npm",
            "name": "react"}, "confidence": 1.0, "source": "curated"}]}),
    ));
    out
}

fn names(skills: &Value) -> Vec<String> {
    skills
        .as_array()
        .unwrap_or_else(|| panic!("not a list of skills: {skills}"))
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn skills_for_a_project() {
    let Some(dir) = upskill() else { return };
    let app = TestApp::builder().admin_token(ADMIN).start().await;
    let (npm, mappings) = mapped_packages(&dir);
    let own = tempfile::tempdir().unwrap();
    let file = own.path().join("own.jsonl");
    std::fs::write(&file, own_records(&npm)).unwrap();
    import(&app, &file).await;
    import(&app, &dir).await;

    // A real package.json: the packages of the fixture's curated mapping with the most
    // of them, a dev tool, and a package the registry does not hold.
    let (skill, packages) = mappings
        .as_object()
        .unwrap()
        .iter()
        .max_by_key(|(name, list)| (list.as_array().unwrap().len(), std::cmp::Reverse(*name)))
        .unwrap();
    let mut deps = serde_json::Map::new();
    for p in packages.as_array().unwrap() {
        deps.insert(p.as_str().unwrap().into(), json!("^1.0.0"));
    }
    deps.insert("no-such-package-here".into(), json!("1"));
    let manifest = json!({"name": "web", "dependencies": deps,
                          "devDependencies": {"typescript": "~5.4"}});
    let (s, v) = app
        .post(
            "/api/v1/skills/suggest",
            None,
            json!({"manifest": {"filename": "package.json", "content": manifest.to_string()}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let top: Vec<String> = names(&v["skills"]).into_iter().take(3).collect();
    assert!(top.contains(skill), "{skill} not in the top 3: {top:?}");
    assert_eq!(v["skills"][0]["name"], json!(skill), "{v:#}");
    // The reasons: every package it matched, with the mapping's confidence and source.
    let first = &v["skills"][0];
    assert_eq!(
        first["matches"].as_array().unwrap().len(),
        packages.as_array().unwrap().len(),
        "{first:#}"
    );
    assert!(first["matches"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["confidence"] == json!(1.0)
            && m["source"] == json!("package-mappings")
            && m["range"] == json!("^1.0.0")));
    assert_eq!(v["unknown"], json!(["npm:no-such-package-here"]));
    let ts = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "typescript")
        .unwrap();
    assert_eq!(ts["dev"], json!(true));
    // The private skill maps to react with full confidence and popularity, yet an
    // anonymous caller never sees it; the admin does.
    assert!(!names(&v["skills"]).contains(&"internal-react".to_string()));
    let (s, all) = app
        .post(
            "/api/v1/skills/suggest",
            Some(ADMIN),
            json!({"packages": ["react"], "limit": 100}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{all}");
    assert!(
        names(&all["skills"]).contains(&"internal-react".to_string()),
        "{all}"
    );
    let (_, anon) = app
        .get("/api/v1/skills/suggest?packages=react&limit=100", None)
        .await;
    assert!(!names(&anon["skills"]).contains(&"internal-react".to_string()));
    assert!(!anon.to_string().contains("secretco"));
    let (s, _) = app
        .get("/api/v1/packages/npm/react/skills?limit=100", None)
        .await;
    assert_eq!(s, StatusCode::OK);

    // Development dependencies weigh half, and can be left out.
    let (_, nodev) = app
        .post(
            "/api/v1/skills/suggest",
            None,
            json!({"manifest": {"filename": "package.json", "content": manifest.to_string()},
                   "include_dev": false}),
        )
        .await;
    assert!(nodev["packages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["name"] != "typescript"));

    // npm scopes, by GET with repeated parameters and by the package's own route (the
    // scope's slash as is and encoded).
    let (s, v) = app
        .get(
            "/api/v1/skills/suggest?packages=@tanstack/react-query&packages=REACT",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(
        names(&v["skills"]).contains(&"query-patterns".to_string()),
        "{v}"
    );
    assert_eq!(
        v["packages"][1]["entry"],
        json!("react"),
        "npm names compare in lower case"
    );
    for path in [
        "/api/v1/packages/npm/@tanstack/react-query/skills",
        "/api/v1/packages/npm/@tanstack%2Freact-query/skills",
    ] {
        let (s, v) = app.get(path, None).await;
        assert_eq!(s, StatusCode::OK, "{path}: {v}");
        assert_eq!(v["entry"], json!("@tanstack/react-query"));
        assert_eq!(v["skills"][0]["name"], json!("query-patterns"));
        assert_eq!(v["skills"][0]["confidence"], json!(0.9));
    }

    // PEP 503: the manifest's spelling is not the registry's.
    for (filename, content) in [
        (
            "requirements.txt",
            "flask_sqlalchemy>=3.1 ; python_version > '3.8'\n-r base.txt\n",
        ),
        (
            "pyproject.toml",
            "[project]\ndependencies = [\"FLASK.SQLAlchemy[async]~=3.1\"]\n",
        ),
    ] {
        let (s, v) = app
            .post(
                "/api/v1/skills/suggest",
                None,
                json!({"manifest": {"filename": filename, "content": content}}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{filename}: {v}");
        assert_eq!(names(&v["skills"]), ["flask-db"], "{filename}: {v}");
        assert_eq!(
            v["skills"][0]["matches"][0]["package"],
            json!("Flask-SQLAlchemy")
        );
        assert_eq!(v["unknown"], json!([]));
    }
    let (_, v) = app
        .get("/api/v1/packages/pypi/flask_sqlalchemy/skills", None)
        .await;
    assert_eq!(v["skills"][0]["name"], json!("flask-db"), "{v}");

    // Bulk: grouped by package, in the order given, each once.
    let (s, v) = app
        .post(
            "/api/v1/skills/bulk-suggest",
            None,
            json!({"packages": ["expo", "pypi:flask-sqlalchemy", "Expo", "nope-nope"],
                   "limit": 3}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let groups = v["packages"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{v}");
    assert_eq!(groups[0]["entry"], json!("expo"));
    assert_eq!(groups[0]["skills"].as_array().unwrap().len(), 3);
    assert_eq!(groups[1]["skills"][0]["name"], json!("flask-db"));
    assert_eq!(v["unknown"], json!(["npm:nope-nope"]));

    // Bad input: a clear error with its field, for each mistake.
    for (body, field) in [
        (json!({}), "packages"),
        (json!({"packages": ["gem:rails"]}), "packages[0]"),
        (
            json!({"packages": ["react"], "ecosystem": "maven"}),
            "ecosystem",
        ),
        (json!({"packages": ["react"], "limit": 0}), "limit"),
        (
            json!({"manifest": {"filename": "Gemfile", "content": "gem 'rails'"}}),
            "manifest.filename",
        ),
        (
            json!({"manifest": {"filename": "package.json", "content": "{"}}),
            "manifest.content",
        ),
    ] {
        let (s, e) = app.post("/api/v1/skills/suggest", None, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["error"]["field"], json!(field), "{body}: {e}");
    }
    let (s, e) = app.get("/api/v1/packages/npm/nope-nope/skills", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{e}");
    let (s, _) = app.get("/api/v1/packages/maven/junit/skills", None).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

/// The website's page: packages by a GET form (a link), a manifest by a POST form, bad
/// input shown next to the form; private skills never shown to a visitor.
#[tokio::test]
async fn suggestion_page() {
    let app = TestApp::builder().admin_token(ADMIN).start().await;
    let own = tempfile::tempdir().unwrap();
    let file = own.path().join("own.jsonl");
    let npm: BTreeSet<String> = ["react".to_string()].into();
    std::fs::write(&file, own_records(&npm)).unwrap();
    import(&app, &file).await;
    let mut visitor = Browser::new(&app);

    let page = visitor.get("/skills/suggest").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Which skills fit my project?"));
    let page = visitor
        .get("/skills/suggest?packages=%40tanstack%2Freact-query%2C+react&ecosystem=npm")
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let html = plain(&page.html);
    assert!(html.contains("tanstack/query-patterns"), "{html}");
    assert!(html.contains("90%"), "the mapping's confidence: {html}");
    assert!(!html.contains("internal-react"), "a private skill: {html}");

    let page = visitor
        .post(
            "/skills/suggest",
            &[
                ("filename", "requirements.txt"),
                ("manifest", "Flask_SQLAlchemy==3.1.1\n"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.html);
    let html = plain(&page.html);
    assert!(html.contains("pallets/flask-db"), "{html}");
    assert!(html.contains("==3.1.1"), "the range asked for: {html}");

    let page = visitor
        .post(
            "/skills/suggest",
            &[("filename", "Gemfile"), ("manifest", "gem 'rails'")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.html.contains("manifest.filename"),
        "the problem is shown: {}",
        page.html
    );
}

/// A page's HTML with the escaped slashes of its attributes as slashes.
fn plain(html: &str) -> String {
    html.replace("&#x2f;", "/")
}

/// A signed-in user pins and hides skills for a package; only their own suggestions
/// change, and a preference can be cleared.
#[tokio::test]
async fn pinned_and_hidden_skills_are_the_users_own() {
    let app = TestApp::builder()
        .admin_token(ADMIN)
        .user("alice")
        .user("bob")
        .start()
        .await;
    let own = tempfile::tempdir().unwrap();
    let file = own.path().join("own.jsonl");
    let npm: BTreeSet<String> = ["react".to_string()].into();
    let mut records = own_records(&npm);
    for (name, confidence) in [("react-a", 0.9), ("react-b", 0.6)] {
        records.push_str(&line(
            json!({"kind": "skill", "namespace": "upskill", "name": name,
            "description": format!("{name} skill"),
            "relations": [{"kind": "maps_to", "to": {"kind": "package", "namespace": "npm",
                "name": "react"}, "confidence": confidence, "source": "curated"}]}),
        ));
    }
    std::fs::write(&file, records).unwrap();
    import(&app, &file).await;
    let alice = app.session("alice").to_string();
    let bob = app.session("bob").to_string();
    let ranked = |v: &Value| names(&v["skills"]);
    let suggest = |token: String| {
        let app = &app;
        async move {
            app.post(
                "/api/v1/skills/suggest",
                Some(&token),
                json!({"packages": ["react"]}),
            )
            .await
            .1
        }
    };
    assert_eq!(
        ranked(&suggest(alice.clone()).await),
        ["react-a", "react-b"]
    );

    // Alice hides react-a for react and pins react-b for every package.
    let prefs = "/api/v1/user/skill-preferences";
    let (s, v) = app
        .post(
            prefs,
            Some(&alice),
            json!({"ecosystem": "npm", "package": "React", "skill": "upskill/react-a",
                   "action": "hide"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = app
        .post(
            prefs,
            Some(&alice),
            json!({"ecosystem": "npm", "package": "*", "skill": "upskill/react-b",
                   "action": "pin"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v.as_array().unwrap().len(), 2, "{v}");
    let mine = suggest(alice.clone()).await;
    assert_eq!(ranked(&mine), ["react-b"], "{mine}");
    assert_eq!(mine["skills"][0]["pinned"], json!(true));
    let (_, one) = app
        .get("/api/v1/packages/npm/react/skills", Some(&alice))
        .await;
    assert_eq!(ranked(&one), ["react-b"]);
    // Bob's, and an anonymous caller's, are as before.
    assert_eq!(ranked(&suggest(bob.clone()).await), ["react-a", "react-b"]);
    let (_, anon) = app
        .post(
            "/api/v1/skills/suggest",
            None,
            json!({"packages": ["react"]}),
        )
        .await;
    assert_eq!(ranked(&anon), ["react-a", "react-b"]);
    let (_, bobs) = app.get(prefs, Some(&bob)).await;
    assert_eq!(bobs, json!([]));

    // Cleared, the hide is gone; bad input changes nothing.
    let (s, _) = app
        .post(
            prefs,
            Some(&alice),
            json!({"ecosystem": "npm", "package": "react", "skill": "upskill/react-a",
                   "action": "clear"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        ranked(&suggest(alice.clone()).await),
        ["react-b", "react-a"]
    );
    for (body, field) in [
        (
            json!({"ecosystem": "npm", "package": "react", "skill": "upskill/react-a",
                "action": "love"}),
            "action",
        ),
        (
            json!({"ecosystem": "npm", "package": "react", "skill": "secretco/internal-react",
                "action": "hide"}),
            "skill",
        ),
        (
            json!({"ecosystem": "gem", "package": "rails", "skill": "upskill/react-a",
                "action": "hide"}),
            "ecosystem",
        ),
    ] {
        let (s, e) = app.post(prefs, Some(&alice), body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["error"]["field"], json!(field), "{body}: {e}");
    }
    assert_eq!(
        app.get(prefs, Some(&alice))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (s, _) = app.get(prefs, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "preferences need an account");
}

/// Install events, idempotent; co-install recommendations only above the minimum support,
/// and never naming a private entry.
#[tokio::test]
async fn co_install_recommendations_need_enough_projects() {
    let app = TestApp::builder().admin_token(ADMIN).start().await;
    let own = tempfile::tempdir().unwrap();
    let file = own.path().join("own.jsonl");
    let npm: BTreeSet<String> = ["react", "next", "vue", "zod"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    std::fs::write(&file, own_records(&npm)).unwrap();
    import(&app, &file).await;
    let pkg = |name: &str| json!({"kind": "package", "namespace": "npm", "name": name});
    let skill = json!({"kind": "skill", "namespace": "secretco", "name": "internal-react"});
    // next with react in 6 projects, vue with react in 2, the private skill in 6.
    let mut events = Vec::new();
    for p in 0..6 {
        let project = format!("/home/dev/project-{p}");
        events.push(
            json!({"id": format!("r{p}"), "kind": "install", "entry": pkg("react"),
                           "version": "18.2.0", "project": project}),
        );
        events.push(
            json!({"id": format!("n{p}"), "kind": "install", "entry": pkg("next"),
                           "project": project}),
        );
        events.push(
            json!({"id": format!("s{p}"), "kind": "install", "entry": skill,
                           "project": project}),
        );
        if p < 2 {
            events.push(
                json!({"id": format!("v{p}"), "kind": "install", "entry": pkg("vue"),
                               "project": project}),
            );
        }
    }
    events.push(json!({"id": "gone", "kind": "install", "entry": pkg("left-pad")}));
    let (s, v) = app
        .post("/api/v1/events", None, json!({"events": events.clone()}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The private skill's events are unknown to an anonymous client, as left-pad is.
    assert_eq!(v["accepted"], 14, "{v}");
    assert_eq!(v["unknown"].as_array().unwrap().len(), 7, "{v}");
    let (_, again) = app
        .post("/api/v1/events", Some(ADMIN), json!({"events": events}))
        .await;
    assert_eq!(
        again["accepted"], 6,
        "the admin's: the private skill's six: {again}"
    );
    assert_eq!(again["duplicates"], 14);

    let path = "/api/v1/entries/package/npm/react/co-installed";
    let (s, v) = app.get(path, None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["min_projects"], 5);
    let names: Vec<&str> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["entry"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["next"],
        "vue has 2 projects, the skill is private: {v}"
    );
    assert_eq!(v["items"][0]["projects"], 6);
    let (_, admin) = app.get(path, Some(ADMIN)).await;
    assert_eq!(admin["items"].as_array().unwrap().len(), 2, "{admin}");
    // The minimum can be raised, never lowered.
    let (_, v) = app.get(&format!("{path}?min_projects=1"), None).await;
    assert_eq!(v["min_projects"], 5);
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let (_, v) = app.get(&format!("{path}?min_projects=7"), None).await;
    assert_eq!(v["items"], json!([]));
    // Bad input names its field and records nothing.
    for (body, field) in [
        (json!({"events": []}), "events"),
        (
            json!({"events": [{"id": "x", "kind": "download", "entry": pkg("react")}]}),
            "events[0].kind",
        ),
        (
            json!({"events": [{"id": "", "kind": "install", "entry": pkg("react")}]}),
            "events[0].id",
        ),
        (
            json!({"events": [{"id": "y", "kind": "install", "entry": pkg("react"),
                            "version": "latest"}]}),
            "events[0].version",
        ),
    ] {
        let (s, e) = app.post("/api/v1/events", None, body.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {e}");
        assert_eq!(e["error"]["field"], json!(field), "{body}: {e}");
    }
}
