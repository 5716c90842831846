//! Client commands: talk to a running server over its HTTP API.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quiver_model::Kind;
use reqwest::{Method, StatusCode};
use serde_json::{json, Map, Value};
use std::io::Write;

use crate::Remote;

pub(crate) struct Client {
    http: reqwest::Client,
    remote: Remote,
}

impl Client {
    pub(crate) fn new(mut remote: Remote) -> Self {
        if remote.token.is_none() {
            remote.token = crate::login::stored_token(&remote.server);
        }
        // The server counts downloads per client program by this product token.
        let http = reqwest::Client::builder()
            .user_agent(concat!("quiver/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Client { http, remote }
    }

    /// A client that sends exactly the token given (none: anonymous), never one stored
    /// by `quiver login` (the mirror reads what anyone may read unless told otherwise).
    pub(crate) fn with_token(server: &str, token: Option<String>) -> Self {
        let mut c = Client::new(Remote {
            server: server.to_string(),
            token: Some(String::new()),
            json: false,
        });
        c.remote.token = token.filter(|t| !t.is_empty());
        c
    }

    /// GET raw bytes (a version's content): `Ok(None)` for 404.
    pub(crate) async fn get_bytes(&self, path: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let resp = self.send(Method::GET, path, None).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let value: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(refusal(status, &value));
        }
        Ok(Some(
            resp.bytes().await.context("reading the download")?.to_vec(),
        ))
    }

    /// Send a request and hand back the response, whatever its status.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{}", self.remote.server.trim_end_matches('/'), path);
        let mut req = self.http.request(method, &url);
        if let Some(t) = &self.remote.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.map_err(|e| {
            if e.is_connect() {
                anyhow!(
                    "could not reach the server at {} (is `quiver serve` running? set --server or QUIVER_SERVER)",
                    self.remote.server
                )
            } else {
                anyhow!("request to {url} failed: {e}")
            }
        })
    }

    /// Send a request; `Ok(None)` for 404, the JSON body for success, an error carrying
    /// the server's message (and field) otherwise.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let is_get = method == Method::GET;
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        if status == StatusCode::NOT_FOUND && is_get {
            return Ok(None);
        }
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(Some(value));
        }
        Err(refusal(status, &value))
    }
}

impl Client {
    /// [`Client::call`] for a read worth keeping (`suggest`, `resolve`, `info`): the answer
    /// is cached with its `ETag` and revalidated; when the server cannot be reached, the
    /// cached answer is given, with a note on standard error saying so and as of when.
    pub(crate) async fn call_cached(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let server = self.remote.server.clone();
        let m = method.as_str().to_string();
        let cached = crate::cache::load(&server, &m, path, body);
        let url = format!("{}{}", server.trim_end_matches('/'), path);
        let mut req = self.http.request(method.clone(), &url);
        if let Some(t) = &self.remote.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(tag) = cached.as_ref().and_then(|c| c.etag.as_deref()) {
            req = req.header(reqwest::header::IF_NONE_MATCH, tag);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() || e.is_timeout() => {
                return match cached {
                    Some(c) => {
                        eprintln!(
                            "offline: {server} cannot be reached; answering from the cache as \
                             of {}",
                            c.at
                        );
                        Ok(Some(c.body))
                    }
                    None => Err(anyhow!(
                        "could not reach the server at {server} and nothing is cached for \
                         this request (is `quiver serve` running? set --server or \
                         QUIVER_SERVER)"
                    )),
                };
            }
            Err(e) => return Err(anyhow!("request to {url} failed: {e}")),
        };
        let status = resp.status();
        if status == StatusCode::NOT_MODIFIED {
            if let Some(c) = cached {
                return Ok(Some(c.body));
            }
        }
        if status == StatusCode::NOT_FOUND && method == Method::GET {
            return Ok(None);
        }
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            crate::cache::store(&server, &m, path, body, etag.as_deref(), &value);
            return Ok(Some(value));
        }
        Err(refusal(status, &value))
    }
}

/// The error for a refused request: the server's message, and field when it names one.
fn refusal(status: StatusCode, body: &Value) -> anyhow::Error {
    let e = &body["error"];
    let msg = e["message"]
        .as_str()
        .unwrap_or("the server refused the request");
    match e["field"].as_str() {
        Some(f) => anyhow!("{msg} (field: {f}; HTTP {status})"),
        None => anyhow!("{msg} (HTTP {status})"),
    }
}

/// `namespace/name`, where npm scoped names keep their own slash (`npm/@types/node`).
pub(crate) fn split_name(full: &str) -> anyhow::Result<(String, String)> {
    let (ns, name) = full.split_once('/').ok_or_else(|| {
        anyhow!("name '{full}' must be written namespace/name, e.g. npm/@types/node")
    })?;
    if ns.is_empty() || name.is_empty() {
        bail!("name '{full}' must be written namespace/name");
    }
    Ok((ns.to_string(), name.to_string()))
}

pub(crate) fn entry_path(kind: Kind, ns: &str, name: &str) -> String {
    format!("/api/v1/entries/{kind}/{ns}/{name}")
}

pub(crate) fn print_json(v: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

#[derive(Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// What to publish: a JSON file of the entry's fields (kind, namespace, name,
    /// description, ...) and the version's (version, manifest, changelog, breaking); or a
    /// kind's own source: an mlld module file (.mld, .mld.md, .mlld.md), a skill's folder
    /// or SKILL.md, a package.json with a `tpmjs` field, an ops tool profile (YAML), a
    /// tsuku recipe (TOML), a skills registry.
    #[arg(value_name = "PATH")]
    pub file: PathBuf,
    /// A file to publish as the version's content (a module's file): the server hashes
    /// it and records the hash in the manifest. A module file is its own content.
    #[arg(long)]
    pub content: Option<PathBuf>,
    /// Check the version as a publish would (rules, expressions, content hash, quality
    /// gates, review) and print every finding, writing nothing. Fails when the publish
    /// would be refused or the version held back.
    #[arg(long)]
    pub dry_run: bool,
    /// The namespace to publish a source file's entries in (instead of, or where the
    /// file has none, e.g. a module's `author`).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The version to publish a source file as (instead of, or where the file has none);
    /// a source without versions (a recipe) is otherwise published as the next patch
    /// after the latest, or 1.0.0.
    #[arg(long = "version", value_name = "VERSION")]
    pub set_version: Option<String>,
    /// Of a source file holding several entries, publish only this one (name or
    /// namespace/name).
    #[arg(long)]
    pub entry: Option<String>,
    /// Never ask: a source file missing a required field fails, naming every one.
    #[arg(long, visible_alias = "no-input")]
    pub yes: bool,
}

/// The entry fields a check of a new name's first version takes.
const DRAFT_FIELDS: &[&str] = &[
    "display_name",
    "description",
    "category",
    "tags",
    "keywords",
    "visibility",
];

const VERSION_FIELDS: &[&str] = &[
    "version",
    "manifest",
    "changelog",
    "breaking",
    "content",
    "content_base64",
];

pub async fn publish(a: PublishArgs) -> anyhow::Result<()> {
    if !is_publish_json(&a.file) {
        return publish_source(&a).await;
    }
    let text = std::fs::read_to_string(&a.file)
        .with_context(|| format!("reading {}", a.file.display()))?;
    let doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", a.file.display()))?;
    let Value::Object(doc) = doc else {
        bail!("{} must hold a JSON object", a.file.display());
    };
    let (mut entry, mut version) = (Map::new(), Map::new());
    for (k, v) in doc {
        if VERSION_FIELDS.contains(&k.as_str()) {
            version.insert(k, v);
        } else {
            entry.insert(k, v);
        }
    }
    let get = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(kind), Some(ns), Some(name)) = (get("kind"), get("namespace"), get("name")) else {
        bail!("{} needs kind, namespace and name", a.file.display());
    };
    if !version.contains_key("version") {
        bail!("{} needs a version", a.file.display());
    }
    if let Some(path) = &a.content {
        insert_content(&mut version, path)?;
    }
    let kind: Kind = kind.parse()?;
    let client = Client::new(a.remote.clone());
    send_publish(&a, &client, kind, &ns, &name, entry, version).await
}

/// Whether `path` is quiver's own publish file: a `.json` file that is not JSON (its
/// error says so), or a JSON object with a `kind`. Anything else is a kind's source.
fn is_publish_json(path: &std::path::Path) -> bool {
    if path.extension().and_then(|e| e.to_str()) != Some("json") {
        return false;
    }
    match std::fs::read_to_string(path).map(|t| serde_json::from_str::<Value>(&t)) {
        Ok(Ok(v)) => v.get("kind").is_some() || !v.is_object(),
        _ => true,
    }
}

/// The file at `path` as the version's content (text, or base64 when it is not UTF-8).
fn insert_content(version: &mut Map<String, Value>, path: &std::path::Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    version.remove("content");
    version.remove("content_base64");
    match String::from_utf8(bytes) {
        Ok(text) => version.insert("content".into(), text.into()),
        Err(e) => {
            use base64::Engine as _;
            let b64 = base64::engine::general_purpose::STANDARD.encode(e.into_bytes());
            version.insert("content_base64".into(), b64.into())
        }
    };
    Ok(())
}

/// Create the entry when it is new, then publish the version (or, with `--dry-run`,
/// check it and print the findings).
async fn send_publish(
    a: &PublishArgs,
    client: &Client,
    kind: Kind,
    ns: &str,
    name: &str,
    entry: Map<String, Value>,
    mut version: Map<String, Value>,
) -> anyhow::Result<()> {
    let path = entry_path(kind, ns, name);
    if a.dry_run {
        if client.call(Method::GET, &path, None).await?.is_none() {
            let draft: Map<String, Value> = entry
                .into_iter()
                .filter(|(k, _)| DRAFT_FIELDS.contains(&k.as_str()))
                .collect();
            version.insert("entry".into(), Value::Object(draft));
        }
        let report = client
            .call(
                Method::POST,
                &format!("{path}/versions/validate"),
                Some(&Value::Object(version)),
            )
            .await?
            .unwrap_or(Value::Null);
        return print_validation(&a.remote, &report, &format!("{kind} {ns}/{name}"));
    }
    if client.call(Method::GET, &path, None).await?.is_none() {
        client
            .call(Method::POST, "/api/v1/entries", Some(&Value::Object(entry)))
            .await?;
    }
    let v = client
        .call(
            Method::POST,
            &format!("{path}/versions"),
            Some(&Value::Object(version)),
        )
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&v);
    }
    println!(
        "published {kind} {ns}/{name} {} (sha256 {})",
        v["version"].as_str().unwrap_or("?"),
        v["sha256"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// `quiver publish` of a kind's own source file: read it, fill in what it lacks (asked
/// on a terminal; named in the error otherwise, publishing nothing), then publish each
/// entry it holds.
async fn publish_source(a: &PublishArgs) -> anyhow::Result<()> {
    let shown = a.file.display();
    let mut drafts = quiver_import::source::read(&a.file).map_err(|e| anyhow!("{shown}: {e}"))?;
    if let Some(only) = &a.entry {
        let all: Vec<String> = drafts
            .iter()
            .map(|d| format!("{}/{}", d.entry.namespace, d.entry.name))
            .collect();
        drafts.retain(|d| {
            d.entry.name == *only || format!("{}/{}", d.entry.namespace, d.entry.name) == *only
        });
        if drafts.is_empty() {
            bail!(
                "{shown} holds no entry {only} (it holds: {})",
                all.join(", ")
            );
        }
    }
    for d in &mut drafts {
        if let Some(ns) = &a.namespace {
            d.entry.namespace = ns.clone();
        }
        if let Some(v) = &a.set_version {
            d.version = Some(v.clone());
        }
        for w in &d.warnings {
            eprintln!("warning: {w}");
        }
    }
    let missing: Vec<String> = drafts.iter().flat_map(|d| d.missing_report()).collect();
    if !missing.is_empty() {
        if a.yes || !crate::prompt::interactive() {
            bail!("{}\nnothing was published", missing.join("\n"));
        }
        for d in &mut drafts {
            ask_missing(d)?;
        }
    }
    let client = Client::new(a.remote.clone());
    for d in drafts {
        let (kind, ns, name) = (
            d.entry.kind,
            d.entry.namespace.clone(),
            d.entry.name.clone(),
        );
        let version = match &d.version {
            Some(v) => v.clone(),
            None => next_revision(&client, kind, &ns, &name).await?,
        };
        let mut entry = serde_json::to_value(&d.entry)
            .context("writing the entry")?
            .as_object()
            .cloned()
            .unwrap_or_default();
        entry.retain(|k, v| !v.is_null() && k != "popularity" && k != "status");
        let mut body = Map::new();
        body.insert("version".into(), version.into());
        body.insert("manifest".into(), d.manifest);
        if let Some(c) = d.changelog {
            body.insert("changelog".into(), c.into());
        }
        match &a.content {
            Some(path) => insert_content(&mut body, path)?,
            None => {
                if let Some(c) = d.content {
                    body.insert("content".into(), c.into());
                }
            }
        }
        send_publish(a, &client, kind, &ns, &name, entry, body).await?;
    }
    Ok(())
}

/// Ask for each required field a draft lacks, checking the answer as it is typed.
fn ask_missing(d: &mut quiver_import::source::Draft) -> anyhow::Result<()> {
    let kind = d.entry.kind;
    let stem = d
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .map(str::to_string);
    for field in d.missing() {
        let label = format!("{} {field}", d.file.display());
        match field {
            "namespace" => {
                d.entry.namespace = crate::prompt::ask(&label, None, &|v| {
                    quiver_model::names::validate_namespace(v)
                        .map(|()| v.to_string())
                        .map_err(|e| e.message)
                })?;
            }
            "name" => {
                let ns = d.entry.namespace.clone();
                d.entry.name = crate::prompt::ask(&label, stem.as_deref(), &|v| {
                    quiver_model::names::validate_name(kind, &ns, v)
                        .map(|()| v.to_string())
                        .map_err(|e| e.message)
                })?;
            }
            "description" => {
                d.entry.description = crate::prompt::ask(&label, None, &|v| {
                    match quiver_model::gates::description_problem(v) {
                        Some(p) => Err(p),
                        None => Ok(v.trim().to_string()),
                    }
                })?;
            }
            _ => {
                d.version = Some(crate::prompt::ask(&label, Some("1.0.0"), &|v| {
                    crate::new_cli::check_version(v)
                })?);
            }
        }
    }
    Ok(())
}

/// The version of a source without versions: the next patch after the entry's latest,
/// or 1.0.0 for a new entry.
async fn next_revision(
    client: &Client,
    kind: Kind,
    ns: &str,
    name: &str,
) -> anyhow::Result<String> {
    let Some(e) = client
        .call(Method::GET, &entry_path(kind, ns, name), None)
        .await?
    else {
        return Ok("1.0.0".into());
    };
    let Some(latest) = e["latest_version"].as_str() else {
        return Ok("1.0.0".into());
    };
    let v = semver::Version::parse(latest)
        .with_context(|| format!("the latest version of {kind} {ns}/{name}, {latest}"))?;
    Ok(semver::Version::new(v.major, v.minor, v.patch + 1).to_string())
}

/// Print a check's findings; fail unless a publish would store an installable version.
fn print_validation(remote: &Remote, report: &Value, what: &str) -> anyhow::Result<()> {
    let outcome = report["outcome"].as_str().unwrap_or("?");
    if remote.json {
        print_json(report)?;
    } else {
        let verdict = match outcome {
            "accepted" => "would be published",
            "review" => "would be published and the entry sent to review",
            "held_back" => "would be held back by the quality gates",
            "refused" => "would be refused",
            other => other,
        };
        println!(
            "{what} {} {verdict}",
            report["sha256"]
                .as_str()
                .map_or(String::new(), |h| format!("(sha256 {h})"))
        );
        for f in report["findings"].as_array().into_iter().flatten() {
            let gate = f["gate"]
                .as_str()
                .map_or(String::new(), |g| format!(" [{g}]"));
            println!(
                "  {:<7} {}{gate}: {}",
                f["severity"].as_str().unwrap_or("?"),
                f["field"].as_str().unwrap_or("?"),
                f["message"].as_str().unwrap_or("?")
            );
        }
    }
    match outcome {
        "accepted" | "review" => Ok(()),
        _ => bail!("the check found errors: nothing was published"),
    }
}

#[derive(Args)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The entry's kind.
    pub kind: Kind,
    /// namespace/name, or namespace/name@version to delete one version.
    pub name: String,
    /// Why (required of site admins; kept on the tombstone and in the audit log).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `namespace/name[@version]`: the name, and the version when one is given (an npm
/// scope's leading `@` is part of the name).
fn split_versioned(full: &str) -> anyhow::Result<(String, String, Option<String>)> {
    let (ns, name) = split_name(full)?;
    match name.rsplit_once('@') {
        Some((n, v)) if !n.is_empty() && !v.is_empty() => {
            Ok((ns, n.to_string(), Some(v.to_string())))
        }
        _ => Ok((ns, name, None)),
    }
}

/// `quiver delete`: delete an entry or one version under the server's deletion policy.
pub async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let (ns, name, version) = split_versioned(&a.name)?;
    let client = Client::new(a.remote.clone());
    let mut path = entry_path(a.kind, &ns, &name);
    if let Some(v) = &version {
        path.push_str(&format!("/versions/{}", urlencode(v)));
    }
    let body = json!({ "reason": a.reason });
    let t = client
        .call(Method::DELETE, &path, Some(&body))
        .await?
        .ok_or_else(|| anyhow!("{} {ns}/{name} not found", a.kind))?;
    if a.remote.json {
        return print_json(&t);
    }
    match &version {
        Some(v) => println!("deleted {} {ns}/{name}@{v}", a.kind),
        None => println!("deleted {} {ns}/{name}", a.kind),
    }
    if t["by_admin"] == true {
        println!("  the name stays reserved (deleted by an administrator)");
    }
    Ok(())
}

#[derive(Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The entry's kind.
    pub kind: Kind,
    /// namespace/name, e.g. npm/@types/node or tpmjs/web.fetchText.
    pub name: String,
}

pub async fn info(a: InfoArgs) -> anyhow::Result<()> {
    let (ns, name) = split_name(&a.name)?;
    let client = Client::new(a.remote.clone());
    let path = entry_path(a.kind, &ns, &name);
    let entry = client
        .call_cached(Method::GET, &path, None)
        .await?
        .ok_or_else(|| anyhow!("{} {ns}/{name} not found", a.kind))?;
    // The newest versions (the list is paged; `info` shows the first page).
    let versions = client
        .call_cached(Method::GET, &format!("{path}/versions?limit=100"), None)
        .await?
        .map(|page| page["items"].clone())
        .unwrap_or(json!([]));
    if a.remote.json {
        return print_json(&json!({"entry": entry, "versions": versions}));
    }
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    println!(
        "{} {}/{}  [{}]",
        s(&entry["kind"]),
        s(&entry["namespace"]),
        s(&entry["name"]),
        s(&entry["status"])
    );
    if !entry["display_name"].is_null() {
        println!("  {}", s(&entry["display_name"]));
    }
    println!("  {}", s(&entry["description"]));
    if let Some(c) = entry["category"].as_str() {
        println!("  category: {c}");
    }
    if let Some(tags) = entry["tags"].as_array().filter(|t| !t.is_empty()) {
        let tags: Vec<String> = tags.iter().map(s).collect();
        println!("  tags: {}", tags.join(", "));
    }
    println!(
        "  latest: {}",
        entry["latest_version"].as_str().unwrap_or("(none)")
    );
    println!(
        "  popularity: {:.3}",
        entry["popularity"]["score"].as_f64().unwrap_or(0.0)
    );
    if let Some(d) = entry["deprecation"].as_object() {
        println!(
            "  DEPRECATED: {}",
            d.get("message").and_then(Value::as_str).unwrap_or("")
        );
    }
    for v in versions.as_array().into_iter().flatten() {
        let yanked = if v["yanked"] == true {
            "  (yanked)"
        } else {
            ""
        };
        println!(
            "  - {}  {}{}",
            s(&v["version"]),
            s(&v["published_at"]),
            yanked
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// What to look for.
    pub query: Vec<String>,
    /// Only these kinds (comma-separated).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only these namespaces / ecosystems (comma-separated).
    #[arg(long)]
    pub namespace: Option<String>,
    /// relevance, popularity, recent or name.
    #[arg(long)]
    pub sort: Option<String>,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

#[derive(Args)]
pub struct SelectArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The capability (`packet_capture`).
    #[arg(required_unless_present = "need")]
    pub capability: Option<String>,
    /// What you need, in words, instead of a capability: `--need "capture network
    /// packets"` selects for the capability that matches it best.
    #[arg(long, conflicts_with = "capability")]
    pub need: Option<String>,
    /// The A/B test subject (a user, session or job id): active tests assign it an arm.
    #[arg(long)]
    pub subject: Option<String>,
    /// Scale time estimates by the executions telemetry has seen.
    #[arg(long)]
    pub calibrated: bool,
    /// A context variable or input: `--var packet_count=5000` (repeatable).
    #[arg(long = "var", value_name = "NAME=NUMBER")]
    pub vars: Vec<String>,
    /// The environment (`production` keeps to production-safe patterns).
    #[arg(long)]
    pub environment: Option<String>,
    #[arg(long)]
    pub max_cost: Option<f64>,
    #[arg(long)]
    pub max_time_ms: Option<f64>,
    /// Exclude patterns that require approval.
    #[arg(long)]
    pub no_approval: bool,
    /// A preference weight: `--prefer speed=1` (repeatable; speed, accuracy, cost,
    /// complexity, completeness).
    #[arg(long = "prefer", value_name = "NAME=WEIGHT")]
    pub prefer: Vec<String>,
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
}

/// `NAME=NUMBER` pairs.
fn numbers(pairs: &[String], what: &str) -> anyhow::Result<serde_json::Map<String, Value>> {
    pairs
        .iter()
        .map(|p| {
            let (k, v) = p
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{what} '{p}': write NAME=NUMBER"))?;
            let n: f64 = v
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{what} '{p}': '{v}' is not a number"))?;
            Ok((k.trim().to_string(), serde_json::json!(n)))
        })
        .collect()
}

pub async fn select(a: SelectArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let mut body = serde_json::json!({
        "variables": numbers(&a.vars, "--var")?,
        "environment": a.environment,
        "constraints": {"max_cost": a.max_cost, "max_time_ms": a.max_time_ms,
                        "approval_allowed": !a.no_approval},
        "preferences": numbers(&a.prefer, "--prefer")?,
        "limit": a.limit,
        "calibrated": a.calibrated,
        "subject": a.subject,
    });
    match (&a.capability, &a.need) {
        (Some(c), _) => body["capability"] = Value::String(c.clone()),
        (None, Some(n)) => body["need"] = Value::String(n.clone()),
        (None, None) => anyhow::bail!("name a capability, or --need"),
    }
    let r = client
        .call(Method::POST, "/api/v1/select", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&r);
    }
    let fmt = |v: &Value| v.as_f64().map_or("?".to_string(), |x| format!("{x}"));
    if let Some(first) = r["resolved"].as_array().and_then(|m| m.first()) {
        println!(
            "'{}' matched capability {} (on: {})",
            a.need.as_deref().unwrap_or(""),
            first["capability"].as_str().unwrap_or(""),
            first["matched"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for x in r["experiments"].as_array().into_iter().flatten() {
        println!(
            "A/B test {}: arm {}",
            x["experiment"].as_str().unwrap_or(""),
            x["arm"].as_str().unwrap_or("")
        );
    }
    let candidates = r["candidates"].as_array().cloned().unwrap_or_default();
    if candidates.is_empty() {
        println!(
            "no tool can do '{}' under these constraints",
            r["capability"].as_str().unwrap_or("")
        );
    }
    for (i, c) in candidates.iter().enumerate() {
        let t = &c["tool"];
        println!(
            "{:>2}. {}/{}@{} {}  score {:.3}  time {} ms  cost {}",
            i + 1,
            t["namespace"].as_str().unwrap_or(""),
            t["name"].as_str().unwrap_or(""),
            c["version"].as_str().unwrap_or(""),
            c["pattern"].as_str().unwrap_or(""),
            c["score"].as_f64().unwrap_or(0.0),
            fmt(&c["time_ms"]),
            fmt(&c["cost"]),
        );
        let missing: Vec<&str> = c["missing_inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if !missing.is_empty() {
            println!("    needs inputs: {}", missing.join(", "));
        }
    }
    let excluded = r["excluded"].as_array().cloned().unwrap_or_default();
    if !excluded.is_empty() {
        println!("excluded:");
        for e in excluded {
            let t = &e["tool"];
            println!(
                "    {}/{} {}: {}",
                t["namespace"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or(""),
                e["pattern"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

fn query_string(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlencode(v))))
        .collect();
    parts.join("&")
}

/// Everything but RFC 3986's unreserved characters is percent-encoded in a query value.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

pub(crate) fn urlencode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

pub async fn search(a: SearchArgs) -> anyhow::Result<()> {
    let q = a.query.join(" ");
    let client = Client::new(a.remote.clone());
    let qs = query_string(&[
        ("q", Some(q.clone())),
        ("kind", a.kind),
        ("namespace", a.namespace),
        ("sort", a.sort),
        ("limit", Some(a.limit.to_string())),
    ]);
    let r = client
        .call(Method::GET, &format!("/api/v1/search?{qs}"), None)
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&r);
    }
    let hits = r["hits"].as_array().cloned().unwrap_or_default();
    if hits.is_empty() {
        match r["suggestion"].as_str() {
            Some(s) => println!("no results for '{q}'. Did you mean '{s}'?"),
            None => println!("no results for '{q}'"),
        }
        return Ok(());
    }
    println!("{} results ({} µs)", r["total"], r["took_us"]);
    for h in hits {
        let s = |k: &str| h[k].as_str().unwrap_or("").to_string();
        println!(
            "{:<8} {}/{}  {}",
            s("kind"),
            s("namespace"),
            s("name"),
            h["latest_version"].as_str().unwrap_or("")
        );
        let d = s("description");
        if !d.is_empty() {
            let short: String = d.chars().take(100).collect();
            println!("         {short}");
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub category: Option<String>,
    #[arg(long)]
    pub tag: Option<String>,
    #[arg(long)]
    pub status: Option<String>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Continue after a previous page.
    #[arg(long)]
    pub cursor: Option<String>,
}

pub async fn list(a: ListArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let qs = query_string(&[
        ("kind", a.kind),
        ("namespace", a.namespace),
        ("category", a.category),
        ("tag", a.tag),
        ("status", a.status),
        ("limit", Some(a.limit.to_string())),
        ("cursor", a.cursor),
    ]);
    let r = client
        .call(Method::GET, &format!("/api/v1/entries?{qs}"), None)
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&r);
    }
    for e in r["items"].as_array().into_iter().flatten() {
        let s = |k: &str| e[k].as_str().unwrap_or("").to_string();
        println!(
            "{:<8} {}/{}  {}  [{}]",
            s("kind"),
            s("namespace"),
            s("name"),
            e["latest_version"].as_str().unwrap_or("-"),
            s("status")
        );
    }
    if let Some(c) = r["next_cursor"].as_str() {
        println!("more: --cursor {c}");
    }
    Ok(())
}

#[derive(Args)]
pub struct AuditArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// Rows about this namespace (required unless you are an admin: owners read theirs).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Rows about exactly this target, as rows name it (`tool acme/x`, `tool acme/x@1.0.0`):
    /// one entry's or version's history.
    #[arg(long)]
    pub target: Option<String>,
    /// Rows by this actor (a user name, `name (token N)`, ...).
    #[arg(long)]
    pub actor: Option<String>,
    /// Rows of this action: entry.create, version.publish, member.set, ...
    #[arg(long)]
    pub action: Option<String>,
    /// allowed or denied.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Rows at or after this RFC 3339 time (2026-11-01T00:00:00Z).
    #[arg(long)]
    pub since: Option<String>,
    /// Rows before this RFC 3339 time.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, default_value_t = 20, conflicts_with = "export")]
    pub limit: usize,
    /// Continue after a previous page.
    #[arg(long, conflicts_with = "export")]
    pub cursor: Option<String>,
    /// Export every matching row as JSON lines (to --output, or standard output).
    #[arg(long)]
    pub export: bool,
    /// The file the export is written to.
    #[arg(long, short, requires = "export")]
    pub output: Option<PathBuf>,
}

/// `quiver audit`: a page of the audit log, or (`--export`) all of it as JSON lines,
/// streamed to a file as the server sends it.
pub async fn audit(a: AuditArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    let filters = [
        ("namespace", a.namespace),
        ("target", a.target),
        ("actor", a.actor),
        ("action", a.action),
        ("outcome", a.outcome),
        ("since", a.since),
        ("until", a.until),
    ];
    if a.export {
        let qs = query_string(&filters);
        let mut resp = client
            .send(Method::GET, &format!("/api/v1/audit/export?{qs}"), None)
            .await?;
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(refusal(status, &body));
        }
        let mut out: Box<dyn Write> = match &a.output {
            Some(p) => Box::new(std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            )),
            None => Box::new(std::io::stdout().lock()),
        };
        let mut rows = 0u64;
        while let Some(chunk) = resp
            .chunk()
            .await
            .context("the server ended the export early")?
        {
            rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
            out.write_all(&chunk).context("writing the export")?;
        }
        out.flush().context("writing the export")?;
        if let Some(p) = &a.output {
            eprintln!("{rows} audit rows written to {}", p.display());
        }
        return Ok(());
    }
    let mut pairs = filters.to_vec();
    pairs.push(("limit", Some(a.limit.to_string())));
    pairs.push(("cursor", a.cursor));
    let qs = query_string(&pairs);
    let r = client
        .call(Method::GET, &format!("/api/v1/audit?{qs}"), None)
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&r);
    }
    for row in r["items"].as_array().into_iter().flatten() {
        let s = |k: &str| row[k].as_str().unwrap_or("-").to_string();
        let mut line = format!(
            "{}  {:<7} {:<20} {:<18} {}",
            s("at"),
            s("outcome"),
            s("actor"),
            s("action"),
            s("target")
        );
        if let Some(reason) = row["reason"].as_str() {
            line.push_str(&format!("  ({reason})"));
        }
        println!("{line}");
    }
    if let Some(c) = r["next_cursor"].as_str() {
        println!("more: --cursor {c}");
    }
    Ok(())
}

#[derive(Args)]
pub struct WhoamiArgs {
    #[command(flatten)]
    pub remote: Remote,
}

/// `quiver whoami`: the signed-in user, their site role and namespaces.
pub async fn whoami(a: WhoamiArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    if client.remote.token.is_none() {
        bail!(
            "not signed in to {}: run `quiver login` or pass --token",
            client.remote.server
        );
    }
    let me = client
        .call(Method::GET, "/api/v1/user", None)
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&me);
    }
    let role = me["site_role"]
        .as_str()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    println!("{}{role}", me["name"].as_str().unwrap_or("?"));
    for m in me["memberships"].as_array().into_iter().flatten() {
        println!(
            "  {:<24} {}",
            m["namespace"].as_str().unwrap_or(""),
            m["role"].as_str().unwrap_or("")
        );
    }
    Ok(())
}

#[derive(Args)]
pub struct RegisterArgs {
    #[command(flatten)]
    pub remote: Remote,
    /// The user name (also the user's namespace).
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub email: Option<String>,
    /// The one-time code a server without an admin token printed at start: makes this
    /// user the site admin.
    #[arg(long, env = "QUIVER_SETUP_CODE", hide_env_values = true)]
    pub setup_code: Option<String>,
    /// Read the password (at least 10 characters) from the first line of standard input.
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

/// `quiver register`: create an account (with the setup code, the first site admin).
pub async fn register(a: RegisterArgs) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_line(&mut password)
        .context("reading the password from standard input")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let mut body = json!({"name": a.name, "password": password});
    if let Some(e) = &a.email {
        body["email"] = json!(e);
    }
    if let Some(code) = &a.setup_code {
        body["setup_code"] = json!(code);
    }
    let client = Client {
        http: reqwest::Client::new(),
        remote: a.remote.clone(),
    };
    let user = client
        .call(Method::POST, "/api/v1/users", Some(&body))
        .await?
        .unwrap_or(Value::Null);
    if a.remote.json {
        return print_json(&user);
    }
    let role = user["site_role"]
        .as_str()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();
    println!(
        "registered {}{role}; sign in with `quiver login --server {}`",
        user["name"].as_str().unwrap_or("?"),
        client.remote.server
    );
    Ok(())
}

#[derive(Args)]
pub struct TokensArgs {
    #[command(flatten)]
    pub remote: Remote,
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Your tokens: name, scopes, pattern, expiry, last use (never the secret).
    List,
    /// Create a token and print it once (quiver keeps only its hash).
    Create {
        /// A label: "ci", "laptop".
        name: String,
        /// What it may do (repeatable): publish-new, publish-update, yank, manage-owners,
        /// read-private, manage-tokens, admin. Never more than the token you create it
        /// with.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Only entry names matching this glob (`text.*`).
        #[arg(long)]
        pattern: Option<String>,
        /// Days until it expires (1 to 366); default: never.
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
    /// Revoke a token by its id.
    Revoke { id: i64 },
}

/// `quiver tokens`: list, create and revoke the signed-in user's API tokens.
pub async fn tokens(a: TokensArgs) -> anyhow::Result<()> {
    let client = Client::new(a.remote.clone());
    match a.command {
        TokensCommand::List => {
            let list = client
                .call(Method::GET, "/api/v1/tokens", None)
                .await?
                .unwrap_or(Value::Null);
            if a.remote.json {
                return print_json(&list);
            }
            for t in list.as_array().into_iter().flatten() {
                let s = |k: &str| t[k].as_str().unwrap_or("-").to_string();
                let scopes: Vec<&str> = t["scopes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let state = if t["revoked_at"].is_string() {
                    "  [revoked]"
                } else {
                    ""
                };
                println!(
                    "{:>5}  {:<20} {:<40} pattern {}  expires {}  last used {}{state}",
                    t["id"],
                    s("name"),
                    scopes.join(","),
                    s("pattern"),
                    s("expires_at"),
                    s("last_used_at"),
                );
            }
        }
        TokensCommand::Create {
            name,
            scopes,
            pattern,
            expires_in_days,
        } => {
            let body = json!({
                "name": name,
                "scopes": scopes,
                "pattern": pattern,
                "expires_in_days": expires_in_days,
            });
            let t = client
                .call(Method::POST, "/api/v1/tokens", Some(&body))
                .await?
                .unwrap_or(Value::Null);
            if a.remote.json {
                return print_json(&t);
            }
            eprintln!(
                "token {} \"{}\" created; it is shown once, here:",
                t["id"],
                t["name"].as_str().unwrap_or("")
            );
            println!("{}", t["token"].as_str().unwrap_or(""));
        }
        TokensCommand::Revoke { id } => {
            let t = client
                .call(Method::DELETE, &format!("/api/v1/tokens/{id}"), None)
                .await?
                .ok_or_else(|| anyhow!("no token {id} of yours"))?;
            if a.remote.json {
                return print_json(&t);
            }
            println!(
                "revoked token {id} \"{}\"",
                t["name"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(
            query_string(&[
                ("q", Some("csv parse & more/über".into())),
                ("kind", None),
                ("limit", Some("10".into())),
            ]),
            "q=csv%20parse%20%26%20more%2F%C3%BCber&limit=10"
        );
        assert_eq!(urlencode("a-b_c.d~e+f"), "a-b_c.d~e%2Bf");
    }
}
