//! The query lexicon: synonyms, abbreviations, ecosystem words and question fillers, as
//! data (`data/lexicon.txt` in this crate), read and checked when search starts.
//!
//! It is applied at query time only, so changing it needs no re-index; its version (a
//! hash of its text) is reported with the index's statistics so that a relevance figure
//! can name the lexicon it was measured with.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use quiver_model::{Error, Result};

/// The lexicon shipped with quiver.
pub const BUILTIN: &str = include_str!("../data/lexicon.txt");

/// A parsed, checked lexicon.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    /// Word → the namespace it names (`python` → `pypi`).
    ecosystems: HashMap<String, String>,
    filler: HashSet<String>,
    /// Words that say what to do or what sort of thing rather than what with
    /// ("convert", "read", "client"): never the word a need must hold when another
    /// names its subject, never taken for a package's name.
    generic: HashSet<String>,
    /// Word → what else it matches: each alternative is one or more words, all required.
    alternatives: HashMap<String, Vec<Vec<String>>>,
    version: String,
}

fn invalid(line: usize, msg: impl std::fmt::Display) -> Error {
    Error::invalid("lexicon", format!("line {line}: {msg}"))
}

/// The words of one side of a rule: lower-case letters and digits, at least one.
fn words(line: usize, side: &str) -> Result<Vec<String>> {
    let out: Vec<String> = side.split_whitespace().map(str::to_string).collect();
    if out.is_empty() {
        return Err(invalid(line, "an empty side"));
    }
    for w in &out {
        if !w
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(invalid(
                line,
                format!("`{w}` is not a lower-case word of letters and digits"),
            ));
        }
    }
    Ok(out)
}

fn list(line: usize, text: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for item in text.split(',') {
        let w = words(line, item)?;
        if w.len() != 1 {
            return Err(invalid(line, format!("`{}` is not one word", item.trim())));
        }
        out.extend(w);
    }
    Ok(out)
}

/// FNV-1a over the text: a version tag that changes when the text does (not a
/// security hash, so no hashing crate is pulled in for it).
fn version_of(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

impl Lexicon {
    /// The built-in lexicon (checked by a unit test, so it always loads).
    pub fn builtin() -> &'static Lexicon {
        static L: OnceLock<Lexicon> = OnceLock::new();
        L.get_or_init(|| Lexicon::parse(BUILTIN).expect("the built-in lexicon is valid"))
    }

    /// Parse and check a lexicon's text.
    pub fn parse(text: &str) -> Result<Lexicon> {
        let mut lx = Lexicon {
            version: version_of(text),
            ..Lexicon::default()
        };
        // Where each defined word was defined, to name both lines of a duplicate.
        let mut defined: HashMap<String, usize> = HashMap::new();
        let mut define = |w: &str, line: usize| -> Result<()> {
            match defined.insert(w.to_string(), line) {
                Some(first) => Err(invalid(
                    line,
                    format!("`{w}` is already defined on line {first}"),
                )),
                None => Ok(()),
            }
        };
        let mut one_way: Vec<(usize, String, Vec<String>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('@') {
                let (directive, body) = rest.split_once(' ').unwrap_or((rest, ""));
                match directive {
                    "ecosystem" => {
                        let (ns, ws) = body
                            .split_once(':')
                            .ok_or_else(|| invalid(n, "expected `@ecosystem NAMESPACE: words`"))?;
                        let ns = words(n, ns)?;
                        if ns.len() != 1 {
                            return Err(invalid(n, "one namespace per line"));
                        }
                        for w in list(n, ws)? {
                            define(&format!("@{w}"), n)?;
                            lx.ecosystems.insert(w, ns[0].clone());
                        }
                    }
                    "filler" => {
                        for w in list(n, body)? {
                            define(&format!("@{w}"), n)?;
                            lx.filler.insert(w);
                        }
                    }
                    "generic" => {
                        for w in list(n, body)? {
                            define(&format!("@{w}"), n)?;
                            lx.generic.insert(w);
                        }
                    }
                    other => return Err(invalid(n, format!("unknown directive `@{other}`"))),
                }
            } else if let Some((lhs, rhs)) = line.split_once("=>") {
                let lhs = words(n, lhs)?;
                if lhs.len() != 1 {
                    return Err(invalid(n, "the left side of `=>` is one word"));
                }
                let rhs = words(n, rhs)?;
                define(&lhs[0], n)?;
                one_way.push((n, lhs[0].clone(), rhs.clone()));
                lx.alternatives.entry(lhs[0].clone()).or_default().push(rhs);
            } else if line.contains('=') {
                let group = line
                    .split('=')
                    .map(|s| words(n, s))
                    .collect::<Result<Vec<_>>>()?;
                if group.len() < 2 {
                    return Err(invalid(n, "a group needs two words or more"));
                }
                for w in &group {
                    if w.len() != 1 {
                        return Err(invalid(n, "each side of `=` is one word"));
                    }
                }
                let group: Vec<String> = group.into_iter().map(|mut w| w.remove(0)).collect();
                for w in &group {
                    define(w, n)?;
                    lx.alternatives.insert(
                        w.clone(),
                        group
                            .iter()
                            .filter(|o| *o != w)
                            .map(|o| vec![o.clone()])
                            .collect(),
                    );
                }
            } else {
                return Err(invalid(
                    n,
                    "expected `a = b`, `abbr => words`, `@ecosystem`, `@filler` or `@generic`",
                ));
            }
        }
        // A one-way rule may not lead back to its own word through other rules.
        let rules: HashMap<&str, Vec<&str>> = one_way
            .iter()
            .map(|(_, l, r)| (l.as_str(), r.iter().map(String::as_str).collect()))
            .collect();
        for (n, start, _) in &one_way {
            let mut stack: Vec<&str> = rules[start.as_str()].clone();
            let mut seen: HashSet<&str> = HashSet::new();
            while let Some(w) = stack.pop() {
                if w == start {
                    return Err(invalid(*n, format!("`{start}` leads back to itself")));
                }
                if seen.insert(w) {
                    if let Some(next) = rules.get(w) {
                        stack.extend(next.iter().copied());
                    }
                }
            }
        }
        Ok(lx)
    }

    /// The namespace an ecosystem word names.
    pub fn ecosystem(&self, word: &str) -> Option<&str> {
        self.ecosystems.get(word).map(String::as_str)
    }

    /// Whether a word is a question's filler.
    pub fn is_filler(&self, word: &str) -> bool {
        self.filler.contains(word)
    }

    /// Whether a word is generic: it says what to do or what sort of thing, not what
    /// with.
    pub fn is_generic(&self, word: &str) -> bool {
        self.generic.contains(word)
    }

    /// The words the lexicon defines alternatives for.
    pub fn defined_words(&self) -> impl Iterator<Item = &str> {
        self.alternatives.keys().map(String::as_str)
    }

    /// What else a word matches.
    pub fn alternatives(&self, word: &str) -> &[Vec<String>] {
        self.alternatives.get(word).map_or(&[], Vec::as_slice)
    }

    /// The version tag of the text this lexicon was read from.
    pub fn version(&self) -> &str {
        &self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Lexicon::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn the_builtin_lexicon_loads() {
        let lx = Lexicon::builtin();
        assert_eq!(lx.ecosystem("python"), Some("pypi"));
        assert_eq!(lx.ecosystem("node"), Some("npm"));
        assert!(lx.is_filler("library"));
        assert!(lx.is_generic("convert") && !lx.is_generic("xml"));
        assert_eq!(lx.alternatives("k8s"), [vec!["kubernetes".to_string()]]);
        assert!(lx
            .alternatives("parsing")
            .contains(&vec!["parser".to_string()]));
        assert_eq!(lx.version().len(), 16);
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(err("a = b\n\nb = c\n").contains("line 3: `b` is already defined on line 1"));
        assert!(err("k8s => kubernetes\nk8s => kube\n").contains("line 2"));
        assert!(err("x => y z\ny => x\n").contains("leads back to itself"));
        assert!(err("a => b\nb => c\nc => a\n").contains("leads back to itself"));
        assert!(err("s3 => aws s3\n").contains("line 1: `s3` leads back to itself"));
        assert!(err("db =>\n").contains("line 1: an empty side"));
        assert!(err("= b\n").contains("line 1: an empty side"));
        assert!(err("@filler how, , why\n").contains("line 1: an empty side"));
        assert!(err("@synonym a\n").contains("unknown directive"));
        assert!(err("@filler how\n@filler how\n").contains("line 2"));
        assert!(err("@generic read\n@filler read\n").contains("line 2"));
        assert!(err("Db => database\n").contains("lower-case"));
        assert!(err("just words\n").contains("line 1: expected"));
        assert!(Lexicon::parse("# nothing\n\n").is_ok());
    }
}
