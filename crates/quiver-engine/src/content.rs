//! Published content (a module's file, any version's payload), addressed by its sha256.
//!
//! [`ContentStore`] is the seam: [`FileContentStore`] keeps each blob as a file under a
//! directory (the data directory's `content/` by default; on several nodes, a directory
//! they share), written to a temporary file, synced and renamed into place, so a blob is
//! either whole or absent. An object store (S3-compatible) is the scale-out option behind
//! the same trait. The registry hashes content itself: a blob's name is its hash, so
//! storing the same bytes twice is one file, and a version refers to its content only
//! through the hash in its manifest (`source.content_hash`).
//!
//! Reads do not re-hash: clients verify what they download against the hash resolution
//! gave them (`quiver install` refuses a mismatch), so a blob changed on disk is caught
//! where it is used.

use std::path::PathBuf;

use async_trait::async_trait;
use quiver_model::{Context, EntryKey, Error, NewVersion, Result, Version};
use sha2::{Digest, Sha256};

use crate::{Caller, Registry};

/// The most bytes of content one version may carry.
pub const MAX_CONTENT_BYTES: usize = 2 * 1024 * 1024;

/// The lowercase hex sha256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A declared content hash without its `sha256:` prefix, lowercased, if it is one.
pub fn parse_hash(declared: &str) -> Option<String> {
    let h = declared
        .strip_prefix("sha256:")
        .unwrap_or(declared)
        .to_ascii_lowercase();
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

/// The content hash a manifest declares (`source.content_hash`, or the mlld registry's
/// `source.contentHash`), without its prefix, if it is a sha256.
pub fn declared_hash(manifest: &serde_json::Value) -> Option<String> {
    let source = manifest.get("source")?;
    source
        .get("content_hash")
        .or_else(|| source.get("contentHash"))
        .and_then(|h| h.as_str())
        .and_then(parse_hash)
}

impl Registry {
    /// Publish a version with its content: quiver hashes the bytes (a `content_hash` the
    /// manifest declares must agree, else 422), keeps them in the content store, and
    /// records `source.content_hash = "sha256:…"` in the manifest. The caller's right to
    /// publish is checked before anything is stored.
    pub async fn publish_with_content(
        &self,
        caller: &Caller,
        key: &EntryKey,
        mut version: NewVersion,
        content: Option<Vec<u8>>,
    ) -> Result<Version> {
        if let Some(bytes) = content {
            self.publishable_entry(caller, key).await?;
            let hash = attach_content(&mut version.manifest, &bytes)?;
            self.content.put(&hash, bytes).await?;
        }
        self.publish_version(caller, key, version).await
    }

    /// A version's content and its sha256, for the caller who may read the entry. Not
    /// found when the version declares no content hash or this registry does not hold
    /// the content (an imported module whose content lives at its source).
    pub async fn version_content(
        &self,
        caller: &Caller,
        key: &EntryKey,
        version: &str,
    ) -> Result<(String, Vec<u8>)> {
        let v = self.get_version(caller, key, version).await?;
        let Some(hash) = declared_hash(&v.manifest) else {
            return Err(Error::not_found(format!(
                "content of {key}@{version} (the version declares none)"
            )));
        };
        match self.content.get(&hash).await? {
            Some(bytes) => Ok((hash, bytes)),
            None => Err(Error::not_found(format!(
                "content of {key}@{version} (not held by this registry; see its source)"
            ))),
        }
    }
}

/// Blobs by their sha256.
#[async_trait]
pub trait ContentStore: Send + Sync + 'static {
    /// Keep `bytes` under `hash` (their sha256, computed by the caller). Idempotent.
    async fn put(&self, hash: &str, bytes: Vec<u8>) -> Result<()>;
    /// The blob, if held.
    async fn get(&self, hash: &str) -> Result<Option<Vec<u8>>>;
}

/// Blobs as files: `<root>/sha256/<first two hex digits>/<hash>`.
pub struct FileContentStore {
    root: PathBuf,
}

impl FileContentStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileContentStore { root: root.into() }
    }

    fn path(&self, hash: &str) -> Result<PathBuf> {
        let h = parse_hash(hash).ok_or_else(|| Error::invalid("content_hash", "not a sha256"))?;
        Ok(self.root.join("sha256").join(&h[..2]).join(h))
    }
}

#[async_trait]
impl ContentStore for FileContentStore {
    async fn put(&self, hash: &str, bytes: Vec<u8>) -> Result<()> {
        let path = self.path(hash)?;
        tokio::task::spawn_blocking(move || {
            if path.exists() {
                return Ok(());
            }
            let dir = path.parent().expect("a blob's path has a folder");
            std::fs::create_dir_all(dir)
                .context(format!("creating the content folder {}", dir.display()))?;
            let tmp = dir.join(format!(
                ".{}.{}.tmp",
                path.file_name().and_then(|n| n.to_str()).unwrap_or("blob"),
                std::process::id()
            ));
            {
                use std::io::Write;
                let mut f = std::fs::File::create(&tmp).context("writing content")?;
                f.write_all(&bytes).context("writing content")?;
                f.sync_all().context("syncing content")?;
            }
            std::fs::rename(&tmp, &path).context("putting content in place")?;
            // The rename itself is durable once the folder is synced.
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })
        .await
        .context("content write task")?
    }

    async fn get(&self, hash: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(hash)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::internal("reading content", e)),
        }
    }
}

/// Record content's sha256 in a manifest as `source.content_hash` (`sha256:<hex>`),
/// refusing content out of bounds or a hash the manifest declares that disagrees.
/// Answers the hash (hex).
pub fn attach_content(manifest: &mut serde_json::Value, bytes: &[u8]) -> Result<String> {
    if bytes.is_empty() || bytes.len() > MAX_CONTENT_BYTES {
        return Err(Error::invalid(
            "content",
            format!("1 to {MAX_CONTENT_BYTES} bytes"),
        ));
    }
    let hash = sha256_hex(bytes);
    let source = manifest
        .as_object_mut()
        .ok_or_else(|| Error::invalid("manifest", "an object"))?
        .entry("source")
        .or_insert_with(|| serde_json::json!({}));
    let Some(source) = source.as_object_mut() else {
        return Err(Error::invalid("manifest.source", "an object"));
    };
    for field in ["content_hash", "contentHash"] {
        if let Some(d) = source.get(field) {
            let ok = d.as_str().and_then(parse_hash).as_deref() == Some(hash.as_str());
            if !ok {
                return Err(Error::invalid(
                    format!("manifest.source.{field}"),
                    format!("declared {d}, but the content's sha256 is sha256:{hash}"),
                ));
            }
        }
    }
    source.remove("contentHash");
    source.insert("content_hash".into(), format!("sha256:{hash}").into());
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_by_hash() {
        let dir = tempfile::tempdir().unwrap();
        let s = FileContentStore::new(dir.path());
        let bytes = b"/var @greet = \"hi\"".to_vec();
        let h = sha256_hex(&bytes);
        assert_eq!(s.get(&h).await.unwrap(), None);
        s.put(&h, bytes.clone()).await.unwrap();
        s.put(&h, bytes.clone()).await.unwrap();
        assert_eq!(s.get(&format!("sha256:{h}")).await.unwrap(), Some(bytes));
        assert!(
            s.get("../../etc/passwd").await.is_err(),
            "only hashes name blobs"
        );
        assert_eq!(parse_hash(&format!("sha256:{}", h.to_uppercase())), Some(h));
        assert_eq!(parse_hash("sha256:abc"), None);
    }
}
