//! Bulk work over the whole registry: importing the source systems' files and quiver
//! JSONL, and exporting them back. Each run is one site-administration action: the caller
//! must be a site admin (the command-line operator, who holds the database, is one), and
//! it leaves **one audit row per run** with its counts (`import.run`, `export.run`), not
//! one per record; a refused run leaves a denied row. Imports then queue the quality
//! gates of the versions they wrote, from the change feed, as every writer's versions are
//! (`gates::queue_gates`).
//!
//! [`Bulk`] needs only the database, not a node's search index, so `quiver import` and
//! `quiver export` use it beside a running server; a [`Registry`] hands out the same
//! service ([`Registry::bulk`]).

use std::io::Write;
use std::path::Path;

use quiver_import::export::Exported;
use quiver_import::formats::{ExportFilter, ExportSummary};
use quiver_import::pipeline::{self, ImportOptions, ImportReport, Progress, Source};
use quiver_import::Format;
use quiver_model::{Error, Result};
use quiver_store::{Database, EntryFilter, NewAuditRecord};
use serde_json::json;

use crate::{Caller, EngineConfig, Registry};

/// Bulk import and export over one database.
pub struct Bulk {
    db: Database,
    ecosystems: Vec<String>,
}

/// What an import run did.
#[derive(Debug)]
pub struct ImportRun {
    pub report: ImportReport,
    /// Versions whose quality gates were queued (none for a dry run).
    pub gates_queued: Option<u64>,
}

impl Registry {
    /// Bulk import and export over this registry's database.
    pub fn bulk(&self) -> Bulk {
        Bulk::new(self.db.clone(), &self.config)
    }
}

/// The names of the files of a run, for its audit row (the names only: a row never
/// shows where a file was on the machine that ran it).
fn file_names(paths: impl Iterator<Item = impl AsRef<Path>>) -> String {
    let names: Vec<String> = paths
        .map(|p| {
            p.as_ref()
                .file_name()
                .map_or_else(|| "?".into(), |n| n.to_string_lossy().into_owned())
        })
        .collect();
    let shown = names
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    match names.len() {
        n if n > 10 => format!("{shown} and {} more", n - 10),
        _ => shown,
    }
}

impl Bulk {
    pub fn new(db: Database, config: &EngineConfig) -> Bulk {
        Bulk {
            db,
            ecosystems: config.ecosystem_namespaces.clone(),
        }
    }

    /// The run's right: a site admin (not an open server's anonymous caller: a bulk run
    /// writes the ecosystem namespaces too). A refusal is audited.
    async fn authorize(&self, caller: &Caller, action: &str) -> Result<()> {
        if crate::setup::site_admin(caller) {
            return Ok(());
        }
        let denied = format!("only site admins may run a bulk {action}");
        self.append(
            caller,
            action,
            "registry".into(),
            Some(denied.clone()),
            None,
        )
        .await;
        Err(match caller {
            Caller::Anonymous | Caller::Open => Error::unauthorized(denied),
            _ => Error::forbidden(denied),
        })
    }

    pub(crate) async fn append(
        &self,
        caller: &Caller,
        action: &str,
        target: String,
        denied: Option<String>,
        diff: Option<serde_json::Value>,
    ) {
        self.append_as(caller.actor(), action, target, denied, diff)
            .await
    }

    /// [`Bulk::append`] for an actor named by its audit name (a queued import's
    /// submitter).
    pub(crate) async fn append_as(
        &self,
        actor: String,
        action: &str,
        target: String,
        denied: Option<String>,
        diff: Option<serde_json::Value>,
    ) {
        let row = NewAuditRecord {
            actor,
            action: action.to_string(),
            namespace: None,
            target,
            outcome: if denied.is_some() {
                "denied"
            } else {
                "allowed"
            }
            .into(),
            reason: denied,
            diff,
            client: crate::audit::current_client(),
        };
        if let Err(e) = self.db.audit.append_audit(row).await {
            tracing::error!(error = %e, "could not append to the audit log");
        }
    }

    /// Import `sources` (see `quiver_import::pipeline::import`); then, unless it is a dry
    /// run, queue the gates of the new versions and leave one `import.run` row.
    pub async fn import(
        &self,
        caller: &Caller,
        sources: Vec<Source>,
        opts: ImportOptions,
        progress: &dyn Progress,
    ) -> Result<ImportRun> {
        self.authorize(caller, "import.run").await?;
        self.run_import(&caller.actor(), sources, opts, progress)
            .await
    }

    /// [`Bulk::import`] once the caller's rights were checked (by [`Bulk::import`] for
    /// site admins, by `transfer.rs` for namespace maintainers); `actor` names the caller
    /// in the audit row.
    pub(crate) async fn run_import(
        &self,
        actor: &str,
        sources: Vec<Source>,
        opts: ImportOptions,
        progress: &dyn Progress,
    ) -> Result<ImportRun> {
        let dry_run = opts.dry_run;
        let target = format!("import of {}", file_names(sources.iter().map(|s| &s.path)));
        let report = pipeline::import(&*self.db.store, sources, opts, progress).await?;
        if dry_run {
            return Ok(ImportRun {
                report,
                gates_queued: None,
            });
        }
        let gates = crate::gates::queue_gates(&self.db, &self.ecosystems).await?;
        // The recipe pipeline's live records from the tsuku queue and failure files.
        let pipeline_sync = crate::pipeline::sync::after_import(&self.db).await?;
        let t = &report.totals;
        let counts = json!({
            "records": t.records, "created": t.created, "updated": t.updated,
            "unchanged": t.unchanged, "rejected": t.rejected,
            "relations": t.relations, "documents": t.documents,
            "gates_queued": gates,
            "pipeline": pipeline_sync,
        });
        self.append_as(actor.to_string(), "import.run", target, None, Some(counts))
            .await;
        Ok(ImportRun {
            report,
            gates_queued: Some(gates),
        })
    }

    /// Write the entries `filter` selects as quiver JSONL (with every document when it
    /// selects everything: a backup); one `export.run` row.
    pub async fn export_jsonl(
        &self,
        caller: &Caller,
        filter: EntryFilter,
        out: impl Write,
    ) -> Result<Exported> {
        self.authorize(caller, "export.run").await?;
        let n = quiver_import::export::export(&*self.db.store, filter, out).await?;
        let counts = json!({"format": "jsonl", "entries": n.entries, "documents": n.documents});
        self.append(
            caller,
            "export.run",
            "export as jsonl".into(),
            None,
            Some(counts),
        )
        .await;
        Ok(n)
    }

    /// Write a source system's own files to `out`; one `export.run` row.
    pub async fn export_format(
        &self,
        caller: &Caller,
        format: Format,
        filter: &ExportFilter,
        out: &Path,
    ) -> Result<ExportSummary> {
        self.authorize(caller, "export.run").await?;
        // The unified queue as the pipeline's records now stand.
        let mut filter = filter.clone();
        if format == Format::Recipes {
            if let Some(q) = crate::pipeline::sync::live_queue(&self.db).await? {
                filter
                    .live
                    .insert(crate::pipeline::QUEUE_COLLECTION.to_string(), q);
            }
        }
        let s =
            quiver_import::formats::export_format(&*self.db.store, format, &filter, out).await?;
        let counts = json!({
            "format": format.to_string(), "entries": s.entries, "documents": s.documents,
            "files": s.files,
        });
        self.append(
            caller,
            "export.run",
            format!("export as {format}"),
            None,
            Some(counts),
        )
        .await;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::file_names;

    #[test]
    fn rows_name_files_not_paths() {
        assert_eq!(
            file_names(["/home/x/a.jsonl", "b/c.toml"].iter()),
            "a.jsonl, c.toml"
        );
        let many: Vec<String> = (0..12).map(|i| format!("/d/f{i}")).collect();
        assert!(file_names(many.iter()).ends_with("f9 and 2 more"));
    }
}
