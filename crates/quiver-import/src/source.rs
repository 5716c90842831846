//! One kind's own source file, read for `quiver publish PATH`.
//!
//! [`read`] turns a path into [`Draft`]s (an entry, a version and, for a module, the
//! content to upload):
//!
//! - an mlld module file (`.mld`, `.mld.md`, `.mlld.md`, `.mlld`): its YAML front matter
//!   or, without one, its header comments (`>> key: value` lines before the first line
//!   of code) give the name, the namespace (`namespace`, `author`, or `@ns/` in the
//!   name), the description (`description` or `about`), the version, `needs`,
//!   `dependencies`, `keywords` and `license` ([`parse_module_file`]); the file itself is
//!   the version's content;
//! - an agent skill: a folder holding `SKILL.md`, or the `SKILL.md` itself, whose front
//!   matter gives `name`, `description` and optionally `namespace`/`author` and `version`
//!   ([`parse_skill_file`]); the text is the manifest's `content`;
//! - any file one of the source systems' readers ([`crate::formats::readers`]) claims: a
//!   `package.json` with a `tpmjs` field, an ops YAML tool profile, a tsuku recipe TOML, a
//!   skills registry, an mlld registry version file. The reader is pointed at the file's
//!   folder (or a folder above it, when the reader knows the file by its place in a tree)
//!   and every record it reads becomes a draft.
//!
//! A draft may lack required fields ([`Draft::missing`]); the caller asks for them or
//! fails naming them, with [`Draft::hint`] saying where each goes in the source.

use std::path::{Path, PathBuf};

use quiver_model::{Kind, NewEntry};
use serde_json::{json, Map, Value};

use crate::formats;

/// The fields a publish cannot do without.
pub const REQUIRED: [&str; 4] = ["namespace", "name", "description", "version"];

/// Where a draft's metadata was read from, for the hint on a missing field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metadata {
    /// YAML front matter (a module file, `SKILL.md`).
    FrontMatter,
    /// Header comments of a module file without front matter.
    HeaderComments,
    /// A source system's file, read by its reader.
    SourceFile,
}

/// An entry and one version, as a source file describes them, before the server checks
/// them. Missing text fields are empty; a missing version is `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    /// The file it was read from, as given.
    pub file: PathBuf,
    pub entry: NewEntry,
    pub version: Option<String>,
    pub manifest: Value,
    pub changelog: Option<String>,
    /// The version's content (a module's file), uploaded with it.
    pub content: Option<String>,
    /// The source has no versions (a recipe, a skills registry listing, a tool definition
    /// in a `package.json`): without a version given, publish the next patch after the
    /// latest (or 1.0.0), as the importer does for a changed revision.
    pub revision: bool,
    pub metadata: Metadata,
    /// Problems worth a look that do not stop the publish.
    pub warnings: Vec<String>,
}

impl Draft {
    fn new(file: &Path, kind: Kind, metadata: Metadata) -> Draft {
        Draft {
            file: file.to_path_buf(),
            entry: NewEntry {
                kind,
                namespace: String::new(),
                name: String::new(),
                display_name: None,
                description: String::new(),
                category: None,
                tags: Vec::new(),
                keywords: Vec::new(),
                status: None,
                visibility: None,
                popularity: None,
            },
            version: None,
            manifest: json!({}),
            changelog: None,
            content: None,
            revision: false,
            metadata,
            warnings: Vec::new(),
        }
    }

    /// The required fields ([`REQUIRED`]) this draft lacks, in that order. A revision's
    /// version is never missing (it is chosen at publish).
    pub fn missing(&self) -> Vec<&'static str> {
        REQUIRED
            .into_iter()
            .filter(|f| match *f {
                "namespace" => self.entry.namespace.trim().is_empty(),
                "name" => self.entry.name.trim().is_empty(),
                "description" => self.entry.description.trim().is_empty(),
                _ => self.version.is_none() && !self.revision,
            })
            .collect()
    }

    /// Where a missing `field` goes in the source, as advice.
    pub fn hint(&self, field: &str) -> String {
        let key = match (self.metadata, field) {
            (_, "namespace") if self.entry.kind == Kind::Module => "author:",
            (_, "description") if self.entry.kind == Kind::Module => "description:",
            (_, f) => f,
        };
        let key = key.trim_end_matches(':');
        let flag = if field == "namespace" {
            ", or pass --namespace"
        } else if field == "version" {
            ", or pass --version"
        } else {
            ""
        };
        match self.metadata {
            Metadata::FrontMatter => format!("add `{key}:` to the front matter{flag}"),
            Metadata::HeaderComments => {
                format!("add a `>> {key}: ...` header comment or front matter{flag}")
            }
            Metadata::SourceFile => format!("set `{key}` in the file{flag}"),
        }
    }

    /// One line per missing field: `alice.mld: missing description (add ...)`.
    pub fn missing_report(&self) -> Vec<String> {
        let file = self.file.display();
        let what = if self.entry.name.is_empty() {
            String::new()
        } else {
            format!(" {} {}", self.entry.kind, self.entry.name)
        };
        self.missing()
            .into_iter()
            .map(|f| format!("{file}:{what} missing {f} ({})", self.hint(f)))
            .collect()
    }
}

/// Whether `path` names an mlld module file by its extension.
pub fn is_module_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    [".mld", ".mld.md", ".mlld.md", ".mlld"]
        .iter()
        .any(|ext| name.ends_with(ext) && name.len() > ext.len())
}

fn is_skill_md(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.eq_ignore_ascii_case("SKILL.md"))
}

/// Read the source at `path` (a file, or a skill's folder) into drafts; the error says
/// why nothing could be read.
pub fn read(path: &Path) -> Result<Vec<Draft>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if meta.is_dir() {
        let skill = path.join("SKILL.md");
        if !skill.is_file() {
            return Err(
                "a folder is published only as an agent skill, holding SKILL.md \
                 (use `quiver import` for a folder of source files)"
                    .into(),
            );
        }
        let text = read_text(&skill)?;
        return parse_skill_file(&skill, &text).map(|d| vec![d]);
    }
    if is_module_file(path) {
        return parse_module_file(path, &read_text(path)?).map(|d| vec![d]);
    }
    if is_skill_md(path) {
        return parse_skill_file(path, &read_text(path)?).map(|d| vec![d]);
    }
    read_with_readers(path)
}

fn read_text(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A file of a source system: the first reader that claims it, with the root at its
/// folder or up to three folders above (a recipe at `recipes/b/`, a module version file
/// at `modules/<ns>/<name>/`).
fn read_with_readers(path: &Path) -> Result<Vec<Draft>, String> {
    let abs = std::fs::canonicalize(path).map_err(|e| format!("cannot read it: {e}"))?;
    let head = {
        use std::io::Read;
        let mut buf = Vec::new();
        std::fs::File::open(&abs)
            .and_then(|f| f.take(8192).read_to_end(&mut buf))
            .map_err(|e| format!("cannot read it: {e}"))?;
        buf
    };
    for root in abs.ancestors().skip(1).take(4) {
        let Ok(rel) = abs.strip_prefix(root) else {
            continue;
        };
        let rel = rel.to_path_buf();
        for reader in formats::readers() {
            if !reader.claims(&rel, &head) {
                continue;
            }
            let mut files = vec![rel.clone()];
            // A registry's version file takes its description from the module's
            // metadata.json next to it.
            if reader.format() == crate::Format::Modules {
                let meta = rel.with_file_name("metadata.json");
                if meta != rel && root.join(&meta).is_file() {
                    files.push(meta);
                }
            }
            let bundle = reader.read(root, &files);
            return drafts_of(path, bundle);
        }
    }
    Err(
        "not a file quiver can publish: expected a JSON file with kind, namespace and \
         name; an mlld module file (.mld, .mld.md, .mlld.md); a skill folder or SKILL.md; \
         a package.json with a `tpmjs` field; an ops tool profile (YAML with `tool_name`); \
         or a recipe TOML with [metadata]"
            .into(),
    )
}

fn drafts_of(path: &Path, bundle: formats::Bundle) -> Result<Vec<Draft>, String> {
    if bundle.records.is_empty() {
        let why: Vec<String> = bundle.rejected.iter().map(|r| r.to_string()).collect();
        return Err(if why.is_empty() {
            "the file holds no entry to publish".to_string()
        } else {
            why.join("; ")
        });
    }
    let mut warnings: Vec<String> = bundle
        .rejected
        .iter()
        .chain(&bundle.warnings)
        .map(|r| r.to_string())
        .collect();
    let mut drafts = Vec::new();
    for record in bundle.records {
        let mut entry = record.entry;
        // What an import sets from the source's own counts is not the author's to publish.
        entry.popularity = None;
        entry.status = None;
        let base = Draft {
            entry,
            metadata: Metadata::SourceFile,
            warnings: std::mem::take(&mut warnings),
            ..Draft::new(path, Kind::Tool, Metadata::SourceFile)
        };
        if let Some(manifest) = record.revision {
            drafts.push(Draft {
                manifest,
                revision: true,
                ..base.clone()
            });
        }
        for v in record.versions {
            drafts.push(Draft {
                version: Some(v.version),
                manifest: v.manifest,
                changelog: v.changelog,
                ..base.clone()
            });
        }
    }
    Ok(drafts)
}

/// The YAML front matter (`---` on the first line, up to the next `---` or `...`) of the
/// text as a mapping, or `None` when the text has no front matter.
fn front_matter(text: &str) -> Result<Option<Map<String, Value>>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text.lines();
    if lines.next().map(str::trim_end) != Some("---") {
        return Ok(None);
    }
    let mut yaml = String::new();
    for line in lines {
        if matches!(line.trim_end(), "---" | "...") {
            let value: serde_yaml_ng::Value = if yaml.trim().is_empty() {
                serde_yaml_ng::Value::Mapping(Default::default())
            } else {
                serde_yaml_ng::from_str(&yaml).map_err(|e| {
                    let at = e
                        .location()
                        .map(|l| format!(" at line {}", l.line() + 1))
                        .unwrap_or_default();
                    format!("the front matter is not valid YAML{at}: {e}")
                })?
            };
            return match formats::ops::yaml_to_json(value)? {
                Value::Object(m) => Ok(Some(m)),
                Value::Null => Ok(Some(Map::new())),
                _ => Err("the front matter must be a mapping of `key: value` lines".into()),
            };
        }
        yaml.push_str(line);
        yaml.push('\n');
    }
    Err("the front matter starting on line 1 has no closing `---`".into())
}

/// The keys a module file's header comments may set.
const HEADER_KEYS: &[&str] = &[
    "name",
    "namespace",
    "author",
    "description",
    "about",
    "version",
    "needs",
    "dependencies",
    "keywords",
    "tags",
    "license",
    "title",
    "mlldVersion",
    "mlld-version",
    "repo",
    "homepage",
    "bugs",
];

/// The `>> key: value` (or `<< key: value`) comment lines at the top of a module file,
/// before its first line of code; a value is read as YAML (`[js, sh]`, `1.2.0`) when it
/// parses, as text otherwise.
fn header_comments(text: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let Some(comment) = line.strip_prefix(">>").or_else(|| line.strip_prefix("<<")) else {
            break;
        };
        let Some((key, value)) = comment.split_once(':') else {
            continue;
        };
        let key = key.trim().trim_start_matches('@');
        if !HEADER_KEYS.contains(&key) {
            continue;
        }
        let value = value.trim();
        let parsed = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(value)
            .ok()
            .and_then(|v| formats::ops::yaml_to_json(v).ok())
            .filter(|v| !v.is_object())
            .unwrap_or_else(|| Value::String(value.to_string()));
        out.insert(key.to_string(), parsed);
    }
    out
}

/// A scalar as text: strings as they are, numbers and booleans written out.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A list of strings from a YAML list or a comma-separated text.
fn list_of(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().filter_map(text_of).collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// `1` → `1.0.0`, `1.2` → `1.2.0`; anything else as written (the server checks it).
fn full_version(v: &str) -> String {
    let v = v.trim().trim_start_matches('v');
    let parts: Vec<&str> = v.split('.').collect();
    if parts.len() < 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        let mut parts: Vec<String> = parts.iter().map(|p| p.to_string()).collect();
        parts.resize(3, "0".to_string());
        return parts.join(".");
    }
    v.to_string()
}

/// `@alice/fmt` or `alice/fmt` → (`alice`, `fmt`); a bare name has no namespace.
fn split_scoped(name: &str) -> (Option<String>, String) {
    let n = name.trim().trim_start_matches('@');
    match n.split_once('/') {
        Some((ns, rest)) if !ns.is_empty() && !rest.is_empty() => {
            (Some(ns.to_string()), rest.to_string())
        }
        _ => (None, n.to_string()),
    }
}

/// Parse an mlld module file (its front matter, or its header comments) into a `module`
/// draft whose manifest follows the module kind's schema (`author`, `license`, `needs`,
/// `dependencies`, plus `keywords`, `mlldVersion`, `repo`, `bugs`, `homepage` as the
/// registry's version files have them); the file is the version's content. Fields the
/// file does not give stay empty ([`Draft::missing`]). Fails only on front matter that is
/// not YAML.
pub fn parse_module_file(file: &Path, text: &str) -> Result<Draft, String> {
    let (meta, metadata) = match front_matter(text)? {
        Some(m) => (m, Metadata::FrontMatter),
        None => (header_comments(text), Metadata::HeaderComments),
    };
    let mut d = Draft::new(file, Kind::Module, metadata);
    let get = |k: &str| meta.get(k).and_then(text_of);
    let (scope, name) = get("name").map(|n| split_scoped(&n)).unwrap_or_default();
    let author = get("author").map(|a| a.trim_start_matches('@').to_string());
    d.entry.name = name;
    d.entry.namespace = get("namespace")
        .map(|n| n.trim_start_matches('@').to_string())
        .or(scope)
        .or_else(|| author.clone())
        .unwrap_or_default();
    d.entry.description = get("description")
        .or_else(|| get("about"))
        .unwrap_or_default();
    d.entry.display_name = get("title");
    d.version = get("version").map(|v| full_version(&v));
    let keywords = meta.get("keywords").map(list_of).unwrap_or_default();
    d.entry.keywords = keywords.clone();
    d.entry.tags = meta.get("tags").map(list_of).unwrap_or_default();
    let mut m = Map::new();
    if let Some(a) = author {
        m.insert("author".into(), a.into());
    }
    if let Some(l) = get("license") {
        m.insert("license".into(), l.into());
    }
    match meta.get("needs") {
        // The newer form: `needs: {js: [], node: [lodash]}`.
        Some(Value::Object(o)) => {
            m.insert("needs".into(), json!(o.keys().collect::<Vec<_>>()));
            let mut deps = Map::new();
            for (runtime, pkgs) in o {
                let pkgs = list_of(pkgs);
                if !pkgs.is_empty() {
                    deps.insert(runtime.clone(), json!({ "packages": pkgs }));
                }
            }
            if !deps.is_empty() {
                m.insert("runtime_dependencies".into(), Value::Object(deps));
            }
        }
        Some(v) => {
            m.insert("needs".into(), json!(list_of(v)));
        }
        None => {}
    }
    match meta.get("dependencies") {
        Some(Value::Object(o)) => {
            let deps: Map<String, Value> = o
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::Object(_) | Value::String(_) => v.clone(),
                        other => text_of(other).map_or(json!("*"), Value::String),
                    };
                    (k.clone(), v)
                })
                .collect();
            m.insert("dependencies".into(), Value::Object(deps));
        }
        // `[@alice/fmt@^1, @bob/io]`: each a module reference with an optional range.
        Some(v) => {
            let mut deps = Map::new();
            for dep in list_of(v) {
                let body = dep.trim_start_matches('@');
                let (name, range) = match body.split_once('@') {
                    Some((n, r)) => (n, r),
                    None => (body, "*"),
                };
                deps.insert(format!("@{name}"), json!(range));
            }
            m.insert("dependencies".into(), Value::Object(deps));
        }
        None => {}
    }
    if !keywords.is_empty() {
        m.insert("keywords".into(), json!(keywords));
    }
    for (key, to) in [
        ("mlldVersion", "mlldVersion"),
        ("mlld-version", "mlldVersion"),
        ("repo", "repo"),
        ("bugs", "bugs"),
        ("homepage", "homepage"),
    ] {
        if let Some(v) = get(key) {
            m.insert(to.into(), v.into());
        }
    }
    d.manifest = Value::Object(m);
    d.content = Some(text.to_string());
    Ok(d)
}

/// Parse an agent skill's `SKILL.md` (front matter `name`, `description`, and optionally
/// `namespace` or `author`, `version`, `title`, `license`, `repo`, `tags`; `metadata.*`
/// is looked in too) into a `skill` draft whose manifest holds the text as `content`.
pub fn parse_skill_file(file: &Path, text: &str) -> Result<Draft, String> {
    let meta = front_matter(text)?.unwrap_or_default();
    let nested = meta
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let get = |k: &str| {
        meta.get(k)
            .and_then(text_of)
            .or_else(|| nested.get(k).and_then(text_of))
    };
    let mut d = Draft::new(file, Kind::Skill, Metadata::FrontMatter);
    let (scope, name) = get("name").map(|n| split_scoped(&n)).unwrap_or_default();
    d.entry.name = name;
    d.entry.namespace = get("namespace")
        .or(scope)
        .or_else(|| get("author"))
        .map(|n| n.trim_start_matches('@').to_lowercase())
        .unwrap_or_default();
    d.entry.description = get("description").unwrap_or_default();
    d.entry.display_name = get("title");
    d.entry.tags = meta.get("tags").map(list_of).unwrap_or_default();
    d.version = get("version").map(|v| full_version(&v));
    let mut m = Map::new();
    for key in ["title", "repo", "license"] {
        if let Some(v) = get(key) {
            m.insert(key.into(), v.into());
        }
    }
    m.insert("path".into(), "SKILL.md".into());
    m.insert("content".into(), text.into());
    d.manifest = Value::Object(m);
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(text: &str) -> Draft {
        parse_module_file(Path::new("alice.mld"), text).unwrap()
    }

    #[test]
    fn front_matter_gives_every_field() {
        let text = "---\nname: fmt\nauthor: alice\nabout: Formatting helpers for text\n\
                    version: 1.2\nneeds: [js]\nlicense: CC0\nkeywords: [text, format]\n\
                    dependencies:\n  \"@bob/io\": ^1.0.0\n---\n\n/exe @f(x) = `@x`\n";
        let d = module(text);
        assert_eq!(d.entry.kind, Kind::Module);
        assert_eq!(
            (d.entry.namespace.as_str(), d.entry.name.as_str()),
            ("alice", "fmt")
        );
        assert_eq!(d.entry.description, "Formatting helpers for text");
        assert_eq!(d.version.as_deref(), Some("1.2.0"));
        assert_eq!(d.entry.keywords, ["text", "format"]);
        assert_eq!(
            d.manifest,
            json!({"author": "alice", "license": "CC0", "needs": ["js"],
                   "keywords": ["text", "format"], "dependencies": {"@bob/io": "^1.0.0"}})
        );
        assert_eq!(d.content.as_deref(), Some(text));
        assert!(d.missing().is_empty());
        quiver_model::manifest::validate_manifest(Kind::Module, &d.manifest).unwrap();
    }

    #[test]
    fn scoped_name_namespace_and_list_dependencies() {
        let d = module(
            "---\nname: \"@acme/http-get\"\nauthor: someone\ndescription: d\nversion: 2.0.0\n\
             dependencies: [\"@alice/fmt@^1.2\", \"@bob/io\"]\nneeds:\n  js: []\n  node: [lodash]\n---\n",
        );
        assert_eq!(
            d.entry.namespace, "acme",
            "the name's scope wins over author"
        );
        assert_eq!(d.entry.name, "http-get");
        assert_eq!(d.manifest["author"], "someone");
        assert_eq!(
            d.manifest["dependencies"],
            json!({"@alice/fmt": "^1.2", "@bob/io": "*"})
        );
        assert_eq!(d.manifest["needs"], json!(["js", "node"]));
        assert_eq!(
            d.manifest["runtime_dependencies"],
            json!({"node": {"packages": ["lodash"]}})
        );
        quiver_model::manifest::validate_manifest(Kind::Module, &d.manifest).unwrap();
    }

    #[test]
    fn header_comments_when_there_is_no_front_matter() {
        let d = module(
            ">> name: greet\n>> author: alice\n>> about: Greetings for every occasion\n\
             >> version: 1.0.0\n>> needs: [sh]\n\n/var @x = 1\n>> name: not-this\n",
        );
        assert_eq!(d.metadata, Metadata::HeaderComments);
        assert_eq!(d.entry.name, "greet");
        assert_eq!(d.entry.namespace, "alice");
        assert_eq!(d.entry.description, "Greetings for every occasion");
        assert_eq!(d.manifest["needs"], json!(["sh"]));
        assert!(d.missing().is_empty());
    }

    #[test]
    fn missing_fields_are_named_with_where_they_go() {
        let d = module("---\nname: greet\nauthor: alice\nversion: 1.0.0\n---\nbody\n");
        assert_eq!(d.missing(), ["description"]);
        assert_eq!(
            d.missing_report(),
            ["alice.mld: module greet missing description (add `description:` to the front matter)"]
        );
        let d = module("/var @x = 1\n");
        assert_eq!(d.missing(), ["namespace", "name", "description", "version"]);
        assert!(
            d.missing_report()[0].contains("add a `>> author: ...` header comment"),
            "{:?}",
            d.missing_report()
        );
    }

    #[test]
    fn bad_front_matter_is_an_error_with_its_line() {
        let e = parse_module_file(Path::new("m.mld"), "---\nname: [x\n---\n").unwrap_err();
        assert!(e.contains("not valid YAML"), "{e}");
        let e = parse_module_file(Path::new("m.mld"), "---\nname: x\n").unwrap_err();
        assert!(e.contains("no closing `---`"), "{e}");
    }

    #[test]
    fn module_file_names() {
        for ok in ["a.mld", "a.mld.md", "dir/b.mlld.md", "c.MLD"] {
            assert!(is_module_file(Path::new(ok)), "{ok}");
        }
        for no in ["a.md", "mld", ".mld", "a.json"] {
            assert!(!is_module_file(Path::new(no)), "{no}");
        }
    }

    #[test]
    fn skill_md_front_matter() {
        let text = "---\nname: pdf-forms\ndescription: Fill PDF forms from structured data\n\
                    metadata:\n  author: Acme\n  version: \"0.3\"\n---\n# PDF forms\n";
        let d = parse_skill_file(Path::new("SKILL.md"), text).unwrap();
        assert_eq!(d.entry.kind, Kind::Skill);
        assert_eq!(d.entry.namespace, "acme");
        assert_eq!(d.entry.name, "pdf-forms");
        assert_eq!(d.version.as_deref(), Some("0.3.0"));
        assert_eq!(d.manifest["content"], text);
        quiver_model::manifest::validate_manifest(Kind::Skill, &d.manifest).unwrap();
    }

    #[test]
    fn readers_take_a_single_file_from_its_folder_or_above() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("modules/alice/fmt");
        std::fs::create_dir_all(&module).unwrap();
        std::fs::write(
            module.join("1.0.0.json"),
            r#"{"version": "1.0.0", "needs": ["js"], "license": "CC0"}"#,
        )
        .unwrap();
        std::fs::write(
            module.join("metadata.json"),
            r#"{"name": "fmt", "author": "alice", "about": "Formatting helpers for text"}"#,
        )
        .unwrap();
        let drafts = read(&module.join("1.0.0.json")).unwrap();
        assert_eq!(drafts.len(), 1, "{drafts:?}");
        let d = &drafts[0];
        assert_eq!(
            (d.entry.namespace.as_str(), d.entry.name.as_str()),
            ("alice", "fmt")
        );
        assert_eq!(d.entry.description, "Formatting helpers for text");
        assert_eq!(d.version.as_deref(), Some("1.0.0"));
        assert!(d.missing().is_empty());

        let recipe = dir.path().join("jq.toml");
        std::fs::write(
            &recipe,
            "[metadata]\nname = \"jq\"\ndescription = \"Command-line JSON processor\"\n\n\
             [[steps]]\naction = \"homebrew\"\nformula = \"jq\"\n",
        )
        .unwrap();
        let drafts = read(&recipe).unwrap();
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].entry.kind, Kind::Recipe);
        assert!(drafts[0].revision && drafts[0].version.is_none());
        assert!(drafts[0].missing().is_empty());

        let other = dir.path().join("notes.txt");
        std::fs::write(&other, "hello").unwrap();
        assert!(read(&other)
            .unwrap_err()
            .contains("not a file quiver can publish"));
    }
}
