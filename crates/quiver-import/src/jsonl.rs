//! quiver JSONL: the lossless line format for what a store holds.
//!
//! One entry per line, with its versions and its outgoing relations:
//!
//! ```json
//! {"kind":"skill","namespace":"vercel","name":"react-best-practices",
//!  "display_name":"React best practices","description":"...","category":"frontend",
//!  "tags":["react"],"keywords":[],"status":"published","visibility":"public",
//!  "deprecation":null,"popularity":{"score":0.4,"monthly_downloads":1200},
//!  "versions":[{"version":"1.0.0","manifest":{"repo":"vercel/skills"},"changelog":null,
//!               "breaking":false,"yanked":false,"yank_reason":null}],
//!  "relations":[{"kind":"maps_to","to":{"kind":"package","namespace":"npm","name":"react"},
//!                "confidence":0.9,"source":"curated","step_order":null}]}
//! ```
//!
//! Design choices:
//! - **Strict on input.** Unknown fields are refused at every level (a typo such as
//!   `"tag"` must not silently drop data), and errors name the field by its path
//!   (`versions[0].manifest.installs`), so a rejected line can be fixed without guessing.
//!   Every line goes through the same validators as the API (`validate::imported_entry`,
//!   which is `new_entry` but for the naming convention, [`valid_version`],
//!   `validate::relation`).
//! - **Lenient on omission.** Everything but `kind`, `namespace` and `name` may be left
//!   out and defaults (status `published` on import, visibility `public`, popularity 0,
//!   manifest `{}`, no versions or relations). A `yank_reason` on a version that is not
//!   yanked is dropped, as the store keeps reasons only for yanked versions.
//! - **Only what is not derived.** Ids, timestamps, manifest hashes and the latest
//!   version are the store's to compute, so they are not in the format; everything else an
//!   entry holds is, which is what makes export → import lossless.
//! - **One line, one record.** A line is parsed and validated on its own; a malformed line
//!   costs only that line. Lines are read as bytes and parsed with `serde_json::from_slice`,
//!   which checks UTF-8 itself (a BOM on the first line is skipped).

use std::io::{BufRead, BufReader, Read};

use quiver_model::{
    Deprecation, Entry, EntryKey, Error, ErrorCode, Kind, NewEntry, NewVersion, Popularity,
    Relation, RelationKind, Status, Version, Visibility,
};
use quiver_store::{valid_version, ImportRecord, ImportVersion};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Rejected;

/// One line of quiver JSONL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlEntry {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Defaults to `published` on import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Defaults to `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation: Option<JsonlDeprecation>,
    /// Defaults to a score of 0 (unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub popularity: Option<JsonlPopularity>,
    #[serde(default)]
    pub versions: Vec<JsonlVersion>,
    /// Outgoing relations: this entry is their `from`.
    #[serde(default)]
    pub relations: Vec<JsonlRelation>,
}

/// [`Deprecation`], refusing unknown fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlDeprecation {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// [`Popularity`], refusing unknown fields; the score defaults to 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlPopularity {
    #[serde(default)]
    pub score: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_downloads: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
}

/// A version of the entry on this line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlVersion {
    pub version: String,
    #[serde(default = "empty_object")]
    pub manifest: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changelog: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub breaking: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub yanked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub yank_reason: Option<String>,
}

/// An outgoing relation of the entry on this line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlRelation {
    pub kind: RelationKind,
    pub to: JsonlKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_order: Option<i32>,
}

/// [`EntryKey`], refusing unknown fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

const MAX_DEPRECATION: usize = 1024;
const MAX_YANK_REASON: usize = 1024;

fn short_text(field: &str, v: &str, max: usize) -> Result<String, Error> {
    let v = v.trim();
    if v.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be at most {max} bytes long"),
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(v.to_string())
}

impl JsonlEntry {
    /// The entry's address.
    pub fn key(&self) -> EntryKey {
        EntryKey::new(self.kind, &self.namespace, &self.name)
    }

    /// Validate and normalize into a store record and the entry's outgoing relations.
    /// Errors name the field by its path in the line.
    pub fn into_record(self) -> Result<(ImportRecord, Vec<Relation>), Error> {
        let from = self.key();
        let mut entry = NewEntry {
            kind: self.kind,
            namespace: self.namespace,
            name: self.name,
            display_name: self.display_name,
            description: self.description,
            category: self.category,
            tags: self.tags,
            keywords: self.keywords,
            status: self.status,
            visibility: self.visibility,
            popularity: self.popularity.map(|p| Popularity {
                score: p.score,
                monthly_downloads: p.monthly_downloads,
                rank: p.rank,
            }),
        };
        quiver_model::validate::imported_entry(&mut entry)?;

        let deprecation = match self.deprecation {
            None => None,
            Some(d) => {
                let message = short_text("deprecation.message", &d.message, MAX_DEPRECATION)?;
                if message.is_empty() {
                    return Err(Error::invalid("deprecation.message", "must not be empty"));
                }
                let replacement = d
                    .replacement
                    .map(|r| short_text("deprecation.replacement", &r, 200))
                    .transpose()?
                    .filter(|r| !r.is_empty());
                Some(Deprecation {
                    message,
                    replacement,
                })
            }
        };

        let mut versions: Vec<ImportVersion> = Vec::with_capacity(self.versions.len());
        for (i, v) in self.versions.into_iter().enumerate() {
            let field = format!("versions[{i}]");
            let valid = valid_version(
                entry.kind,
                NewVersion {
                    version: v.version,
                    manifest: v.manifest,
                    changelog: v.changelog,
                    breaking: v.breaking,
                },
            )
            .map_err(|e| e.in_field(&field))?;
            if let Some(j) = versions
                .iter()
                .position(|o| o.version.version.version == valid.version.version)
            {
                return Err(Error::invalid(
                    format!("{field}.version"),
                    format!(
                        "{} is listed twice (also versions[{j}])",
                        valid.version.version
                    ),
                ));
            }
            let yank_reason = match (v.yanked, v.yank_reason) {
                (true, Some(r)) => Some(short_text(
                    &format!("{field}.yank_reason"),
                    &r,
                    MAX_YANK_REASON,
                )?)
                .filter(|r| !r.is_empty()),
                _ => None,
            };
            versions.push(ImportVersion {
                version: valid,
                yanked: v.yanked,
                yank_reason,
            });
        }

        let mut relations = Vec::with_capacity(self.relations.len());
        for (i, r) in self.relations.into_iter().enumerate() {
            let rel = Relation {
                kind: r.kind,
                from: from.clone(),
                to: EntryKey::new(r.to.kind, r.to.namespace, r.to.name),
                confidence: r.confidence,
                source: r
                    .source
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty()),
                step_order: r.step_order,
            };
            quiver_model::validate::relation(&rel)
                .map_err(|e| e.in_field(&format!("relations[{i}]")))?;
            relations.push(rel);
        }

        Ok((
            ImportRecord {
                entry,
                deprecation,
                versions,
            },
            relations,
        ))
    }

    /// The line for a stored entry, its versions and its outgoing relations.
    pub fn from_store(entry: &Entry, versions: &[Version], relations: &[Relation]) -> JsonlEntry {
        JsonlEntry {
            kind: entry.kind,
            namespace: entry.namespace.clone(),
            name: entry.name.clone(),
            display_name: entry.display_name.clone(),
            description: entry.description.clone(),
            category: entry.category.clone(),
            tags: entry.tags.clone(),
            keywords: entry.keywords.clone(),
            status: Some(entry.status),
            visibility: Some(entry.visibility),
            deprecation: entry.deprecation.as_ref().map(|d| JsonlDeprecation {
                message: d.message.clone(),
                replacement: d.replacement.clone(),
            }),
            popularity: Some(JsonlPopularity {
                score: entry.popularity.score,
                monthly_downloads: entry.popularity.monthly_downloads,
                rank: entry.popularity.rank,
            }),
            versions: versions
                .iter()
                .map(|v| JsonlVersion {
                    version: v.version.clone(),
                    manifest: v.manifest.clone(),
                    changelog: v.changelog.clone(),
                    breaking: v.breaking,
                    yanked: v.yanked,
                    yank_reason: v.yank_reason.clone(),
                })
                .collect(),
            relations: relations
                .iter()
                .map(|r| JsonlRelation {
                    kind: r.kind,
                    to: JsonlKey {
                        kind: r.to.kind,
                        namespace: r.to.namespace.clone(),
                        name: r.to.name.clone(),
                    },
                    confidence: r.confidence,
                    source: r.source.clone(),
                    step_order: r.step_order,
                })
                .collect(),
        }
    }
}

/// Why a line could not be parsed: the field (when one is to blame) and the reason, plus
/// the entry's name when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    pub name: Option<String>,
    pub error: Error,
}

/// Strip serde_json's " at line 1 column N" (every line is line 1 of its own parse) and
/// say the column instead.
fn json_message(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.rfind(" at line ") {
        Some(i) => &msg[..i],
        None => &msg,
    };
    if e.column() > 0 {
        format!("{msg} (column {})", e.column())
    } else {
        msg.to_string()
    }
}

/// The name of the entry on a line that failed to parse, if the line is JSON at all.
fn name_of(line: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(line).ok()?;
    let ns = v.get("namespace").and_then(Value::as_str);
    let name = v.get("name").and_then(Value::as_str)?;
    Some(match ns {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    })
}

/// Parse and validate one line of quiver JSONL.
pub fn parse_line(line: &[u8]) -> Result<(ImportRecord, Vec<Relation>), LineError> {
    let malformed = |e: &serde_json::Error| LineError {
        name: name_of(line),
        error: Error {
            code: ErrorCode::InvalidInput,
            message: format!("malformed JSON: {}", json_message(e)),
            field: None,
            retry_after: None,
        },
    };
    let mut de = serde_json::Deserializer::from_slice(line);
    let parsed: Result<JsonlEntry, _> = serde_path_to_error::deserialize(&mut de);
    let entry = match parsed {
        Ok(e) => e,
        Err(e) => {
            let inner = e.inner();
            if inner.classify() != serde_json::error::Category::Data {
                return Err(malformed(inner));
            }
            let path = e.path().to_string();
            let path = if path == "." {
                "line".to_string()
            } else {
                path
            };
            return Err(LineError {
                name: name_of(line),
                error: Error::invalid(path, json_message(inner)),
            });
        }
    };
    // Anything after the object but white space (two objects on a line, say).
    de.end().map_err(|e| malformed(&e))?;
    let name = format!("{}/{}", entry.namespace, entry.name);
    entry.into_record().map_err(|error| LineError {
        name: Some(name),
        error,
    })
}

/// One line of quiver JSONL: an entry (with its versions and relations), or a document.
// Entries are nearly every line of a large import; boxing them to shrink the rare
// document variant would cost an allocation per line.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum JsonlItem {
    Entry(ImportRecord, Vec<Relation>),
    Document(quiver_model::NewDocument),
}

/// A document line: `{"document": {"collection": ..., "key": ..., "body": ...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlDocument {
    pub document: quiver_model::NewDocument,
}

/// Whether a line is a document line (its first key is `document`).
fn is_document_line(line: &[u8]) -> bool {
    let rest = line.trim_ascii_start();
    rest.strip_prefix(b"{")
        .is_some_and(|r| r.trim_ascii_start().starts_with(b"\"document\""))
}

/// Parse and validate one document line.
pub fn parse_document_line(line: &[u8]) -> Result<quiver_model::NewDocument, LineError> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let parsed: Result<JsonlDocument, _> = serde_path_to_error::deserialize(&mut de);
    let fail = |field: String, message: String| LineError {
        name: None,
        error: Error::invalid(field, message),
    };
    let doc = parsed
        .map_err(|e| {
            let path = e.path().to_string();
            fail(
                if path == "." { "line".into() } else { path },
                json_message(e.inner()),
            )
        })?
        .document;
    de.end().map_err(|e| {
        fail(
            "line".into(),
            format!("malformed JSON: {}", json_message(&e)),
        )
    })?;
    quiver_model::validate::document(&doc).map_err(|error| LineError {
        name: Some(format!("{}/{}", doc.collection, doc.key)),
        error: error.in_field("document"),
    })?;
    Ok(doc)
}

/// Reads quiver JSONL, one record (an entry with its relations, or a document) per
/// non-blank line.
pub struct JsonlReader {
    lines: Box<dyn BufRead + Send>,
    line_no: u64,
    buf: Vec<u8>,
    done: bool,
}

impl JsonlReader {
    pub fn from_reader(r: Box<dyn Read + Send>) -> Self {
        Self::from_bufread(Box::new(BufReader::with_capacity(1 << 20, r)))
    }

    pub fn from_bufread(lines: Box<dyn BufRead + Send>) -> Self {
        JsonlReader {
            lines,
            line_no: 0,
            buf: Vec::new(),
            done: false,
        }
    }

    /// The 1-based line number of the record last returned.
    pub fn line(&self) -> u64 {
        self.line_no
    }
}

impl Iterator for JsonlReader {
    type Item = Result<JsonlItem, Rejected>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            self.buf.clear();
            let read = self.lines.read_until(b'\n', &mut self.buf);
            self.line_no += 1;
            match read {
                Ok(0) => {
                    self.done = true;
                    return None;
                }
                Ok(_) => {}
                Err(e) => {
                    self.done = true;
                    return Some(Err(Rejected {
                        file: None,
                        line: Some(self.line_no),
                        name: None,
                        field: None,
                        reason: format!("read error, stopped reading this file: {e}"),
                    }));
                }
            }
            let mut line = self.buf.as_slice();
            if self.line_no == 1 {
                line = line.strip_prefix(b"\xef\xbb\xbf").unwrap_or(line);
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let item = if is_document_line(line) {
                parse_document_line(line).map(JsonlItem::Document)
            } else {
                parse_line(line).map(|(rec, rels)| JsonlItem::Entry(rec, rels))
            };
            return Some(
                item.map_err(|e| Rejected::from_error(Some(self.line_no), e.name, &e.error)),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> Error {
        parse_line(line.as_bytes()).unwrap_err().error
    }

    #[test]
    fn parses_a_full_line() {
        let line = r#"{"kind":"skill","namespace":"vercel","name":"react-best-practices",
            "description":"  Use React well ","tags":["React"],"status":"published",
            "popularity":{"score":0.5},
            "versions":[{"version":"1.0.0","manifest":{"installs":3},"yanked":true,"yank_reason":"bad"},
                        {"version":"0.9.0","yank_reason":"dropped: not yanked"}],
            "relations":[{"kind":"maps_to","to":{"kind":"package","namespace":"npm","name":"react"},"confidence":0.9}]}"#
            .replace('\n', " ");
        let (rec, rels) = parse_line(line.as_bytes()).unwrap();
        assert_eq!(rec.entry.description, "Use React well");
        assert_eq!(rec.entry.tags, vec!["react"]);
        assert_eq!(rec.versions.len(), 2);
        assert!(rec.versions[0].yanked);
        assert_eq!(rec.versions[0].yank_reason.as_deref(), Some("bad"));
        assert_eq!(rec.versions[1].yank_reason, None);
        assert_eq!(rels.len(), 1);
        assert_eq!(rels[0].from.name, "react-best-practices");
        assert_eq!(rels[0].to.namespace, "npm");
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(r#"{"kind":"tool","namespace":"x","name":"a","tag":["t"]}"#);
        assert!(e.message.contains("unknown field `tag`"), "{}", e.message);
        let e = err(r#"{"kind":"widget","namespace":"x","name":"a"}"#);
        assert_eq!(e.field.as_deref(), Some("kind"));
        assert!(
            e.message.contains("unknown variant `widget`"),
            "{}",
            e.message
        );
        let e = err(r#"{"kind":"tool","namespace":"x","name":"a","versions":[{"version":"1.0"}]}"#);
        assert_eq!(
            e.field.as_deref(),
            Some("versions[0].version"),
            "{}",
            e.message
        );
        let e = err(
            r#"{"kind":"skill","namespace":"x","name":"a","versions":[{"version":"1.0.0","manifest":{"installs":-1}}]}"#,
        );
        assert_eq!(
            e.field.as_deref(),
            Some("versions[0].manifest.installs"),
            "{}",
            e.message
        );
        let e = err(
            r#"{"kind":"tool","namespace":"x","name":"a","versions":[{"version":"1.0.0"},{"version":"1.0.0"}]}"#,
        );
        assert_eq!(
            e.field.as_deref(),
            Some("versions[1].version"),
            "{}",
            e.message
        );
        let e = err(
            r#"{"kind":"tool","namespace":"x","name":"a","relations":[{"kind":"depends_on","to":{"kind":"tool","namespace":"x","name":"b"},"confidence":0.5}]}"#,
        );
        assert_eq!(
            e.field.as_deref(),
            Some("relations[0].confidence"),
            "{}",
            e.message
        );
        let e = err(
            r#"{"kind":"tool","namespace":"x","name":"a","relations":[{"kind":"depends_on","to":{"kind":"tool","namespace":"x","name":"b","x":1}}]}"#,
        );
        assert!(e.message.starts_with("relations[0].to"), "{}", e.message);
        let e = err(r#"{"kind":"tool","namespace":"x","name":"a","deprecation":{"message":" "}}"#);
        assert_eq!(e.field.as_deref(), Some("deprecation.message"));
    }

    #[test]
    fn malformed_json_is_an_error_not_a_panic() {
        for bad in [
            "{",
            "{\"kind\":",
            "[1,2]",
            "nul",
            "{} {}",
            "\u{0}",
            "{\"kind\":\"tool\"}",
        ] {
            let e = parse_line(bad.as_bytes()).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::InvalidInput, "{bad}");
        }
        let e = err("{\"kind\": tool}");
        assert!(e.message.starts_with("malformed JSON"), "{}", e.message);
        assert!(parse_line(b"\xff\xfe").is_err());
    }

    #[test]
    fn reader_numbers_lines_and_skips_blanks() {
        let text = "\u{feff}{\"kind\":\"tool\",\"namespace\":\"x\",\"name\":\"a\"}\n\n   \n{bad\n{\"kind\":\"tool\",\"namespace\":\"x\",\"name\":\"b\"}";
        let out: Vec<_> = JsonlReader::from_reader(Box::new(text.as_bytes())).collect();
        assert_eq!(out.len(), 3);
        assert!(out[0].is_ok());
        assert_eq!(out[1].as_ref().unwrap_err().line, Some(4));
        match out[2].as_ref().unwrap() {
            JsonlItem::Entry(rec, _) => assert_eq!(rec.entry.name, "b"),
            other => panic!("expected an entry, got {other:?}"),
        }
    }
}
