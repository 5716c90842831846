//! The rows every engine is fed, and the query mix every engine answers.
//!
//! Rows come from the same [`DatasetReader`] the importer uses, so the peers get exactly
//! the rows quiver accepts (same names, cleaned summaries and normalized popularity).
//! Queries are drawn with a seeded generator, so two runs ask the same questions.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use quiver_import::dataset::DatasetReader;
use quiver_search::relevance::RelevanceCase;
use serde::Serialize;

/// One package, as every engine stores it.
#[derive(Debug, Clone)]
pub struct Row {
    pub namespace: &'static str,
    pub name: String,
    pub summary: String,
    /// Normalized popularity, 0..1 (the same score quiver stores).
    pub popularity: f64,
}

/// A small, fast, seeded generator (SplitMix64): the bench needs reproducible draws,
/// not cryptography.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Copy the header and the first `rows` lines of a data set file (gzip or plain) to a
/// plain TSV file in `dir`, so that quiver and the peers read the very same rows.
pub fn truncate_file(src: &Path, dir: &Path, rows: usize) -> anyhow::Result<PathBuf> {
    let file = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut probe = BufReader::new(file);
    let gz = probe.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    let inner: Box<dyn Read> = if gz {
        Box::new(flate2::read::MultiGzDecoder::new(probe))
    } else {
        Box::new(probe)
    };
    let mut lines = BufReader::with_capacity(1 << 20, inner);
    let stem = src
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("data")
        .trim_end_matches(".gz")
        .trim_end_matches(".tsv");
    let out_path = dir.join(format!("{stem}.first{rows}.tsv"));
    let mut out = BufWriter::new(File::create(&out_path)?);
    let mut buf = Vec::new();
    // The header, then `rows` lines.
    for _ in 0..=rows {
        buf.clear();
        if lines.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(out_path)
}

/// What reading the files gave.
pub struct Loaded {
    pub rows: Vec<Row>,
    pub rejected: u64,
}

/// Read every accepted row of the files with the importer's own reader.
pub fn load_rows(files: &[PathBuf]) -> anyhow::Result<Loaded> {
    let mut rows = Vec::new();
    let mut rejected = 0u64;
    for f in files {
        let reader = DatasetReader::open(f).map_err(|e| anyhow::anyhow!(e))?;
        let ns = reader.layout().namespace();
        for rec in reader {
            match rec {
                Ok(r) => rows.push(Row {
                    namespace: ns,
                    popularity: r.entry.popularity.as_ref().map_or(0.0, |p| p.score),
                    name: r.entry.name,
                    summary: r.entry.description,
                }),
                Err(_) => rejected += 1,
            }
        }
    }
    Ok(Loaded { rows, rejected })
}

/// The kinds of queries in the mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QClass {
    /// The exact name of a popular package.
    ExactPopular,
    /// The exact name of a package drawn at random.
    ExactRandom,
    /// A popular name (6+ characters) with two letters swapped or one deleted.
    Typo,
    /// The relevance set's descriptive and generic queries.
    Descriptive,
    /// Two adjacent words drawn from a random package's summary.
    SummaryWords,
}

impl QClass {
    pub const ALL: [QClass; 5] = [
        QClass::ExactPopular,
        QClass::ExactRandom,
        QClass::Typo,
        QClass::Descriptive,
        QClass::SummaryWords,
    ];

    pub fn label(self) -> &'static str {
        match self {
            QClass::ExactPopular => "exact (popular)",
            QClass::ExactRandom => "exact (random)",
            QClass::Typo => "typo",
            QClass::Descriptive => "descriptive",
            QClass::SummaryWords => "summary words",
        }
    }

    pub fn key(self) -> &'static str {
        match self {
            QClass::ExactPopular => "exact_popular",
            QClass::ExactRandom => "exact_random",
            QClass::Typo => "typo",
            QClass::Descriptive => "descriptive",
            QClass::SummaryWords => "summary_words",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub class: QClass,
}

/// A typo of `name`: two adjacent characters swapped or one deleted (never the first
/// character), always different from the name. `None` for names under 6 characters.
pub fn typo(name: &str, rng: &mut Rng) -> Option<String> {
    let c: Vec<char> = name.chars().collect();
    if c.len() < 6 {
        return None;
    }
    for _ in 0..8 {
        let mut t = c.clone();
        if rng.below(2) == 0 {
            // Swap positions i and i+1, i in 1..len-1.
            let i = 1 + rng.below(c.len() - 2);
            if t[i] == t[i + 1] {
                continue;
            }
            t.swap(i, i + 1);
        } else {
            let i = 1 + rng.below(c.len() - 1);
            t.remove(i);
        }
        let s: String = t.into_iter().collect();
        if s != name {
            return Some(s);
        }
    }
    None
}

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "from", "that", "this", "into", "your", "you", "are", "its",
    "not", "but", "can", "all", "any", "has", "have", "was", "use", "using", "via", "of", "to",
    "in", "on", "by", "an", "or", "is", "it", "be", "as", "at", "a",
];

/// Two adjacent content words (alphabetic, 3+ letters, not stop words) of a summary.
pub fn word_pair(summary: &str, rng: &mut Rng) -> Option<String> {
    let words: Vec<String> = summary
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 3 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .map(str::to_ascii_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect();
    if words.len() < 2 {
        return None;
    }
    let i = rng.below(words.len() - 1);
    if words[i] == words[i + 1] {
        return None;
    }
    Some(format!("{} {}", words[i], words[i + 1]))
}

/// Indices of the most popular rows, most popular first.
pub fn popular(rows: &[Row], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..rows.len()).collect();
    let n = n.min(rows.len());
    if n == 0 {
        return vec![];
    }
    idx.select_nth_unstable_by(n - 1, |&a, &b| {
        rows[b].popularity.total_cmp(&rows[a].popularity)
    });
    idx.truncate(n);
    idx.sort_by(|&a, &b| rows[b].popularity.total_cmp(&rows[a].popularity));
    idx
}

/// A shuffled mix of `n` queries, a fifth of each class.
pub fn query_mix(rows: &[Row], cases: &[RelevanceCase], n: usize, rng: &mut Rng) -> Vec<Query> {
    if rows.is_empty() {
        return vec![];
    }
    let top = popular(rows, (rows.len() / 100).clamp(20, 5000));
    let long_top: Vec<usize> = top
        .iter()
        .copied()
        .filter(|&i| rows[i].name.chars().count() >= 6)
        .collect();
    let descriptive: Vec<&str> = cases
        .iter()
        .filter(|c| c.class == "descriptive" || c.class == "generic")
        .map(|c| c.query.as_str())
        .collect();
    let per = n.div_ceil(QClass::ALL.len());
    let mut out = Vec::with_capacity(per * QClass::ALL.len());
    for class in QClass::ALL {
        let mut made = 0;
        let mut attempts = 0;
        while made < per && attempts < per * 50 {
            attempts += 1;
            let text = match class {
                QClass::ExactPopular => Some(rows[*rng.pick(&top)].name.clone()),
                QClass::ExactRandom => Some(rows[rng.below(rows.len())].name.clone()),
                QClass::Typo if !long_top.is_empty() => typo(&rows[*rng.pick(&long_top)].name, rng),
                QClass::Descriptive if !descriptive.is_empty() => {
                    Some(descriptive[made % descriptive.len()].to_string())
                }
                QClass::SummaryWords => word_pair(&rows[rng.below(rows.len())].summary, rng),
                _ => None,
            };
            if let Some(text) = text {
                out.push(Query { text, class });
                made += 1;
            }
        }
    }
    rng.shuffle(&mut out);
    out.truncate(n.max(1));
    out
}

/// RFC 3986's unreserved characters stay as they are; everything else is encoded.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encode a query-string value (everything but unreserved characters).
pub fn encode_query_value(s: &str) -> String {
    utf8_percent_encode(s, UNRESERVED).to_string()
}

/// Percent-encode an entry name for a path; npm scopes keep their `@` and `/`.
pub fn encode_name(s: &str) -> String {
    const NAME: &AsciiSet = &UNRESERVED.remove(b'@').remove(b'/');
    utf8_percent_encode(s, NAME).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, summary: &str, popularity: f64) -> Row {
        Row {
            namespace: "pypi",
            name: name.into(),
            summary: summary.into(),
            popularity,
        }
    }

    #[test]
    fn typos_differ_by_one_edit() {
        let mut rng = Rng::new(7);
        assert_eq!(typo("numpy", &mut rng), None);
        for _ in 0..200 {
            let t = typo("requests", &mut rng).unwrap();
            assert_ne!(t, "requests");
            assert!(t.starts_with('r'), "{t}");
            let n = t.chars().count();
            assert!(n == 8 || n == 7, "{t}");
            if n == 8 {
                let mut a: Vec<char> = t.chars().collect();
                let mut b: Vec<char> = "requests".chars().collect();
                a.sort_unstable();
                b.sort_unstable();
                assert_eq!(a, b, "a swap keeps the letters: {t}");
            }
        }
        // Doubled letters never give a no-op swap.
        assert!(typo("aaaaaaa", &mut rng).is_some());
    }

    #[test]
    fn mix_is_reproducible_and_balanced() {
        let rows: Vec<Row> = (0..500)
            .map(|i| {
                row(
                    &format!("package-number-{i}"),
                    "A fast parser for YAML documents and configuration files",
                    f64::from(i) / 500.0,
                )
            })
            .collect();
        let cases = quiver_search::relevance::parse_set(
            "yaml parser\tpypi/pyyaml\tgeneric\nterminal colors\tnpm/chalk\tdescriptive\n",
        )
        .unwrap();
        let a = query_mix(&rows, &cases, 100, &mut Rng::new(1));
        let b = query_mix(&rows, &cases, 100, &mut Rng::new(1));
        assert_eq!(a.len(), 100);
        assert_eq!(
            a.iter().map(|q| &q.text).collect::<Vec<_>>(),
            b.iter().map(|q| &q.text).collect::<Vec<_>>()
        );
        for class in QClass::ALL {
            let n = a.iter().filter(|q| q.class == class).count();
            assert!((15..=25).contains(&n), "{class:?}: {n}");
        }
        assert!(a
            .iter()
            .filter(|q| q.class == QClass::ExactPopular)
            .all(|q| q.text.starts_with("package-number-4")));
        assert_eq!(popular(&rows, 2), vec![499, 498]);
    }

    #[test]
    fn word_pairs_skip_stop_words() {
        let mut rng = Rng::new(3);
        let p = word_pair("The YAML parser for Python", &mut rng).unwrap();
        assert!(
            ["yaml parser", "parser python"].contains(&p.as_str()),
            "{p}"
        );
        assert_eq!(word_pair("a b", &mut rng), None);
    }

    #[test]
    fn encoding() {
        assert_eq!(
            encode_query_value("yaml parser&x=1"),
            "yaml%20parser%26x%3D1"
        );
        assert_eq!(encode_name("@types/node"), "@types/node");
        assert_eq!(encode_name("zope.interface"), "zope.interface");
        assert_eq!(encode_name("a b#c"), "a%20b%23c");
    }
}
