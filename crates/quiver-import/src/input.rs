//! Opening sources: gzip or plain, with a byte counter for progress, and telling formats
//! apart.
//!
//! Detection looks at content first and names second: gzip is recognized by its magic
//! bytes (never by the `.gz` suffix), then a `.jsonl`/`.ndjson` name or a first character
//! of `{` means quiver JSONL, and a first line that is one of the data set headers means
//! data set TSV. Anything else is refused up front with the file's name, before the import
//! writes anything.

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use quiver_model::{Error, ErrorCode, Result};
use serde::{Deserialize, Serialize};

use crate::dataset::Layout;

/// The formats an import reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The benchmark data set: tab-separated, PyPI or npm header, gzip or plain.
    Tsv,
    /// quiver's JSONL: one entry per line with its versions and relations, gzip or plain.
    Jsonl,
    /// A `blocks.yml` tool catalog and npm manifests with a `tpmjs` field.
    Blocks,
    /// Ops tool profiles: YAML files with `tool_name`, capabilities and patterns.
    #[serde(rename = "ops-tools")]
    OpsTools,
    /// Install recipes (TOML) with their queues, failure records, discovery entries and
    /// dependency mapping.
    Recipes,
    /// Skill registries, package-to-skill mappings and a scraped leaderboard (JSON).
    Skills,
    /// A module registry (`modules.json`, per-module files, legacy registries, advisories).
    Modules,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Tsv => "tsv",
            Format::Jsonl => "jsonl",
            Format::Blocks => "blocks",
            Format::OpsTools => "ops-tools",
            Format::Recipes => "recipes",
            Format::Skills => "skills",
            Format::Modules => "modules",
        }
    }

    /// Every format, for help texts and errors.
    pub const ALL: [Format; 7] = [
        Format::Tsv,
        Format::Jsonl,
        Format::Blocks,
        Format::OpsTools,
        Format::Recipes,
        Format::Skills,
        Format::Modules,
    ];

    /// Whether this is one of the source systems' formats (read by a
    /// [`Reader`](crate::formats::Reader), whole files at a time), rather than a
    /// line-streamed one.
    pub fn is_system(self) -> bool {
        !matches!(self, Format::Tsv | Format::Jsonl)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "tsv" | "dataset" => Ok(Format::Tsv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            "blocks" => Ok(Format::Blocks),
            "ops-tools" | "ops" => Ok(Format::OpsTools),
            "recipes" => Ok(Format::Recipes),
            "skills" => Ok(Format::Skills),
            "modules" => Ok(Format::Modules),
            _ => Err(Error::invalid(
                "format",
                format!(
                    "unknown format '{s}' (expected one of: {})",
                    Format::ALL.map(Format::as_str).join(", ")
                ),
            )),
        }
    }
}

/// Counts the bytes read through it (compressed bytes, for gzip), for progress and ETA.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// An input error about one source: the message starts with the file's name.
pub(crate) fn source_error(path: &Path, e: impl fmt::Display) -> Error {
    Error {
        code: ErrorCode::InvalidInput,
        message: format!("{}: {e}", path.display()),
        field: Some("source".into()),
        retry_after: None,
    }
}

/// Open a file (or standard input for `-`), decompressing gzip, counting raw bytes read
/// into `count`.
pub(crate) fn open(path: &Path, count: Arc<AtomicU64>) -> Result<Box<dyn BufRead + Send>> {
    let raw: Box<dyn Read + Send> = if path.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(path).map_err(|e| source_error(path, e))?)
    };
    let mut probe = BufReader::with_capacity(256 * 1024, Counting { inner: raw, count });
    let gz = probe
        .fill_buf()
        .map(|b| b.starts_with(&[0x1f, 0x8b]))
        .map_err(|e| source_error(path, e))?;
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            1 << 20,
            flate2::bufread::MultiGzDecoder::new(probe),
        ))
    } else {
        Box::new(probe)
    })
}

pub(crate) fn has_jsonl_name(path: &Path) -> bool {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    name.ends_with(".jsonl") || name.ends_with(".ndjson")
}

/// Tell a file's format from its content (and, for JSONL, its name). Standard input (`-`)
/// cannot be probed without consuming it, so it needs a forced format.
pub fn detect_format(path: &Path) -> Result<Format> {
    if path.as_os_str() == "-" {
        return Err(source_error(
            path,
            "standard input needs an explicit format (tsv or jsonl)",
        ));
    }
    if has_jsonl_name(path) {
        // Still open it, so a missing file is reported now rather than mid-import.
        open(path, Arc::default())?;
        return Ok(Format::Jsonl);
    }
    let mut r = open(path, Arc::default())?;
    let mut first = Vec::new();
    r.by_ref()
        .take(64 * 1024)
        .read_until(b'\n', &mut first)
        .map_err(|e| source_error(path, e))?;
    let text = String::from_utf8_lossy(&first);
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with('{') {
        return Ok(Format::Jsonl);
    }
    if Layout::from_header(text).is_some() {
        return Ok(Format::Tsv);
    }
    let shown: String = text.trim_end().chars().take(80).collect();
    Err(source_error(
        path,
        format!(
            "unrecognized format: not quiver JSONL (name *.jsonl[.gz], lines starting \
             with '{{') and not a data set TSV (PyPI or npm header); the first line is {shown:?}. \
             Force a format if the file is one of these"
        ),
    ))
}
