//! Term-expanding matches (prefix and fuzzy) with a score per expanded term.
//!
//! tantivy's `FuzzyTermQuery` gives every expanded term the same score and walks the
//! whole term dictionary with the Levenshtein automaton. Here:
//! - the first byte is locked (typos rarely hit the first letter), which keeps the
//!   automaton walk inside one branch of the FST: distance 2 on a million names costs
//!   a fraction of a millisecond instead of several;
//! - each term is scored by how far it is from the query (edit distance, or characters
//!   past the typed prefix), so `tensorfl` prefers `tensorflow` to
//!   `tensorflowtfjsbackendwebgl` before popularity has its say;
//! - prefix completions are bounded in length, so a short prefix does not expand to
//!   tens of thousands of terms.

use std::fmt;
use std::sync::OnceLock;

use levenshtein_automata::{Distance, LevenshteinAutomatonBuilder, DFA, SINK_STATE};
use tantivy::query::{EnableScoring, Explanation, Query, Scorer, Weight};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, DocSet, Score, SegmentReader, TERMINATED};
use tantivy_fst::Automaton;

/// How to expand the query text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expansion {
    /// Terms starting with the text and at most `max_extra` bytes longer. Score:
    /// `score` for completions up to `near` extra bytes, half of it beyond.
    Prefix {
        max_extra: usize,
        near: usize,
        score: f32,
    },
    /// Terms within `distance` edits (transpositions cost 1) that share the first byte.
    /// Score: `score` at distance 1, `score * 0.6` at distance 2 (and `score` for an
    /// exact match, which other clauses usually reward already).
    Fuzzy { distance: u8, score: f32 },
}

/// Expand `text` in `field` and score the documents of every expanded term.
#[derive(Clone)]
pub struct ExpandQuery {
    pub field: Field,
    pub text: String,
    pub expansion: Expansion,
}

impl fmt::Debug for ExpandQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Expand({:?}, {:?}, {:?})",
            self.field, self.text, self.expansion
        )
    }
}

fn builder(distance: u8) -> &'static LevenshteinAutomatonBuilder {
    static B: [OnceLock<LevenshteinAutomatonBuilder>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let d = distance.min(2);
    B[d as usize].get_or_init(|| LevenshteinAutomatonBuilder::new(d, true))
}

/// A Levenshtein DFA whose first byte must equal the query's.
struct LockedDfa {
    dfa: DFA,
    first: u8,
}

impl Automaton for LockedDfa {
    /// (bytes consumed so far, saturating at 1; DFA state)
    type State = (u8, u32);
    fn start(&self) -> Self::State {
        (0, self.dfa.initial_state())
    }
    fn is_match(&self, s: &Self::State) -> bool {
        s.0 > 0 && matches!(self.dfa.distance(s.1), Distance::Exact(_))
    }
    fn can_match(&self, s: &Self::State) -> bool {
        s.1 != SINK_STATE
    }
    fn accept(&self, s: &Self::State, b: u8) -> Self::State {
        if s.0 == 0 && b != self.first {
            return (1, SINK_STATE);
        }
        (1, self.dfa.transition(s.1, b))
    }
}

/// Terms that start with `prefix` and are at most `max_len` bytes long.
struct BoundedPrefix<'a> {
    prefix: &'a [u8],
    max_len: usize,
}

impl Automaton for BoundedPrefix<'_> {
    /// Bytes consumed, or usize::MAX once off the prefix.
    type State = usize;
    fn start(&self) -> usize {
        0
    }
    fn is_match(&self, s: &usize) -> bool {
        *s != usize::MAX && *s >= self.prefix.len()
    }
    fn can_match(&self, s: &usize) -> bool {
        *s != usize::MAX && *s <= self.max_len
    }
    fn accept(&self, s: &usize, b: u8) -> usize {
        if *s == usize::MAX || *s >= self.max_len {
            return usize::MAX;
        }
        if *s < self.prefix.len() && self.prefix[*s] != b {
            return usize::MAX;
        }
        s + 1
    }
}

impl Query for ExpandQuery {
    fn weight(&self, _scoring: EnableScoring<'_>) -> tantivy::Result<Box<dyn Weight>> {
        Ok(Box::new(self.clone()))
    }
}

impl ExpandQuery {
    /// (doc, score) of every document of every expanded term in a segment, sorted by doc,
    /// best score per doc.
    fn matches(&self, reader: &SegmentReader) -> tantivy::Result<Vec<(DocId, Score)>> {
        let inverted = reader.inverted_index(self.field)?;
        let dict = inverted.terms();
        let text = self.text.as_bytes();
        let mut out: Vec<(DocId, Score)> = Vec::new();
        let mut push_term =
            |ti: &tantivy::postings::TermInfo, score: Score| -> tantivy::Result<()> {
                let mut postings =
                    inverted.read_block_postings_from_terminfo(ti, IndexRecordOption::Basic)?;
                loop {
                    let docs = postings.docs();
                    if docs.is_empty() {
                        break;
                    }
                    out.extend(docs.iter().map(|d| (*d, score)));
                    postings.advance();
                }
                Ok(())
            };
        match self.expansion {
            Expansion::Prefix {
                max_extra,
                near,
                score,
            } => {
                let aut = BoundedPrefix {
                    prefix: text,
                    max_len: text.len() + max_extra,
                };
                let mut stream = dict.search(aut).into_stream()?;
                while stream.advance() {
                    let extra = stream.key().len().saturating_sub(text.len());
                    let s = if extra <= near { score } else { score * 0.5 };
                    push_term(stream.value(), s)?;
                }
            }
            Expansion::Fuzzy { distance, score } => {
                let Some(&first) = text.first() else {
                    return Ok(out);
                };
                let dfa = builder(distance).build_dfa(&self.text);
                let aut = LockedDfa { dfa, first };
                let mut stream = dict.search(&aut).into_stream()?;
                while stream.advance() {
                    let d = match aut.dfa.eval(stream.key()) {
                        Distance::Exact(d) => d,
                        Distance::AtLeast(_) => continue,
                    };
                    let s = if d >= 2 { score * 0.6 } else { score };
                    push_term(stream.value(), s)?;
                }
            }
        }
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.total_cmp(&a.1)));
        out.dedup_by_key(|x| x.0);
        Ok(out)
    }
}

impl Weight for ExpandQuery {
    fn scorer(&self, reader: &SegmentReader, boost: Score) -> tantivy::Result<Box<dyn Scorer>> {
        let docs = self.matches(reader)?;
        Ok(Box::new(VecScorer {
            docs,
            cursor: 0,
            boost,
        }))
    }

    fn explain(&self, reader: &SegmentReader, doc: DocId) -> tantivy::Result<Explanation> {
        let docs = self.matches(reader)?;
        match docs.binary_search_by_key(&doc, |x| x.0) {
            Ok(i) => Ok(Explanation::new("expanded term", docs[i].1)),
            Err(_) => Err(tantivy::TantivyError::InvalidArgument(format!(
                "document {doc} does not match"
            ))),
        }
    }
}

/// A scorer over a sorted list of (doc, score).
struct VecScorer {
    docs: Vec<(DocId, Score)>,
    cursor: usize,
    boost: Score,
}

impl DocSet for VecScorer {
    fn advance(&mut self) -> DocId {
        if self.cursor < self.docs.len() {
            self.cursor += 1;
        }
        self.doc()
    }
    fn seek(&mut self, target: DocId) -> DocId {
        if self.doc() >= target {
            return self.doc();
        }
        let rest = &self.docs[self.cursor..];
        self.cursor += rest.partition_point(|x| x.0 < target);
        self.doc()
    }
    fn doc(&self) -> DocId {
        self.docs.get(self.cursor).map_or(TERMINATED, |x| x.0)
    }
    fn size_hint(&self) -> u32 {
        (self.docs.len() - self.cursor) as u32
    }
}

impl Scorer for VecScorer {
    fn score(&mut self) -> Score {
        self.docs.get(self.cursor).map_or(0.0, |x| x.1 * self.boost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run<A: Automaton>(a: &A, s: &str) -> bool {
        let mut st = a.start();
        for b in s.bytes() {
            if !a.can_match(&st) {
                return false;
            }
            st = a.accept(&st, b);
        }
        a.is_match(&st)
    }

    #[test]
    fn locked_fuzzy() {
        let a = LockedDfa {
            dfa: builder(1).build_dfa("reqeusts"),
            first: b'r',
        };
        assert!(run(&a, "requests"));
        assert!(run(&a, "reqeusts"));
        assert!(!run(&a, "eqeusts"));
        assert!(!run(&a, "xeqeusts"));
    }

    #[test]
    fn bounded_prefix() {
        let a = BoundedPrefix {
            prefix: b"soup",
            max_len: 6,
        };
        assert!(run(&a, "soup"));
        assert!(run(&a, "soup4"));
        assert!(run(&a, "soupsy"));
        assert!(!run(&a, "soupsie"));
        assert!(!run(&a, "sou"));
        assert!(!run(&a, "xsoup"));
    }
}
