//! The search query path: query analysis and a whole search (typo-tolerant terms,
//! prefixes, cursors, highlighting) over a small index.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver_search::{analysis, SearchIndex, SearchQuery};

fn index() -> &'static SearchIndex {
    static INDEX: OnceLock<(tempfile::TempDir, SearchIndex)> = OnceLock::new();
    &INDEX
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let index = SearchIndex::open(dir.path()).expect("an empty index");
            (dir, index)
        })
        .1
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = analysis::query_words(text);
    let _ = analysis::joined(text);
    let _ = analysis::name_index_tokens(text);
    let mut en = analysis::english();
    let _ = analysis::analyze(&mut en, text);
    // The text as a query, and its second half as a cursor.
    let (q, cursor) = text.split_at(text.floor_char_boundary(text.len() / 2));
    let query = SearchQuery {
        q: q.to_string(),
        cursor: (!cursor.is_empty()).then(|| cursor.to_string()),
        facets: true,
        highlight: true,
        ..SearchQuery::text(q)
    };
    let _ = index().search(&query);
});
