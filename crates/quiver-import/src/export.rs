//! Export: a store (or the part a filter selects) as quiver JSONL.
//!
//! Design choices:
//! - **Streaming.** Entries are listed a page of [`PAGE`] at a time by cursor; for each
//!   page, versions and outgoing relations are read a few entries at a time (concurrent
//!   reads, order kept) and the lines written before the next page is read. Memory is one
//!   page, whatever the store's size.
//! - **Trusted.** `EntryFilter::default()` lists every visibility, private included: an
//!   export is a backup, not a listing, and whoever calls it must be allowed to see all.
//! - **Deterministic.** Entries come in creation order, versions newest first, relations in
//!   the store's order (kind, step order, creation), and manifests with sorted keys (the
//!   store keeps them canonical), so exporting the same content twice gives the same
//!   bytes, and export → import → export is a fixed point.
//! - **Documents too.** A whole-store export (no filter) ends with every document, one
//!   `{"document": {...}}` line each, so an export is a full backup.
//! - **Not a snapshot.** Each page is read on its own; an entry written during a long
//!   export may appear in its new state or not at all. Stop writers for a point-in-time
//!   copy (or copy the database file).
//! - `out` is written synchronously (it is a `std::io::Write`); it is wrapped in a
//!   buffer, so pass it unbuffered or buffered as is convenient.

use std::io::Write;

use futures_util::StreamExt;
use quiver_model::{Context, Entry, Result};
use quiver_store::{Direction, EntryFilter, Store};

use crate::jsonl::{JsonlDocument, JsonlEntry};

/// Entries listed per page.
pub const PAGE: usize = 1000;
/// Entries whose versions and relations are read at once.
const CONCURRENT_READS: usize = 8;

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Exported {
    pub entries: u64,
    pub documents: u64,
}

/// Write every entry matching `filter` as one line of quiver JSONL to `out`, with its
/// versions and outgoing relations, then, when the filter selects everything (a backup),
/// every document, collection by collection in key order.
pub async fn export(store: &dyn Store, filter: EntryFilter, out: impl Write) -> Result<Exported> {
    export_where(store, filter, |_| true, out).await
}

/// [`export()`], keeping only the listed entries `keep` admits (a caller's visibility
/// rules beyond what the filter says, such as a token's name pattern). Documents are
/// written only when the filter selects everything, as in [`export()`].
pub async fn export_where(
    store: &dyn Store,
    filter: EntryFilter,
    keep: impl Fn(&Entry) -> bool,
    out: impl Write,
) -> Result<Exported> {
    let whole = filter == EntryFilter::default();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
    let mut cursor: Option<String> = None;
    let mut written = 0u64;
    loop {
        let page = store.list_entries(&filter, cursor.as_deref(), PAGE).await?;
        let lines: Vec<Result<JsonlEntry>> =
            futures_util::stream::iter(page.items.iter().filter(|e| keep(e)))
                .map(|e: &Entry| async move {
                    let key = e.key();
                    let versions = store.list_versions(&key).await?;
                    let relations = store.list_relations(&key, Direction::Outgoing).await?;
                    Ok(JsonlEntry::from_store(e, &versions, &relations))
                })
                .buffered(CONCURRENT_READS)
                .collect()
                .await;
        for line in lines {
            serde_json::to_writer(&mut out, &line?).context("writing the export")?;
            out.write_all(b"\n").context("writing the export")?;
            written += 1;
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let mut documents = 0u64;
    if whole {
        for (collection, _) in store.document_collections().await? {
            let mut cursor: Option<String> = None;
            loop {
                let page = store
                    .list_documents(&collection, cursor.as_deref(), PAGE)
                    .await?;
                for d in page.items {
                    let line = JsonlDocument {
                        document: quiver_model::NewDocument {
                            collection: d.collection,
                            key: d.key,
                            body: d.body,
                        },
                    };
                    serde_json::to_writer(&mut out, &line).context("writing the export")?;
                    out.write_all(b"\n").context("writing the export")?;
                    documents += 1;
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
    }
    out.flush().context("writing the export")?;
    Ok(Exported {
        entries: written,
        documents,
    })
}
