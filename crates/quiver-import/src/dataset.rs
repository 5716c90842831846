//! The benchmark data set: gzip (or plain) TSV snapshots of package indexes.
//!
//! Two layouts, told apart by their header line:
//! - PyPI: `name, version, month, rank_among_15000_most_downloaded, summary`
//! - npm:  `name, version, downloads_a_month, summary`
//!
//! Each row becomes an entry of kind `package` in namespace `pypi` or `npm`, with its
//! version and a popularity normalized across both (see [`popularity_score`]). Rows are
//! read lazily, so memory stays constant whatever the file size.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use quiver_model::{Error, Kind, NewEntry, NewVersion, Popularity, Status, Visibility};
use quiver_store::{valid_version, ImportRecord};
use serde_json::json;

use crate::Rejected;

/// Which data set layout a file has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Pypi,
    Npm,
}

impl Layout {
    pub fn namespace(self) -> &'static str {
        match self {
            Layout::Pypi => "pypi",
            Layout::Npm => "npm",
        }
    }

    /// Recognize a header line.
    pub fn from_header(header: &str) -> Option<Layout> {
        let cols: Vec<&str> = header.trim_end().split('\t').collect();
        match cols.as_slice() {
            ["name", "version", "month", "rank_among_15000_most_downloaded", "summary"] => {
                Some(Layout::Pypi)
            }
            ["name", "version", "downloads_a_month", "summary"] => Some(Layout::Npm),
            _ => None,
        }
    }
}

/// Monthly downloads of the most downloaded package, the top of the popularity scale.
pub const MAX_MONTHLY_DOWNLOADS: f64 = 1e10;
/// Estimated monthly downloads of the most downloaded PyPI package (rank 1).
pub const PYPI_TOP_MONTHLY_DOWNLOADS: f64 = 1e9;
/// Estimated monthly downloads of a PyPI package outside the ranked 15,000.
pub const PYPI_UNRANKED_MONTHLY_DOWNLOADS: f64 = 100.0;

/// Estimated monthly downloads of a PyPI package from its download rank.
///
/// Download counts of package indexes follow Zipf's law closely (exponent near 1), so a
/// rank converts to downloads as `top / rank`: rank 1 ~ 1e9 a month, rank 15,000 ~ 67K.
/// Packages outside the ranked 15,000 get a floor of 100 a month.
pub fn pypi_estimated_downloads(rank: Option<u32>) -> f64 {
    match rank {
        Some(r) if r >= 1 => PYPI_TOP_MONTHLY_DOWNLOADS / f64::from(r),
        _ => PYPI_UNRANKED_MONTHLY_DOWNLOADS,
    }
}

/// The normalized popularity score, 0..1, from (estimated) monthly downloads: a log scale,
/// `log10(1 + d) / log10(1 + 1e10)`, so that each tenfold in downloads adds the same step.
pub fn popularity_score(monthly_downloads: f64) -> f64 {
    let s = (1.0 + monthly_downloads.max(0.0)).log10() / (1.0 + MAX_MONTHLY_DOWNLOADS).log10();
    // Rounded so that re-importing the same data compares equal.
    (s.clamp(0.0, 1.0) * 1e6).round() / 1e6
}

/// Turn an ecosystem version (PEP 440, or anything close) into semver where a faithful
/// mapping exists: `1.0` -> `1.0.0`, `1.1.0a8` -> `1.1.0-a8`, `0.1dev` -> `0.1.0-dev`,
/// `2.0.post1` -> `2.0.0+post1`, `4.8.2.1` -> `4.8.2+1`, `1!2.0` -> `2.0.0`.
pub fn coerce_version(v: &str) -> Option<String> {
    let v = v.trim().trim_start_matches(['v', 'V']);
    if semver::Version::parse(v).is_ok() {
        return Some(v.to_string());
    }
    let v = match v.split_once('!') {
        Some((epoch, rest)) if epoch.bytes().all(|b| b.is_ascii_digit()) => rest,
        _ => v,
    };
    let (v, local) = match v.split_once('+') {
        Some((a, b)) => (a, Some(b)),
        None => (v, None),
    };
    let bytes = v.as_bytes();
    let mut i = 0;
    let mut release: Vec<u64> = Vec::new();
    loop {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return None;
        }
        release.push(v[start..i].parse().ok()?);
        if i < bytes.len() && bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
            i += 1;
        } else {
            break;
        }
    }
    let rest = v[i..].trim_start_matches(['.', '-', '_']);
    let ident_ok = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    };
    let mut core = format!(
        "{}.{}.{}",
        release[0],
        release.get(1).copied().unwrap_or(0),
        release.get(2).copied().unwrap_or(0)
    );
    let mut build: Vec<String> = Vec::new();
    if release.len() > 3 {
        build.push(
            release[3..]
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join("."),
        );
    }
    if !rest.is_empty() {
        let lower = rest.to_ascii_lowercase().replace('_', ".");
        let is_post = lower.starts_with("post")
            || lower.starts_with("rev")
            || (lower.starts_with('r') && lower[1..].starts_with(|c: char| c.is_ascii_digit()));
        if is_post {
            if !ident_ok(&lower) {
                return None;
            }
            build.insert(0, lower);
        } else {
            // a, b, rc, c, alpha, beta, pre, preview, dev: pre-releases.
            if !ident_ok(&lower) {
                return None;
            }
            core.push('-');
            core.push_str(&lower);
        }
    }
    if let Some(l) = local {
        let l = l.replace('_', ".");
        if !ident_ok(&l) {
            return None;
        }
        build.push(l);
    }
    if !build.is_empty() {
        core.push('+');
        core.push_str(&build.join("."));
    }
    semver::Version::parse(&core).ok().map(|_| core)
}

/// Reads records from one data set file.
pub struct DatasetReader {
    layout: Layout,
    lines: Box<dyn BufRead + Send>,
    line_no: u64,
    buf: String,
    /// Set after an unrecoverable read error: the rest of the file is not read.
    done: bool,
}

impl DatasetReader {
    /// Open a data set file, gzip or plain, and read its header.
    pub fn open(path: &Path) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut probe = BufReader::new(file);
        let gz = probe
            .fill_buf()
            .map(|b| b.starts_with(&[0x1f, 0x8b]))
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let inner: Box<dyn Read + Send> = if gz {
            Box::new(flate2::read::MultiGzDecoder::new(probe))
        } else {
            Box::new(probe)
        };
        Self::from_reader(inner).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn from_reader(r: Box<dyn Read + Send>) -> Result<Self, String> {
        Self::from_bufread(Box::new(BufReader::with_capacity(1 << 20, r)))
    }

    /// Read from an already buffered source (its first line is the header).
    pub fn from_bufread(mut lines: Box<dyn BufRead + Send>) -> Result<Self, String> {
        let mut header = String::new();
        lines
            .read_line(&mut header)
            .map_err(|e| format!("reading the header: {e}"))?;
        let layout = Layout::from_header(&header).ok_or_else(|| {
            format!(
                "unrecognized header {:?}: expected the PyPI or npm data set layout",
                header.trim_end()
            )
        })?;
        Ok(DatasetReader {
            layout,
            lines,
            line_no: 1,
            buf: String::new(),
            done: false,
        })
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The 1-based line number of the record last returned.
    pub fn line(&self) -> u64 {
        self.line_no
    }

    fn parse(&self, line: &str) -> Result<ImportRecord, Error> {
        let cols: Vec<&str> = line.split('\t').collect();
        let (name, version, popularity, summary, month) = match (self.layout, cols.as_slice()) {
            (Layout::Pypi, [name, version, month, rank, summary]) => {
                let rank = if rank.is_empty() {
                    None
                } else {
                    Some(rank.parse::<u32>().map_err(|_| {
                        Error::invalid(
                            "rank_among_15000_most_downloaded",
                            format!("'{rank}' is not a number"),
                        )
                    })?)
                };
                let pop = Popularity {
                    score: popularity_score(pypi_estimated_downloads(rank)),
                    monthly_downloads: None,
                    rank,
                };
                (*name, *version, pop, *summary, Some(*month))
            }
            (Layout::Npm, [name, version, downloads, summary]) => {
                let d = downloads.parse::<u64>().map_err(|_| {
                    Error::invalid(
                        "downloads_a_month",
                        format!("'{downloads}' is not a number"),
                    )
                })?;
                let pop = Popularity {
                    score: popularity_score(d as f64),
                    monthly_downloads: Some(d),
                    rank: None,
                };
                (*name, *version, pop, *summary, None)
            }
            (_, cols) => {
                return Err(Error::invalid(
                    "line",
                    format!(
                        "expected {} tab-separated columns, found {}",
                        if self.layout == Layout::Pypi { 5 } else { 4 },
                        cols.len()
                    ),
                ))
            }
        };
        let mut entry = NewEntry {
            kind: Kind::Package,
            namespace: self.layout.namespace().to_string(),
            name: name.to_string(),
            display_name: None,
            description: clean_summary(summary),
            category: None,
            tags: vec![],
            keywords: vec![],
            status: Some(Status::Published),
            visibility: Some(Visibility::Public),
            popularity: Some(popularity),
        };
        quiver_model::validate::imported_entry(&mut entry)?;
        let version = coerce_version(version).and_then(|sv| {
            let mut manifest = serde_json::Map::new();
            if sv != version {
                manifest.insert("ecosystem_version".into(), json!(version));
            }
            if let Some(m) = month.filter(|m| !m.is_empty()) {
                manifest.insert("released".into(), json!(m));
            }
            valid_version(
                Kind::Package,
                NewVersion {
                    version: sv,
                    manifest: manifest.into(),
                    changelog: None,
                    breaking: false,
                },
            )
            .ok()
        });
        Ok(ImportRecord {
            entry,
            deprecation: None,
            versions: version.into_iter().map(Into::into).collect(),
        })
    }
}

/// Summaries are authors' text: drop control characters and the invisible or
/// text-direction characters an API write would refuse, cap the length.
fn clean_summary(s: &str) -> String {
    let mut out: String = s
        .chars()
        .filter(|&c| !quiver_model::validate::is_invisible(c))
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > quiver_model::validate::MAX_DESCRIPTION {
        let mut cut = quiver_model::validate::MAX_DESCRIPTION;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out.trim().to_string()
}

impl Iterator for DatasetReader {
    type Item = Result<ImportRecord, Rejected>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            let read = self.lines.read_line(&mut buf);
            self.line_no += 1;
            match read {
                Ok(0) => {
                    self.buf = buf;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    // Invalid UTF-8 costs only its line (read_line consumed it); any other
                    // error (truncated gzip, I/O) ends the file.
                    let fatal = e.kind() != std::io::ErrorKind::InvalidData;
                    self.done = fatal;
                    self.buf = buf;
                    return Some(Err(Rejected {
                        file: None,
                        line: Some(self.line_no),
                        name: None,
                        field: None,
                        reason: if fatal {
                            format!("read error, stopped reading this file: {e}")
                        } else {
                            format!("unreadable line: {e}")
                        },
                    }));
                }
            }
            let line = buf.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                self.buf = buf;
                continue;
            }
            let out = self.parse(line).map_err(|e| {
                Rejected::from_error(
                    Some(self.line_no),
                    line.split('\t')
                        .next()
                        .map(|n| format!("{}/{n}", self.layout.namespace())),
                    &e,
                )
            });
            self.buf = buf;
            return Some(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_coerce() {
        let cases = [
            ("1.2.3", Some("1.2.3")),
            ("1.0", Some("1.0.0")),
            ("0.1", Some("0.1.0")),
            ("1.1.0a8", Some("1.1.0-a8")),
            ("0.1dev", Some("0.1.0-dev")),
            ("2.0.post1", Some("2.0.0+post1")),
            ("4.8.2.1", Some("4.8.2+1")),
            ("1!2.0", Some("2.0.0")),
            ("1.0rc1+local.7", Some("1.0.0-rc1+local.7")),
            ("v3", Some("3.0.0")),
            ("banana", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(coerce_version(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn popularity_is_monotonic_and_comparable() {
        let top_npm = popularity_score(2.4e9);
        let top_pypi = popularity_score(pypi_estimated_downloads(Some(1)));
        let rank_15000 = popularity_score(pypi_estimated_downloads(Some(15000)));
        let unranked = popularity_score(pypi_estimated_downloads(None));
        let small_npm = popularity_score(579.0);
        assert!(top_npm > top_pypi && top_pypi > rank_15000 && rank_15000 > small_npm);
        assert!(small_npm > unranked && unranked > 0.0);
        assert!(top_npm <= 1.0);
    }

    #[test]
    fn reads_both_layouts() {
        let pypi = "name\tversion\tmonth\trank_among_15000_most_downloaded\tsummary\n\
                    requests\t2.32.3\t2024-05\t4\tPython HTTP for Humans.\n\
                    bad name\t1.0\t2024-01\t\tx\n\
                    odd\tbanana\t2024-01\t\tno semver\n";
        let recs: Vec<_> = DatasetReader::from_reader(Box::new(pypi.as_bytes()))
            .unwrap()
            .collect();
        assert_eq!(recs.len(), 3);
        let r = recs[0].as_ref().unwrap();
        assert_eq!(r.entry.name, "requests");
        assert_eq!(r.entry.popularity.as_ref().unwrap().rank, Some(4));
        assert_eq!(r.versions[0].version.version.version, "2.32.3");
        let rej = recs[1].as_ref().unwrap_err();
        assert_eq!(rej.line, Some(3));
        assert!(rej.reason.contains("white space"), "{}", rej.reason);
        assert!(recs[2].as_ref().unwrap().versions.is_empty());

        let npm = "name\tversion\tdownloads_a_month\tsummary\n@types/node\t22.0.0\t100\tTypes\n";
        let recs: Vec<_> = DatasetReader::from_reader(Box::new(npm.as_bytes()))
            .unwrap()
            .collect();
        let r = recs[0].as_ref().unwrap();
        assert_eq!(r.entry.namespace, "npm");
        assert_eq!(
            r.entry.popularity.as_ref().unwrap().monthly_downloads,
            Some(100)
        );
        assert!(DatasetReader::from_reader(Box::new("a\tb\n".as_bytes())).is_err());
    }
}
