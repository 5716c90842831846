//! Validation and normalization of write inputs. Every write path calls these before it
//! touches the store, so bad input is refused with a field and a reason and changes nothing.

use crate::names::{validate_name, validate_namespace, validate_new_name};
use crate::{EntryPatch, Popularity};
use crate::{Error, Kind, NewDocument, NewEntry, NewVersion, Relation, RelationKind, Result};

pub use semver::Version as SemverVersion;

pub const MAX_DESCRIPTION: usize = 8 * 1024;
pub const MAX_DISPLAY_NAME: usize = 200;
pub const MAX_TAGS: usize = 64;
pub const MAX_TAG_LEN: usize = 64;
pub const MAX_CHANGELOG: usize = 64 * 1024;
pub const MAX_MANIFEST_BYTES: usize = 1024 * 1024;

fn text(field: &str, value: &str, max: usize) -> Result<String> {
    let v = value.trim();
    if v.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes long (got {})", v.len()),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    invisible(field, v)?;
    Ok(v.to_string())
}

/// Bidirectional overrides and isolates (U+202A–U+202E, U+2066–U+2069), zero-width and
/// direction marks (U+200B–U+200F) and the byte-order mark (U+FEFF) let one listing show
/// text that reads differently from what is stored, so they are refused in every field a
/// listing shows. A zero-width joiner between two emoji (as in "👩‍💻") stays: it joins
/// pictographs, it cannot reorder or hide letters.
fn invisible(field: &str, v: &str) -> Result<()> {
    let chars: Vec<char> = v.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !is_invisible(c) {
            continue;
        }
        let emoji_join = c == '\u{200D}'
            && i > 0
            && chars.get(i + 1).is_some_and(|&n| pictograph(n))
            && (pictograph(chars[i - 1]) || chars[i - 1] == '\u{FE0F}');
        if !emoji_join {
            return Err(Error::invalid(
                field,
                format!(
                    "must not contain the invisible or text-direction character U+{:04X} (at character {})",
                    c as u32,
                    i + 1
                ),
            ));
        }
    }
    Ok(())
}

/// Whether `c` is one of the invisible or text-direction characters [`text`] refuses
/// (importers of authors' text drop them instead).
pub fn is_invisible(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200B}'..='\u{200F}' | '\u{FEFF}')
}

/// Whether `c` is in the blocks where emoji sequences live (pictographs, symbols,
/// dingbats and the skin-tone modifiers).
fn pictograph(c: char) -> bool {
    matches!(c, '\u{1F000}'..='\u{1FAFF}' | '\u{2600}'..='\u{27BF}' | '\u{2B00}'..='\u{2BFF}')
}

/// NUL is refused in every string of a JSON value (keys included): stores and the
/// programs that read exports treat it as the end of a string.
fn no_nul(field: &str, value: &serde_json::Value) -> Result<()> {
    fn walk(path: &mut String, value: &serde_json::Value) -> std::result::Result<(), String> {
        use serde_json::Value;
        match value {
            Value::String(s) if s.contains('\0') => Err(path.clone()),
            Value::Array(items) => items.iter().enumerate().try_for_each(|(i, v)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(path, v)?;
                path.truncate(len);
                Ok(())
            }),
            Value::Object(map) => map.iter().try_for_each(|(k, v)| {
                let len = path.len();
                path.push('.');
                path.push_str(k);
                if k.contains('\0') {
                    return Err(path.clone());
                }
                walk(path, v)?;
                path.truncate(len);
                Ok(())
            }),
            _ => Ok(()),
        }
    }
    let mut path = field.to_string();
    walk(&mut path, value)
        .map_err(|at| Error::invalid(at, "must not contain the NUL character (U+0000)"))
}

fn opt_text(field: &str, value: &Option<String>, max: usize) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(v) => {
            let v = text(field, v, max)?;
            Ok(if v.is_empty() { None } else { Some(v) })
        }
    }
}

/// Tags and keywords: trimmed, lowercased, de-duplicated, order kept.
fn labels(field: &str, values: &[String]) -> Result<Vec<String>> {
    if values.len() > MAX_TAGS {
        return Err(Error::invalid(
            field,
            format!("at most {MAX_TAGS} values (got {})", values.len()),
        ));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let v = v.trim().to_lowercase();
        let f = format!("{field}[{i}]");
        if v.is_empty() {
            return Err(Error::invalid(f, "must not be empty"));
        }
        if v.len() > MAX_TAG_LEN {
            return Err(Error::invalid(
                f,
                format!("must be at most {MAX_TAG_LEN} bytes"),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(Error::invalid(f, "must not contain control characters"));
        }
        invisible(&f, &v)?;
        if !out.contains(&v) {
            out.push(v);
        }
    }
    Ok(out)
}

fn category(value: &Option<String>) -> Result<Option<String>> {
    let Some(c) = opt_text("category", value, 64)? else {
        return Ok(None);
    };
    let c = c.to_lowercase();
    if !c
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b' '))
    {
        return Err(Error::invalid(
            "category",
            "must be letters, digits, ' ', '-', '_', '.' or '/'",
        ));
    }
    Ok(Some(c))
}

fn popularity(p: &Option<Popularity>) -> Result<()> {
    if let Some(p) = p {
        if !(0.0..=1.0).contains(&p.score) || p.score.is_nan() {
            return Err(Error::invalid(
                "popularity.score",
                "must be between 0 and 1",
            ));
        }
    }
    Ok(())
}

/// Validate and normalize a new entry in place, as the API creates it: the name must follow
/// its kind's whole naming rule, convention included ([`validate_new_name`]), so that no
/// entry is created whose every version must fail the `naming` gate.
pub fn new_entry(e: &mut NewEntry) -> Result<()> {
    validate_namespace(&e.namespace)?;
    validate_new_name(e.kind, &e.namespace, &e.name)?;
    entry_fields(e)
}

/// Validate and normalize an entry an import takes from a source system (or from quiver's
/// own export). The name must pass its kind's lexical rule ([`validate_name`]); the
/// convention is left to the `naming` gate of its versions, because real catalogs name
/// things by their own system's customs: the ops tool catalog holds PowerShell cmdlets
/// (`Get-Process`) and Axis VAPIX tools (`Axis-VAPIX-PTZ-Control`), and an export must read
/// back whatever was imported.
pub fn imported_entry(e: &mut NewEntry) -> Result<()> {
    validate_namespace(&e.namespace)?;
    validate_name(e.kind, &e.namespace, &e.name)?;
    entry_fields(e)
}

/// The fields of a new entry other than its key.
fn entry_fields(e: &mut NewEntry) -> Result<()> {
    e.display_name = opt_text("display_name", &e.display_name, MAX_DISPLAY_NAME)?;
    e.description = text("description", &e.description, MAX_DESCRIPTION)?;
    e.category = category(&e.category)?;
    e.tags = labels("tags", &e.tags)?;
    e.keywords = labels("keywords", &e.keywords)?;
    popularity(&e.popularity)?;
    Ok(())
}

/// Validate and normalize an entry patch in place.
pub fn entry_patch(p: &mut EntryPatch) -> Result<()> {
    if p.is_empty() {
        return Err(Error::invalid("body", "no field to change"));
    }
    p.display_name = match &p.display_name {
        Some(_) => {
            Some(opt_text("display_name", &p.display_name, MAX_DISPLAY_NAME)?.unwrap_or_default())
        }
        None => None,
    };
    if let Some(d) = &p.description {
        p.description = Some(text("description", d, MAX_DESCRIPTION)?);
    }
    if p.category.is_some() {
        p.category = Some(category(&p.category)?.unwrap_or_default());
    }
    if let Some(t) = &p.tags {
        p.tags = Some(labels("tags", t)?);
    }
    if let Some(k) = &p.keywords {
        p.keywords = Some(labels("keywords", k)?);
    }
    if let Some(d) = &mut p.deprecation {
        d.message = text("deprecation.message", &d.message, 1024)?;
        if d.message.is_empty() {
            return Err(Error::invalid("deprecation.message", "must not be empty"));
        }
    }
    popularity(&p.popularity)?;
    Ok(())
}

/// Parse a version string as semver (`1.2.3`, `1.0.0-beta.1`, `2.0.0+build.5`).
pub fn semver(v: &str) -> Result<semver::Version> {
    semver::Version::parse(v).map_err(|e| {
        Error::invalid(
            "version",
            format!("'{v}' is not a semantic version (MAJOR.MINOR.PATCH): {e}"),
        )
    })
}

/// Validate a version to publish for an entry of `kind`; returns the parsed version and
/// the canonical JSON of the manifest (what is stored and hashed).
pub fn new_version(kind: Kind, v: &mut NewVersion) -> Result<(semver::Version, String)> {
    let parsed = semver(&v.version)?;
    v.version = parsed.to_string();
    v.changelog = opt_text("changelog", &v.changelog, MAX_CHANGELOG)?;
    if !v.manifest.is_object() {
        return Err(Error::invalid("manifest", "must be a JSON object"));
    }
    no_nul("manifest", &v.manifest)?;
    let canonical = crate::manifest::canonical_json(&v.manifest);
    let size = canonical.len();
    if size > MAX_MANIFEST_BYTES {
        return Err(Error::invalid(
            "manifest",
            format!("must be at most {MAX_MANIFEST_BYTES} bytes (got {size})"),
        ));
    }
    crate::manifest::validate_manifest(kind, &v.manifest)?;
    Ok((parsed, canonical))
}

/// Largest document body (canonical JSON): a whole work queue fits; a data dump does not.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Validate a document; returns the canonical JSON of its body (what is stored and hashed).
pub fn document(d: &NewDocument) -> Result<String> {
    let c = &d.collection;
    let ok = !c.is_empty()
        && c.len() <= 64
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_lowercase();
    if !ok {
        return Err(Error::invalid(
            "collection",
            "must be 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter",
        ));
    }
    if d.key.is_empty() || d.key.len() > 512 {
        return Err(Error::invalid("key", "must be 1-512 bytes long"));
    }
    if d.key.chars().any(char::is_control) {
        return Err(Error::invalid("key", "must not contain control characters"));
    }
    no_nul("body", &d.body)?;
    let canonical = crate::manifest::canonical_json(&d.body);
    if canonical.len() > MAX_DOCUMENT_BYTES {
        return Err(Error::invalid(
            "body",
            format!(
                "must be at most {MAX_DOCUMENT_BYTES} bytes (got {})",
                canonical.len()
            ),
        ));
    }
    Ok(canonical)
}

/// Validate a relation's own fields (that both ends exist is the store's business).
pub fn relation(r: &Relation) -> Result<()> {
    for (side, key) in [("from", &r.from), ("to", &r.to)] {
        validate_namespace(&key.namespace).map_err(|e| e.in_field(side))?;
        validate_name(key.kind, &key.namespace, &key.name).map_err(|e| e.in_field(side))?;
    }
    if r.from == r.to {
        return Err(Error::invalid(
            "to",
            "a relation cannot point at its own entry",
        ));
    }
    match r.kind {
        RelationKind::MapsTo => match r.confidence {
            Some(c) if (0.0..=1.0).contains(&c) => {}
            Some(_) => return Err(Error::invalid("confidence", "must be between 0 and 1")),
            None => return Err(Error::invalid("confidence", "is required for maps_to")),
        },
        _ if r.confidence.is_some() => {
            return Err(Error::invalid(
                "confidence",
                "only maps_to relations carry a confidence",
            ))
        }
        _ => {}
    }
    match r.kind {
        RelationKind::Composes => match r.step_order {
            Some(s) if s >= 0 => {}
            Some(_) => return Err(Error::invalid("step_order", "must be 0 or more")),
            None => return Err(Error::invalid("step_order", "is required for composes")),
        },
        _ if r.step_order.is_some() => {
            return Err(Error::invalid(
                "step_order",
                "only composes relations carry a step order",
            ))
        }
        _ => {}
    }
    if let Some(s) = &r.source {
        text("source", s, 200)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EntryKey;

    fn entry() -> NewEntry {
        NewEntry {
            kind: Kind::Tool,
            namespace: "tpmjs".into(),
            name: "text.csvParse".into(),
            display_name: None,
            description: "  Parse CSV text into rows  ".into(),
            category: Some("Text".into()),
            tags: vec!["CSV".into(), "csv".into(), " parse ".into()],
            keywords: vec![],
            status: None,
            visibility: None,
            popularity: None,
        }
    }

    #[test]
    fn normalizes_entries() {
        let mut e = entry();
        new_entry(&mut e).unwrap();
        assert_eq!(e.description, "Parse CSV text into rows");
        assert_eq!(e.category.as_deref(), Some("text"));
        assert_eq!(e.tags, vec!["csv", "parse"]);
    }

    #[test]
    fn rejects_bad_fields() {
        let mut e = entry();
        e.tags = vec!["".into()];
        assert_eq!(
            new_entry(&mut e).unwrap_err().field.as_deref(),
            Some("tags[0]")
        );
        let mut e = entry();
        e.description = "x".repeat(MAX_DESCRIPTION + 1);
        assert_eq!(
            new_entry(&mut e).unwrap_err().field.as_deref(),
            Some("description")
        );
        // A tool name against the convention (segments start lowercase) is refused
        // here, at creation, not only by the `naming` gate of a version.
        let mut e = entry();
        e.name = "BadName".into();
        let err = new_entry(&mut e).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("name"));
        assert_eq!(err.code, crate::ErrorCode::InvalidInput, "{err:?}");
        // An import keeps a source system's own names, within the lexical rule.
        let mut e = entry();
        e.name = "Get-Process".into();
        imported_entry(&mut e).unwrap();
        e.name = "1abc".into();
        assert_eq!(
            imported_entry(&mut e).unwrap_err().field.as_deref(),
            Some("name")
        );
    }

    #[test]
    fn refuses_invisible_and_direction_characters() {
        for bad in [
            "a\u{202E}b",
            "\u{200B}x",
            "x\u{2066}y",
            "\u{FEFF}bom",
            "a\u{200D}b",
        ] {
            let mut e = entry();
            e.display_name = Some(bad.into());
            let err = new_entry(&mut e).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("display_name"), "{bad:?}");
            let mut e = entry();
            e.description = format!("fine {bad}");
            assert_eq!(
                new_entry(&mut e).unwrap_err().field.as_deref(),
                Some("description")
            );
            let mut e = entry();
            e.tags = vec!["ok".into(), bad.into()];
            assert_eq!(
                new_entry(&mut e).unwrap_err().field.as_deref(),
                Some("tags[1]")
            );
            let mut e = entry();
            e.keywords = vec![bad.into()];
            assert_eq!(
                new_entry(&mut e).unwrap_err().field.as_deref(),
                Some("keywords[0]")
            );
        }
        // A zero-width joiner inside an emoji sequence joins pictographs and stays.
        let mut e = entry();
        e.description = "for developers \u{1F469}\u{200D}\u{1F4BB} and \u{1F441}\u{FE0F}\u{200D}\u{1F5E8}\u{FE0F}".into();
        new_entry(&mut e).unwrap();
    }

    #[test]
    fn refuses_nul_in_manifests_and_documents() {
        let mut v = NewVersion {
            version: "1.0.0".into(),
            manifest: serde_json::json!({"inputs": {"a": ["ok", "b\u{0}c"]}}),
            changelog: None,
            breaking: false,
        };
        let err = new_version(Kind::Package, &mut v).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("manifest.inputs.a[1]"));
        v.manifest = serde_json::json!({"k\u{0}": 1});
        assert!(new_version(Kind::Package, &mut v).is_err());
        let d = NewDocument::new("queue", "k", serde_json::json!({"x": "\u{0}"}));
        assert_eq!(document(&d).unwrap_err().field.as_deref(), Some("body.x"));
    }

    #[test]
    fn versions_are_semver() {
        let mut v = NewVersion {
            version: "1.2".into(),
            manifest: serde_json::json!({}),
            changelog: None,
            breaking: false,
        };
        assert_eq!(
            new_version(Kind::Tool, &mut v)
                .unwrap_err()
                .field
                .as_deref(),
            Some("version")
        );
        v.version = "1.2.3-beta.1".into();
        new_version(Kind::Tool, &mut v).unwrap();
    }

    #[test]
    fn relation_rules() {
        let a = EntryKey::new(Kind::Package, "npm", "react");
        let b = EntryKey::new(Kind::Skill, "vercel", "react-best-practices");
        let mut r = Relation {
            kind: RelationKind::MapsTo,
            from: b.clone(),
            to: a.clone(),
            confidence: None,
            source: None,
            step_order: None,
        };
        assert_eq!(
            relation(&r).unwrap_err().field.as_deref(),
            Some("confidence")
        );
        r.confidence = Some(0.9);
        relation(&r).unwrap();
        r.to = b.clone();
        assert_eq!(relation(&r).unwrap_err().field.as_deref(), Some("to"));
        r.to = EntryKey::new(Kind::Package, "npm", "_bad");
        assert_eq!(relation(&r).unwrap_err().field.as_deref(), Some("to.name"));
    }
}
