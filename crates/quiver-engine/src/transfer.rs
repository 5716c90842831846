//! Import and export over HTTP: the same runs as `quiver import` and `quiver export`
//! (`bulk.rs` and `quiver-import`'s pipeline and exporters), for callers that are not
//! the command-line operator.
//!
//! Design choices:
//! - **One path.** An upload is written to a temporary folder (a tar archive, plain or
//!   gzipped, is unpacked there; any other body is one file) and imported with the same
//!   pipeline and [`Bulk::run_import`] as the CLI: the same detection, report, audit row
//!   (`import.run`) and gates queued. Paths in the report and in errors are relative to
//!   the upload, never the server's temporary folder.
//! - **Who may import.** Site admins anywhere (documents included). Anyone else signed in
//!   only into namespaces where they may create entries and publish (owners and
//!   maintainers, and never an ecosystem namespace such as `npm`): the upload is read
//!   first ([`pipeline::scan`]), and one namespace outside their rights, or any document
//!   (a source system's data beside its entries, site-wide), refuses the whole upload
//!   with a 403 naming it before anything is written. Anonymous callers are refused.
//! - **All or nothing, by default.** The import pipeline itself takes a file record by
//!   record: a bad record is rejected (with file, line, field and reason) and the others
//!   are written. An HTTP import first runs the same import as a dry run; when it rejects
//!   anything, the import answers 422 with the first rejection's field and reason and
//!   writes nothing. `partial=true` writes what passes, as the CLI does, and the report
//!   says exactly what was written. (A store failure in the middle of a run leaves whole
//!   batches written, as for the CLI; re-running converges.)
//! - **Large uploads are jobs.** A body over [`QUEUED_IMPORT_BYTES`] is checked (format,
//!   rights) at once, kept in the content store by its sha256 (shared by the nodes) and
//!   imported by the durable job queue ([`IMPORT_JOB`]); its report is kept as a document
//!   of [`IMPORT_REPORTS`] under the job's id, readable by the submitter and admins
//!   ([`Registry::import_job`]).
//! - **Exports stream.** [`Registry::export_stream`] runs the export on a blocking thread
//!   and hands its bytes over a bounded channel, so a large export never sits in memory.
//!   JSONL exports what the caller may list (public entries, and private ones in their
//!   namespaces, with the listing's filter; never unlisted ones unless the caller is a
//!   site admin, whose unfiltered export is the full backup with documents). The source
//!   systems' formats write whole files with their documents, so only site admins export
//!   them; a format of several files comes as a tar archive.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use quiver_auth::{Action, Decision, Principal, Target};
use quiver_import::formats::ExportFilter;
use quiver_import::pipeline::{self, ImportOptions, ImportReport, NoProgress, Source};
pub use quiver_import::Format;
use quiver_model::{Error, ErrorCode, Kind, NewDocument, Result, Status, Visibility};
use quiver_store::worker::Handler;
use quiver_store::{Database, EntryFilter, Job, JobId, NewJob};
use serde::Serialize;
use serde_json::json;
use sha2::Digest;
use tokio::sync::mpsc;

use crate::bulk::{Bulk, ImportRun};
use crate::content::ContentStore;
use crate::{Caller, EngineConfig, Registry};

/// The job kind of a queued import.
pub const IMPORT_JOB: &str = "import";
/// The documents collection holding queued imports' reports, keyed by job id.
pub const IMPORT_REPORTS: &str = "quiver.import-reports";
/// Bodies larger than this are imported by a job (202 and the job to poll).
pub const QUEUED_IMPORT_BYTES: usize = 1 << 20;
/// The most an uploaded archive may unpack to.
const MAX_UNPACKED_BYTES: u64 = 256 << 20;
/// Bytes of export handed over at once.
const CHUNK: usize = 64 * 1024;

/// What to export (`GET /api/v1/export`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub format: Format,
    /// JSONL only.
    pub kinds: Vec<Kind>,
    /// JSONL only.
    pub namespaces: Vec<String>,
    pub statuses: Vec<Status>,
    /// The source systems' formats only.
    pub categories: Vec<String>,
}

/// How an export's bytes are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportShape {
    /// quiver JSONL, one entry per line.
    Jsonl,
    /// One YAML file (`blocks.yml`).
    Yaml,
    /// A tar archive of the format's files.
    Tar,
}

impl ExportShape {
    /// The name a client saves the export as.
    pub fn file_name(self, format: Format) -> String {
        match self {
            ExportShape::Jsonl => "quiver-export.jsonl".into(),
            ExportShape::Yaml => "blocks.yml".into(),
            ExportShape::Tar => format!("quiver-{format}.tar"),
        }
    }
}

/// How to import an upload (`POST /api/v1/import`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ImportRequest {
    pub dry_run: bool,
    /// Write the records that pass even when others are rejected.
    pub partial: bool,
    /// Force the format instead of detecting it.
    pub format: Option<Format>,
    /// The uploaded file's name (readers claim some files by name, such as `blocks.yml`).
    pub file_name: Option<String>,
}

/// What an import answered: the CLI's report (`quiver import --json`).
#[derive(Debug, Clone, Serialize)]
pub struct ImportAnswer {
    pub report: ImportReport,
    /// Versions whose quality gates were queued (none for a dry run).
    pub gates_queued: Option<u64>,
}

/// A queued import as its submitter sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ImportJobStatus {
    pub job: Job,
    /// The report (or the error that refused the import), once the job has run.
    pub report: Option<serde_json::Value>,
}

/// Who submitted a queued import, as stored in its job (an account, not a token, so
/// that any of the account's tokens reads it).
fn submitter(caller: &Caller) -> Option<String> {
    match caller {
        Principal::User(a) | Principal::Token { account: a, .. } => {
            Some(format!("user:{}", a.name))
        }
        Principal::BootstrapAdmin => Some("admin-token".into()),
        Principal::Operator => Some("operator".into()),
        Principal::Anonymous | Principal::Open => None,
    }
}

/// Whether `caller` submitted `job` (a queued import).
pub(crate) fn submitted_by(job: &Job, caller: &Caller) -> bool {
    job.kind == IMPORT_JOB
        && submitter(caller).is_some_and(|s| job.payload["submitter"].as_str() == Some(&s))
}

/// An upload written out for the pipeline; removed when dropped.
struct Upload {
    dir: tempfile::TempDir,
    source: Source,
}

impl Upload {
    /// `s` without the temporary folder's path.
    fn hide(&self, s: &str) -> String {
        let root = self.dir.path().display().to_string();
        s.replace(&format!("{root}/"), "").replace(&root, "upload")
    }

    fn hide_path(&self, p: &Path) -> PathBuf {
        match p.strip_prefix(self.dir.path()) {
            Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("upload"),
            Ok(rel) => rel.to_path_buf(),
            Err(_) => PathBuf::from(self.hide(&p.display().to_string())),
        }
    }

    fn hide_error(&self, mut e: Error) -> Error {
        e.message = self.hide(&e.message);
        e
    }

    fn hide_report(&self, r: &mut ImportReport) {
        let fix = |rej: &mut quiver_import::Rejected| {
            rej.file = rej.file.as_deref().map(|f| self.hide_path(f));
            rej.reason = self.hide(&rej.reason);
        };
        for f in &mut r.files {
            f.path = self.hide_path(&f.path);
            f.rejected.iter_mut().for_each(fix);
            f.warnings.iter_mut().for_each(fix);
        }
        r.unread.iter_mut().for_each(fix);
    }
}

fn is_tar(head: &[u8]) -> bool {
    head.len() >= 262 && &head[257..262] == b"ustar"
}

/// A file name for a single-file upload: the name given (its last component, in safe
/// characters), or one the format's reader claims.
fn upload_name(req: &ImportRequest) -> String {
    let given = req.file_name.as_deref().and_then(|n| {
        let n = n.rsplit(['/', '\\']).next().unwrap_or_default();
        let ok = !n.is_empty()
            && !n.starts_with('.')
            && n.len() <= 200
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        ok.then(|| n.to_string())
    });
    given.unwrap_or_else(|| match req.format {
        Some(Format::Blocks) => "blocks.yml".into(),
        Some(Format::Jsonl) => "upload.jsonl".into(),
        Some(Format::Tsv) => "upload.tsv".into(),
        _ => "upload".into(),
    })
}

fn body_error(reason: impl std::fmt::Display) -> Error {
    Error::invalid("body", reason.to_string())
}

/// Unpack a tar archive into `root`: regular files and folders only (links are skipped),
/// no path out of `root`, at most [`MAX_UNPACKED_BYTES`].
fn unpack(archive: impl Read, root: &Path) -> Result<()> {
    let mut a = tar::Archive::new(archive);
    let mut total = 0u64;
    let entries = a
        .entries()
        .map_err(|e| body_error(format!("not a readable tar archive: {e}")))?;
    for entry in entries {
        let mut entry =
            entry.map_err(|e| body_error(format!("not a readable tar archive: {e}")))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        total += entry.header().size().unwrap_or(0);
        if total > MAX_UNPACKED_BYTES {
            return Err(body_error(format!(
                "the archive unpacks to more than {} MiB",
                MAX_UNPACKED_BYTES >> 20
            )));
        }
        let shown = entry
            .path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let inside = entry
            .unpack_in(root)
            .map_err(|e| body_error(format!("{shown}: cannot be unpacked: {e}")))?;
        if !inside {
            return Err(body_error(format!(
                "{shown}: a path outside the archive's folder"
            )));
        }
    }
    Ok(())
}

/// Write an upload out: a tar archive (plain or gzipped) unpacked into a folder, anything
/// else as one file.
fn materialize(bytes: &[u8], req: &ImportRequest) -> Result<Upload> {
    if bytes.is_empty() {
        return Err(body_error(
            "the body is empty: send the file or archive to import",
        ));
    }
    let dir = tempfile::Builder::new()
        .prefix("quiver-upload-")
        .tempdir()
        .map_err(|e| Error::internal("creating a folder for the upload", e))?;
    let gz = bytes.starts_with(&[0x1f, 0x8b]);
    let tar_gz = gz && {
        let mut head = Vec::with_capacity(512);
        let _ = flate2::read::MultiGzDecoder::new(bytes)
            .take(512)
            .read_to_end(&mut head);
        is_tar(&head)
    };
    let source = if is_tar(bytes) || tar_gz {
        let root = dir.path().join("upload");
        std::fs::create_dir(&root).map_err(|e| Error::internal("unpacking the upload", e))?;
        if tar_gz {
            unpack(flate2::read::MultiGzDecoder::new(bytes), &root)?;
        } else {
            unpack(bytes, &root)?;
        }
        root
    } else {
        let path = dir.path().join(upload_name(req));
        std::fs::write(&path, bytes).map_err(|e| Error::internal("writing the upload", e))?;
        path
    };
    let source = match req.format {
        Some(f) => Source::new(source).with_format(f),
        None => Source::new(source),
    };
    Ok(Upload { dir, source })
}

async fn materialize_async(bytes: bytes::Bytes, req: ImportRequest) -> Result<Upload> {
    tokio::task::spawn_blocking(move || materialize(&bytes, &req))
        .await
        .map_err(|e| Error::internal("reading the upload", e))?
}

fn options(req: &ImportRequest, dry_run: bool) -> ImportOptions {
    ImportOptions {
        dry_run,
        format: req.format,
        ..Default::default()
    }
}

/// The first rejection of a report, as the error that refuses an all-or-nothing import.
fn refusal(report: &ImportReport) -> Option<Error> {
    let t = &report.totals;
    let count = t.rejected + t.relations.rejected + t.documents.rejected;
    if count == 0 {
        return None;
    }
    let first = report.files.iter().find_map(|f| f.rejected.first());
    let (field, shown) = match first {
        Some(r) => (
            r.field.clone().unwrap_or_else(|| "body".into()),
            format!(
                "{}{}",
                r.file
                    .as_ref()
                    .map(|f| format!("{}: ", f.display()))
                    .unwrap_or_default(),
                r
            ),
        ),
        None => ("body".into(), "see the dry run's report".into()),
    };
    Some(Error::invalid(
        field,
        format!(
            "{count} record{} rejected, so nothing was written (dry_run=true shows the whole \
             report; partial=true writes the records that pass); first: {shown}",
            if count == 1 { " was" } else { "s were" }
        ),
    ))
}

/// Import an upload already authorized: all or nothing unless `partial` (see the module
/// documentation), paths relative to the upload.
async fn run_upload(
    bulk: &Bulk,
    actor: &str,
    upload: &Upload,
    req: &ImportRequest,
) -> Result<ImportRun> {
    let sources = vec![upload.source.clone()];
    if !req.dry_run && !req.partial {
        let mut dry = bulk
            .run_import(actor, sources.clone(), options(req, true), &NoProgress)
            .await
            .map_err(|e| upload.hide_error(e))?;
        upload.hide_report(&mut dry.report);
        if let Some(e) = refusal(&dry.report) {
            return Err(e);
        }
    }
    let mut run = bulk
        .run_import(actor, sources, options(req, req.dry_run), &NoProgress)
        .await
        .map_err(|e| upload.hide_error(e))?;
    upload.hide_report(&mut run.report);
    Ok(run)
}

/// [`run_upload`] on a task of its own, over owned values (the pipeline's future is
/// `Send` for owned inputs, which handlers and jobs need).
async fn run_upload_task(
    bulk: Bulk,
    actor: String,
    upload: Upload,
    req: ImportRequest,
) -> Result<ImportRun> {
    tokio::spawn(async move { run_upload(&bulk, &actor, &upload, &req).await })
        .await
        .map_err(|e| Error::internal("running the import", e))?
}

impl Registry {
    /// Whether `caller` may import `upload`: site admins anywhere; others signed in into
    /// namespaces where they may create and publish entries, without documents. A refusal
    /// is audited and writes nothing.
    async fn authorize_upload(
        &self,
        caller: &Caller,
        upload: &Upload,
        req: &ImportRequest,
    ) -> Result<()> {
        if crate::setup::site_admin(caller) {
            return Ok(());
        }
        let deny = |reason: String| async move {
            self.bulk()
                .append(
                    caller,
                    "import.run",
                    "import over HTTP".into(),
                    Some(reason),
                    None,
                )
                .await;
        };
        if submitter(caller).is_none() {
            let m = "sign in to import (admins import anywhere; owners and maintainers into their namespaces)".to_string();
            deny(m.clone()).await;
            return Err(Error::unauthorized(m));
        }
        let scan = pipeline::scan(std::slice::from_ref(&upload.source), &options(req, true))
            .await
            .map_err(|e| upload.hide_error(e))?;
        if scan.documents > 0 {
            let m = format!(
                "the upload carries {} documents (a source system's site-wide data): only site \
                 admins import documents; nothing was written",
                scan.documents
            );
            deny(m.clone()).await;
            return Err(Error::forbidden(m));
        }
        for ns in &scan.namespaces {
            for action in [Action::CreateEntry, Action::Publish] {
                let decision = self.decide(caller, action, &Target::namespace(ns)).await?;
                let reason = match decision {
                    Decision::Allow => continue,
                    Decision::Forbidden(m) | Decision::Unauthenticated(m) => m,
                    Decision::Hidden => format!("namespace '{ns}' is not writable by the caller"),
                };
                let m = format!("import refused, nothing was written: {reason}");
                deny(m.clone()).await;
                return Err(Error::forbidden(m));
            }
        }
        Ok(())
    }

    /// Import an uploaded file or archive now (`POST /api/v1/import` with a body up to
    /// [`QUEUED_IMPORT_BYTES`]); see the module documentation.
    pub async fn import_upload(
        &self,
        caller: &Caller,
        body: bytes::Bytes,
        req: ImportRequest,
    ) -> Result<ImportAnswer> {
        let upload = materialize_async(body, req.clone()).await?;
        self.authorize_upload(caller, &upload, &req).await?;
        let run = run_upload_task(self.bulk(), caller.actor(), upload, req).await?;
        Ok(ImportAnswer {
            report: run.report,
            gates_queued: run.gates_queued,
        })
    }

    /// Check an upload (its format and the caller's rights) and queue its import as a
    /// durable job; the job's report is read with [`Registry::import_job`].
    pub async fn queue_import(
        &self,
        caller: &Caller,
        body: bytes::Bytes,
        req: ImportRequest,
    ) -> Result<Job> {
        let upload = materialize_async(body.clone(), req.clone()).await?;
        self.authorize_upload(caller, &upload, &req).await?;
        // Nothing to import is refused now, not in the job.
        pipeline::scan(std::slice::from_ref(&upload.source), &options(&req, true))
            .await
            .map_err(|e| upload.hide_error(e))?;
        drop(upload);
        let hash = hex_sha256(&body);
        self.content.put(&hash, body.to_vec()).await?;
        let payload = json!({
            "upload": hash,
            "request": req,
            "submitter": submitter(caller),
            "actor": caller.actor(),
        });
        let id = self
            .db
            .jobs
            .enqueue(NewJob::new(IMPORT_JOB, payload).max_attempts(3))
            .await?;
        self.wake_worker();
        self.db
            .jobs
            .get_job(id)
            .await?
            .ok_or_else(|| Error::internal("queueing an import", "job vanished"))
    }

    /// A queued import and its report, for its submitter and site admins (to anyone else
    /// it does not exist).
    pub async fn import_job(&self, caller: &Caller, id: JobId) -> Result<ImportJobStatus> {
        if submitter(caller).is_none() {
            return Err(Error::unauthorized("sign in to read an import's report"));
        }
        let job = self
            .db
            .jobs
            .get_job(id)
            .await?
            .filter(|j| j.kind == IMPORT_JOB)
            .filter(|j| submitted_by(j, caller) || crate::setup::site_admin(caller))
            .ok_or_else(|| Error::not_found(format!("import job {id}")))?;
        let report = self
            .db
            .store
            .get_document(IMPORT_REPORTS, &id.to_string())
            .await?
            .map(|d| d.body);
        Ok(ImportJobStatus { job, report })
    }

    /// Check an export before it starts (so that a refusal is an error status, not a cut
    /// stream) and tell its shape.
    pub async fn check_export(&self, caller: &Caller, req: &ExportRequest) -> Result<ExportShape> {
        match req.format {
            Format::Jsonl => {
                if !req.categories.is_empty() {
                    return Err(Error::invalid(
                        "category",
                        "category filters the source systems' formats; for jsonl use kind, namespace or status",
                    ));
                }
                Ok(ExportShape::Jsonl)
            }
            Format::Tsv => Err(Error::invalid(
                "format",
                "export writes jsonl or a source system's format (blocks, ops-tools, recipes, skills, modules), not tsv",
            )),
            f => {
                if !req.kinds.is_empty() {
                    return Err(Error::invalid("kind", format!("kind filters jsonl exports; the {f} format takes category and status")));
                }
                if !req.namespaces.is_empty() {
                    return Err(Error::invalid("namespace", format!("namespace filters jsonl exports; the {f} format takes category and status")));
                }
                if !crate::setup::site_admin(caller) {
                    let m = format!(
                        "the {f} format exports a source system's whole files with its documents: \
                         only site admins export it (format=jsonl exports what you may read)"
                    );
                    self.bulk()
                        .append(caller, "export.run", format!("export as {f}"), Some(m.clone()), None)
                        .await;
                    return Err(match submitter(caller) {
                        None => Error::unauthorized(m),
                        Some(_) => Error::forbidden(m),
                    });
                }
                Ok(if f == Format::Blocks {
                    ExportShape::Yaml
                } else {
                    ExportShape::Tar
                })
            }
        }
    }

    /// Write an export to `out` (see [`Registry::export_stream`] for the streamed one).
    pub async fn export_to(
        &self,
        caller: &Caller,
        req: &ExportRequest,
        out: &mut (dyn Write + Send),
    ) -> Result<()> {
        let shape = self.check_export(caller, req).await?;
        let bulk = self.bulk();
        if shape == ExportShape::Jsonl {
            let admin = crate::setup::site_admin(caller);
            let mut filter = EntryFilter {
                kinds: req.kinds.clone(),
                namespaces: req.namespaces.clone(),
                statuses: req.statuses.clone(),
                ..Default::default()
            };
            if !admin {
                // The listing's rule: public entries, and private ones where the caller
                // reads them; each then passes the policy (a token's name pattern).
                filter.visibilities = vec![Visibility::Public, Visibility::Private];
                filter.private_namespaces =
                    (!caller.reads_all_private()).then(|| caller.private_namespaces());
            }
            let keep = |e: &quiver_model::Entry| {
                admin
                    || quiver_auth::authorize(caller, Action::List, &crate::entry_target(e))
                        .is_allowed()
            };
            let n = quiver_import::export::export_where(&*self.db.store, filter, keep, out).await?;
            let counts = json!({"format": "jsonl", "entries": n.entries, "documents": n.documents, "over": "http"});
            bulk.append(
                caller,
                "export.run",
                "export as jsonl".into(),
                None,
                Some(counts),
            )
            .await;
            return Ok(());
        }
        let dir = tempfile::Builder::new()
            .prefix("quiver-export-")
            .tempdir()
            .map_err(|e| Error::internal("creating a folder for the export", e))?;
        let filter = ExportFilter {
            categories: req.categories.clone(),
            statuses: req.statuses.clone(),
            ..Default::default()
        };
        let hide = |e: Error| Error {
            message: e
                .message
                .replace(&dir.path().display().to_string(), "export"),
            ..e
        };
        let written = |e: std::io::Error| Error::internal("writing the export", e);
        if shape == ExportShape::Yaml {
            let path = dir.path().join("blocks.yml");
            bulk.export_format(caller, req.format, &filter, &path)
                .await
                .map_err(hide)?;
            let mut f = std::fs::File::open(&path).map_err(written)?;
            std::io::copy(&mut f, out).map_err(written)?;
            return Ok(());
        }
        let root = dir.path().join("export");
        bulk.export_format(caller, req.format, &filter, &root)
            .await
            .map_err(hide)?;
        let mut tar = tar::Builder::new(out);
        tar.mode(tar::HeaderMode::Deterministic);
        append_folder(&mut tar, &root, Path::new("")).map_err(written)?;
        tar.into_inner().map_err(written)?;
        Ok(())
    }

    /// Check an export, then run it on a blocking thread and stream its bytes: chunks over
    /// a channel holding a few, so memory stays bounded whatever the export's size. A
    /// failure after the start ends the stream with an error (the client sees a cut
    /// transfer; the error is logged).
    pub async fn export_stream(
        self: &std::sync::Arc<Self>,
        caller: &Caller,
        req: ExportRequest,
    ) -> Result<(ExportShape, mpsc::Receiver<std::io::Result<bytes::Bytes>>)> {
        let shape = self.check_export(caller, &req).await?;
        let (tx, rx) = mpsc::channel(4);
        let registry = self.clone();
        let caller = caller.clone();
        let runtime = tokio::runtime::Handle::current();
        let client = crate::audit::current_client();
        tokio::task::spawn_blocking(move || {
            let mut w = ChannelWriter {
                tx: tx.clone(),
                buf: Vec::with_capacity(CHUNK),
            };
            let run = async {
                registry.export_to(&caller, &req, &mut w).await?;
                w.flush()
                    .map_err(|e| Error::internal("writing the export", e))
            };
            let result = runtime.block_on(crate::audit::with_client(client, run));
            if let Err(e) = result {
                tracing::error!(error = %e, "export failed");
                let _ = futures_executor::block_on(tx.send(Err(std::io::Error::other(e.message))));
            }
        });
        Ok((shape, rx))
    }
}

/// Add the files under `dir` to the archive as `prefix/...`, sorted by name.
fn append_folder<W: Write>(
    tar: &mut tar::Builder<W>,
    dir: &Path,
    prefix: &Path,
) -> std::io::Result<()> {
    let mut items: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    items.sort_by_key(|e| e.file_name());
    for item in items {
        let name = prefix.join(item.file_name());
        let kind = item.file_type()?;
        if kind.is_dir() {
            append_folder(tar, &item.path(), &name)?;
        } else if kind.is_file() {
            tar.append_path_with_name(item.path(), &name)?;
        }
    }
    Ok(())
}

/// A `Write` that hands its bytes to an async receiver in chunks, blocking (this is a
/// blocking thread) while the receiver's channel is full.
struct ChannelWriter {
    tx: mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        futures_executor::block_on(self.tx.send(Ok(chunk))).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs queued imports: the upload from the content store, the same run as a direct
/// import, and its report (or the error that refused it) kept under the job's id. A
/// re-run after a crash converges, as every import does.
pub(crate) struct ImportUploads {
    pub db: Database,
    pub content: std::sync::Arc<dyn ContentStore>,
    pub config: EngineConfig,
}

#[async_trait::async_trait]
impl Handler for ImportUploads {
    fn kind(&self) -> &str {
        IMPORT_JOB
    }

    async fn run(&self, job: &Job) -> std::result::Result<(), String> {
        let p = &job.payload;
        let hash = p["upload"].as_str().ok_or("the job names no upload")?;
        let req: ImportRequest =
            serde_json::from_value(p["request"].clone()).map_err(|e| e.to_string())?;
        let actor = p["actor"].as_str().unwrap_or("unknown").to_string();
        let body = self
            .content
            .get(hash)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("the upload {hash} is not in the content store"))?;
        let bulk = Bulk::new(self.db.clone(), &self.config);
        let submitter = p["submitter"].clone();
        let outcome = match materialize_async(body.into(), req.clone()).await {
            Ok(upload) => run_upload_task(bulk, actor, upload, req).await,
            Err(e) => Err(e),
        };
        let body = match outcome {
            Ok(run) => json!({
                "submitter": submitter,
                "report": run.report,
                "gates_queued": run.gates_queued,
            }),
            // A store failure is worth another attempt; a refusal is the answer.
            Err(e) if e.code == ErrorCode::Internal => return Err(e.to_string()),
            Err(e) => json!({
                "submitter": submitter,
                "error": {"code": e.code.as_str(), "message": e.message, "field": e.field},
            }),
        };
        self.db
            .store
            .put_documents(vec![NewDocument::new(
                IMPORT_REPORTS,
                job.id.to_string(),
                body,
            )])
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_names_are_file_names_only() {
        let named = |n: &str| ImportRequest {
            file_name: Some(n.into()),
            ..Default::default()
        };
        assert_eq!(upload_name(&named("../../etc/blocks.yml")), "blocks.yml");
        assert_eq!(upload_name(&named("a b.jsonl")), "upload");
        assert_eq!(upload_name(&named(".hidden")), "upload");
        let blocks = ImportRequest {
            format: Some(Format::Blocks),
            ..Default::default()
        };
        assert_eq!(upload_name(&blocks), "blocks.yml");
    }

    #[test]
    fn archives_with_paths_outside_are_refused() {
        let mut b = tar::Builder::new(Vec::new());
        let data = b"{}\n";
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "ok/a.jsonl", &data[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let up = materialize(&bytes, &ImportRequest::default()).unwrap();
        assert!(up.source.path.join("ok/a.jsonl").exists());
        // A hand-made header naming `../x`.
        let mut raw = bytes.clone();
        raw[..10].copy_from_slice(b"../evil.j\0");
        let mut h = tar::Header::from_byte_slice(&raw[..512]).clone();
        h.set_cksum();
        raw[..512].copy_from_slice(h.as_bytes());
        let e = materialize(&raw, &ImportRequest::default()).err().unwrap();
        assert_eq!(e.field.as_deref(), Some("body"), "{e:?}");
    }
}
