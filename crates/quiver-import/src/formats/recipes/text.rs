//! Lines of a source text: byte offsets to 1-based lines, and a forward search used to
//! find where each record of a file starts (best effort).

/// The start offset of every line of a text.
pub(super) struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
    /// Where the next [`LineIndex::find`] starts looking.
    cursor: usize,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        LineIndex {
            text,
            starts,
            cursor: 0,
        }
    }

    /// The 1-based line of a byte offset.
    pub(super) fn line(&self, offset: usize) -> u64 {
        self.starts.partition_point(|&s| s <= offset) as u64
    }

    /// The 1-based line and column of a byte offset.
    pub(super) fn line_col(&self, offset: usize) -> (u64, u64) {
        let line = self.line(offset);
        let start = self.starts[(line as usize).saturating_sub(1)];
        let col = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        (line, col as u64)
    }

    /// The line of the next occurrence of `needle` after the previous one found, moving
    /// the cursor past it. `None` (cursor unmoved) when it does not occur.
    pub(super) fn find(&mut self, needle: &str) -> Option<u64> {
        let at = self.text.get(self.cursor..)?.find(needle)? + self.cursor;
        self.cursor = at + needle.len();
        Some(self.line(at))
    }

    /// The line of the first `needle` (anywhere in the text) followed by `:`: an object
    /// key. The cursor is not used.
    pub(super) fn find_key(&self, needle: &str) -> Option<u64> {
        self.text
            .match_indices(needle)
            .find(|(i, _)| self.text[i + needle.len()..].trim_start().starts_with(':'))
            .map(|(i, _)| self.line(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_search() {
        let mut ix = LineIndex::new("a\nbb\n\nc \"x\"\n\"x\"");
        assert_eq!(ix.line(0), 1);
        assert_eq!(ix.line(2), 2);
        assert_eq!(ix.line(5), 3);
        assert_eq!(ix.line_col(4), (2, 3));
        assert_eq!(ix.find("\"x\""), Some(4));
        assert_eq!(ix.find("\"x\""), Some(5));
        assert_eq!(ix.find("\"x\""), None);
        assert_eq!(ix.find("a"), None);
        let ix = LineIndex::new("{\"a\": \"b\",\n \"b\" : 1}");
        assert_eq!(ix.find_key("\"b\""), Some(2));
    }
}
