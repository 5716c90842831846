//! Best-effort line numbers in YAML text, found by walking a path of keys.
//!
//! The YAML parser gives us values, not positions, so to say *where* a record or an
//! expression is we scan the text: each segment of the path is looked for after the line
//! of the one before, inside its block (a line indented no deeper than the parent's key
//! ends the search). When a segment is not found, the line of the deepest segment that was
//! is returned, which still points a person at the right block.

/// One step of a path.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    /// A mapping key: `key:`.
    Key(&'a str),
    /// A list item (or mapping) holding `key: value`.
    Item(&'a str, &'a str),
}

/// The key and the rest of a line, once indentation and list markers are stripped, and
/// the column at which the key starts.
fn split_line(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mut indent = line.len() - trimmed.len();
    let mut t = trimmed;
    while let Some(rest) = t.strip_prefix('-') {
        if !(rest.is_empty() || rest.starts_with(' ')) {
            break;
        }
        let r = rest.trim_start();
        indent += t.len() - r.len();
        t = r;
    }
    Some((indent, t))
}

/// If `t` starts with the key `key` (bare or quoted) and a colon, the text after the colon.
fn after_key<'t>(t: &'t str, key: &str) -> Option<&'t str> {
    for (open, close) in [("", ""), ("\"", "\""), ("'", "'")] {
        let Some(rest) = t
            .strip_prefix(open)
            .and_then(|r| r.strip_prefix(key))
            .and_then(|r| r.strip_prefix(close))
        else {
            continue;
        };
        if let Some(after) = rest.strip_prefix(':') {
            if after.is_empty() || after.starts_with(' ') || after.starts_with('\t') {
                return Some(after);
            }
        }
    }
    None
}

/// A scalar as written after a colon: comment and quotes stripped.
fn scalar(after: &str) -> &str {
    let v = after.trim();
    let v = match v.find(" #") {
        Some(i) => v[..i].trim_end(),
        None => v,
    };
    v.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .or_else(|| v.strip_prefix('\'').and_then(|x| x.strip_suffix('\'')))
        .unwrap_or(v)
}

/// The 1-based line of the last segment of `path` found in `text`.
pub fn locate(text: &str, path: &[Seg<'_>]) -> Option<u64> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0usize;
    // Keys of the current block start at or after this column; a line whose key starts
    // before it ends the block.
    let mut min_indent = 0usize;
    let mut found = None;
    for seg in path {
        let mut hit = None;
        for (i, line) in lines.iter().enumerate().skip(from) {
            let Some((indent, t)) = split_line(line) else {
                continue;
            };
            if indent < min_indent {
                break;
            }
            let matched = match seg {
                Seg::Key(k) => after_key(t, k).is_some(),
                Seg::Item(k, v) => after_key(t, k).is_some_and(|a| scalar(a) == *v),
            };
            if matched {
                hit = Some((i, indent));
                break;
            }
        }
        let Some((i, indent)) = hit else {
            break;
        };
        found = Some(i as u64 + 1);
        from = i + 1;
        min_indent = match seg {
            Seg::Key(_) => indent + 1,
            Seg::Item(..) => indent,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# comment
tool_name: x
capabilities:
  a:
    patterns:
      p:
        time_estimate_ms: '1'
  b:
    patterns:
      \"q\":
        time_estimate_ms: '2'
list:
- capability_name: c
  patterns:
  - pattern_name: r
    cost_estimate: 3
";

    #[test]
    fn walks_paths() {
        use Seg::*;
        assert_eq!(locate(TEXT, &[Key("tool_name")]), Some(2));
        let p = [Key("capabilities"), Key("b"), Key("patterns"), Key("q")];
        assert_eq!(locate(TEXT, &p), Some(10));
        let p = [Key("capabilities"), Key("b"), Key("time_estimate_ms")];
        assert_eq!(locate(TEXT, &p), Some(11));
        let p = [
            Key("list"),
            Item("capability_name", "c"),
            Key("patterns"),
            Item("pattern_name", "r"),
            Key("cost_estimate"),
        ];
        assert_eq!(locate(TEXT, &p), Some(16));
        // Not found under `a`: the search stops at `b`, and says where `a` is.
        let p = [Key("capabilities"), Key("a"), Key("q")];
        assert_eq!(locate(TEXT, &p), Some(4));
        assert_eq!(locate(TEXT, &[Key("nothing")]), None);
    }
}
