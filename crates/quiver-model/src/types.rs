//! The records of the one data model: entries, versions, relations, namespaces, and the
//! change-feed events that every write leaves behind.

use std::fmt;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A closed set of words: a Copy enum that serializes, parses (`FromStr`, with an error
/// naming `$field` and the accepted words) and prints as its words. Exported for the other
/// crates' word sets (token scopes, roles), so that every such set behaves alike.
#[macro_export]
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident, $field:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize, ::schemars::JsonSchema)]
        pub enum $name { $(#[serde(rename = $text)] $variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result { f.write_str(self.as_str()) }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> ::std::result::Result<Self, $crate::Error> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::Error::invalid($field, format!(
                        "unknown {} '{}' (expected one of: {})",
                        $field, s, [$($text),+].join(", ")
                    ))),
                }
            }
        }
    };
}

string_enum!(
    /// What an entry is. A kind is a manifest schema plus a name rule.
    Kind, "kind" {
        Tool => "tool",
        Recipe => "recipe",
        Skill => "skill",
        Module => "module",
        Package => "package",
    }
);

string_enum!(
    /// Lifecycle of an entry.
    Status, "status" {
        Draft => "draft",
        Review => "review",
        Published => "published",
        Deprecated => "deprecated",
        Archived => "archived",
    }
);

string_enum!(
    /// Who may see an entry: everyone and in lists (`public`), by exact name only
    /// (`unlisted`), or only those with rights (`private`).
    Visibility, "visibility" {
        Public => "public",
        Unlisted => "unlisted",
        Private => "private",
    }
);

string_enum!(
    /// The type of an edge between two entries.
    RelationKind, "relation" {
        Implements => "implements",
        DependsOn => "depends_on",
        MapsTo => "maps_to",
        Composes => "composes",
        Alias => "alias",
    }
);

string_enum!(
    /// Who owns a namespace.
    OwnerKind, "owner_kind" {
        User => "user",
        Organisation => "organisation",
    }
);

/// A namespace: the owner of entries (a user or an organisation; ecosystems such as
/// `pypi` and `npm` are organisations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Namespace {
    pub name: String,
    pub owner_kind: OwnerKind,
    pub display_name: Option<String>,
    pub created_at: Timestamp,
}

/// Popularity counters and the normalized score (0..1) that search blends into relevance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Popularity {
    /// Normalized across ecosystems, 0 (unknown) to 1 (most used); see docs/popularity.md.
    pub score: f64,
    /// Downloads in the last month, where the source reports them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly_downloads: Option<u64>,
    /// Download rank in its ecosystem (1 = most downloaded), where the source reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rank: Option<u32>,
}

/// Why an entry is deprecated, and what to use instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Deprecation {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

/// Why an entry is disabled: it stays readable by name and keeps its history, but is
/// never selected, suggested or resolved by a range, and search leaves it out unless
/// asked for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Disabled {
    pub reason: String,
    /// When it was disabled.
    pub since: Timestamp,
}

/// An entry: one named thing in the registry, with immutable versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Entry {
    pub id: i64,
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    pub display_name: Option<String>,
    pub description: String,
    pub category: Option<String>,
    pub tags: Vec<String>,
    pub keywords: Vec<String>,
    pub status: Status,
    pub visibility: Visibility,
    pub deprecation: Option<Deprecation>,
    pub popularity: Popularity,
    /// The highest published, unyanked version (semver order).
    pub latest_version: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set while a maintainer has disabled the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
}

impl Entry {
    pub fn key(&self) -> EntryKey {
        EntryKey {
            kind: self.kind,
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }
}

/// The address of an entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct EntryKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl EntryKey {
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        EntryKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for EntryKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Input to create an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Defaults to `draft`; publishing the first version makes a draft `published`.
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    #[serde(default)]
    pub popularity: Option<Popularity>,
}

/// Changes to an entry; absent fields are left as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPatch {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub keywords: Option<Vec<String>>,
    #[serde(default)]
    pub status: Option<Status>,
    #[serde(default)]
    pub visibility: Option<Visibility>,
    #[serde(default)]
    pub popularity: Option<Popularity>,
    #[serde(default)]
    pub deprecation: Option<Deprecation>,
    /// Disable (`Some(Some(..))`) or enable (`Some(None)`); only through the engine's
    /// disable and enable, never from a client's patch.
    #[serde(skip)]
    #[schemars(skip)]
    pub disabled: Option<Option<Disabled>>,
}

impl EntryPatch {
    pub fn is_empty(&self) -> bool {
        *self == EntryPatch::default()
    }

    /// Apply the patch to `e` as every store does: an empty display name or category
    /// clears it, and a deprecation is kept only while the entry is deprecated. Returns
    /// whether the tags changed (stores keep a tag index).
    pub fn apply_to(self, e: &mut Entry) -> bool {
        let none_if_empty = |s: String| if s.is_empty() { None } else { Some(s) };
        if let Some(d) = self.display_name {
            e.display_name = none_if_empty(d);
        }
        if let Some(d) = self.description {
            e.description = d;
        }
        if let Some(c) = self.category {
            e.category = none_if_empty(c);
        }
        let tags_changed = self.tags.is_some();
        if let Some(t) = self.tags {
            e.tags = t;
        }
        if let Some(k) = self.keywords {
            e.keywords = k;
        }
        if let Some(s) = self.status {
            e.status = s;
        }
        if let Some(v) = self.visibility {
            e.visibility = v;
        }
        if let Some(p) = self.popularity {
            e.popularity = p;
        }
        if let Some(d) = self.deprecation {
            e.deprecation = Some(d);
        }
        if e.status != Status::Deprecated {
            e.deprecation = None;
        }
        if let Some(d) = self.disabled {
            e.disabled = d;
        }
        tags_changed
    }
}

/// An immutable published version of an entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Version {
    pub version: String,
    pub manifest: serde_json::Value,
    /// sha256 (hex) of the canonical JSON of the manifest.
    pub sha256: String,
    pub changelog: Option<String>,
    pub breaking: bool,
    pub yanked: bool,
    pub yank_reason: Option<String>,
    pub published_at: Timestamp,
    /// The result of the validation job, once it has run (absent while pending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// Set while a maintainer has disabled this version: it stays readable by exact
    /// version, but no range, dist-tag or `latest` resolves to it and it is never
    /// selected (an exact pin still resolves, with a warning).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<Disabled>,
}

/// What is left of a deleted entry or version: who deleted it, when and why. An entry's
/// tombstone (`version` absent) made by a site admin keeps the name reserved: nobody but
/// an admin may register it again. A version's tombstone keeps its number from ever being
/// published again. The public change feed names deleted entries and versions from their
/// tombstones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Tombstone {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// The deleted version; absent when the whole entry was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The deleted entry's id (feed events name it).
    #[serde(skip)]
    pub entry_id: i64,
    /// The deleted version's id, for a version's tombstone.
    #[serde(skip)]
    pub version_id: Option<i64>,
    /// The visibility the entry had when it was deleted (who may see the deletion).
    pub visibility: Visibility,
    pub reason: String,
    /// Who deleted it (an account name, `admin` or `operator`).
    pub actor: String,
    /// Deleted by a site admin (legal or security reasons): the name stays reserved.
    pub by_admin: bool,
    pub deleted_at: Timestamp,
}

impl Tombstone {
    pub fn key(&self) -> EntryKey {
        EntryKey::new(self.kind, &self.namespace, &self.name)
    }
}

/// What the validation job found for a version's manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Validation {
    pub passed: bool,
    /// Each failed check, as `field: reason`.
    pub errors: Vec<String>,
    /// The manifest hash this result is for (a result is never recomputed for it).
    pub sha256: String,
    pub checked_at: Timestamp,
    /// Each quality gate's verdict (`gates.rs`); absent in results made before gates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gates: Vec<crate::gates::GateResult>,
    /// Failed advisory gates, as `gate: finding` (they do not fail the version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// The gate set that made this result (0: before gates).
    #[serde(default)]
    pub gates_version: u32,
}

/// Input to publish a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    pub version: String,
    #[serde(default = "empty_object")]
    pub manifest: serde_json::Value,
    #[serde(default)]
    pub changelog: Option<String>,
    #[serde(default)]
    pub breaking: bool,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A typed edge between two entries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Relation {
    pub kind: RelationKind,
    pub from: EntryKey,
    pub to: EntryKey,
    /// For `maps_to`: how sure the mapping is, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
    /// For `maps_to`: where the mapping came from (curated, scraped, inferred...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// For `composes`: the step's position in the composition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_order: Option<i32>,
}

/// What a change-feed row is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedEntity {
    Namespace,
    Entry,
    Version,
    Relation,
    Document,
}

impl FeedEntity {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedEntity::Namespace => "namespace",
            FeedEntity::Entry => "entry",
            FeedEntity::Version => "version",
            FeedEntity::Relation => "relation",
            FeedEntity::Document => "document",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "namespace" => FeedEntity::Namespace,
            "entry" => FeedEntity::Entry,
            "version" => FeedEntity::Version,
            "relation" => FeedEntity::Relation,
            "document" => FeedEntity::Document,
            _ => return None,
        })
    }
}

/// What happened to the entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FeedOp {
    Create,
    Update,
    Delete,
}

impl FeedOp {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedOp::Create => "create",
            FeedOp::Update => "update",
            FeedOp::Delete => "delete",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "create" => FeedOp::Create,
            "update" => FeedOp::Update,
            "delete" => FeedOp::Delete,
            _ => return None,
        })
    }
}

/// One row of the change feed, written in the same transaction as the change itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FeedEvent {
    /// Monotonic, gap-free position in the feed.
    pub seq: i64,
    pub entity: FeedEntity,
    /// The id of the changed row (entry id, version id, relation id, namespace id).
    pub entity_id: i64,
    /// The entry the change touches, when it touches one (derived views re-read it).
    pub entry_id: Option<i64>,
    pub op: FeedOp,
    pub at: Timestamp,
}

/// A document: data that a source system keeps beside its entries and that has no entry
/// of its own (a work queue, failure records, a philosophy, domain entities, advisories).
/// Documents live in named collections (`tsuku.priority_queue`, `blocks.entities`), are
/// unique by key within one, are written with the same change feed as entries, and are
/// read back by the exporters and, later, by the pipelines that use them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Document {
    pub collection: String,
    pub key: String,
    pub body: serde_json::Value,
    /// sha256 (hex) of the canonical JSON of the body.
    pub sha256: String,
    pub updated_at: Timestamp,
}

/// Input to write a document (an upsert by collection and key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    pub collection: String,
    pub key: String,
    pub body: serde_json::Value,
}

impl NewDocument {
    pub fn new(
        collection: impl Into<String>,
        key: impl Into<String>,
        body: serde_json::Value,
    ) -> Self {
        NewDocument {
            collection: collection.into(),
            key: key.into(),
            body,
        }
    }
}
