//! A relevance yardstick that any engine can be measured with.
//!
//! A set is a TSV file (`relevance/queries.tsv` at the repository root): a header line
//! `query<TAB>expected<TAB>class`, `#` comments, then one case a line. `expected` lists
//! the acceptable answers as `namespace/name`, separated by `|`; a case is a hit at k
//! when any of them is among the first k results. Names compare the way the registry
//! compares them: PyPI names after PEP 503 normalization, others exactly.
//!
//! [`evaluate`] takes the engine as a closure from query to ranked `(namespace, name)`
//! pairs, so quiver and peer engines (SQLite FTS5, PostgreSQL pg_trgm) are scored by the
//! same code.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use quiver_model::{Context, Error, Kind, Result};
use serde::{Deserialize, Serialize};

/// One query and the answers a user would accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelevanceCase {
    pub query: String,
    /// Acceptable `(namespace, name)` answers.
    pub expected: Vec<(String, String)>,
    /// exact, typo, split, prefix, descriptive or generic.
    pub class: String,
    /// The `kind` filter the query runs with (an optional fourth column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
}

/// Hit rates of one class (or of all cases).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassScore {
    pub cases: usize,
    pub hit_at_1: f64,
    pub hit_at_3: f64,
    pub hit_at_10: f64,
}

/// A case not found in the first 3 results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Miss {
    pub query: String,
    pub class: String,
    pub expected: Vec<String>,
    /// 1-based rank of the first expected answer, if within the results returned.
    pub rank: Option<usize>,
    /// The first results returned, as `namespace/name`.
    pub got: Vec<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RelevanceReport {
    pub cases: usize,
    pub hit_at_1: f64,
    pub hit_at_3: f64,
    pub hit_at_10: f64,
    /// Mean reciprocal rank (within the results returned).
    pub mrr: f64,
    pub per_class: BTreeMap<String, ClassScore>,
    pub misses: Vec<Miss>,
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (
        namespace.to_string(),
        quiver_model::names::name_key(Kind::Package, namespace, name),
    )
}

/// Parse a relevance set from TSV text.
pub fn parse_set(text: &str) -> Result<Vec<RelevanceCase>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split('\t').collect();
        if cols.first() == Some(&"query") {
            continue;
        }
        let bad = |why: &str| Error::invalid("relevance set", format!("line {}: {why}", i + 1));
        if cols.len() < 3 {
            return Err(bad(
                "expected 3 tab-separated columns: query, expected, class",
            ));
        }
        let mut expected = Vec::new();
        for e in cols[1].split('|').map(str::trim).filter(|e| !e.is_empty()) {
            let (ns, name) = e
                .split_once('/')
                .ok_or_else(|| bad(&format!("'{e}' is not namespace/name")))?;
            expected.push(key(ns, name));
        }
        if expected.is_empty() || cols[0].trim().is_empty() {
            return Err(bad("empty query or expected"));
        }
        let kind = match cols.get(3).map(|k| k.trim()).filter(|k| !k.is_empty()) {
            None => None,
            Some(k) => Some(
                k.parse::<Kind>()
                    .map_err(|_| bad(&format!("'{k}' is not a kind")))?,
            ),
        };
        out.push(RelevanceCase {
            query: cols[0].trim().to_string(),
            expected,
            class: cols[2].trim().to_string(),
            kind,
        });
    }
    Ok(out)
}

/// Load a relevance set from a TSV file.
pub fn load_set(path: &Path) -> Result<Vec<RelevanceCase>> {
    let text = std::fs::read_to_string(path)
        .context(format!("reading relevance set {}", path.display()))?;
    parse_set(&text)
}

/// Run every case through `engine` (query -> ranked `(namespace, name)`, at least 10
/// when it has them) and score the rankings.
pub fn evaluate<F>(cases: &[RelevanceCase], mut engine: F) -> RelevanceReport
where
    F: FnMut(&str) -> Vec<(String, String)>,
{
    evaluate_cases(cases, |c| engine(&c.query))
}

/// [`evaluate`] with the whole case given to the engine (for its `kind` filter).
pub fn evaluate_cases<F>(cases: &[RelevanceCase], mut engine: F) -> RelevanceReport
where
    F: FnMut(&RelevanceCase) -> Vec<(String, String)>,
{
    let mut report = RelevanceReport {
        cases: cases.len(),
        ..Default::default()
    };
    let mut class_hits: BTreeMap<String, [usize; 4]> = BTreeMap::new();
    let (mut h1, mut h3, mut h10) = (0usize, 0usize, 0usize);
    let mut rr = 0.0;
    for c in cases {
        let got = engine(c);
        let rank = got
            .iter()
            .position(|(ns, n)| c.expected.contains(&key(ns, n)))
            .map(|i| i + 1);
        let ch = class_hits.entry(c.class.clone()).or_default();
        ch[0] += 1;
        if let Some(r) = rank {
            rr += 1.0 / r as f64;
            if r <= 1 {
                h1 += 1;
                ch[1] += 1;
            }
            if r <= 3 {
                h3 += 1;
                ch[2] += 1;
            }
            if r <= 10 {
                h10 += 1;
                ch[3] += 1;
            }
        }
        if rank.is_none_or(|r| r > 3) {
            report.misses.push(Miss {
                query: c.query.clone(),
                class: c.class.clone(),
                expected: c.expected.iter().map(|(a, b)| format!("{a}/{b}")).collect(),
                rank,
                got: got
                    .iter()
                    .take(5)
                    .map(|(a, b)| format!("{a}/{b}"))
                    .collect(),
            });
        }
    }
    let frac = |n: usize, d: usize| if d == 0 { 0.0 } else { n as f64 / d as f64 };
    report.hit_at_1 = frac(h1, cases.len());
    report.hit_at_3 = frac(h3, cases.len());
    report.hit_at_10 = frac(h10, cases.len());
    report.mrr = if cases.is_empty() {
        0.0
    } else {
        rr / cases.len() as f64
    };
    for (class, [n, a, b, d]) in class_hits {
        report.per_class.insert(
            class,
            ClassScore {
                cases: n,
                hit_at_1: frac(a, n),
                hit_at_3: frac(b, n),
                hit_at_10: frac(d, n),
            },
        );
    }
    report
}

impl fmt::Display for RelevanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:>5} {:>7} {:>7} {:>7}",
            "class", "cases", "hit@1", "hit@3", "hit@10"
        )?;
        let pct = |x: f64| format!("{:.1}%", x * 100.0);
        for (class, s) in &self.per_class {
            writeln!(
                f,
                "{:<16} {:>5} {:>7} {:>7} {:>7}",
                class,
                s.cases,
                pct(s.hit_at_1),
                pct(s.hit_at_3),
                pct(s.hit_at_10)
            )?;
        }
        writeln!(
            f,
            "{:<16} {:>5} {:>7} {:>7} {:>7}   MRR {:.3}",
            "all",
            self.cases,
            pct(self.hit_at_1),
            pct(self.hit_at_3),
            pct(self.hit_at_10),
            self.mrr
        )?;
        if !self.misses.is_empty() {
            writeln!(f, "misses (not in the first 3):")?;
            for m in &self.misses {
                writeln!(
                    f,
                    "  [{}] {:?}: want {} — rank {} — got {}",
                    m.class,
                    m.query,
                    m.expected.join("|"),
                    m.rank.map_or("-".to_string(), |r| r.to_string()),
                    m.got.join(", ")
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_scores() {
        let set = "query\texpected\tclass\n# a comment\n\
                   requests\tpypi/requests\texact\n\
                   yaml parser\tpypi/PyYAML|npm/js-yaml\tdescriptive\n\
                   nothing\tnpm/none\tgeneric\n";
        let cases = parse_set(set).unwrap();
        assert_eq!(cases.len(), 3);
        assert_eq!(cases[1].expected[0], ("pypi".into(), "pyyaml".into()));
        let r = evaluate(&cases, |q| match q {
            "requests" => vec![("pypi".into(), "Requests".into())],
            "yaml parser" => vec![
                ("npm".into(), "a".into()),
                ("npm".into(), "b".into()),
                ("npm".into(), "js-yaml".into()),
            ],
            _ => vec![],
        });
        assert_eq!(r.hit_at_1, 1.0 / 3.0);
        assert_eq!(r.hit_at_3, 2.0 / 3.0);
        assert_eq!(r.misses.len(), 1);
        assert_eq!(r.per_class["descriptive"].hit_at_3, 1.0);
        assert!(r.to_string().contains("all"));
        assert!(parse_set("a\tb\n").is_err());
        let kinds = parse_set("q\tx/y\tc\ttool\nr\tx/y\tc\t\n").unwrap();
        assert_eq!(kinds[0].kind, Some(Kind::Tool));
        assert_eq!(kinds[1].kind, None);
        assert!(parse_set("q\tx/y\tc\tgadget\n")
            .unwrap_err()
            .to_string()
            .contains("'gadget' is not a kind"));
    }
}
