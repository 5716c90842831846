//! Query planning and execution.

use std::collections::HashMap;
use std::sync::Arc;

use quiver_model::{Context, Error, Kind, Result, Status};
use serde::{Deserialize, Serialize};
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, Occur, Query, TermQuery, TermSetQuery,
};
use tantivy::schema::{Field, IndexRecordOption, Value};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{Searcher, TantivyDocument, Term};

use crate::analysis::{self, joined, pep503, query_words};
use crate::collect::{FacetCounts, Filter, Fruit, HitCollector, Prior};
use crate::expand::{ExpandQuery, Expansion};
use crate::lexicon::Lexicon;
use crate::schema::{Fields, Payload};
use crate::{
    decode_cursor, encode_cursor, FacetCount, Facets, Hit, SearchIndex, SearchQuery, SearchResults,
    Sort, DEFAULT_LIMIT, MAX_LIMIT, MAX_WINDOW,
};

/// The ranking weights. Scores of the parts add up; popularity (0..1) is multiplied by
/// `popularity` and added last.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ranking {
    /// The lowercased (PEP 503 for PyPI) name equals the query (added in the collector).
    pub exact: f32,
    /// The joined name equals the joined query, for a one-word query.
    pub joined: f32,
    /// The joined name equals the joined query, for a query of several words.
    pub joined_multi: f32,
    /// The joined name starts with the joined query.
    pub prefix: f32,
    /// The joined name is within the edit distance of the joined query.
    pub fuzzy: f32,
    /// An unknown query word is within the edit distance of a word of the text.
    pub fuzzy_word: f32,
    /// BM25 boosts per field.
    pub description_boost: f32,
    pub keywords_boost: f32,
    /// Weight of popularity (0..1) added to the final score.
    pub popularity: f32,
    /// The query score is multiplied by `popularity ^ popularity_exponent`, so that a
    /// used package that matches well beats an unused one that matches a bit better.
    pub popularity_exponent: f32,
    /// Largest edit distance tried on names (0 disables fuzzy matching).
    pub max_distance: u8,
    /// Prefix and fuzzy matching of the joined name are skipped when a visible exact
    /// match is at least this popular.
    pub expand_below_popularity: f64,
    /// A word is "unknown" (and matched fuzzily) when fewer documents than this hold it.
    pub unknown_df: u64,
    /// BM25 boost of the manifest content field (capabilities, binaries, exports, ...).
    pub content_boost: f32,
    /// A word (or two neighbouring words) of a longer query is an entry's whole name
    /// ("how to use pandas groupby"): that entry is a candidate with this score.
    pub name_token: f32,
    /// From this many content words on, a document may miss one of them.
    pub soft_and_from: usize,
    /// In a query typed as a sentence (it holds stop words, ecosystem words or
    /// fillers) of up to this many content words, only the rarest content word is
    /// required; the others add to the score.
    pub sentence_rarest_upto: usize,
    /// In a sentence of `soft_and_from` content words or more, any one may be missing
    /// (in keywords, never the rarest).
    pub sentence_any: bool,
    /// Added to a document that holds every content word of a query that does not
    /// require them all, so that the full match leads among entries of like popularity.
    pub all_words: f32,
    /// Entries of the curated kinds (tool, recipe, skill, module) rank as if at least
    /// this popular: they carry no download counts to compare with packages'.
    pub curated_popularity: f64,
    /// Added to an exact name match of a curated kind, after popularity, so that
    /// `terraform` shows the recipe of that name before look-alike packages.
    pub curated_exact: f32,
    /// A query naming an ecosystem (`python`, `node`) multiplies the score of entries
    /// of other namespaces by this.
    pub other_ecosystem: f64,
    /// A word stands for a whole name only when fewer documents than this hold it:
    /// `pandas` does, `parse` and `format` do not.
    pub name_token_max_df: u64,
}

impl Default for Ranking {
    fn default() -> Self {
        Ranking {
            exact: 15.0,
            joined: 25.0,
            joined_multi: 12.0,
            prefix: 8.0,
            fuzzy: 10.0,
            fuzzy_word: 4.0,
            description_boost: 1.0,
            keywords_boost: 1.0,
            popularity: 10.0,
            popularity_exponent: 4.0,
            max_distance: 2,
            expand_below_popularity: 0.6,
            unknown_df: 3,
            content_boost: 0.5,
            name_token: 6.0,
            soft_and_from: 3,
            sentence_rarest_upto: 2,
            sentence_any: true,
            all_words: 5.0,
            curated_popularity: 0.5,
            curated_exact: 10.0,
            other_ecosystem: 0.15,
            name_token_max_df: 12_000,
        }
    }
}

/// Edit distance allowed for a term of `len` characters.
pub fn fuzzy_distance(len: usize) -> u8 {
    match len {
        0..=4 => 0,
        5..=8 => 1,
        _ => 2,
    }
}

fn term_q(field: Field, text: &str, opt: IndexRecordOption) -> Box<dyn Query> {
    Box::new(TermQuery::new(Term::from_field_text(field, text), opt))
}

fn boxed_const(q: Box<dyn Query>, score: f32) -> Box<dyn Query> {
    Box::new(ConstScoreQuery::new(q, score))
}

/// A word the lexicon defines whose stem is `stem`.
fn lexicon_word_of_stem(stem: &str) -> Option<&'static str> {
    static BY_STEM: std::sync::OnceLock<HashMap<String, &'static str>> = std::sync::OnceLock::new();
    let map = BY_STEM.get_or_init(|| {
        let mut en = analysis::english();
        let mut m = HashMap::new();
        for w in Lexicon::builtin().defined_words() {
            if let Some(t) = analysis::analyze(&mut en, w).into_iter().next() {
                m.entry(t.2).or_insert(w);
            }
        }
        m
    });
    map.get(stem).copied()
}

struct Planner<'a> {
    searcher: &'a Searcher,
    f: &'a Fields,
    r: Ranking,
    en: TextAnalyzer,
}

/// The analysed query.
struct Plan {
    words: Vec<String>,
    /// Per word: its English stem (None for stop words, and for ecosystem words and
    /// fillers when other words carry the need).
    stems: Vec<Option<String>>,
    /// Per word: the stems of what else it matches (the lexicon's synonyms and
    /// expansions; an expansion of several words needs all of them).
    alternatives: Vec<Vec<Vec<String>>>,
    joined: String,
    /// Namespaces the query's ecosystem words prefer.
    prefer: Vec<String>,
    /// Joined forms of single content words and neighbouring pairs that may be an
    /// entry's whole name, for a query of several words.
    name_tokens: Vec<String>,
    /// The query is a sentence ("parse xml in python"), not keywords ("yaml parser"):
    /// it holds stop words, ecosystem words or fillers beside the words of the need.
    sentence: bool,
    /// Per word: generic ("convert", "client") in a sentence whose subject another
    /// word names; scored, not required.
    generic: Vec<bool>,
}

impl Plan {
    fn content_words(&self) -> usize {
        self.stems.iter().filter(|s| s.is_some()).count()
    }
}

/// Which expansions of the joined name a query gets.
#[derive(Debug, Clone, Copy, Default)]
struct Expand {
    prefix: bool,
    fuzzy: bool,
    /// A visible entry popular enough has exactly the joined name (`flask`): it keeps
    /// the lead over a curated entry of the same name.
    exact_popular: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    And,
    Or,
}

impl Planner<'_> {
    fn distance(&self, len: usize) -> u8 {
        fuzzy_distance(len).min(self.r.max_distance)
    }

    fn df(&self, field: Field, text: &str) -> u64 {
        self.searcher
            .doc_freq(&Term::from_field_text(field, text))
            .unwrap_or(0)
    }

    fn stem(&mut self, w: &str) -> Option<String> {
        analysis::analyze(&mut self.en, w)
            .into_iter()
            .next()
            .map(|t| t.2)
    }

    fn plan(&mut self, q: &str) -> Plan {
        let lx = Lexicon::builtin();
        let mut words = query_words(q);
        words.truncate(12);
        let mut stems: Vec<Option<String>> = words.iter().map(|w| self.stem(w)).collect();
        // A word said twice ("end to end") is one word of the need.
        for i in 1..stems.len() {
            if stems[i].is_some() && stems[..i].contains(&stems[i]) {
                stems[i] = None;
            }
        }
        let mut prefer: Vec<String> = Vec::new();
        if words.len() > 1 {
            // "parse xml in python": `python` says where, `xml` and `parse` say what.
            // Fillers ("how", "library") only give way in a question of three words or
            // more: `fast api` and `test library` stay as typed.
            let filler = |w: &str| words.len() >= 3 && lx.is_filler(w);
            let need = |w: &str| lx.ecosystem(w).is_none() && !filler(w);
            let carried = words
                .iter()
                .zip(&stems)
                .any(|(w, s)| s.is_some() && need(w));
            if carried {
                for (w, s) in words.iter().zip(stems.iter_mut()) {
                    if let Some(ns) = lx.ecosystem(w) {
                        if !prefer.iter().any(|p| p == ns) {
                            prefer.push(ns.to_string());
                        }
                    }
                    if !need(w) {
                        *s = None;
                    }
                }
            }
        }
        let mut alternatives: Vec<Vec<Vec<String>>> = Vec::with_capacity(words.len());
        let mut repeated = Vec::new();
        for (w, s) in words.iter().zip(&stems) {
            let mut alts: Vec<Vec<String>> = Vec::new();
            if let Some(s) = s {
                // The lexicon's word as typed, or one of the same stem (`charts` meets
                // `chart = plot`).
                let defined = if lx.alternatives(w).is_empty() {
                    lexicon_word_of_stem(s)
                } else {
                    Some(w.as_str())
                };
                for alt in defined.map_or(&[][..], |d| lx.alternatives(d)) {
                    let a: Vec<String> = alt.iter().filter_map(|x| self.stem(x)).collect();
                    if !a.is_empty() && a != std::slice::from_ref(s) && !alts.contains(&a) {
                        alts.push(a);
                    }
                }
            }
            // A word that means what an earlier word means ("zip archives" under
            // `zip = archive`) is that word again.
            let is = |alts: &[Vec<String>], stem: &String| {
                alts.iter()
                    .any(|a| a.as_slice() == std::slice::from_ref(stem))
            };
            let said = s.as_ref().is_some_and(|s| {
                alternatives.iter().zip(&stems).any(|(earlier, es)| {
                    is(earlier, s) || es.as_ref().is_some_and(|es| is(&alts, es))
                })
            });
            alternatives.push(if said { Vec::new() } else { alts });
            if said {
                repeated.push(alternatives.len() - 1);
            }
        }
        for i in repeated {
            stems[i] = None;
        }
        let sentence = words.len() > stems.iter().filter(|s| s.is_some()).count();
        let specific = |w: &String, s: &Option<String>| s.is_some() && !lx.is_generic(w);
        let has_subject = words.iter().zip(&stems).any(|(w, s)| specific(w, s));
        let generic: Vec<bool> = words
            .iter()
            .zip(&stems)
            .map(|(w, s)| sentence && has_subject && s.is_some() && lx.is_generic(w))
            .collect();
        let joined_q = joined(q);
        let mut name_tokens: Vec<String> = Vec::new();
        let content: Vec<&String> = words
            .iter()
            .zip(&stems)
            .filter(|(_, s)| s.is_some())
            .map(|(w, _)| w)
            .collect();
        if words.len() > 1 {
            let mut push = |t: String| {
                if t.len() >= 2 && t != joined_q && !name_tokens.contains(&t) {
                    name_tokens.push(t);
                }
            };
            for w in &content {
                // Only a word rare enough to be a name: `pandas`, not `parse`.
                let common = lx.is_generic(w)
                    || self.stem(w).is_some_and(|s| {
                        self.df(self.f.description, &s) >= self.r.name_token_max_df
                    });
                if !common {
                    push(joined(w));
                }
            }
            for pair in content.windows(2) {
                push(joined(&format!("{}{}", pair[0], pair[1])));
            }
        }
        Plan {
            joined: joined_q,
            words,
            stems,
            alternatives,
            prefer,
            name_tokens,
            sentence,
            generic,
        }
    }

    /// The clauses for one query word: what a document must match (the word's stem in
    /// `description`, which also holds the name words and keywords, or in the manifest
    /// `content`; or one of the word's alternatives from the lexicon; or fuzzy
    /// expansions of an unknown word) and an optional boost (the word among the
    /// keywords). None for a stop word.
    fn word_clause(
        &self,
        w: &str,
        stem: Option<&str>,
        alternatives: &[Vec<String>],
    ) -> Option<(Box<dyn Query>, Box<dyn Query>)> {
        let f = self.f;
        let r = &self.r;
        let s = stem?;
        let one = |s: &str| -> Box<dyn Query> {
            Box::new(BooleanQuery::new(vec![
                (
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        term_q(f.description, s, IndexRecordOption::WithFreqs),
                        r.description_boost,
                    )) as Box<dyn Query>,
                ),
                (
                    Occur::Should,
                    Box::new(BoostQuery::new(
                        term_q(f.content, s, IndexRecordOption::WithFreqs),
                        r.content_boost,
                    )),
                ),
            ]))
        };
        let mut either: Vec<(Occur, Box<dyn Query>)> = vec![(Occur::Should, one(s))];
        for alt in alternatives {
            let q: Box<dyn Query> = match alt.as_slice() {
                [single] => one(single),
                all => Box::new(BooleanQuery::new(
                    all.iter().map(|a| (Occur::Must, one(a))).collect(),
                )),
            };
            either.push((Occur::Should, q));
        }
        let boost: Box<dyn Query> = Box::new(BoostQuery::new(
            term_q(f.keywords, s, IndexRecordOption::WithFreqs),
            r.keywords_boost,
        ));
        let d = self.distance(w.chars().count());
        if d > 0 && r.fuzzy_word > 0.0 && self.df(f.description, s) < r.unknown_df {
            either.push((
                Occur::Should,
                Box::new(ExpandQuery {
                    field: f.description,
                    text: s.to_string(),
                    expansion: Expansion::Fuzzy {
                        distance: d,
                        score: r.fuzzy_word,
                    },
                }),
            ));
        }
        Some((Box::new(BooleanQuery::new(either)), boost))
    }

    /// The text part: every (non stop) word must match (AND), all but one of them
    /// from `soft_and_from` content words on, or any (OR). Required clauses are plain
    /// term postings, so a conjunction is an intersection driven by the rarest word; the
    /// keyword boosts are only looked up for its results.
    fn text_clause(&self, p: &Plan, mode: Mode) -> Option<Box<dyn Query>> {
        let has_content = p.content_words() > 0;
        let mut required: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        let mut boosts: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        // Indexes into `p.words` of the required clauses.
        let mut at: Vec<usize> = Vec::new();
        for (i, ((w, s), alts)) in p
            .words
            .iter()
            .zip(&p.stems)
            .zip(&p.alternatives)
            .enumerate()
        {
            // A stop word ("for", "the") is not required when other words carry meaning.
            if s.is_none() && has_content && mode == Mode::And {
                continue;
            }
            let Some((req, boost)) = self.word_clause(w, s.as_deref(), alts) else {
                continue;
            };
            if p.generic[i] && mode == Mode::And {
                // "convert" in "convert markdown to html": scored, not required.
                boosts.push((Occur::Should, req));
            } else {
                required.push((Occur::Should, req));
                at.push(i);
            }
            boosts.push((Occur::Should, boost));
        }
        if required.is_empty() {
            return None;
        }
        let n = required.len();
        // Worth nothing where every word is required anyway.
        let all = match mode {
            Mode::And => self.all_words(&required),
            Mode::Or => None,
        };
        let words: Box<dyn Query> = match mode {
            Mode::Or => Box::new(BooleanQuery::with_minimum_required_clauses(required, 1)),
            Mode::And if n >= 2 && p.sentence && n <= self.r.sentence_rarest_upto => {
                // A need typed as a sentence names its subject in its rarest word; the
                // other words add to the score without being required, so that `lxml`
                // ("XML processing") answers "parse xml in python" by its popularity.
                let rarest = self.rarest(p, &at);
                let mut others = required;
                let (_, must) = others.remove(rarest.min(others.len() - 1));
                let mut clauses = vec![(Occur::Must, must)];
                clauses.extend(others);
                clauses.extend(all);
                Box::new(BooleanQuery::new(clauses))
            }
            Mode::And if n >= self.r.soft_and_from.max(2) && p.sentence && self.r.sentence_any => {
                // A sentence of three words or more may miss any one of them: in
                // "structured json logging" the rarest word is the modifier.
                let mut clauses = vec![(Occur::Must, at_least(&required, n - 1))];
                clauses.extend(required);
                clauses.extend(all);
                Box::new(BooleanQuery::new(clauses))
            }
            Mode::And if n >= self.r.soft_and_from.max(2) => {
                // All but one word, and never without the rarest one: `read csv files`
                // may lack `read` or `files`, not `csv`.
                let rarest = self.rarest(p, &at);
                let mut others = required;
                let (_, must) = others.remove(rarest.min(others.len() - 1));
                let mut clauses: Vec<(Occur, Box<dyn Query>)> =
                    vec![(Occur::Must, must), (Occur::Must, at_least(&others, n - 2))];
                clauses.extend(others);
                clauses.extend(all);
                Box::new(BooleanQuery::new(clauses))
            }
            Mode::And => Box::new(BooleanQuery::with_minimum_required_clauses(required, n)),
        };
        let mut clauses = vec![(Occur::Must, words)];
        clauses.extend(boosts);
        Some(Box::new(BooleanQuery::new(clauses)))
    }

    /// A clause worth `all_words` to a document that holds every required word (each
    /// with its alternatives: in a sentence, every word but the generic ones), for a
    /// query that does not require them all. The words' clauses are cloned, not built
    /// again.
    fn all_words(&self, required: &[(Occur, Box<dyn Query>)]) -> Option<(Occur, Box<dyn Query>)> {
        if self.r.all_words <= 0.0 || required.len() < 2 {
            return None;
        }
        let every = required
            .iter()
            .map(|(_, q)| (Occur::Must, q.box_clone()))
            .collect();
        Some((
            Occur::Should,
            boxed_const(Box::new(BooleanQuery::new(every)), self.r.all_words),
        ))
    }

    /// Which of the required words the fewest documents hold.
    /// `at` holds the words' indexes into the plan; the answer is an index into `at`.
    fn rarest(&self, p: &Plan, at: &[usize]) -> usize {
        at.iter()
            .enumerate()
            .filter_map(|(k, &i)| p.stems[i].as_deref().map(|s| (k, s)))
            .min_by_key(|(_, s)| self.df(self.f.description, s))
            .map_or(0, |(k, _)| k)
    }

    /// Which name expansions are worth their cost: none when a visible, popular
    /// package has exactly the joined name (`django`, `requests`); prefix and fuzzy
    /// otherwise (`expresss` exists, `express` is meant; `beautifulsoup` exists,
    /// `beautifulsoup4` is meant).
    fn expansions(&self, p: &Plan, filter: &Arc<Filter>) -> Expand {
        if p.joined.is_empty() {
            return Expand::default();
        }
        let q = TermQuery::new(
            Term::from_field_text(self.f.name_joined, &p.joined),
            IndexRecordOption::Basic,
        );
        let best = self
            .searcher
            .search(
                &q,
                &HitCollector {
                    filter: filter.clone(),
                    sort: Sort::Popularity,
                    window: 1,
                    facets: false,
                    pop_weight: 0.0,
                    pop_exponent: 0.0,
                    scoring: false,
                    exact_names: Default::default(),
                    exact_bonus: 0.0,
                    prior: Prior::default(),
                },
            )
            .ok()
            .and_then(|f| f.top.first().map(|r| r.key))
            .unwrap_or(0.0);
        if best >= self.r.expand_below_popularity {
            return Expand {
                exact_popular: true,
                ..Expand::default()
            };
        }
        Expand {
            exact_popular: false,
            prefix: true,
            fuzzy: self.r.fuzzy > 0.0
                && self.distance(p.joined.chars().count()) > 0
                && p.words.len() <= 3,
        }
    }

    fn query(&self, p: &Plan, mode: Mode, expand: Expand) -> Box<dyn Query> {
        let f = self.f;
        let r = &self.r;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if !p.joined.is_empty() {
            let w = if p.words.len() > 1 {
                r.joined_multi
            } else {
                r.joined
            };
            clauses.push((
                Occur::Should,
                boxed_const(
                    term_q(f.name_joined, &p.joined, IndexRecordOption::Basic),
                    w,
                ),
            ));
            if expand.prefix && p.joined.len() >= 3 && p.words.len() <= 4 && r.prefix > 0.0 {
                clauses.push((
                    Occur::Should,
                    Box::new(ExpandQuery {
                        field: f.name_joined,
                        text: p.joined.clone(),
                        expansion: Expansion::Prefix {
                            max_extra: if p.joined.len() >= 6 { 64 } else { 8 },
                            near: 4,
                            score: r.prefix,
                        },
                    }),
                ));
            }
            if expand.fuzzy {
                let d = self.distance(p.joined.chars().count());
                clauses.push((
                    Occur::Should,
                    Box::new(ExpandQuery {
                        field: f.name_joined,
                        text: p.joined.clone(),
                        expansion: Expansion::Fuzzy {
                            distance: d,
                            score: r.fuzzy,
                        },
                    }),
                ));
            }
        }
        if r.name_token > 0.0 {
            for t in &p.name_tokens {
                clauses.push((
                    Occur::Should,
                    boxed_const(
                        term_q(f.name_joined, t, IndexRecordOption::Basic),
                        r.name_token,
                    ),
                ));
            }
        }
        if let Some(t) = self.text_clause(p, mode) {
            clauses.push((Occur::Should, t));
        }
        Box::new(BooleanQuery::new(clauses))
    }
}

/// Most of this many clause copies go into an [`at_least`] filter; beyond, it falls back
/// to tantivy's counting disjunction.
const AT_LEAST_MAX_COPIES: usize = 64;

/// A filter (score 0) that matches the documents holding at least `k` of `clauses`; the
/// caller adds the clauses themselves as optional ones for the score.
///
/// tantivy answers `with_minimum_required_clauses` with a counting disjunction that walks
/// the union of every clause's postings and cannot seek: "command line tools for llm"
/// visits every document that says "tools" or "line". The same set is the union of the
/// conjunctions of each `k` clauses, and each conjunction is driven by its rarest word,
/// so the cost follows the rare words instead of the common ones. The conjunctions are
/// built from clones of the clauses, as many as `C(n, k) * k`, which stays small for the
/// `n - 1` and `n - 2` of `n` that search asks for; past `AT_LEAST_MAX_COPIES` the
/// counting disjunction is used.
fn at_least(clauses: &[(Occur, Box<dyn Query>)], k: usize) -> Box<dyn Query> {
    let n = clauses.len();
    let zero = |q: Box<dyn Query>| -> Box<dyn Query> { Box::new(ConstScoreQuery::new(q, 0.0)) };
    if k == 0 {
        return Box::new(AllQuery);
    }
    let combos = subsets(n, k);
    if k >= n || combos.len() * k > AT_LEAST_MAX_COPIES {
        let copies = clauses
            .iter()
            .map(|(_, q)| (Occur::Should, q.box_clone()))
            .collect();
        return zero(Box::new(BooleanQuery::with_minimum_required_clauses(
            copies,
            k.min(n),
        )));
    }
    let union = combos
        .into_iter()
        .map(|set| {
            let conj: Box<dyn Query> = Box::new(BooleanQuery::new(
                set.into_iter()
                    .map(|i| (Occur::Must, clauses[i].1.box_clone()))
                    .collect(),
            ));
            (Occur::Should, zero(conj))
        })
        .collect();
    Box::new(BooleanQuery::new(union))
}

/// Every `k`-element subset of `0..n`, in lexicographic order.
fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur = Vec::with_capacity(k);
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        // Stop early once the subsets would outgrow any caller's budget.
        if out.len() > AT_LEAST_MAX_COPIES {
            return;
        }
        for i in start..n {
            if n - i < k - cur.len() {
                break;
            }
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    go(0, n, k, &mut cur, &mut out);
    out
}

fn status_mask(statuses: &[Status]) -> u32 {
    let wanted: &[Status] = if statuses.is_empty() {
        &[Status::Published, Status::Deprecated]
    } else {
        statuses
    };
    Status::ALL
        .iter()
        .enumerate()
        .filter(|(_, s)| wanted.contains(s))
        .fold(0, |m, (i, _)| m | (1 << i))
}

fn kind_mask(kinds: &[Kind]) -> u32 {
    Kind::ALL
        .iter()
        .enumerate()
        .filter(|(_, k)| kinds.is_empty() || kinds.contains(k))
        .fold(0, |m, (i, _)| m | (1 << i))
}

/// `query`, limited to the query's platforms when it names some (a constant-score
/// clause: it filters without changing the ranking).
fn with_platforms(f: &Fields, q: &SearchQuery, query: Box<dyn Query>) -> Box<dyn Query> {
    if q.platforms.is_empty() {
        return query;
    }
    let terms = q
        .platforms
        .iter()
        .map(|p| Term::from_field_text(f.platform, p))
        .collect::<Vec<_>>();
    Box::new(BooleanQuery::new(vec![
        (Occur::Must, query),
        (
            Occur::Must,
            Box::new(tantivy::query::ConstScoreQuery::new(
                Box::new(TermSetQuery::new(terms)),
                0.0,
            )),
        ),
    ]))
}

/// For a query without text: the posting lists of the given filters drive the search
/// (or every document, for a plain browse).
fn browse_query(f: &Fields, q: &SearchQuery) -> Box<dyn Query> {
    let mut must: Vec<(Occur, Box<dyn Query>)> = Vec::new();
    let mut any_of = |field: Field, values: Vec<String>| {
        if !values.is_empty() {
            let terms = values
                .iter()
                .map(|v| Term::from_field_text(field, v))
                .collect::<Vec<_>>();
            must.push((Occur::Must, Box::new(TermSetQuery::new(terms))));
        }
    };
    any_of(f.namespace, q.namespaces.clone());
    any_of(f.category, q.categories.clone());
    any_of(f.tags, q.tags.clone());
    any_of(f.platform, q.platforms.clone());
    any_of(
        f.kind,
        q.kinds.iter().map(|k| k.as_str().to_string()).collect(),
    );
    if must.is_empty() {
        Box::new(AllQuery)
    } else {
        Box::new(BooleanQuery::new(must))
    }
}

fn top_facets(m: HashMap<String, u64>, n: usize) -> Vec<FacetCount> {
    let mut v: Vec<FacetCount> = m
        .into_iter()
        .filter(|(_, c)| *c > 0)
        .map(|(value, count)| FacetCount { value, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then(a.value.cmp(&b.value)));
    v.truncate(n);
    v
}

fn facets_of(fc: FacetCounts) -> Facets {
    let fixed = |counts: [u64; 8], names: &[&str]| {
        top_facets(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), counts[i]))
                .collect(),
            names.len(),
        )
    };
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
    let statuses: Vec<&str> = Status::ALL.iter().map(|s| s.as_str()).collect();
    Facets {
        kind: fixed(fc.kind, &kinds),
        status: fixed(fc.status, &statuses),
        namespace: top_facets(fc.namespace, 20),
        category: top_facets(fc.category, 20),
        tags: top_facets(fc.tags, 30),
        platform: top_facets(fc.platform, 30),
    }
}

fn escape_html(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

/// The description with the words whose stems the query holds wrapped in `<mark>`;
/// None when no word matches.
fn highlight(en: &mut TextAnalyzer, text: &str, stems: &[String]) -> Option<String> {
    const MAX_CHARS: usize = 240;
    let marks: Vec<(usize, usize)> = analysis::analyze(en, text)
        .into_iter()
        .filter(|t| stems.contains(&t.2))
        .map(|t| (t.0, t.1))
        .collect();
    if marks.is_empty() {
        return None;
    }
    // A window of at most MAX_CHARS bytes that starts a little before the first mark.
    let mut start = marks[0].0.saturating_sub(60);
    while !text.is_char_boundary(start) {
        start -= 1;
    }
    if start > 0 {
        if let Some(sp) = text[..start].rfind(' ') {
            start = sp + 1;
        }
    }
    let mut end = (start + MAX_CHARS).min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(end - start + 32);
    if start > 0 {
        out.push('…');
    }
    let mut at = start;
    for (a, b) in marks {
        if a < at || b > end {
            continue;
        }
        escape_html(&text[at..a], &mut out);
        out.push_str("<mark>");
        escape_html(&text[a..b], &mut out);
        out.push_str("</mark>");
        at = b;
    }
    escape_html(&text[at..end], &mut out);
    if end < text.len() {
        out.push('…');
    }
    Some(out)
}

pub(crate) fn run(ix: &SearchIndex, q: &SearchQuery) -> Result<SearchResults> {
    let limit = if q.limit == 0 { DEFAULT_LIMIT } else { q.limit };
    if limit > MAX_LIMIT {
        return Err(Error::invalid(
            "limit",
            format!("must be at most {MAX_LIMIT} (got {limit})"),
        ));
    }
    let offset = match &q.cursor {
        Some(c) if !c.is_empty() => decode_cursor(c)?,
        _ => 0,
    };
    if offset >= MAX_WINDOW {
        return Err(Error::invalid(
            "cursor",
            format!("paging stops after {MAX_WINDOW} results; refine the query"),
        ));
    }
    let window = (offset + limit).min(MAX_WINDOW);
    let filter = Arc::new(Filter {
        status_mask: status_mask(&q.statuses),
        kind_mask: kind_mask(&q.kinds),
        all_private: q.all_private,
        private_namespaces: q.private_namespaces.clone(),
        namespaces: q.namespaces.clone(),
        categories: q.categories.clone(),
        tags: q.tags.clone(),
        include_disabled: q.include_disabled,
    });
    let searcher = ix.reader.searcher();
    let ranking = ix.ranking();
    let mut planner = Planner {
        searcher: &searcher,
        f: &ix.fields,
        r: ranking,
        en: analysis::english(),
    };
    let text = q.q.trim();
    let mut exact_names = Vec::new();
    if !text.is_empty() {
        let lower = text.to_lowercase();
        let norm = pep503(&lower);
        if norm != lower && !norm.is_empty() {
            exact_names.push(norm);
        }
        exact_names.push(lower);
    }
    let exact_names = Arc::new(exact_names);
    let plan = (!text.is_empty()).then(|| planner.plan(text));
    let expand = plan
        .as_ref()
        .map(|p| planner.expansions(p, &filter))
        .unwrap_or_default();
    let prior = Prior {
        curated_popularity: ranking.curated_popularity,
        curated_exact: if expand.exact_popular {
            0.0
        } else {
            ranking.curated_exact
        },
        prefer: Arc::new(plan.as_ref().map(|p| p.prefer.clone()).unwrap_or_default()),
        other_ecosystem: ranking.other_ecosystem,
    };
    let collector = |sort: Sort, window: usize, scoring: bool| HitCollector {
        filter: filter.clone(),
        sort,
        window,
        facets: q.facets,
        pop_weight: ranking.popularity,
        pop_exponent: ranking.popularity_exponent,
        scoring,
        exact_names: exact_names.clone(),
        exact_bonus: ranking.exact,
        prior: prior.clone(),
    };
    let scoring = q.sort == Sort::Relevance;
    let fruit: Fruit = match &plan {
        None => searcher
            .search(
                &*browse_query(&ix.fields, q),
                &collector(q.sort, window, false),
            )
            .context("searching")?,
        Some(p) => {
            let query = with_platforms(&ix.fields, q, planner.query(p, Mode::And, expand));
            let mut fruit = searcher
                .search(&*query, &collector(q.sort, window, scoring))
                .context("searching")?;
            if fruit.total == 0 && p.content_words() > 1 {
                let query = with_platforms(&ix.fields, q, planner.query(p, Mode::Or, expand));
                fruit = searcher
                    .search(&*query, &collector(q.sort, window, scoring))
                    .context("searching")?;
            }
            fruit
        }
    };

    let stems: Vec<String> = plan
        .as_ref()
        .map(|p| p.stems.iter().flatten().cloned().collect())
        .unwrap_or_default();
    let mut hits = Vec::with_capacity(limit);
    for r in fruit.top.iter().skip(offset).take(limit) {
        let doc: TantivyDocument = searcher.doc(r.addr).context("reading a hit")?;
        let payload = doc
            .get_first(ix.fields.payload)
            .and_then(|v| v.as_str())
            .unwrap_or("{}");
        let p: Payload = serde_json::from_str(payload).context("decoding a hit")?;
        let highlight = if q.highlight && !stems.is_empty() {
            highlight(&mut planner.en, &p.description, &stems)
        } else {
            None
        };
        let reason = match (&plan, q.sort) {
            (Some(plan), Sort::Relevance) => reason(&mut planner.en, plan, &exact_names, &p),
            _ => None,
        };
        hits.push(Hit {
            id: p.id,
            kind: p.kind,
            namespace: p.namespace,
            name: p.name,
            display_name: p.display_name,
            description: p.description,
            category: p.category,
            tags: p.tags,
            status: p.status,
            latest_version: p.latest_version,
            popularity: p.popularity,
            disabled: p.disabled,
            score: r.score,
            highlight,
            reason,
        });
    }
    let next = offset + hits.len();
    let next_cursor = (!hits.is_empty() && (next as u64) < fruit.total && next < MAX_WINDOW)
        .then(|| encode_cursor(next));
    let suggestion = match (&plan, fruit.total) {
        (Some(p), 0) => suggest(&planner, p, &filter)?,
        _ => None,
    };
    Ok(SearchResults {
        hits,
        total: fruit.total,
        facets: fruit.facets.map(facets_of),
        next_cursor,
        suggestion,
    })
}

/// Why a hit matched, in a few words: its exact name, a query word that is its name,
/// the manifest field that holds a query word, or its description.
fn reason(en: &mut TextAnalyzer, plan: &Plan, exact: &[String], p: &Payload) -> Option<String> {
    let name = crate::schema::name_sort_key(&p.namespace, &p.name);
    let joined_name = joined(&p.name);
    if exact.contains(&name) || joined_name == plan.joined {
        return Some("exact name".into());
    }
    if let Some(t) = plan.name_tokens.iter().find(|t| **t == joined_name) {
        return Some(format!("name matches \"{t}\""));
    }
    let stems: Vec<&str> = plan
        .stems
        .iter()
        .flatten()
        .map(String::as_str)
        .chain(
            plan.alternatives
                .iter()
                .flatten()
                .flatten()
                .map(String::as_str),
        )
        .collect();
    if stems.is_empty() {
        return None;
    }
    let holds = |en: &mut TextAnalyzer, text: &str| {
        analysis::analyze(en, text)
            .iter()
            .any(|t| stems.contains(&t.2.as_str()))
    };
    let in_name = analysis::name_index_tokens(&p.name)
        .iter()
        .any(|t| holds(en, &t.2));
    if in_name || holds(en, &p.description) {
        return Some(if in_name { "name words" } else { "description" }.into());
    }
    p.fields
        .iter()
        .find(|(_, v)| holds(en, &v.replace('_', " ")))
        .map(|(what, v)| format!("matches {what} {v}"))
}

/// The closest popular visible name to the joined query, when nothing matched.
fn suggest(pl: &Planner, p: &Plan, filter: &Arc<Filter>) -> Result<Option<String>> {
    let len = p.joined.chars().count();
    if len < 3 {
        return Ok(None);
    }
    let d = fuzzy_distance(len).clamp(1, pl.r.max_distance.max(1));
    let q = ExpandQuery {
        field: pl.f.name_joined,
        text: p.joined.clone(),
        expansion: Expansion::Fuzzy {
            distance: d,
            score: 1.0,
        },
    };
    let fruit = pl
        .searcher
        .search(
            &q,
            &HitCollector {
                filter: filter.clone(),
                sort: Sort::Popularity,
                window: 10,
                facets: false,
                pop_weight: 0.0,
                pop_exponent: 0.0,
                scoring: false,
                exact_names: Default::default(),
                exact_bonus: 0.0,
                prior: Prior::default(),
            },
        )
        .context("suggesting")?;
    let mut best: Option<(usize, f64, String)> = None;
    for r in &fruit.top {
        let doc: TantivyDocument = pl.searcher.doc(r.addr).context("reading a suggestion")?;
        let Some(payload) = doc.get_first(pl.f.payload).and_then(|v| v.as_str()) else {
            continue;
        };
        let Ok(pay) = serde_json::from_str::<Payload>(payload) else {
            continue;
        };
        let dist = strsim::osa_distance(&joined(&pay.name), &p.joined);
        let better = match &best {
            None => true,
            Some((bd, bp, _)) => dist < *bd || (dist == *bd && r.key > *bp),
        };
        if better {
            best = Some((dist, r.key, pay.name));
        }
    }
    Ok(best.map(|b| b.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        // The ranking's distance counts a swap of neighbours as one edit.
        assert_eq!(strsim::osa_distance("reqeusts", "requests"), 1);
        assert_eq!(strsim::osa_distance("djnago", "django"), 1);
        assert_eq!(strsim::osa_distance("kitten", "sitting"), 3);
        assert_eq!(fuzzy_distance(4), 0);
        assert_eq!(fuzzy_distance(5), 1);
        assert_eq!(fuzzy_distance(9), 2);
    }

    #[test]
    fn highlights_stems() {
        let mut en = analysis::english();
        let h = highlight(
            &mut en,
            "Fast <YAML> parsers & emitters",
            &["yaml".into(), "parser".into()],
        );
        assert_eq!(
            h.as_deref(),
            Some("Fast &lt;<mark>YAML</mark>&gt; <mark>parsers</mark> &amp; emitters")
        );
        assert_eq!(highlight(&mut en, "nothing here", &["yaml".into()]), None);
    }

    #[test]
    fn subsets_are_every_combination_once() {
        assert_eq!(subsets(3, 2), vec![vec![0, 1], vec![0, 2], vec![1, 2]]);
        assert_eq!(subsets(4, 3).len(), 4);
        assert_eq!(subsets(5, 1).len(), 5);
        assert_eq!(subsets(2, 3), Vec::<Vec<usize>>::new());
    }

    /// `at_least` matches exactly what tantivy's counting disjunction matches, for every
    /// `k` and for a set of documents holding every combination of four words, and it
    /// leaves the score to the caller.
    #[test]
    fn at_least_matches_the_counting_disjunction() {
        use tantivy::collector::DocSetCollector;
        use tantivy::schema::{Schema, TEXT};
        use tantivy::{doc, Index};

        let mut sb = Schema::builder();
        let body = sb.add_text_field("body", TEXT);
        let index = Index::create_in_ram(sb.build());
        let mut w = index.writer(15_000_000).unwrap();
        let words = ["alpha", "beta", "gamma", "delta"];
        for mask in 0u32..16 {
            // Each combination three times, plus filler, so that postings have length.
            for _ in 0..3 {
                let text: Vec<&str> = (0..4)
                    .filter(|i| mask & (1 << i) != 0)
                    .map(|i| words[i])
                    .chain(["filler"])
                    .collect();
                w.add_document(doc!(body => text.join(" "))).unwrap();
            }
        }
        w.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let clauses = || -> Vec<(Occur, Box<dyn Query>)> {
            words
                .iter()
                .map(|t| (Occur::Should, term_q(body, t, IndexRecordOption::WithFreqs)))
                .collect()
        };
        for k in 1..=4 {
            let ours = searcher
                .search(&*at_least(&clauses(), k), &DocSetCollector)
                .unwrap();
            let theirs = searcher
                .search(
                    &BooleanQuery::with_minimum_required_clauses(clauses(), k),
                    &DocSetCollector,
                )
                .unwrap();
            assert_eq!(ours, theirs, "at least {k} of 4");
            let expected = (0u32..16).filter(|m| m.count_ones() as usize >= k).count() * 3;
            assert_eq!(ours.len(), expected, "at least {k} of 4");
        }
        let top = searcher
            .search(
                &*at_least(&clauses(), 2),
                &tantivy::collector::TopDocs::with_limit(1).order_by_score(),
            )
            .unwrap();
        assert_eq!(top[0].0, 0.0, "the filter scores nothing");
    }
}
