//! Turning the sources of an import into a plan: which files, read how.
//!
//! A source is a file or a folder. A folder is walked (sorted, so the plan and the report
//! are the same on every run; symbolic links are not followed; `.git` is skipped) and
//! each file is offered, with its path relative to the folder and its first 8 KiB, to the
//! source systems' readers in turn ([`crate::formats::readers`]); the first that claims it
//! reads it. A file no reader claims is read as quiver JSONL or a data set TSV when it is
//! one ([`detect_format`]), and otherwise listed as not read, with the reason. A forced
//! format takes every file of the source.
//!
//! The files of one folder claimed by one reader form one plan item, read together (a
//! reader may need several files at once: a registry and its mappings, a module and its
//! version files).

use std::io::Read;
use std::path::{Path, PathBuf};

use quiver_model::Result;

use crate::formats::{self, Reader};
use crate::input::{detect_format, has_jsonl_name, source_error};
use crate::{Format, Rejected};

/// Bytes of a file offered to the readers' `claims`.
const HEAD_BYTES: u64 = 8 * 1024;

/// One unit of work of an import.
pub(crate) enum PlanItem {
    /// A line-streamed file (data set TSV, quiver JSONL), read lazily.
    Stream { path: PathBuf, format: Format },
    /// Files of one source system, read together by its reader. `files` are relative to
    /// `root` (for a single-file source, `root` is empty and the file is as given).
    System {
        root: PathBuf,
        format: Format,
        reader: &'static dyn Reader,
        files: Vec<PathBuf>,
    },
}

impl PlanItem {
    /// The path the report names: the file, or the folder the files are in.
    pub(crate) fn path(&self) -> &Path {
        match self {
            PlanItem::Stream { path, .. } => path,
            PlanItem::System { root, files, .. } if root.as_os_str().is_empty() => {
                files.first().map(PathBuf::as_path).unwrap_or(root)
            }
            PlanItem::System { root, .. } => root,
        }
    }

    pub(crate) fn format(&self) -> Format {
        match self {
            PlanItem::Stream { format, .. } | PlanItem::System { format, .. } => *format,
        }
    }

    /// Bytes on disk to read, for progress.
    pub(crate) fn size(&self) -> u64 {
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        match self {
            PlanItem::Stream { path, .. } if path.as_os_str() == "-" => 0,
            PlanItem::Stream { path, .. } => len(path),
            PlanItem::System { root, files, .. } => files.iter().map(|f| len(&root.join(f))).sum(),
        }
    }
}

/// The plan of an import, and the files that will not be read (with why).
pub(crate) struct Plan {
    pub items: Vec<PlanItem>,
    pub unread: Vec<Rejected>,
}

fn head(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(HEAD_BYTES as usize);
    std::fs::File::open(path)?
        .take(HEAD_BYTES)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Plan one source: `path` (a file, a folder, or `-`) with its format forced or not.
pub(crate) fn plan_source(path: &Path, forced: Option<Format>, plan: &mut Plan) -> Result<()> {
    if path.as_os_str() == "-" {
        let format = match forced {
            Some(f) if !f.is_system() => f,
            Some(f) => {
                return Err(source_error(
                    path,
                    format!("{f} files are read whole from disk, not from standard input"),
                ))
            }
            None => detect_format(path)?,
        };
        plan.items.push(PlanItem::Stream {
            path: path.into(),
            format,
        });
        return Ok(());
    }
    let meta = std::fs::metadata(path).map_err(|e| source_error(path, e))?;
    if meta.is_dir() {
        return plan_folder(path, forced, plan);
    }
    // A single file: offered with its path as given, so a reader can look at the
    // folders it sits in.
    match classify(path, path, forced)? {
        Some(Claim::System(reader)) => plan.items.push(PlanItem::System {
            root: PathBuf::new(),
            format: reader.format(),
            reader,
            files: vec![path.to_path_buf()],
        }),
        Some(Claim::Stream(format)) => plan.items.push(PlanItem::Stream {
            path: path.to_path_buf(),
            format,
        }),
        // A single file named explicitly that nothing reads is an error up front.
        None => {
            detect_format(path)?;
        }
    }
    Ok(())
}

enum Claim {
    System(&'static dyn Reader),
    Stream(Format),
}

/// Who reads the file at `full` (offered as `rel`): a system reader, a stream format, or
/// nobody.
fn classify(full: &Path, rel: &Path, forced: Option<Format>) -> Result<Option<Claim>> {
    if let Some(f) = forced {
        return Ok(Some(match formats::reader(f) {
            Some(r) => Claim::System(r),
            None => Claim::Stream(f),
        }));
    }
    let bytes = head(full).map_err(|e| source_error(full, e))?;
    if let Some(r) = formats::readers()
        .into_iter()
        .find(|r| r.claims(rel, &bytes))
    {
        return Ok(Some(Claim::System(r)));
    }
    Ok(match detect_format(full) {
        // Inside a folder, a JSON file is only quiver JSONL by its name: a stray `.json`
        // document starting with `{` is not a stream of entries.
        Ok(Format::Jsonl) if rel != full && !has_jsonl_name(full) => None,
        Ok(f) => Some(Claim::Stream(f)),
        Err(_) => None,
    })
}

fn plan_folder(root: &Path, forced: Option<Format>, plan: &mut Plan) -> Result<()> {
    let mut groups: Vec<(&'static dyn Reader, Vec<PathBuf>)> = Vec::new();
    let walker = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.file_name() != ".git");
    for item in walker {
        let item = item.map_err(|e| source_error(root, e))?;
        if !item.file_type().is_file() {
            continue;
        }
        let full = item.path();
        let rel = full.strip_prefix(root).unwrap_or(full).to_path_buf();
        match classify(full, &rel, forced)? {
            Some(Claim::System(reader)) => {
                match groups
                    .iter_mut()
                    .find(|(r, _)| r.format() == reader.format())
                {
                    Some((_, files)) => files.push(rel),
                    None => groups.push((reader, vec![rel])),
                }
            }
            Some(Claim::Stream(format)) => plan.items.push(PlanItem::Stream {
                path: full.to_path_buf(),
                format,
            }),
            None => plan.unread.push(Rejected {
                file: Some(full.to_path_buf()),
                line: None,
                name: None,
                field: None,
                reason: format!(
                    "not read: no format quiver reads claims this file (formats: {}); \
                     force one with --format if it is one of them",
                    Format::ALL.map(Format::as_str).join(", ")
                ),
            }),
        }
    }
    for (reader, files) in groups {
        plan.items.push(PlanItem::System {
            root: root.to_path_buf(),
            format: reader.format(),
            reader,
            files,
        });
    }
    Ok(())
}
