//! The one rule of an import: what becomes of a record, given what is stored. Pure: the
//! backends fetch what is stored (SQLite row by row in its transaction, PostgreSQL a
//! round of records at a time), call [`decide`], and execute the decision; a dry run
//! (`quiver import --dry-run`) fetches the same things through the `Store` trait and
//! stops at the decision. So created / updated / unchanged / rejected mean the same on
//! every path.

use std::collections::HashSet;

use quiver_model::{Entry, EntryKey, Error, Result};

use crate::{ImportOutcome, ImportRecord, ImportedFields};

/// A stored version that a record names (matched by version string).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredVersion {
    pub id: i64,
    pub sha256: String,
    pub yanked: bool,
    pub yank_reason: Option<String>,
}

/// What is stored of a record's entry: its imported fields, and for each of the record's
/// versions (same positions) the stored version of that name, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored<'a> {
    pub fields: &'a ImportedFields,
    pub versions: &'a [Option<StoredVersion>],
}

/// What to do with one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A new entry: insert it with every version of the record.
    Create,
    /// Nothing is written (a published version's manifest differs: versions are
    /// immutable).
    Reject(Error),
    /// An existing entry: write what differs (nothing, when the record is unchanged).
    Apply(Changes),
}

/// The writes of a record whose entry exists.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// The entry's imported fields differ: rewrite them (a feed row: entry update).
    pub fields: bool,
    /// Its tags differ too: rewrite its tag rows.
    pub tags: bool,
    /// Positions in the record of the versions to insert.
    pub new_versions: Vec<usize>,
    /// Stored versions whose yank state changes: (position in the record, version id,
    /// yanked, reason); a feed row each (version update).
    pub yanks: Vec<(usize, i64, bool, Option<String>)>,
}

impl Changes {
    /// Whether the entry's latest version must be recomputed.
    pub fn versions_changed(&self) -> bool {
        !self.new_versions.is_empty() || !self.yanks.is_empty()
    }
}

impl Decision {
    /// The outcome the import reports for this decision.
    pub fn outcome(&self) -> ImportOutcome {
        match self {
            Decision::Create => ImportOutcome::Created,
            Decision::Reject(e) => ImportOutcome::Rejected(e.clone()),
            Decision::Apply(c) if c.fields || c.versions_changed() => ImportOutcome::Updated,
            Decision::Apply(_) => ImportOutcome::Unchanged,
        }
    }
}

/// The yank reason a record's version wants stored (none when it is not yanked).
pub fn wanted_reason(v: &crate::ImportVersion) -> Option<String> {
    v.yank_reason.clone().filter(|_| v.yanked)
}

/// Decide what becomes of `rec` given what is stored of it (`None`: no entry of its
/// key). An error (not a rejection) when the record names one version twice: the
/// whole batch fails, as a second insert of a version would.
pub fn decide(rec: &ImportRecord, stored: Option<Stored<'_>>) -> Result<Decision> {
    let mut names = HashSet::with_capacity(rec.versions.len());
    for v in &rec.versions {
        let name = &v.version.version.version;
        if !names.insert(name.as_str()) {
            return Err(Error::conflict(
                "version",
                format!("version {name} is already published; versions are immutable"),
            ));
        }
    }
    let Some(stored) = stored else {
        return Ok(Decision::Create);
    };
    debug_assert_eq!(stored.versions.len(), rec.versions.len());
    // Versions first: an existing version with another manifest rejects the record.
    for (v, s) in rec.versions.iter().zip(stored.versions) {
        if s.as_ref().is_some_and(|s| s.sha256 != v.version.sha256) {
            let e = &rec.entry;
            return Ok(Decision::Reject(Error::conflict(
                "version",
                format!(
                    "version {} of {} is already published with another manifest; \
                     versions are immutable",
                    v.version.version.version,
                    EntryKey::new(e.kind, &e.namespace, &e.name)
                ),
            )));
        }
    }
    let fields = ImportedFields::of(rec);
    let mut changes = Changes {
        fields: *stored.fields != fields,
        tags: stored.fields.tags != fields.tags,
        ..Changes::default()
    };
    for (i, (v, s)) in rec.versions.iter().zip(stored.versions).enumerate() {
        match s {
            None => changes.new_versions.push(i),
            Some(s) => {
                let reason = wanted_reason(v);
                if s.yanked != v.yanked || s.yank_reason != reason {
                    changes.yanks.push((i, s.id, v.yanked, reason));
                }
            }
        }
    }
    Ok(Decision::Apply(changes))
}

impl ImportedFields {
    /// The imported fields of a stored entry, as [`ImportedFields::of`] gives them for a
    /// record (for a dry run, which reads entries through the `Store` trait).
    pub fn of_entry(e: &Entry) -> Self {
        ImportedFields {
            display_name: e.display_name.clone(),
            description: e.description.clone(),
            category: e.category.clone(),
            tags: serde_json::to_string(&e.tags).unwrap_or_default(),
            keywords: serde_json::to_string(&e.keywords).unwrap_or_default(),
            status: e.status.as_str().to_string(),
            visibility: e.visibility.as_str().to_string(),
            deprecation: e
                .deprecation
                .as_ref()
                .map(|d| serde_json::to_string(d).unwrap_or_default()),
            popularity: e.popularity.score,
            monthly_downloads: e.popularity.monthly_downloads.map(|v| v as i64),
            download_rank: e.popularity.rank.map(i64::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_model::{Kind, NewEntry, NewVersion};

    fn record(versions: &[(&str, &str, bool)]) -> ImportRecord {
        let mut entry = NewEntry {
            kind: Kind::Tool,
            namespace: "acme".into(),
            name: "text.csv".into(),
            display_name: None,
            description: "parse csv".into(),
            category: None,
            tags: vec!["csv".into()],
            keywords: vec![],
            status: None,
            visibility: None,
            popularity: None,
        };
        quiver_model::validate::new_entry(&mut entry).unwrap();
        ImportRecord {
            entry,
            deprecation: None,
            versions: versions
                .iter()
                .map(|(v, summary, yanked)| crate::ImportVersion {
                    version: crate::valid_version(
                        Kind::Tool,
                        NewVersion {
                            version: (*v).into(),
                            manifest: serde_json::json!({"summary": summary}),
                            changelog: None,
                            breaking: false,
                        },
                    )
                    .unwrap(),
                    yanked: *yanked,
                    yank_reason: yanked.then(|| "broken".to_string()),
                })
                .collect(),
        }
    }

    fn stored_of(rec: &ImportRecord, i: usize) -> StoredVersion {
        StoredVersion {
            id: 10 + i as i64,
            sha256: rec.versions[i].version.sha256.clone(),
            yanked: rec.versions[i].yanked,
            yank_reason: wanted_reason(&rec.versions[i]),
        }
    }

    #[test]
    fn every_outcome() {
        let rec = record(&[("1.0.0", "a", false), ("1.1.0", "b", false)]);
        assert_eq!(decide(&rec, None).unwrap(), Decision::Create);

        // The same as stored: unchanged.
        let fields = ImportedFields::of(&rec);
        let same = [Some(stored_of(&rec, 0)), Some(stored_of(&rec, 1))];
        let d = decide(
            &rec,
            Some(Stored {
                fields: &fields,
                versions: &same,
            }),
        )
        .unwrap();
        assert_eq!(d.outcome(), ImportOutcome::Unchanged);

        // A new version and a changed description: updated, with both writes.
        let mut old = fields.clone();
        old.description = "old".into();
        let one = [Some(stored_of(&rec, 0)), None];
        let d = decide(
            &rec,
            Some(Stored {
                fields: &old,
                versions: &one,
            }),
        )
        .unwrap();
        assert_eq!(d.outcome(), ImportOutcome::Updated);
        let Decision::Apply(c) = d else { panic!() };
        assert!(c.fields && !c.tags);
        assert_eq!(c.new_versions, vec![1]);

        // A yank to record.
        let yanked = record(&[("1.0.0", "a", true), ("1.1.0", "b", false)]);
        let d = decide(
            &yanked,
            Some(Stored {
                fields: &fields,
                versions: &same,
            }),
        )
        .unwrap();
        let Decision::Apply(c) = d else { panic!() };
        assert_eq!(c.yanks, vec![(0, 10, true, Some("broken".into()))]);

        // Another manifest for a stored version: rejected, nothing written.
        let changed = record(&[("1.0.0", "other", false)]);
        let stored = [Some(stored_of(&rec, 0))];
        let d = decide(
            &changed,
            Some(Stored {
                fields: &fields,
                versions: &stored,
            }),
        )
        .unwrap();
        assert!(matches!(d, Decision::Reject(e) if e.message.contains("immutable")));

        // One version named twice: the batch fails.
        let twice = record(&[("1.0.0", "a", false), ("1.0.0", "a", false)]);
        assert!(decide(&twice, None).is_err());
    }
}
