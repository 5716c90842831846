//! The bulk path of `import_batch`: set-based reads, per-record decisions in Rust, binary
//! `COPY` and `UPDATE … FROM unnest(…)` writes, all in the caller's write transaction.
//!
//! Each record's decision is `quiver_store::import::decide`, the rule SQLite's
//! `import_one` and the dry run use too, so outcomes and feed rows are the same on both
//! backends (a test compares them):
//! - a new key is **created** with its versions (status defaults to `published`); its
//!   latest version is computed from the record;
//! - an existing key whose record names a published version with another manifest is
//!   **rejected** and nothing of the record is written;
//! - otherwise it is **updated** if its imported fields differ (one `entry/update` feed
//!   row; tags rewritten if they changed), if it brings new versions (`version/create`) or
//!   changes a version's yank state (`version/update`), and **unchanged** if nothing
//!   differs (no feed row);
//! - a key that occurs several times in one batch is processed in rounds (first
//!   occurrences, then second ones...), each round reading what the previous wrote.
//!
//! Feed rows are collected with their record's position and appended at the end, in
//! record order, so the feed reads as if the records had been imported one by one.

use std::collections::{HashMap, HashSet};
use std::pin::pin;

use quiver_model::names::name_key;
use quiver_model::{Context, Error, FeedEntity, FeedOp, OwnerKind, Result};
use quiver_store::import::{self, Decision, StoredVersion};
use quiver_store::{ImportOutcome, ImportRecord};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

use crate::store::{latest_of, now_ms, Writer};
use quiver_store::ImportedFields;

/// The fields an import compares, read back from a row starting at column `at`.
fn fields_from_row(
    r: &tokio_postgres::Row,
    at: usize,
) -> std::result::Result<ImportedFields, tokio_postgres::Error> {
    Ok(ImportedFields {
        display_name: r.try_get(at)?,
        description: r.try_get(at + 1)?,
        category: r.try_get(at + 2)?,
        tags: r.try_get(at + 3)?,
        keywords: r.try_get(at + 4)?,
        status: r.try_get(at + 5)?,
        visibility: r.try_get(at + 6)?,
        deprecation: r.try_get(at + 7)?,
        popularity: r.try_get(at + 8)?,
        monthly_downloads: r.try_get(at + 9)?,
        download_rank: r.try_get(at + 10)?,
    })
}

/// A record, prepared once.
struct Prepared {
    kind: &'static str,
    name_key: String,
    fields: ImportedFields,
}

/// A feed row waiting for its seq: ordered by (record, position within the record).
struct Event {
    record: usize,
    sub: usize,
    entity: &'static str,
    entity_id: i64,
    entry_id: Option<i64>,
    op: &'static str,
}

/// What one round writes.
#[derive(Default)]
struct Plan {
    /// Positions (in the round) of records that create an entry.
    created: Vec<usize>,
    /// (entry id, record) whose imported fields change.
    field_updates: Vec<(i64, usize)>,
    /// (entry id, record) whose tags are rewritten.
    tag_rewrites: Vec<(i64, usize)>,
    /// (record, version index, entry): versions to insert; the entry is an existing id or
    /// the index into `created`.
    new_versions: Vec<(usize, usize, EntryRef)>,
    /// version id -> (yanked, reason), last write wins as in a record-by-record loop.
    yank_updates: Vec<(i64, bool, Option<String>)>,
    /// Existing entries whose latest version must be recomputed.
    refresh: Vec<i64>,
}

#[derive(Clone, Copy)]
enum EntryRef {
    Existing(i64),
    Created(usize),
}

pub(crate) async fn import_batch(
    w: &mut Writer<'_>,
    batch: &[ImportRecord],
) -> Result<Vec<ImportOutcome>> {
    let now = now_ms();
    let mut events: Vec<Event> = Vec::new();

    // Namespaces, each created (with its feed row) before the first record that uses it.
    let mut first_use: HashMap<&str, usize> = HashMap::new();
    let mut ns_names: Vec<&str> = Vec::new();
    for (i, rec) in batch.iter().enumerate() {
        if !first_use.contains_key(rec.entry.namespace.as_str()) {
            first_use.insert(&rec.entry.namespace, i);
            ns_names.push(&rec.entry.namespace);
        }
    }
    let stmt =
        w.tx.prepare_cached(
            "INSERT INTO namespaces (name, owner_kind, created_at) \
             SELECT n, $2, $3 FROM unnest($1::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i \
             ON CONFLICT (name) DO NOTHING RETURNING id, name",
        )
        .await
        .context("preparing namespace inserts")?;
    let rows =
        w.tx.query(&stmt, &[&ns_names, &OwnerKind::Organisation.as_str(), &now])
            .await
            .context("creating namespaces")?;
    for r in rows {
        let name: &str = r.get(1);
        events.push(Event {
            record: first_use[name],
            sub: 0,
            entity: FeedEntity::Namespace.as_str(),
            entity_id: r.get(0),
            entry_id: None,
            op: FeedOp::Create.as_str(),
        });
    }

    let prepared: Vec<Prepared> = batch
        .iter()
        .map(|rec| Prepared {
            kind: rec.entry.kind.as_str(),
            name_key: name_key(rec.entry.kind, &rec.entry.namespace, &rec.entry.name),
            fields: ImportedFields::of(rec),
        })
        .collect();

    // Rounds: the n-th occurrence of a key goes to round n.
    let mut seen: HashMap<(&str, &str, &str), usize> = HashMap::new();
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        let n = seen
            .entry((
                p.kind,
                batch[i].entry.namespace.as_str(),
                p.name_key.as_str(),
            ))
            .or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(i);
        *n += 1;
    }

    let mut outcomes: Vec<Option<ImportOutcome>> = vec![None; batch.len()];
    for round in &rounds {
        import_round(w, batch, &prepared, round, now, &mut events, &mut outcomes).await?;
    }

    if !events.is_empty() {
        events.sort_by_key(|e| (e.record, e.sub));
        let first = w.reserve(events.len()).await?;
        let types = [
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::INT8,
        ];
        let rows: Vec<(i64, &Event)> = events
            .iter()
            .enumerate()
            .map(|(k, e)| (first + k as i64, e))
            .collect();
        let copy_rows: Vec<[&(dyn ToSql + Sync); _]> = rows
            .iter()
            .map(|(seq, e)| {
                [
                    seq as &(dyn ToSql + Sync),
                    &e.entity,
                    &e.entity_id,
                    &e.entry_id,
                    &e.op,
                    &now,
                ]
            })
            .collect();
        copy_in(
            w,
            "COPY feed (seq, entity, entity_id, entry_id, op, at) FROM STDIN BINARY",
            &types,
            &copy_rows,
            "appending to the change feed",
        )
        .await?;
    }

    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| Error::internal("importing", "a record got no outcome")))
        .collect()
}

/// Binary COPY of `rows` into the statement's table.
async fn copy_in<const N: usize>(
    w: &Writer<'_>,
    sql: &str,
    types: &[Type; N],
    rows: &[[&(dyn ToSql + Sync); N]],
    what: &str,
) -> Result<u64> {
    let sink = w.tx.copy_in(sql).await.context(what)?;
    let mut writer = pin!(BinaryCopyInWriter::new(sink, types));
    for row in rows {
        writer.as_mut().write(row).await.context(what)?;
    }
    writer.as_mut().finish().await.context(what)
}

/// Draw `n` consecutive ids from a table's id sequence in one round trip. Safe because
/// every writer holds the feed lock: nothing else draws from the sequence meanwhile.
async fn allocate_ids(w: &Writer<'_>, sequence: &str, n: usize) -> Result<Vec<i64>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let last: i64 =
        w.tx.query_one(
            "SELECT setval($1::text::regclass, nextval($1::text::regclass) + $2::int8 - 1)",
            &[&sequence, &(n as i64)],
        )
        .await
        .context("allocating ids")?
        .get(0);
    Ok((last - n as i64 + 1..=last).collect())
}

#[allow(clippy::too_many_arguments)]
async fn import_round(
    w: &mut Writer<'_>,
    batch: &[ImportRecord],
    prepared: &[Prepared],
    round: &[usize],
    now: i64,
    events: &mut Vec<Event>,
    outcomes: &mut [Option<ImportOutcome>],
) -> Result<()> {
    // 1. The existing entries of this round's keys.
    let kinds: Vec<&str> = round.iter().map(|&i| prepared[i].kind).collect();
    let namespaces: Vec<&str> = round
        .iter()
        .map(|&i| batch[i].entry.namespace.as_str())
        .collect();
    let keys: Vec<&str> = round
        .iter()
        .map(|&i| prepared[i].name_key.as_str())
        .collect();
    let stmt = w
        .tx
        .prepare_cached(
            "SELECT k.i, e.id, e.display_name, e.description, e.category, e.tags, e.keywords, \
             e.status, e.visibility, e.deprecation, e.popularity, e.monthly_downloads, \
             e.download_rank \
             FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS k(kind, namespace, name_key, i) \
             JOIN entries e ON e.kind = k.kind AND e.namespace = k.namespace AND e.name_key = k.name_key",
        )
        .await
        .context("preparing the import lookup")?;
    let rows =
        w.tx.query(&stmt, &[&kinds, &namespaces, &keys])
            .await
            .context("looking up imported entries")?;
    // position in round -> (id, stored fields)
    let mut existing: HashMap<usize, (i64, ImportedFields)> = HashMap::with_capacity(rows.len());
    for r in &rows {
        let pos = r.get::<_, i64>(0) as usize - 1;
        let fields = fields_from_row(r, 2).context("decoding an imported entry")?;
        existing.insert(pos, (r.get(1), fields));
    }

    // 2. The stored versions that the existing entries' records name.
    let mut v_entry: Vec<i64> = Vec::new();
    let mut v_version: Vec<&str> = Vec::new();
    let mut v_slot: Vec<(usize, usize)> = Vec::new();
    for (pos, &i) in round.iter().enumerate() {
        if let Some((id, _)) = existing.get(&pos) {
            for (vi, v) in batch[i].versions.iter().enumerate() {
                v_entry.push(*id);
                v_version.push(&v.version.version.version);
                v_slot.push((pos, vi));
            }
        }
    }
    // (position, version index) -> the stored version
    let mut stored: HashMap<(usize, usize), StoredVersion> = HashMap::new();
    if !v_entry.is_empty() {
        let stmt =
            w.tx.prepare_cached(
                "SELECT k.i, v.id, v.sha256, v.yanked, v.yank_reason \
                 FROM unnest($1::int8[], $2::text[]) WITH ORDINALITY AS k(entry_id, version, i) \
                 JOIN versions v ON v.entry_id = k.entry_id AND v.version = k.version",
            )
            .await
            .context("preparing the imported versions lookup")?;
        let rows =
            w.tx.query(&stmt, &[&v_entry, &v_version])
                .await
                .context("checking imported versions")?;
        for r in &rows {
            let k = r.get::<_, i64>(0) as usize - 1;
            stored.insert(
                v_slot[k],
                StoredVersion {
                    id: r.get(1),
                    sha256: r.get(2),
                    yanked: r.get(3),
                    yank_reason: r.get(4),
                },
            );
        }
    }

    // 3. Decide, record by record, with the one import rule (`quiver_store::import`).
    let mut plan = Plan::default();
    for (pos, &i) in round.iter().enumerate() {
        let rec = &batch[i];
        let versions: Vec<Option<StoredVersion>> = (0..rec.versions.len())
            .map(|vi| stored.get(&(pos, vi)).cloned())
            .collect();
        let found = existing.get(&pos);
        let decision = import::decide(
            rec,
            found.map(|(_, old)| import::Stored {
                fields: old,
                versions: &versions,
            }),
        )?;
        outcomes[i] = Some(decision.outcome());
        match (decision, found) {
            (Decision::Reject(_), _) => {}
            (Decision::Create, _) => {
                let k = plan.created.len();
                plan.created.push(pos);
                for vi in 0..rec.versions.len() {
                    plan.new_versions.push((i, vi, EntryRef::Created(k)));
                }
            }
            (Decision::Apply(c), Some(&(id, _))) => {
                if c.fields {
                    plan.field_updates.push((id, i));
                    if c.tags {
                        plan.tag_rewrites.push((id, i));
                    }
                    events.push(Event {
                        record: i,
                        sub: 1,
                        entity: FeedEntity::Entry.as_str(),
                        entity_id: id,
                        entry_id: Some(id),
                        op: FeedOp::Update.as_str(),
                    });
                }
                for &vi in &c.new_versions {
                    plan.new_versions.push((i, vi, EntryRef::Existing(id)));
                }
                let versions_changed = c.versions_changed();
                for (vi, vid, yanked, reason) in c.yanks {
                    plan.yank_updates.push((vid, yanked, reason));
                    events.push(Event {
                        record: i,
                        sub: 2 + vi,
                        entity: FeedEntity::Version.as_str(),
                        entity_id: vid,
                        entry_id: Some(id),
                        op: FeedOp::Update.as_str(),
                    });
                }
                if versions_changed {
                    plan.refresh.push(id);
                }
            }
            (Decision::Apply(_), None) => {
                return Err(Error::internal(
                    "importing",
                    "changes to an entry not stored",
                ))
            }
        }
    }

    // 4. Ids for the new rows, then the writes.
    let entry_ids = allocate_ids(w, "entries_id_seq", plan.created.len()).await?;
    let version_ids = allocate_ids(w, "versions_id_seq", plan.new_versions.len()).await?;

    if !plan.created.is_empty() {
        struct Row<'a> {
            id: i64,
            p: &'a Prepared,
            rec: &'a ImportRecord,
            latest: Option<String>,
        }
        let rows: Vec<Row> = plan
            .created
            .iter()
            .zip(&entry_ids)
            .map(|(&pos, &id)| {
                let i = round[pos];
                let rec = &batch[i];
                events.push(Event {
                    record: i,
                    sub: 1,
                    entity: FeedEntity::Entry.as_str(),
                    entity_id: id,
                    entry_id: Some(id),
                    op: FeedOp::Create.as_str(),
                });
                Row {
                    id,
                    p: &prepared[i],
                    rec,
                    latest: latest_of(
                        rec.versions
                            .iter()
                            .filter(|v| !v.yanked)
                            .map(|v| v.version.version.version.as_str()),
                    ),
                }
            })
            .collect();
        let types = [
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::FLOAT8,
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::INT8,
            Type::INT8,
        ];
        let copy_rows: Vec<[&(dyn ToSql + Sync); _]> = rows
            .iter()
            .map(|r| {
                let f = &r.p.fields;
                [
                    &r.id as &(dyn ToSql + Sync),
                    &r.p.kind,
                    &r.rec.entry.namespace,
                    &r.rec.entry.name,
                    &r.p.name_key,
                    &f.display_name,
                    &f.description,
                    &f.category,
                    &f.tags,
                    &f.keywords,
                    &f.status,
                    &f.visibility,
                    &f.deprecation,
                    &f.popularity,
                    &f.monthly_downloads,
                    &f.download_rank,
                    &r.latest,
                    &now,
                    &now,
                ]
            })
            .collect();
        copy_in(
            w,
            "COPY entries (id, kind, namespace, name, name_key, display_name, description, \
             category, tags, keywords, status, visibility, deprecation, popularity, \
             monthly_downloads, download_rank, latest_version, created_at, updated_at) \
             FROM STDIN BINARY",
            &types,
            &copy_rows,
            "creating imported entries",
        )
        .await?;
    }

    if !plan.field_updates.is_empty() {
        let mut ids = Vec::with_capacity(plan.field_updates.len());
        let mut display_name = Vec::new();
        let mut description = Vec::new();
        let mut category = Vec::new();
        let mut tags = Vec::new();
        let mut keywords = Vec::new();
        let mut status = Vec::new();
        let mut visibility = Vec::new();
        let mut deprecation = Vec::new();
        let mut popularity = Vec::new();
        let mut monthly = Vec::new();
        let mut rank = Vec::new();
        for &(id, i) in &plan.field_updates {
            let f = &prepared[i].fields;
            ids.push(id);
            display_name.push(f.display_name.as_deref());
            description.push(f.description.as_str());
            category.push(f.category.as_deref());
            tags.push(f.tags.as_str());
            keywords.push(f.keywords.as_str());
            status.push(f.status.as_str());
            visibility.push(f.visibility.as_str());
            deprecation.push(f.deprecation.as_deref());
            popularity.push(f.popularity);
            monthly.push(f.monthly_downloads);
            rank.push(f.download_rank);
        }
        let stmt = w
            .tx
            .prepare_cached(
                "UPDATE entries e SET display_name = u.display_name, description = u.description, \
                 category = u.category, tags = u.tags, keywords = u.keywords, status = u.status, \
                 visibility = u.visibility, deprecation = u.deprecation, popularity = u.popularity, \
                 monthly_downloads = u.monthly_downloads, download_rank = u.download_rank, \
                 updated_at = $13 \
                 FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                             $7::text[], $8::text[], $9::text[], $10::float8[], $11::int8[], $12::int8[]) \
                   AS u(id, display_name, description, category, tags, keywords, status, visibility, \
                        deprecation, popularity, monthly_downloads, download_rank) \
                 WHERE e.id = u.id",
            )
            .await
            .context("preparing imported entry updates")?;
        w.tx.execute(
            &stmt,
            &[
                &ids,
                &display_name,
                &description,
                &category,
                &tags,
                &keywords,
                &status,
                &visibility,
                &deprecation,
                &popularity,
                &monthly,
                &rank,
                &now,
            ],
        )
        .await
        .context("updating imported entries")?;
    }

    // Tags: rewritten ones are cleared first, then every new (tag, entry) pair is copied.
    if !plan.tag_rewrites.is_empty() {
        let ids: Vec<i64> = plan.tag_rewrites.iter().map(|(id, _)| *id).collect();
        w.tx.execute("DELETE FROM entry_tags WHERE entry_id = ANY($1)", &[&ids])
            .await
            .context("clearing tags")?;
    }
    let mut tag_rows: Vec<(&str, i64)> = Vec::new();
    let created_tags = plan
        .created
        .iter()
        .zip(&entry_ids)
        .map(|(&pos, &id)| (id, round[pos]));
    for (id, i) in created_tags.chain(plan.tag_rewrites.iter().copied()) {
        let mut once: HashSet<&str> = HashSet::new();
        for t in &batch[i].entry.tags {
            if once.insert(t) {
                tag_rows.push((t, id));
            }
        }
    }
    if !tag_rows.is_empty() {
        let copy_rows: Vec<[&(dyn ToSql + Sync); _]> = tag_rows
            .iter()
            .map(|(t, id)| [t as &(dyn ToSql + Sync), id])
            .collect();
        copy_in(
            w,
            "COPY entry_tags (tag, entry_id) FROM STDIN BINARY",
            &[Type::TEXT, Type::INT8],
            &copy_rows,
            "writing tags",
        )
        .await?;
    }

    if !plan.new_versions.is_empty() {
        struct Row<'a> {
            id: i64,
            entry_id: i64,
            v: &'a quiver_store::ImportVersion,
            yank_reason: Option<&'a str>,
        }
        let rows: Vec<Row> = plan
            .new_versions
            .iter()
            .zip(&version_ids)
            .map(|(&(i, vi, entry), &id)| {
                let entry_id = match entry {
                    EntryRef::Existing(id) => id,
                    EntryRef::Created(k) => entry_ids[k],
                };
                let v = &batch[i].versions[vi];
                events.push(Event {
                    record: i,
                    sub: 2 + vi,
                    entity: FeedEntity::Version.as_str(),
                    entity_id: id,
                    entry_id: Some(entry_id),
                    op: FeedOp::Create.as_str(),
                });
                Row {
                    id,
                    entry_id,
                    v,
                    yank_reason: if v.yanked {
                        v.yank_reason.as_deref()
                    } else {
                        None
                    },
                }
            })
            .collect();
        let types = [
            Type::INT8,
            Type::INT8,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::BOOL,
            Type::BOOL,
            Type::TEXT,
            Type::INT8,
        ];
        let copy_rows: Vec<[&(dyn ToSql + Sync); _]> = rows
            .iter()
            .map(|r| {
                let nv = &r.v.version.version;
                [
                    &r.id as &(dyn ToSql + Sync),
                    &r.entry_id,
                    &nv.version,
                    &r.v.version.canonical,
                    &r.v.version.sha256,
                    &nv.changelog,
                    &nv.breaking,
                    &r.v.yanked,
                    &r.yank_reason,
                    &now,
                ]
            })
            .collect();
        copy_in(
            w,
            "COPY versions (id, entry_id, version, manifest, sha256, changelog, breaking, \
             yanked, yank_reason, published_at) FROM STDIN BINARY",
            &types,
            &copy_rows,
            "publishing imported versions",
        )
        .await?;
    }

    if !plan.yank_updates.is_empty() {
        // The same version named twice in a record: the last state wins, as in SQLite.
        let mut last: HashMap<i64, usize> = HashMap::new();
        for (k, (vid, _, _)) in plan.yank_updates.iter().enumerate() {
            last.insert(*vid, k);
        }
        let mut ids = Vec::new();
        let mut yanked = Vec::new();
        let mut reasons = Vec::new();
        for (k, (vid, y, reason)) in plan.yank_updates.iter().enumerate() {
            if last[vid] == k {
                ids.push(*vid);
                yanked.push(*y);
                reasons.push(reason.as_deref());
            }
        }
        w.tx.execute(
            "UPDATE versions v SET yanked = u.yanked, yank_reason = u.reason \
                 FROM unnest($1::int8[], $2::bool[], $3::text[]) AS u(id, yanked, reason) \
                 WHERE v.id = u.id",
            &[&ids, &yanked, &reasons],
        )
        .await
        .context("yanking imported versions")?;
    }

    if !plan.refresh.is_empty() {
        let rows =
            w.tx.query(
                "SELECT entry_id, version FROM versions WHERE entry_id = ANY($1) AND NOT yanked \
                 AND disabled IS NULL \
                 ORDER BY id",
                &[&plan.refresh],
            )
            .await
            .context("reading versions")?;
        let mut by_entry: HashMap<i64, Vec<&str>> = HashMap::new();
        for r in &rows {
            by_entry.entry(r.get(0)).or_default().push(r.get(1));
        }
        let latest: Vec<Option<String>> = plan
            .refresh
            .iter()
            .map(|id| {
                by_entry
                    .get(id)
                    .and_then(|vs| latest_of(vs.iter().copied()))
            })
            .collect();
        w.tx.execute(
            "UPDATE entries e SET latest_version = u.latest, updated_at = $3 \
                 FROM unnest($1::int8[], $2::text[]) AS u(id, latest) WHERE e.id = u.id",
            &[&plan.refresh, &latest, &now],
        )
        .await
        .context("updating latest versions")?;
    }
    Ok(())
}
