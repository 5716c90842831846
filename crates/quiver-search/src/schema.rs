//! The index schema and the mapping of an [`Entry`] to a document.

use quiver_model::{Entry, Kind, Status, Visibility};
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST,
    INDEXED, STORED,
};
use tantivy::TantivyDocument;

use crate::analysis::{joined, name_index_tokens, pep503, EN_TOKENIZER};

pub const F_ID: &str = "id";
pub const F_FLAGS: &str = "flags";
pub const F_KIND: &str = "kind";
pub const F_STATUS: &str = "status";
pub const F_NAMESPACE: &str = "namespace";
pub const F_CATEGORY: &str = "category";
pub const F_TAGS: &str = "tags";
pub const F_NAME_JOINED: &str = "name_joined";
pub const F_NAME_SORT: &str = "name_sort";
pub const F_DESCRIPTION: &str = "description";
pub const F_KEYWORDS: &str = "keywords";
pub const F_POPULARITY: &str = "popularity";
pub const F_UPDATED: &str = "updated";
pub const F_PAYLOAD: &str = "payload";
pub const F_PLATFORM: &str = "platform";
pub const F_CONTENT: &str = "content";

/// Field handles.
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub id: Field,
    pub flags: Field,
    pub kind: Field,
    pub status: Field,
    pub namespace: Field,
    pub category: Field,
    pub tags: Field,
    pub name_joined: Field,
    pub name_sort: Field,
    pub description: Field,
    pub keywords: Field,
    pub popularity: Field,
    pub updated: Field,
    pub payload: Field,
    pub platform: Field,
    /// What a manifest says beyond the description (capabilities, patterns, inputs,
    /// binaries, frameworks, exports): searched like the description, weighted below it.
    pub content: Field,
}

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // Exact-value strings: indexed as one term, and as fast columns (filters, facets).
    let keyword = || {
        TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("raw")
                    .set_index_option(IndexRecordOption::Basic)
                    .set_fieldnorms(false),
            )
            .set_fast("raw")
    };
    let raw_term = || {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer("raw")
                .set_index_option(IndexRecordOption::Basic)
                .set_fieldnorms(false),
        )
    };
    let text = |tokenizer: &str| {
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(tokenizer)
                .set_index_option(IndexRecordOption::WithFreqs),
        )
    };
    let id = b.add_i64_field(F_ID, INDEXED | FAST);
    let flags = b.add_u64_field(F_FLAGS, FAST);
    // Kind and status are also packed in `flags`: indexed terms only.
    let kind = b.add_text_field(F_KIND, raw_term());
    let status = b.add_text_field(F_STATUS, raw_term());
    let namespace = b.add_text_field(F_NAMESPACE, keyword());
    let category = b.add_text_field(F_CATEGORY, keyword());
    let tags = b.add_text_field(F_TAGS, keyword());
    let name_joined = b.add_text_field(F_NAME_JOINED, raw_term());
    let name_sort = b.add_text_field(F_NAME_SORT, TextOptions::default().set_fast("raw"));
    let description = b.add_text_field(F_DESCRIPTION, text(EN_TOKENIZER));
    let keywords = b.add_text_field(F_KEYWORDS, text(EN_TOKENIZER));
    let popularity = b.add_f64_field(F_POPULARITY, NumericOptions::default().set_fast());
    let updated = b.add_i64_field(F_UPDATED, NumericOptions::default().set_fast());
    let payload = b.add_text_field(F_PAYLOAD, STORED);
    let platform = b.add_text_field(F_PLATFORM, keyword());
    let content = b.add_text_field(F_CONTENT, text(EN_TOKENIZER));
    let fields = Fields {
        id,
        flags,
        kind,
        status,
        namespace,
        category,
        tags,
        name_joined,
        name_sort,
        description,
        keywords,
        popularity,
        updated,
        payload,
        platform,
        content,
    };
    (b.build(), fields)
}

fn index_of<T: PartialEq>(all: &[T], v: &T) -> u64 {
    all.iter().position(|x| x == v).unwrap_or(0) as u64
}

/// Packs status (bits 0-2), private (bit 3), kind (bits 4-6) and disabled (bit 7) into
/// one fast value.
pub fn flags(kind: Kind, status: Status, visibility: Visibility, disabled: bool) -> u64 {
    index_of(Status::ALL, &status)
        | (u64::from(visibility == Visibility::Private) << 3)
        | (index_of(Kind::ALL, &kind) << 4)
        | (u64::from(disabled) << 7)
}
pub fn flags_disabled(f: u64) -> bool {
    f & 0b1000_0000 != 0
}
pub fn flags_status(f: u64) -> u64 {
    f & 0b111
}
pub fn flags_private(f: u64) -> bool {
    f & 0b1000 != 0
}
pub fn flags_kind(f: u64) -> u64 {
    (f >> 4) & 0b111
}

/// What a hit shows, stored with the document so that search never reads the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Payload {
    pub id: i64,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    pub popularity: f64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// The manifest's searchable fields as (what, value): `capability packet_capture`,
    /// `binary rg`, to say which one a query matched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<(String, String)>,
}

/// Whether an entry belongs in the index at all: unlisted entries never do.
pub fn indexable(e: &Entry) -> bool {
    e.visibility != Visibility::Unlisted
}

/// The `name_sort` value: the lowercased name (PEP 503 form for PyPI). It orders the
/// name sort and tells exact name matches apart in the collector.
pub fn name_sort_key(namespace: &str, name: &str) -> String {
    if namespace == "pypi" {
        pep503(name)
    } else {
        name.to_lowercase()
    }
}

/// The document for an entry.
/// What an entry's latest manifest adds to its document, for the kinds whose manifests
/// say what they do and where they run: a tool's capabilities (names as exact keywords;
/// names, descriptions, pattern names, typical uses and input names as words) and its
/// `platform`; a recipe's platforms (its `supported_os`, else the operating systems its
/// steps are limited to, else every one: `linux` and `darwin`), with the `os/arch` pairs
/// and `linux-<libc>` its `supported_arch`, `supported_libc` and `unsupported_platforms`
/// admit (`linux/arm64`, `linux-musl`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManifestTerms {
    /// Searchable fields as (what, value), in the manifest's order.
    pub fields: Vec<(String, String)>,
    pub keywords: Vec<String>,
    pub platforms: Vec<String>,
}

impl ManifestTerms {
    fn field(&mut self, what: &str, value: &str) {
        let value = value.trim();
        if !value.is_empty() && value.len() <= 500 && self.fields.len() < MAX_FIELDS {
            self.fields.push((what.to_string(), value.to_string()));
        }
    }

    /// The text indexed in the `content` field (`snake_case` names read as words).
    pub fn text(&self) -> String {
        let mut out = String::new();
        for (_, v) in &self.fields {
            out.push_str(&v.replace('_', " "));
            out.push_str(" ; ");
        }
        out
    }
}

/// At most this many manifest fields are indexed per entry.
const MAX_FIELDS: usize = 400;

/// The words of a homepage address that name the project (its host and path without
/// the scheme, `www` and the top-level domain): `github.com/sharkdp/hyperfine` →
/// `github sharkdp hyperfine`.
fn homepage_words(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let mut parts: Vec<&str> = Vec::new();
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    for (i, l) in labels.iter().enumerate() {
        if (*l != "www") && !(i + 1 == n && n > 1) {
            parts.push(l);
        }
    }
    parts.extend(path.split('/').filter(|p| !p.is_empty()));
    parts.join(" ")
}

/// What a skill manifest's list is called in a hit's reason.
fn skill_field(key: &str) -> &'static str {
    match key {
        "frameworks" | "framework" => "framework",
        "languages" => "language",
        _ => "package",
    }
}

/// The operating systems a recipe installs on when its steps do not say.
const RECIPE_PLATFORMS: [&str; 2] = ["linux", "darwin"];
/// The architectures and C libraries a recipe installs on when its metadata does not say.
const RECIPE_ARCHES: [&str; 2] = ["amd64", "arm64"];
const RECIPE_LIBCS: [&str; 2] = ["glibc", "musl"];

pub fn manifest_terms(kind: Kind, m: &serde_json::Value) -> ManifestTerms {
    use serde_json::Value;
    let strs = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => vec![],
        }
    };
    let mut out = ManifestTerms::default();
    match kind {
        Kind::Tool => {
            out.platforms = strs(&m["platform"]);
            out.platforms.extend(strs(&m["platforms"]));
            for (cap, c) in m["capabilities"].as_object().into_iter().flatten() {
                out.field("capability", cap);
                out.keywords.push(cap.clone());
                if let Some(d) = c["description"].as_str() {
                    out.field("capability", d);
                }
                for (pname, p) in c["patterns"].as_object().into_iter().flatten() {
                    out.field("pattern", pname);
                    if let Some(d) = p["description"].as_str() {
                        out.field("pattern", d);
                    }
                    for u in strs(&p["typical_use_cases"]) {
                        out.field("use case", &u);
                    }
                    for inputs in ["required_inputs", "optional_inputs"] {
                        for i in p[inputs].as_array().into_iter().flatten() {
                            if let Some(n) = i["name"].as_str().or(i.as_str()) {
                                out.field("input", n);
                            }
                        }
                    }
                }
            }
            // Tool definitions of other shapes: a tpmjs package's tools, a block's
            // inputs and outputs, JSON-Schema properties.
            for t in m["tpmjs"]["tools"].as_array().into_iter().flatten() {
                if let Some(n) = t["name"].as_str() {
                    out.field("tool", n);
                }
                for p in t["parameters"].as_array().into_iter().flatten() {
                    if let Some(n) = p["name"].as_str() {
                        out.field("input", n);
                    }
                }
            }
            for (what, key) in [("input", "inputs"), ("output", "outputs")] {
                for i in m[key].as_array().into_iter().flatten() {
                    if let Some(n) = i["name"].as_str() {
                        out.field(what, n);
                    }
                }
            }
            for (what, key) in [("input", "input_schema"), ("output", "output_schema")] {
                for (n, _) in m[key]["properties"].as_object().into_iter().flatten() {
                    out.field(what, n);
                }
            }
        }
        Kind::Recipe => {
            let meta = &m["metadata"];
            let declared = [&meta["supported_os"], &m["supported_os"]]
                .into_iter()
                .flat_map(strs)
                .collect::<Vec<_>>();
            let oses = if !declared.is_empty() {
                declared
            } else {
                let steps = m["steps"].as_array().cloned().unwrap_or_default();
                let limited: Vec<Vec<String>> =
                    steps.iter().map(|s| strs(&s["when"]["os"])).collect();
                if !steps.is_empty() && limited.iter().all(|l| !l.is_empty()) {
                    limited.into_iter().flatten().collect()
                } else {
                    RECIPE_PLATFORMS.iter().map(|p| p.to_string()).collect()
                }
            };
            // The platform constraints (the recipe pipeline derives them from its
            // validation matrix): `os/arch` pairs the recipe admits, and `linux-<libc>`.
            let arches = match strs(&meta["supported_arch"]) {
                a if a.is_empty() => RECIPE_ARCHES.iter().map(|a| a.to_string()).collect(),
                a => a,
            };
            let unsupported = strs(&meta["unsupported_platforms"]);
            let mut platforms = oses.clone();
            for os in &oses {
                for arch in &arches {
                    let pair = format!("{os}/{arch}");
                    if !unsupported.contains(&pair) {
                        platforms.push(pair);
                    }
                }
            }
            if oses.iter().any(|o| o == "linux") {
                let libcs = match strs(&meta["supported_libc"]) {
                    l if l.is_empty() => RECIPE_LIBCS.iter().map(|l| l.to_string()).collect(),
                    l => l,
                };
                platforms.extend(libcs.iter().map(|l| format!("linux-{l}")));
            }
            out.platforms = platforms;
            for step in m["steps"].as_array().into_iter().flatten() {
                for b in step["binaries"].as_array().into_iter().flatten() {
                    if let Some(b) = b.as_str().or(b["dest"].as_str()).or(b["src"].as_str()) {
                        let file = b.rsplit('/').next().unwrap_or(b);
                        out.field("binary", file);
                    }
                }
            }
            if let Some(cmd) = m["verify"]["command"].as_str() {
                if let Some(bin) = cmd.split_whitespace().next() {
                    out.field("binary", bin);
                }
            }
            if let Some(h) = meta["homepage"].as_str() {
                out.field("homepage", &homepage_words(h));
            }
        }
        Kind::Skill => {
            for key in [
                "frameworks",
                "framework",
                "target_packages",
                "packages",
                "maps_to",
                "languages",
            ] {
                for v in strs(&m[key]) {
                    out.field(skill_field(key), &v);
                }
            }
        }
        Kind::Module => {
            for v in strs(&m["exports"]) {
                out.field("export", &v);
            }
            for (n, _) in m["exports"].as_object().into_iter().flatten() {
                out.field("export", n);
            }
            for v in strs(&m["keywords"]) {
                out.field("keyword", &v);
            }
        }
        _ => {}
    }
    for (a, b) in out.fields.iter_mut() {
        if a == "framework" || a == "package" || a == "language" {
            *b = b.to_lowercase();
        }
    }
    out.fields.dedup();
    for p in &mut out.platforms {
        *p = p.trim().to_lowercase();
    }
    out.platforms.retain(|p| !p.is_empty() && p.len() <= 64);
    out.platforms.sort();
    out.platforms.dedup();
    out.keywords.sort();
    out.keywords.dedup();
    out
}

/// The document for an entry (`manifest`: its latest version's, for the kinds
/// [`manifest_terms`] reads).
pub fn document(f: &Fields, e: &Entry, manifest: Option<&serde_json::Value>) -> TantivyDocument {
    let extra = manifest
        .map(|m| manifest_terms(e.kind, m))
        .unwrap_or_default();
    let mut d = TantivyDocument::default();
    d.add_i64(f.id, e.id);
    d.add_u64(
        f.flags,
        flags(e.kind, e.status, e.visibility, e.disabled.is_some()),
    );
    d.add_text(f.kind, e.kind.as_str());
    d.add_text(f.status, e.status.as_str());
    d.add_text(f.namespace, &e.namespace);
    if let Some(c) = &e.category {
        d.add_text(f.category, c);
    }
    for t in &e.tags {
        d.add_text(f.tags, t);
    }
    let sort_key = name_sort_key(&e.namespace, &e.name);
    d.add_text(f.name_joined, joined(&e.name));
    if let Some(dn) = &e.display_name {
        if !dn.is_empty() && dn != &e.name {
            let j = joined(dn);
            if j != joined(&e.name) && !j.is_empty() {
                d.add_text(f.name_joined, j);
            }
        }
    }
    d.add_text(f.name_sort, &sort_key);
    // `description` is the searchable text: the name words, the keywords and the
    // description, so that every query word is one term lookup in one field.
    let mut text = String::with_capacity(e.description.len() + 64);
    for name in std::iter::once(&e.name).chain(e.display_name.iter()) {
        for (_, _, t) in name_index_tokens(name) {
            text.push_str(&t);
            text.push(' ');
        }
    }
    for k in e
        .keywords
        .iter()
        .chain(e.tags.iter())
        .chain(e.category.iter())
    {
        text.push_str(k);
        text.push_str(" ; ");
    }
    text.push_str(&e.description);
    d.add_text(f.description, &text);
    if !extra.fields.is_empty() {
        d.add_text(f.content, extra.text());
    }
    for k in &extra.keywords {
        d.add_text(f.keywords, k);
    }
    for p in &extra.platforms {
        d.add_text(f.platform, p);
    }
    for k in e
        .keywords
        .iter()
        .chain(e.tags.iter())
        .chain(e.category.iter())
    {
        d.add_text(f.keywords, k);
    }
    d.add_f64(f.popularity, e.popularity.score.clamp(0.0, 1.0));
    d.add_i64(f.updated, e.updated_at.as_millisecond());
    let payload = Payload {
        id: e.id,
        kind: e.kind,
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        display_name: e.display_name.clone(),
        description: e.description.clone(),
        category: e.category.clone(),
        tags: e.tags.clone(),
        status: e.status,
        latest_version: e.latest_version.clone(),
        popularity: e.popularity.score,
        disabled: e.disabled.is_some(),
        fields: extra.fields,
    };
    d.add_text(
        f.payload,
        serde_json::to_string(&payload).unwrap_or_default(),
    );
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn recipe_platforms_follow_the_derived_constraints() {
        let all = manifest_terms(Kind::Recipe, &json!({"metadata": {"name": "x"}}));
        for p in [
            "linux",
            "darwin",
            "linux/arm64",
            "darwin/amd64",
            "linux-musl",
        ] {
            assert!(
                all.platforms.contains(&p.to_string()),
                "{p} in {:?}",
                all.platforms
            );
        }
        let glibc = manifest_terms(
            Kind::Recipe,
            &json!({"metadata": {"supported_libc": ["glibc"],
                                 "unsupported_platforms": ["linux/arm64"]}}),
        );
        assert!(glibc.platforms.contains(&"linux-glibc".to_string()));
        assert!(!glibc.platforms.contains(&"linux-musl".to_string()));
        assert!(!glibc.platforms.contains(&"linux/arm64".to_string()));
        assert!(glibc.platforms.contains(&"darwin/arm64".to_string()));
        let mac = manifest_terms(
            Kind::Recipe,
            &json!({"metadata": {"supported_os": ["darwin"], "supported_arch": ["arm64"]}}),
        );
        assert_eq!(mac.platforms, ["darwin", "darwin/arm64"]);
    }
}
