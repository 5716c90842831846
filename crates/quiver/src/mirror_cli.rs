//! `quiver mirror --from URL`: follow another quiver's public change feed and copy what
//! it shows into the local store (the engine's `mirror.rs` applies; this module fetches).
//!
//! Each round reads a page of the source's feed after the mirror's position
//! (`GET /api/v1/changes`, a long poll in follow mode), reads every entry the page
//! touches as the source answers it now (the entry, its versions with manifests, its
//! relations, the content of its versions that the local store lacks), applies them in
//! one batch, follows the deletions the page names (an entry or version the source
//! deleted and no longer answers is deleted here, `Mirror::apply_deletions`), and only
//! then moves the position. A mirror stopped at any moment resumes
//! from the last applied page; a page applied twice writes nothing the second time.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use quiver_engine::content::declared_hash;
use quiver_engine::mirror::{consumer_name, Applied, Mirror, Snapshot};
use quiver_engine::Caller;
use quiver_model::{Entry, EntryKey, Kind, Relation, Version};
use reqwest::Method;
use serde_json::Value;

use crate::client::{entry_path, urlencode, Client};
use crate::DataDir;

#[derive(Args)]
pub struct MirrorArgs {
    #[command(flatten)]
    pub data: DataDir,
    /// Base URL of the quiver server to mirror.
    #[arg(long = "from")]
    pub from: String,
    /// A bearer token for the source (default: none, as an anonymous reader). Private
    /// entries are never copied, whatever the token may read.
    #[arg(long, env = "QUIVER_MIRROR_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Put this in front of every namespace (`--prefix up-`: `acme` becomes `up-acme`);
    /// default: keep the source's namespaces.
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Catch up with the source's feed as it is now, then exit (default: keep following).
    #[arg(long)]
    pub once: bool,
    /// Seconds each long poll of the source's feed waits for a change (follow mode).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub wait: u64,
    /// Feed events read per batch (each batch is applied, then the position moves).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub batch: u64,
    /// Where mirrored content is kept (default: `content` in the data directory, as for
    /// `quiver serve`).
    #[arg(long, env = "QUIVER_CONTENT_DIR")]
    pub content_dir: Option<PathBuf>,
}

/// A page of the source's feed, as `GET /api/v1/changes` answers it: the entries its
/// events touch (in order, once each), where to resume, and the feed's head.
struct Page {
    keys: Vec<EntryKey>,
    /// Entries the page says were deleted.
    deleted: Vec<EntryKey>,
    /// Versions the page says were deleted.
    deleted_versions: Vec<(EntryKey, String)>,
    next: i64,
    head: i64,
}

impl Page {
    fn read(v: &Value) -> anyhow::Result<Page> {
        let number = |field: &str| {
            v[field]
                .as_i64()
                .with_context(|| format!("the source's feed page has no `{field}`"))
        };
        let mut keys: Vec<EntryKey> = Vec::new();
        let mut deleted: Vec<EntryKey> = Vec::new();
        let mut deleted_versions: Vec<(EntryKey, String)> = Vec::new();
        for c in v["items"].as_array().into_iter().flatten() {
            let (Some(kind), Some(ns), Some(name)) = (
                c["kind"].as_str().and_then(|k| k.parse::<Kind>().ok()),
                c["namespace"].as_str(),
                c["name"].as_str(),
            ) else {
                continue; // a namespace's or document's event (admins only): not mirrored
            };
            let key = EntryKey::new(kind, ns, name);
            if c["op"] == "delete" {
                match (c["entity"].as_str(), c["version"].as_str()) {
                    (Some("entry"), _) if !deleted.contains(&key) => deleted.push(key.clone()),
                    (Some("version"), Some(v)) => deleted_versions.push((key.clone(), v.into())),
                    _ => {}
                }
            }
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(Page {
            keys,
            deleted,
            deleted_versions,
            next: number("next")?,
            head: number("head")?,
        })
    }
}

pub async fn run(a: MirrorArgs) -> anyhow::Result<()> {
    let db = a.data.primary_database().await?;
    let mut config = a.data.config();
    config.content_dir = a.content_dir.clone();
    let mirror = Mirror::new(db, &config, &a.from, &a.prefix)?;
    let client = Client::with_token(&a.from, a.token.clone());
    let source = consumer_name(&a.from)
        .trim_start_matches("mirror:")
        .to_string();
    let mut pos = mirror.position().await?;
    eprintln!("mirroring {source} from position {pos}");
    let mut failures = 0u32;
    loop {
        let wait = if a.once { 0 } else { a.wait };
        match round(&client, &mirror, pos, a.batch, wait).await {
            Ok((page, applied)) => {
                failures = 0;
                report(&applied, page.next, page.head);
                let moved = page.next > pos;
                if moved {
                    if mirror.advance(pos, page.next).await? {
                        pos = page.next;
                    } else {
                        pos = mirror.position().await?;
                        eprintln!(
                            "warning: another mirror of {source} moved the position; going on from {pos}"
                        );
                        continue;
                    }
                }
                if a.once && (pos >= page.head || !moved) {
                    println!("caught up with {source} at position {pos}");
                    return Ok(());
                }
            }
            Err(e) if a.once => return Err(e),
            Err(e) => {
                failures += 1;
                let pause = Duration::from_secs(u64::from(failures.min(6)) * 5);
                eprintln!(
                    "warning: mirroring {source} failed ({e:#}); trying again in {}s from position {pos}",
                    pause.as_secs()
                );
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// One page of the feed, read and applied (the position is not moved here).
async fn round(
    client: &Client,
    mirror: &Mirror,
    since: i64,
    limit: u64,
    wait: u64,
) -> anyhow::Result<(Page, Applied)> {
    let value = client
        .call(
            Method::GET,
            &format!("/api/v1/changes?since={since}&limit={limit}&wait={wait}"),
            None,
        )
        .await?
        .context("the source has no change feed (GET /api/v1/changes answered 404)")?;
    let page = Page::read(&value)?;
    let mut snapshots = Vec::with_capacity(page.keys.len());
    let mut gone = Vec::new();
    for key in &page.keys {
        match snapshot(client, mirror, key).await? {
            Some(s) => snapshots.push(s),
            None => gone.push(key.clone()),
        }
    }
    // A deletion is followed only when the source no longer answers what it deleted (an
    // entry deleted and registered again is applied as its snapshot).
    let entries: Vec<EntryKey> = page
        .deleted
        .iter()
        .filter(|k| gone.contains(k))
        .cloned()
        .collect();
    let versions: Vec<(EntryKey, String)> = page
        .deleted_versions
        .iter()
        .filter(|(k, v)| {
            snapshots
                .iter()
                .find(|s| s.entry.key() == *k)
                .is_some_and(|s| !s.versions.iter().any(|x| x.version == *v))
        })
        .cloned()
        .collect();
    let mut applied = mirror.apply(&Caller::Operator, snapshots).await?;
    let deletions = mirror
        .apply_deletions(&Caller::Operator, &entries, &versions)
        .await?;
    applied.deleted = deletions.deleted;
    Ok((page, applied))
}

/// The entry as the source answers it now; `None` when it no longer answers it (gone,
/// or hidden from this reader).
async fn snapshot(
    client: &Client,
    mirror: &Mirror,
    key: &EntryKey,
) -> anyhow::Result<Option<Snapshot>> {
    let path = entry_path(key.kind, &key.namespace, &key.name);
    let Some(entry) = client.call(Method::GET, &path, None).await? else {
        return Ok(None);
    };
    let entry: Entry = serde_json::from_value(entry).with_context(|| format!("reading {key}"))?;
    let mut versions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}/versions?include=manifest&limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={}", urlencode(c)));
        }
        let Some(v) = client.call(Method::GET, &url, None).await? else {
            return Ok(None);
        };
        let items: Vec<Version> = serde_json::from_value(v["items"].clone())
            .with_context(|| format!("reading the versions of {key}"))?;
        versions.extend(items);
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let relations: Vec<Relation> = match client
        .call(
            Method::GET,
            &format!("{path}/relations?direction=both"),
            None,
        )
        .await?
    {
        Some(v) => {
            serde_json::from_value(v).with_context(|| format!("reading the relations of {key}"))?
        }
        None => Vec::new(),
    };
    let mut contents = std::collections::HashMap::new();
    for v in &versions {
        let Some(hash) = declared_hash(&v.manifest) else {
            continue;
        };
        if contents.contains_key(&hash) || mirror.has_content(&hash).await? {
            continue;
        }
        let url = format!("{path}/versions/{}/content", urlencode(&v.version));
        if let Some(bytes) = client.get_bytes(&url).await? {
            contents.insert(hash, bytes);
        }
    }
    Ok(Some(Snapshot {
        entry,
        versions,
        relations,
        contents,
    }))
}

/// A line for a batch that changed something (or refused something).
fn report(a: &Applied, position: i64, head: i64) {
    if a.wrote() {
        println!(
            "position {position}/{head}: {} created, {} updated, {} unchanged, {} relations added, {} contents stored, {} deleted",
            a.created, a.updated, a.unchanged, a.relations_added, a.contents_stored, a.deleted
        );
    }
    for r in &a.rejected {
        eprintln!("warning: not mirrored: {r}");
    }
}
