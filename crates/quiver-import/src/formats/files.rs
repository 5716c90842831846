//! Small file and store helpers the formats share: reading a source file (a failure is one
//! rejection naming the file), parsing JSON with the parser's line and column in the
//! rejection, finding the line of a key, writing an exported file, and reading a
//! collection's documents page by page.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use quiver_model::{Document, Entry, Error, Result, Version};
use quiver_store::{EntryFilter, Store};
use serde_json::Value;

use super::{Bundle, ExportFilter, Origin};

/// The text of `root/rel`, or `None` after one rejection naming the file.
pub(crate) fn read_text(root: &Path, rel: &Path, bundle: &mut Bundle) -> Option<String> {
    match std::fs::read_to_string(root.join(rel)) {
        Ok(t) => Some(t),
        Err(e) => {
            bundle.rejected.push(Origin::new(rel, None).reject(
                None,
                None,
                format!("cannot read the file: {e}"),
            ));
            None
        }
    }
}

/// The first 8 KiB of a file (empty when it cannot be read; reading it reports that).
pub(crate) fn read_head(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut buf = Vec::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(8192).read_to_end(&mut buf);
    }
    buf
}

/// The files whose name and first bytes `kind_of` gives a kind, with it; every other file
/// is one rejection saying `not_ours`.
pub(crate) fn file_kinds<'f, K>(
    root: &Path,
    files: &'f [PathBuf],
    bundle: &mut Bundle,
    kind_of: impl Fn(&Path, &[u8]) -> Option<K>,
    not_ours: &str,
) -> Vec<(K, &'f PathBuf)> {
    let mut typed = Vec::new();
    for rel in files {
        match kind_of(rel, &read_head(&root.join(rel))) {
            Some(k) => typed.push((k, rel)),
            None => bundle
                .rejected
                .push(Origin::new(rel.clone(), None).reject(None, None, not_ours)),
        }
    }
    typed
}

/// Read and parse a JSON file; a failure is one rejection naming the file (and the line
/// and column of a syntax error).
pub(crate) fn load_json(root: &Path, rel: &Path, bundle: &mut Bundle) -> Option<(String, Value)> {
    let text = read_text(root, rel, bundle)?;
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => Some((text, v)),
        Err(e) => {
            let origin = Origin::new(rel, Some(e.line() as u64));
            bundle.rejected.push(origin.reject(
                None,
                None,
                format!(
                    "not valid JSON (line {}, column {}): {e}",
                    e.line(),
                    e.column()
                ),
            ));
            None
        }
    }
}

/// A file's path as a document key: its components joined by `/`.
pub(crate) fn path_key(rel: &Path) -> String {
    rel.components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// The 1-based lines on which `"key":` appears, in order (best effort: one per
/// occurrence, so the n-th object of an array of same-shaped objects is on the n-th line).
pub(crate) fn key_lines(text: &str, key: &str) -> Vec<u64> {
    let needle = serde_json::to_string(key).unwrap_or_default();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(&needle) {
            rest = &rest[at + needle.len()..];
            if rest.trim_start().starts_with(':') {
                out.push(n as u64 + 1);
            }
        }
    }
    out
}

/// Write an exported file, creating the folders it goes in.
pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::internal(format!("creating {}", dir.display()), e))?;
    }
    std::fs::write(path, contents)
        .map_err(|e| Error::internal(format!("writing {}", path.display()), e))
}

/// The entries `entries` lists that `filter` admits and that have a latest version, with
/// that version, read `page` entries at a time.
pub(crate) async fn latest_versions(
    store: &dyn Store,
    entries: &EntryFilter,
    filter: &ExportFilter,
    page: usize,
) -> Result<Vec<(Entry, Version)>> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let got = store.list_entries(entries, cursor.as_deref(), page).await?;
        for e in got.items {
            if !filter.admits(e.category.as_deref(), e.status) {
                continue;
            }
            let Some(latest) = &e.latest_version else {
                continue;
            };
            if let Some(version) = store.get_version(&e.key(), latest).await? {
                out.push((e, version));
            }
        }
        match got.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Every document of a collection, read `page` at a time.
pub(crate) async fn all_documents(
    store: &dyn Store,
    collection: &str,
    page: usize,
) -> Result<Vec<Document>> {
    let mut docs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let got = store
            .list_documents(collection, cursor.as_deref(), page)
            .await?;
        docs.extend(got.items);
        match got.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(docs),
        }
    }
}

/// Every document of a collection as key → body, read `page` at a time.
pub(crate) async fn document_bodies(
    store: &dyn Store,
    collection: &str,
    page: usize,
) -> Result<BTreeMap<String, Value>> {
    Ok(all_documents(store, collection, page)
        .await?
        .into_iter()
        .map(|d| (d.key, d.body))
        .collect())
}
