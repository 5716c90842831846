//! Accounts and access through the HTTP API: the authorization matrix, tokens (scopes,
//! patterns, revocation, expiry), namespaces and members, the open mode, and a check that
//! the database file holds no password and no token in clear.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{TestApp, PASSWORD};

pub(crate) const ROOT: &str = "root-token-for-tests";

/// The embedded store, with `admin_token` as the bootstrap admin (none: open writes).
pub(crate) async fn start(admin_token: Option<&str>) -> TestApp {
    let mut b = TestApp::builder();
    if let Some(t) = admin_token {
        b = b.admin_token(t);
    }
    b.start().await
}

pub(crate) fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
}

fn names(items: &Value) -> Vec<String> {
    items
        .as_array()
        .unwrap_or(&vec![])
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect()
}

const VIS: [&str; 3] = ["public", "unlisted", "private"];

fn entry_name(vis: &str) -> String {
    format!("{vis}.tool")
}

/// The private entry of namespace `zoo`.
const OTHER: &str = "zoo.secret";

/// One row of the matrix: what a role gets for each action on the public, unlisted and
/// private entry of namespace `acme`. Statuses are HTTP statuses; `Y`/`N` say whether the
/// entry appears in the lists (`?namespace=acme` and unfiltered, alike) and in search hits
/// (counted in the total and the facets). `other` says whether the private entry of
/// another namespace, `zoo` (no role in the matrix is a member), appears in the
/// unfiltered list and in search.
struct Row {
    role: &'static str,
    read: [u16; 3],
    list: [char; 3],
    search: [char; 3],
    other: char,
    create: [u16; 3],
    publish: [u16; 3],
    yank: [u16; 3],
}

#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                   public unlisted private
    Row { role: "anonymous",      read: [200, 200, 404], list: ['Y', 'N', 'N'], search: ['Y', 'N', 'N'], other: 'N', create: [401, 401, 401], publish: [401, 401, 404], yank: [401, 401, 404] },
    Row { role: "user",           read: [200, 200, 404], list: ['Y', 'N', 'N'], search: ['Y', 'N', 'N'], other: 'N', create: [403, 403, 403], publish: [403, 403, 404], yank: [403, 403, 404] },
    Row { role: "viewer",         read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'N', create: [403, 403, 403], publish: [403, 403, 403], yank: [403, 403, 403] },
    Row { role: "maintainer",     read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'N', create: [201, 201, 201], publish: [201, 201, 201], yank: [200, 200, 200] },
    Row { role: "owner",          read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'N', create: [201, 201, 201], publish: [201, 201, 201], yank: [200, 200, 200] },
    // Moderators and admins read every private entry, in every namespace: by name, in
    // lists and in search.
    Row { role: "moderator",      read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'Y', create: [403, 403, 403], publish: [403, 403, 403], yank: [200, 200, 200] },
    Row { role: "admin",          read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'Y', create: [201, 201, 201], publish: [201, 201, 201], yank: [200, 200, 200] },
    Row { role: "admin-token",    read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'Y', create: [201, 201, 201], publish: [201, 201, 201], yank: [200, 200, 200] },
    // The owner's tokens, one scope each: the owner's rights ∩ the scope.
    Row { role: "publish-new",    read: [200, 200, 404], list: ['Y', 'N', 'N'], search: ['Y', 'N', 'N'], other: 'N', create: [201, 201, 201], publish: [403, 403, 404], yank: [403, 403, 404] },
    Row { role: "publish-update", read: [200, 200, 404], list: ['Y', 'N', 'N'], search: ['Y', 'N', 'N'], other: 'N', create: [403, 403, 403], publish: [201, 201, 404], yank: [403, 403, 404] },
    Row { role: "yank",           read: [200, 200, 404], list: ['Y', 'N', 'N'], search: ['Y', 'N', 'N'], other: 'N', create: [403, 403, 403], publish: [403, 403, 404], yank: [200, 200, 404] },
    Row { role: "manage-owners",  read: [200, 200, 404], list: ['Y', 'N', 'N'], search: ['Y', 'N', 'N'], other: 'N', create: [403, 403, 403], publish: [403, 403, 404], yank: [403, 403, 404] },
    Row { role: "read-private",   read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'N', create: [403, 403, 403], publish: [403, 403, 403], yank: [403, 403, 403] },
    Row { role: "admin-scope",    read: [200, 200, 200], list: ['Y', 'N', 'Y'], search: ['Y', 'N', 'Y'], other: 'N', create: [201, 201, 201], publish: [201, 201, 201], yank: [200, 200, 200] },
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix() {
    let app = start(Some(ROOT)).await;
    let mut creds: HashMap<&str, Option<String>> = HashMap::new();
    creds.insert("anonymous", None);
    creds.insert("admin-token", Some(ROOT.to_string()));
    let olga = app.user("olga").await;
    creds.insert("user", Some(app.user("sam").await));
    creds.insert("viewer", Some(app.user("vera").await));
    creds.insert("maintainer", Some(app.user("max").await));
    creds.insert("moderator", Some(app.user("mona").await));
    creds.insert("admin", Some(app.user("ada").await));
    for (who, role) in [("mona", "moderator"), ("ada", "admin")] {
        let (s, b) = app
            .put(
                &format!("/api/v1/users/{who}/role"),
                Some(ROOT),
                json!({"site_role": role}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["site_role"], role);
    }
    // Only admins set site roles.
    let (s, _) = app
        .put(
            "/api/v1/users/sam/role",
            Some(&olga),
            json!({"site_role": "admin"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    let (s, b) = app
        .post("/api/v1/namespaces", Some(&olga), json!({"name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    for (who, role) in [("vera", "viewer"), ("max", "maintainer")] {
        let (s, b) = app
            .put(
                &format!("/api/v1/namespaces/acme/members/{who}"),
                Some(&olga),
                json!({"role": role}),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    for scope in [
        "publish-new",
        "publish-update",
        "yank",
        "manage-owners",
        "read-private",
    ] {
        creds.insert(
            scope,
            Some(app.create_token(&olga, scope, &[scope], None).await),
        );
    }
    creds.insert(
        "admin-scope",
        Some(app.create_token(&olga, "all", &["admin"], None).await),
    );
    creds.insert("owner", Some(olga.clone()));

    for vis in VIS {
        let name = entry_name(vis);
        let (s, b) = app
            .post(
                "/api/v1/entries",
                Some(&olga),
                json!({"kind": "tool", "namespace": "acme", "name": name, "visibility": vis,
                       "description": "zebra stripes counter", "category": "text"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
        let (s, b) = app
            .post(
                &format!("/api/v1/entries/tool/acme/{name}/versions"),
                Some(&olga),
                json!({"version": "1.0.0"}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{b}");
    }
    // Another namespace, `zoo`, with a private entry that also matches the search; no
    // role of the matrix is its member.
    let zed = app.user("zed").await;
    let (s, b) = app
        .post("/api/v1/namespaces", Some(&zed), json!({"name": "zoo"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&zed),
            json!({"kind": "tool", "namespace": "zoo", "name": OTHER, "visibility": "private",
                   "description": "zebra crossing counter", "category": "text"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post(
            &format!("/api/v1/entries/tool/zoo/{OTHER}/versions"),
            Some(&zed),
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    // Wait until the index has both private entries (their owners search them).
    for (owner, name) in [(&olga, entry_name("private")), (&zed, OTHER.to_string())] {
        let mut indexed = false;
        for _ in 0..100 {
            let (_, b) = app.get("/api/v1/search?q=zebra", Some(owner)).await;
            if names(&b["hits"]).contains(&name) {
                indexed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert!(indexed, "the index never caught up with {name}");
    }

    let mut failures: Vec<String> = vec![];
    let mut check = |role: &str, action: &str, vis: &str, want: String, got: String| {
        if want != got {
            failures.push(format!("{role} {action} {vis}: expected {want}, got {got}"));
        }
    };
    let yn = |b: bool| if b { 'Y' } else { 'N' };
    let mut version = 0;
    for row in MATRIX {
        let token = creds[row.role].clone();
        let t = token.as_deref();
        // Reads, lists and search (with facets).
        let (s, list) = app.get("/api/v1/entries?namespace=acme&limit=100", t).await;
        assert_eq!(s, StatusCode::OK, "{}: {list}", row.role);
        let listed = names(&list["items"]);
        let (s, all) = app.get("/api/v1/entries?limit=100", t).await;
        assert_eq!(s, StatusCode::OK, "{}: {all}", row.role);
        let listed_all = names(&all["items"]);
        let (s, found) = app
            .get("/api/v1/search?q=zebra&facets=true&limit=100", t)
            .await;
        assert_eq!(s, StatusCode::OK, "{}: {found}", row.role);
        let hits = names(&found["hits"]);
        assert_eq!(
            found["total"].as_u64().unwrap() as usize,
            hits.len(),
            "{}: the total counts exactly the visible hits",
            row.role
        );
        let facet = |ns: &str| {
            found["facets"]["namespace"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["value"] == ns)
                .map(|f| f["count"].as_u64().unwrap() as usize)
                .unwrap_or(0)
        };
        let other_hit = hits.iter().any(|n| n == OTHER);
        assert_eq!(
            (facet("acme"), facet("zoo")),
            (hits.len() - usize::from(other_hit), usize::from(other_hit)),
            "{}: facet counts include nothing the caller cannot see: {found}",
            row.role
        );
        check(
            row.role,
            "list unfiltered",
            "zoo private",
            row.other.to_string(),
            yn(listed_all.iter().any(|n| n == OTHER)).to_string(),
        );
        check(
            row.role,
            "search",
            "zoo private",
            row.other.to_string(),
            yn(other_hit).to_string(),
        );
        for (i, vis) in VIS.iter().enumerate() {
            let name = entry_name(vis);
            let (s, _) = app
                .get(&format!("/api/v1/entries/tool/acme/{name}"), t)
                .await;
            check(
                row.role,
                "read",
                vis,
                row.read[i].to_string(),
                s.as_u16().to_string(),
            );
            let (s, _) = app
                .get(&format!("/api/v1/entries/tool/acme/{name}/versions"), t)
                .await;
            check(
                row.role,
                "read versions",
                vis,
                row.read[i].to_string(),
                s.as_u16().to_string(),
            );
            check(
                row.role,
                "list",
                vis,
                row.list[i].to_string(),
                yn(listed.contains(&name)).to_string(),
            );
            check(
                row.role,
                "list unfiltered",
                vis,
                row.list[i].to_string(),
                yn(listed_all.contains(&name)).to_string(),
            );
            check(
                row.role,
                "search",
                vis,
                row.search[i].to_string(),
                yn(hits.contains(&name)).to_string(),
            );
        }
        // Writes.
        for (i, vis) in VIS.iter().enumerate() {
            let name = entry_name(vis);
            let new_name = format!("new.{}.{vis}", row.role.replace('-', ""));
            let (s, b) = app
                .post(
                    "/api/v1/entries",
                    t,
                    json!({"kind": "tool", "namespace": "acme", "name": new_name,
                           "visibility": vis, "description": "created by the matrix"}),
                )
                .await;
            check(
                row.role,
                "create",
                vis,
                row.create[i].to_string(),
                s.as_u16().to_string(),
            );
            if s.is_client_error() {
                let code = match s.as_u16() {
                    401 => "unauthorized",
                    403 => "forbidden",
                    _ => "not_found",
                };
                assert_error(&b, code);
            }
            version += 1;
            let (s, b) = app
                .post(
                    &format!("/api/v1/entries/tool/acme/{name}/versions"),
                    t,
                    json!({"version": format!("1.1.{version}")}),
                )
                .await;
            check(
                row.role,
                "publish",
                vis,
                row.publish[i].to_string(),
                s.as_u16().to_string(),
            );
            if s == StatusCode::NOT_FOUND {
                // Exactly the answer for an entry that does not exist.
                let (s2, b2) = app
                    .post(
                        "/api/v1/entries/tool/acme/never.existed/versions",
                        t,
                        json!({"version": "1.0.0"}),
                    )
                    .await;
                assert_eq!(s2, StatusCode::NOT_FOUND);
                assert_eq!(
                    b.to_string().replace(&name, "X"),
                    b2.to_string().replace("never.existed", "X"),
                    "{}: a hidden entry answers like a missing one",
                    row.role
                );
            }
            let (s, _) = app
                .post(
                    &format!("/api/v1/entries/tool/acme/{name}/versions/1.0.0/yank"),
                    t,
                    json!({"reason": "matrix"}),
                )
                .await;
            check(
                row.role,
                "yank",
                vis,
                row.yank[i].to_string(),
                s.as_u16().to_string(),
            );
            if s == StatusCode::OK {
                let (s, b) = app
                    .post(
                        &format!("/api/v1/entries/tool/acme/{name}/versions/1.0.0/unyank"),
                        t,
                        json!({}),
                    )
                    .await;
                assert_eq!(s, StatusCode::OK, "{} unyank: {b}", row.role);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "matrix cells that differ:\n{}",
        failures.join("\n")
    );

    // A private entry never leaks through the anonymous views after all those writes.
    let (_, list) = app.get("/api/v1/entries?limit=100", None).await;
    assert!(
        names(&list["items"])
            .iter()
            .all(|n| !n.ends_with("private") && !n.ends_with(".unlisted") && n != OTHER),
        "{list}"
    );
    let (_, found) = app.get("/api/v1/search?q=zebra&limit=100", None).await;
    assert_eq!(names(&found["hits"]), [entry_name("public")], "{found}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_holds_no_password_and_no_token_in_clear() {
    let app = start(Some(ROOT)).await;
    let session = app.user("alice").await;
    let ci = app
        .create_token(&session, "ci", &["publish-new", "publish-update"], None)
        .await;
    // Use both, so that last-use times are written too.
    let (s, _) = app.get("/api/v1/user", Some(&session)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&ci),
            json!({"kind": "tool", "namespace": "alice", "name": "text.secretTest",
                   "description": "checks the store for secrets"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");

    let mut bytes = Vec::new();
    for suffix in ["quiver.db", "quiver.db-wal"] {
        if let Ok(b) = std::fs::read(app.dir.path().join(suffix)) {
            bytes.extend_from_slice(&b);
        }
    }
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // The right file: the user and the token's hash are there.
    assert!(
        contains(b"alice@example.org"),
        "not the database we wrote to"
    );
    assert!(contains(
        quiver_engine::auth::secrets::token_hash(&ci).as_bytes()
    ));
    assert!(contains(b"$argon2id$"), "passwords are argon2id hashes");
    for (what, secret) in [
        ("password", PASSWORD.to_string()),
        ("session token", session.clone()),
        ("session token body", session[4..].to_string()),
        ("API token", ci.clone()),
        ("API token body", ci[4..].to_string()),
    ] {
        assert!(
            !contains(secret.as_bytes()),
            "the {what} is in the database in clear"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_shown_once_scoped_patterned_revocable_and_expire() {
    let app = start(Some(ROOT)).await;
    let session = app.user("tess").await;
    let (s, b) = app
        .post(
            "/api/v1/tokens",
            Some(&session),
            json!({"name": "csv only", "scopes": ["publish-new", "publish-update"], "pattern": "text.*", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let patterned = b["token"].as_str().unwrap().to_string();
    assert!(patterned.starts_with("qvr_"));
    let id = b["id"].as_i64().unwrap();
    assert!(b["expires_at"].is_string());

    // Listed without the secret; last use recorded after use.
    let (_, list) = app.get("/api/v1/tokens", Some(&session)).await;
    assert!(!list.to_string().contains(&patterned[4..]), "{list}");
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap()
        .clone();
    assert!(listed["last_used_at"].is_null());
    assert_eq!(listed["pattern"], "text.*");

    // The pattern limits the names it acts on.
    let mk = |name: &str| json!({"kind": "tool", "namespace": "tess", "name": name, "description": "pattern test"});
    let (s, b) = app
        .post("/api/v1/entries", Some(&patterned), mk("text.csv"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post("/api/v1/entries", Some(&patterned), mk("image.crop"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("text.*"),
        "{b}"
    );
    let (_, list) = app.get("/api/v1/tokens", Some(&session)).await;
    let listed = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .unwrap();
    assert!(listed["last_used_at"].is_string(), "{listed}");

    // A token grants no more than it has.
    let (s, b) = app
        .post(
            "/api/v1/tokens",
            Some(&patterned),
            json!({"name": "wider", "scopes": ["yank"], "pattern": "text.*"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = app
        .post(
            "/api/v1/tokens",
            Some(&patterned),
            json!({"name": "unpatterned", "scopes": ["publish-new"]}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app
        .post(
            "/api/v1/tokens",
            None,
            json!({"name": "x", "scopes": ["yank"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/tokens",
            Some(&session),
            json!({"name": "x", "scopes": ["fly"]}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{b}");

    // Revoked: 401 from then on; only its owner revokes it.
    let other = app.user("otto").await;
    let (s, _) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app
        .call(
            Method::DELETE,
            &format!("/api/v1/tokens/{id}"),
            Some(&session),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert!(b["revoked_at"].is_string());
    let (s, b) = app.get("/api/v1/entries", Some(&patterned)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_error(&b, "unauthorized");

    // Expired: 401 (a token stored with a past expiry).
    let secret = quiver_engine::auth::secrets::generate_token().unwrap();
    let accounts = app.registry.database().accounts.clone();
    let tess = accounts.get_user("tess").await.unwrap().unwrap().user;
    accounts
        .create_token(quiver_engine::store::NewToken {
            user_id: tess.id,
            name: "old".into(),
            token_hash: quiver_engine::auth::secrets::token_hash(&secret),
            scopes: vec![quiver_engine::auth::Scope::Admin],
            pattern: None,
            expires_at: Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1)),
        })
        .await
        .unwrap();
    let (s, b) = app.get("/api/v1/user", Some(&secret)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("expired"),
        "{b}"
    );

    // Made-up tokens and bad headers: 401 with WWW-Authenticate.
    let r = app
        .http
        .get(format!("{}/api/v1/entries", app.base))
        .bearer_auth("qvr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    let r = app
        .http
        .get(format!("{}/api/v1/entries", app.base))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_registrations_namespaces_and_members() {
    let app = start(Some(ROOT)).await;
    let olga = app.user("olga").await;
    // Wrong password and unknown user answer the same.
    let (s1, b1) = app
        .post(
            "/api/v1/session",
            None,
            json!({"name": "olga", "password": "wrong password!"}),
        )
        .await;
    let (s2, b2) = app
        .post(
            "/api/v1/session",
            None,
            json!({"name": "nobody", "password": "wrong password!"}),
        )
        .await;
    assert_eq!(
        (s1, s2),
        (StatusCode::UNAUTHORIZED, StatusCode::UNAUTHORIZED)
    );
    assert_eq!(b1, b2);

    // Registration rules.
    let (s, b) = app
        .post(
            "/api/v1/users",
            None,
            json!({"name": "Bad Name", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "name");
    let (s, b) = app
        .post(
            "/api/v1/users",
            None,
            json!({"name": "shorty", "password": "short"}),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["field"], "password");
    let (s, b) = app
        .post(
            "/api/v1/users",
            None,
            json!({"name": "olga", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");

    // A user claims their own namespace; an organisation's name is first come, first
    // served, and a taken one is a 409 that names the owner.
    let (s, b) = app.get("/api/v1/namespaces/olga/members", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b[0]["user"], "olga");
    assert_eq!(b[0]["role"], "owner");
    let (s, b) = app
        .post("/api/v1/namespaces", Some(&olga), json!({"name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let bob = app.user("bob").await;
    let (s, b) = app
        .post("/api/v1/namespaces", Some(&bob), json!({"name": "acme"}))
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_error(&b, "conflict");
    assert!(
        b["error"]["message"].as_str().unwrap().contains("olga"),
        "{b}"
    );
    let (s, b) = app
        .post(
            "/api/v1/users",
            None,
            json!({"name": "acme", "password": PASSWORD}),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(
        b["error"]["message"].as_str().unwrap().contains("olga"),
        "{b}"
    );
    let (s, _) = app
        .post("/api/v1/namespaces", None, json!({"name": "free"}))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app
        .post("/api/v1/namespaces", Some(ROOT), json!({"name": "free"}))
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "the admin token has no account to own it"
    );

    // Entries in a namespace need a membership there: bob cannot write to acme nor to
    // a namespace nobody created.
    let mk = |ns: &str, name: &str| json!({"kind": "tool", "namespace": ns, "name": name, "description": "members test"});
    let (s, _) = app
        .post("/api/v1/entries", Some(&bob), mk("acme", "x.y"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app
        .post("/api/v1/entries", Some(&bob), mk("unclaimed", "x.y"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app
        .post("/api/v1/entries", Some(&bob), mk("bob", "x.y"))
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Members: only owners manage them; a namespace keeps an owner.
    let path = "/api/v1/namespaces/acme/members/bob";
    let (s, _) = app.put(path, Some(&bob), json!({"role": "owner"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.put(path, None, json!({"role": "owner"})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, b) = app
        .put(path, Some(&olga), json!({"role": "maintainer"}))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["role"], "maintainer");
    // bob's existing session sees the new membership at once (rights are read per request).
    let (s, b) = app
        .post("/api/v1/entries", Some(&bob), mk("acme", "x.y"))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _) = app
        .put(
            "/api/v1/namespaces/acme/members/nobody",
            Some(&olga),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = app
        .put(
            "/api/v1/namespaces/nowhere/members/bob",
            Some(&olga),
            json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = app
        .call(
            Method::DELETE,
            "/api/v1/namespaces/acme/members/olga",
            Some(&olga),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, _) = app.call(Method::DELETE, path, Some(&olga), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = app
        .post("/api/v1/entries", Some(&bob), mk("acme", "x.z"))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // A token with manage-owners can manage; one without cannot.
    let manage = app.create_token(&olga, "m", &["manage-owners"], None).await;
    let yank = app.create_token(&olga, "y", &["yank"], None).await;
    let (s, _) = app.put(path, Some(&yank), json!({"role": "viewer"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app
        .put(path, Some(&manage), json!({"role": "viewer"}))
        .await;
    assert_eq!(s, StatusCode::OK);

    let (s, me) = app.get("/api/v1/user", Some(&bob)).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(me["name"], "bob");
    assert!(me.get("password_hash").is_none());
    let ns: Vec<&str> = me["memberships"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(ns, vec!["acme", "bob"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_server_closes_when_the_first_user_registers() {
    let app = start(None).await;
    let mk = |name: &str| json!({"kind": "tool", "namespace": "demo", "name": name, "description": "open mode"});
    // No admin token, no accounts: anonymous writes work (the laptop demo)...
    let (s, b) = app.post("/api/v1/entries", None, mk("a.b")).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // ...but not to an ecosystem's namespace.
    let (s, b) = app
        .post(
            "/api/v1/entries",
            None,
            json!({"kind": "package", "namespace": "npm", "name": "react"}),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    // The first account does not become an admin by being first; anonymous writes stop.
    let first = app.user("first").await;
    let (s, me) = app.get("/api/v1/user", Some(&first)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(me["site_role"].is_null(), "{me}");
    let (s, _) = app.post("/api/v1/entries", None, mk("a.c")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.post("/api/v1/entries", Some(&first), mk("a.c")).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // The setup code the server printed makes the admin, once; a wrong one is refused.
    let code = app
        .registry
        .setup_code()
        .expect("a server without admin token has a setup code");
    let register =
        |name: &str, code: &str| json!({"name": name, "password": PASSWORD, "setup_code": code});
    let (s, b) = app
        .post("/api/v1/users", None, register("mallory", "qvs_wrong"))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{b}");
    let (s, b) = app
        .post("/api/v1/users", None, register("root", &code))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["site_role"], "admin", "{b}");
    assert!(app.registry.setup_code().is_none(), "the code is used up");
    let (s, b) = app
        .post("/api/v1/users", None, register("again", &code))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "a used code: {b}");
    let root = app.login("root").await;
    // The admin writes anywhere, including namespaces nobody owns and ecosystems'.
    let (s, b) = app.post("/api/v1/entries", Some(&root), mk("a.c")).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, b) = app
        .post(
            "/api/v1/entries",
            Some(&root),
            json!({"kind": "package", "namespace": "npm", "name": "react"}),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    // Site operations are the admin's.
    let (s, _) = app.get("/api/v1/jobs", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.get("/api/v1/jobs", Some(&first)).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/api/v1/jobs", Some(&root)).await;
    assert_eq!(s, StatusCode::OK);
    // A restarted registry on the same database draws no new code.
    let other_index = tempfile::tempdir().unwrap();
    let mut config = app.registry.config().clone();
    config.data_dir = other_index.path().to_path_buf();
    let again = quiver_engine::Registry::open(app.registry.database().clone(), config)
        .await
        .unwrap();
    assert!(again.setup_code().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ecosystem_names_cannot_be_taken() {
    let app = TestApp::builder()
        .admin_token("root-token-for-ecosystem-tests")
        .user("erin")
        .start()
        .await;
    for name in ["npm", "pypi"] {
        let (s, b) = app
            .post(
                "/api/v1/users",
                None,
                json!({"name": name, "password": PASSWORD}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
        let (s, b) = app
            .post(
                "/api/v1/namespaces",
                Some(app.session("erin")),
                json!({"name": name}),
            )
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{b}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managing_tokens_needs_its_own_scope() {
    let app = TestApp::builder()
        .admin_token("root-token-for-token-tests")
        .user("erin")
        .start()
        .await;
    let session = app.session("erin").to_string();
    let ci = app
        .create_token(
            &session,
            "ci",
            &["publish-update", "publish-new"],
            Some("text.*"),
        )
        .await;
    let broad = app
        .create_token(
            &session,
            "broad",
            &["publish-update", "yank", "read-private"],
            None,
        )
        .await;
    let manager = app
        .create_token(
            &session,
            "manager",
            &["manage-tokens", "publish-update"],
            None,
        )
        .await;
    let (_, listed) = app.get("/api/v1/tokens", Some(&session)).await;
    let id_of = |name: &str| {
        listed["items"]
            .as_array()
            .or(listed.as_array())
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (session_id, broad_id, ci_id) = (id_of("session"), id_of("broad"), id_of("ci"));

    // A leaked CI token (a name pattern) and a broad token without the scope can neither
    // list, mint nor revoke their owner's tokens.
    for t in [&ci, &broad] {
        let (s, b) = app.get("/api/v1/tokens", Some(t)).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        let (s, b) = app
            .post(
                "/api/v1/tokens",
                Some(t),
                json!({"name": "x", "scopes": ["publish-update"]}),
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        let (s, b) = app
            .call(
                reqwest::Method::DELETE,
                &format!("/api/v1/tokens/{session_id}"),
                Some(t),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    }
    // A token with manage-tokens (and no pattern) may.
    let (s, b) = app.get("/api/v1/tokens", Some(&manager)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{broad_id}"),
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Any token may revoke itself (`quiver logout`).
    let (s, b) = app
        .call(
            reqwest::Method::DELETE,
            &format!("/api/v1/tokens/{ci_id}"),
            Some(&ci),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, _) = app.get("/api/v1/user", Some(&ci)).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // The session is untouched.
    let (s, _) = app.get("/api/v1/user", Some(&session)).await;
    assert_eq!(s, StatusCode::OK);
}
