//! Text analysis: how names, queries and descriptions become terms.
//!
//! Names get their own analysis rather than a general text analyzer, because people type
//! package names in many shapes: `scikit-learn`, `scikit learn`, `scikitlearn`,
//! `SQLAlchemy`, `beautifulsoup` for `beautifulsoup4`. Three name forms are indexed:
//! - `name_sort`: the lowercased name (for PyPI, its PEP 503 form), a fast column;
//! - `name_joined`: lowercase letters and digits only (`scikitlearn`, `typesnode`), so that
//!   every way of separating the words meets on one term; prefix and fuzzy matching run on
//!   it too;
//! - the name words, at the head of the searchable text: split on non-alphanumerics and
//!   camelCase, the unsplit run kept as well, trailing digits dropped as an extra form.
//!
//! Descriptions and keywords use an English analyzer (lowercase, ASCII folding, stop
//! words, Snowball stemming).

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer,
    StopWordFilter, TextAnalyzer, TokenStream,
};

/// Name of the registered English analyzer.
pub const EN_TOKENIZER: &str = "quiver_en";

/// Splits an alphanumeric run at camelCase boundaries: `SQLAlchemy` -> `SQL`, `Alchemy`;
/// `XMLHttpRequest` -> `XML`, `Http`, `Request`; `base64` stays whole.
fn camel_parts(run: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = run.char_indices().collect();
    let mut parts = Vec::new();
    let mut start = 0;
    for i in 1..chars.len() {
        let (pos, c) = chars[i];
        let prev = chars[i - 1].1;
        let next_lower = chars.get(i + 1).is_some_and(|(_, n)| n.is_lowercase());
        let boundary = (prev.is_lowercase() && c.is_uppercase())
            || (prev.is_uppercase() && c.is_uppercase() && next_lower);
        if boundary {
            parts.push(&run[start..pos]);
            start = pos;
        }
    }
    parts.push(&run[start..]);
    parts
}

/// Alphanumeric runs of `s` with their byte offsets.
fn runs(s: &str) -> impl Iterator<Item = (usize, &str)> {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|r| !r.is_empty())
        .map(move |r| (r.as_ptr() as usize - s.as_ptr() as usize, r))
}

/// The words of a name (or display name) put in the searchable text.
pub fn name_index_tokens(name: &str) -> Vec<(usize, usize, String)> {
    let mut out: Vec<(usize, usize, String)> = Vec::new();
    let mut push = |from: usize, to: usize, t: String| {
        if !t.is_empty() && !out.iter().any(|(_, _, x)| *x == t) {
            out.push((from, to, t));
        }
    };
    for (off, run) in runs(name) {
        let whole = run.to_lowercase();
        push(off, off + run.len(), whole.clone());
        let parts = camel_parts(run);
        if parts.len() > 1 {
            let mut p_off = off;
            for p in parts {
                push(p_off, p_off + p.len(), p.to_lowercase());
                p_off += p.len();
            }
        }
        // `beautifulsoup4` also answers to `beautifulsoup`, `elasticsearch8` to
        // `elasticsearch`.
        let stripped = whole.trim_end_matches(|c: char| c.is_ascii_digit());
        if stripped.len() >= 3 && stripped.len() < whole.len() {
            push(off, off + run.len(), stripped.to_string());
        }
    }
    out
}

/// Lowercase letters and digits only: the form where `scikit-learn`, `scikit learn` and
/// `scikitlearn` meet.
pub fn joined(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

pub use quiver_model::names::pep503;

/// The words of a query: lowercase alphanumeric runs, in order, without repeats.
pub fn query_words(q: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, r) in runs(q) {
        let w = r.to_lowercase();
        if !out.contains(&w) {
            out.push(w);
        }
    }
    out
}

/// The English analyzer for descriptions and keywords.
pub fn english() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(StopWordFilter::new(Language::English).expect("English stop words"))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// Run `analyzer` over `text`, returning (offset_from, offset_to, term).
pub fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while let Some(t) = stream.next() {
        out.push((t.offset_from, t.offset_to, t.text.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(name: &str) -> Vec<String> {
        name_index_tokens(name).into_iter().map(|t| t.2).collect()
    }

    #[test]
    fn name_tokens_split_and_keep_runs() {
        assert_eq!(terms("scikit-learn"), ["scikit", "learn"]);
        assert_eq!(terms("SQLAlchemy"), ["sqlalchemy", "sql", "alchemy"]);
        assert_eq!(
            terms("XMLHttpRequest"),
            ["xmlhttprequest", "xml", "http", "request"]
        );
        assert_eq!(terms("beautifulsoup4"), ["beautifulsoup4", "beautifulsoup"]);
        assert_eq!(terms("@types/node"), ["types", "node"]);
        assert_eq!(terms("base64"), ["base64", "base"]);
        assert_eq!(terms("s3"), ["s3"]);
    }

    #[test]
    fn joined_and_pep503() {
        assert_eq!(joined("Scikit-Learn"), "scikitlearn");
        assert_eq!(joined("scikit learn"), "scikitlearn");
        assert_eq!(joined("@types/node"), "typesnode");
        assert_eq!(pep503("Django_REST..framework"), "django-rest-framework");
        assert_eq!(
            query_words("Python client for elasticsearch"),
            ["python", "client", "for", "elasticsearch"]
        );
    }

    #[test]
    fn english_stems_and_drops_stop_words() {
        let mut en = english();
        let t: Vec<String> = analyze(&mut en, "The Parsers for YAML")
            .into_iter()
            .map(|t| t.2)
            .collect();
        assert_eq!(t, ["parser", "yaml"]);
    }
}
