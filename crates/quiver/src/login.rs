//! `quiver login` and `quiver logout`: device-code sign-in (RFC 8628) against a quiver
//! server, and the credentials file the client commands read their token from.
//!
//! - `login` asks the server for a code, prints the page and the user code, and polls at
//!   the interval the server gives (5 s more after each `slow_down`) until the code is
//!   approved, denied or expired. No password passes through the terminal.
//! - The token is kept in `credentials.toml` in the user's config directory:
//!   `$QUIVER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/quiver`, else `~/.config/quiver`. The
//!   directory is created `0700` and the file `0600` — created with that mode (a fresh
//!   file renamed into place), never chmod-ed after the secret is in it.
//! - One token per server URL; `--token`/`QUIVER_TOKEN` still wins over the file.
//! - `logout` revokes the token on the server (when it can) and removes it from the file.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use serde_json::{json, Value};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:device_code";
const FILE_NAME: &str = "credentials.toml";

#[derive(Args)]
pub struct LoginArgs {
    /// Base URL of the quiver server to sign in to.
    #[arg(long, env = "QUIVER_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// A scope to ask for (repeat for several: publish-new, publish-update, yank,
    /// manage-owners, read-private, admin); default: the server's (publishing, yanking,
    /// reading private entries).
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    /// What to call this client (the token's name); default "quiver CLI on <host>".
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args)]
pub struct LogoutArgs {
    /// Base URL of the quiver server to sign out of.
    #[arg(long, env = "QUIVER_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
}

/// A stored sign-in. Its `Debug` hides the token.
#[derive(Clone, PartialEq)]
pub struct Credential {
    pub token: String,
    pub token_id: Option<i64>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Credential { token: _, token_id } = self;
        f.debug_struct("Credential")
            .field("token", &quiver_engine::auth::secrets::Redacted)
            .field("token_id", token_id)
            .finish()
    }
}

/// Where credentials live (see the module comment).
pub fn config_dir() -> anyhow::Result<PathBuf> {
    let non_empty = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
    if let Some(d) = non_empty("QUIVER_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = non_empty("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(d).join("quiver"));
    }
    if let Some(h) = non_empty("HOME") {
        return Ok(PathBuf::from(h).join(".config").join("quiver"));
    }
    bail!("no config directory: set QUIVER_CONFIG_DIR, XDG_CONFIG_HOME or HOME")
}

pub fn credentials_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join(FILE_NAME))
}

/// Servers are keyed by their URL without a trailing slash.
fn server_key(server: &str) -> String {
    server.trim().trim_end_matches('/').to_string()
}

/// The stored token for `server`, if any (a missing or unreadable file is none).
pub fn stored_token(server: &str) -> Option<String> {
    let path = credentials_path().ok()?;
    let text = std::fs::read_to_string(path).ok()?;
    parse(&text).remove(&server_key(server)).map(|c| c.token)
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A TOML basic string at the start of `s`: its value and the rest after it.
fn parse_string(s: &str) -> Option<(String, &str)> {
    let mut chars = s.strip_prefix('"')?.char_indices();
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 2..])),
            '\\' => match chars.next()?.1 {
                '"' => out.push('"'),
                '\\' => out.push('\\'),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = (0..4).filter_map(|_| chars.next().map(|x| x.1)).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                _ => return None,
            },
            c => out.push(c),
        }
    }
    None
}

/// The file's `[servers."<url>"]` tables (the subset of TOML this file uses).
fn parse(text: &str) -> BTreeMap<String, Credential> {
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Option<String>, Option<i64>)> = None;
    let mut flush = |cur: &mut Option<(String, Option<String>, Option<i64>)>| {
        if let Some((server, Some(token), token_id)) = cur.take() {
            out.insert(server, Credential { token, token_id });
        }
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("[servers.") {
            flush(&mut current);
            current = parse_string(rest)
                .filter(|(_, tail)| tail.trim() == "]")
                .map(|(s, _)| (s, None, None));
            continue;
        }
        if line.starts_with('[') {
            flush(&mut current);
            continue;
        }
        let (Some(cur), Some((k, v))) = (current.as_mut(), line.split_once('=')) else {
            continue;
        };
        match k.trim() {
            "token" => cur.1 = parse_string(v.trim()).map(|(s, _)| s),
            "token_id" => cur.2 = v.trim().parse().ok(),
            _ => {}
        }
    }
    flush(&mut current);
    out
}

fn render(creds: &BTreeMap<String, Credential>) -> String {
    let mut s = String::from(
        "# quiver credentials, written by `quiver login`. Keep this file private: a token\n\
         # here acts as you. `quiver logout` revokes a token and removes it.\n",
    );
    for (server, c) in creds {
        s.push_str(&format!("\n[servers.{}]\n", toml_string(server)));
        s.push_str(&format!("token = {}\n", toml_string(&c.token)));
        if let Some(id) = c.token_id {
            s.push_str(&format!("token_id = {id}\n"));
        }
    }
    s
}

/// Write the whole file: a fresh file created `0600` beside it, then renamed over it.
fn write_credentials(creds: &BTreeMap<String, Credential>) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    create_private_dir(&dir)?;
    let path = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut f = private_file(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(render(creds).as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(f);
    std::fs::rename(&tmp, &path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(path)
}

#[cfg(unix)]
fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

#[cfg(not(unix))]
fn create_private_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

fn read_credentials() -> anyhow::Result<BTreeMap<String, Credential>> {
    let path = credentials_path()?;
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn host_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "this machine".into())
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
    let resp = http.post(url).json(body).send().await.map_err(|e| {
        if e.is_connect() {
            anyhow!("could not reach the server at {url} (set --server or QUIVER_SERVER)")
        } else {
            anyhow!("request to {url} failed: {e}")
        }
    })?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

fn server_error(v: &Value, status: u16) -> anyhow::Error {
    let msg = v["error"]["message"]
        .as_str()
        .unwrap_or("the server refused the request");
    anyhow!("{msg} (HTTP {status})")
}

pub async fn login(a: LoginArgs) -> anyhow::Result<()> {
    let server = server_key(&a.server);
    let http = reqwest::Client::new();
    let mut req = json!({
        "client_name": a.name.clone().unwrap_or_else(|| format!("quiver CLI on {}", host_name())),
    });
    if !a.scopes.is_empty() {
        req["scopes"] = json!(a.scopes);
    }
    let (status, code) = post(&http, &format!("{server}/api/v1/device/code"), &req).await?;
    if status != 200 {
        return Err(server_error(&code, status));
    }
    let field = |k: &str| {
        code[k]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the server's answer has no {k}"))
    };
    let (device_code, user_code, page) = (
        field("device_code")?,
        field("user_code")?,
        field("verification_uri")?,
    );
    let mut interval = code["interval"].as_u64().unwrap_or(5).max(1);
    let expires_in = code["expires_in"].as_u64().unwrap_or(600);
    println!("To sign in, open {page} and enter the code {user_code}");
    if let Some(complete) = code["verification_uri_complete"].as_str() {
        println!("(or open {complete})");
    }
    println!("Waiting for approval...");
    std::io::stdout().flush().ok();

    let deadline = Instant::now() + Duration::from_secs(expires_in);
    let token = loop {
        tokio::time::sleep(Duration::from_secs(interval)).await;
        let (status, v) = post(
            &http,
            &format!("{server}/api/v1/device/token"),
            &json!({"device_code": device_code, "grant_type": GRANT_TYPE}),
        )
        .await?;
        if status == 200 {
            break v;
        }
        match v["error"]["code"].as_str() {
            Some("authorization_pending") => {}
            // RFC 8628 §3.5: five seconds more, for this and every later poll.
            Some("slow_down") => interval += 5,
            Some("expired_token") => {
                bail!("the code expired before it was approved; run `quiver login` again")
            }
            Some("access_denied") => bail!("the sign-in was denied"),
            _ => return Err(server_error(&v, status)),
        }
        if Instant::now() >= deadline {
            bail!("the code expired before it was approved; run `quiver login` again");
        }
    };
    let secret = token["token"]
        .as_str()
        .ok_or_else(|| anyhow!("the server's answer has no token"))?
        .to_string();
    let mut creds = read_credentials()?;
    creds.insert(
        server.clone(),
        Credential {
            token: secret.clone(),
            token_id: token["id"].as_i64(),
        },
    );
    let path = write_credentials(&creds)?;
    let who = http
        .get(format!("{server}/api/v1/user"))
        .bearer_auth(&secret)
        .send()
        .await
        .ok();
    let name = match who {
        Some(r) if r.status().is_success() => r
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["name"].as_str().map(str::to_string)),
        _ => None,
    };
    match name {
        Some(n) => println!("Signed in to {server} as {n}."),
        None => println!("Signed in to {server}."),
    }
    println!("Token saved to {}", path.display());
    Ok(())
}

pub async fn logout(a: LogoutArgs) -> anyhow::Result<()> {
    let server = server_key(&a.server);
    let mut creds = read_credentials()?;
    let Some(c) = creds.remove(&server) else {
        println!("Not signed in to {server}.");
        return Ok(());
    };
    if let Some(id) = c.token_id {
        let revoked = reqwest::Client::new()
            .delete(format!("{server}/api/v1/tokens/{id}"))
            .bearer_auth(&c.token)
            .send()
            .await;
        match revoked {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 401 => {}
            Ok(r) => eprintln!(
                "warning: the server did not revoke the token (HTTP {})",
                r.status()
            ),
            Err(e) => eprintln!("warning: could not revoke the token on the server: {e}"),
        }
    }
    write_credentials(&creds)?;
    println!("Signed out of {server}.");
    Ok(())
}

/// The outside sign-in provider from the environment (`quiver serve`): set
/// `QUIVER_OIDC_CLIENT_ID` and the rest — `QUIVER_OIDC_CLIENT_SECRET`,
/// `QUIVER_OIDC_AUTHORIZE_URL`, `QUIVER_OIDC_TOKEN_URL`, `QUIVER_OIDC_USERINFO_URL`, and
/// optionally `QUIVER_OIDC_PROVIDER` (a short name, default `oidc`), `QUIVER_OIDC_SCOPES`
/// (default `openid email profile`) and `QUIVER_OIDC_REDIRECT_URI`.
pub fn oidc_from_env() -> anyhow::Result<Option<quiver_engine::oidc::OidcConfig>> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let Some(client_id) = var("QUIVER_OIDC_CLIENT_ID") else {
        return Ok(None);
    };
    let need =
        |k: &str| var(k).ok_or_else(|| anyhow!("QUIVER_OIDC_CLIENT_ID is set, so {k} must be too"));
    Ok(Some(quiver_engine::oidc::OidcConfig {
        provider: var("QUIVER_OIDC_PROVIDER").unwrap_or_else(|| "oidc".into()),
        authorize_url: need("QUIVER_OIDC_AUTHORIZE_URL")?,
        token_url: need("QUIVER_OIDC_TOKEN_URL")?,
        userinfo_url: need("QUIVER_OIDC_USERINFO_URL")?,
        client_secret: need("QUIVER_OIDC_CLIENT_SECRET")?,
        client_id,
        scopes: var("QUIVER_OIDC_SCOPES").unwrap_or_else(|| "openid email profile".into()),
        redirect_uri: var("QUIVER_OIDC_REDIRECT_URI"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_round_trips() {
        let mut m = BTreeMap::new();
        m.insert(
            "http://127.0.0.1:7070".to_string(),
            Credential {
                token: "qvr_abc".into(),
                token_id: Some(7),
            },
        );
        m.insert(
            "https://odd\"server\\x".to_string(),
            Credential {
                token: "qvr_def".into(),
                token_id: None,
            },
        );
        let text = render(&m);
        assert_eq!(parse(&text), m, "{text}");
        assert!(parse("[servers.\"x\"]\n").is_empty(), "no token, no entry");
        assert!(parse("garbage\n[servers.x]\ntoken = \"t\"\n").is_empty());
        assert_eq!(server_key("http://h:1/"), "http://h:1");
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Credential {
            token: "qvr_secret_token_value".into(),
            token_id: Some(7),
        };
        let shown = format!("{c:?}");
        assert!(!shown.contains("qvr_secret"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains('7'),
            "{shown}"
        );
    }
}
