//! One collector does filtering, ranking, counting and faceting in a single pass over the
//! documents a query matches.
//!
//! Filters (visibility, status, kind, namespace, category, tags) are checked on fast
//! fields per matching document instead of being intersected as posting lists: the
//! default filters (`public`, `published|deprecated`) match almost every document, and
//! intersecting with million-document posting lists would cost more than the query.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::{Column, ColumnValues, StrColumn};
use tantivy::{DocAddress, DocId, Score, SegmentReader};

use crate::schema::{self, flags_disabled, flags_kind, flags_private, flags_status};
use crate::Sort;

/// What a document must satisfy to be returned (and counted, and faceted).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Bit i set = status `Status::ALL[i]` allowed.
    pub status_mask: u32,
    /// Bit i set = kind `Kind::ALL[i]` allowed.
    pub kind_mask: u32,
    /// Whether the caller may see every private entry (admins, moderators).
    pub all_private: bool,
    /// Namespaces whose private entries the caller may see (when not `all_private`).
    pub private_namespaces: Vec<String>,
    /// When non-empty, only these namespaces.
    pub namespaces: Vec<String>,
    pub categories: Vec<String>,
    pub tags: Vec<String>,
    /// Whether disabled entries are returned too.
    pub include_disabled: bool,
}

/// Ordinals of `values` in a segment's string column (values absent there are skipped).
fn ords_of(col: &Option<StrColumn>, values: &[String]) -> tantivy::Result<Vec<u64>> {
    let mut out = Vec::new();
    if let Some(col) = col {
        for v in values {
            if let Some(o) = col.dictionary().term_ord(v.as_bytes())? {
                out.push(o);
            }
        }
    }
    Ok(out)
}

/// A candidate in a segment: its sort key (bigger first) and doc.
#[derive(Debug, Clone, Copy)]
struct Cand {
    key: f64,
    tie: f64,
    doc: DocId,
}

impl Cand {
    fn better(&self, o: &Cand) -> Ordering {
        self.key
            .total_cmp(&o.key)
            .then(self.tie.total_cmp(&o.tie))
            .then(o.doc.cmp(&self.doc))
    }
}
impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.better(o) == Ordering::Equal
    }
}
impl Eq for Cand {}
impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Cand {
    // Reversed so that the BinaryHeap's top is the worst kept candidate.
    fn cmp(&self, o: &Self) -> Ordering {
        o.better(self)
    }
}

/// A ranked document of the merged result.
#[derive(Debug, Clone)]
pub struct Ranked {
    pub addr: DocAddress,
    pub score: f32,
    pub key: f64,
    pub tie: f64,
    /// For name sort: the lowercased name.
    pub name: Option<String>,
}

#[derive(Debug, Default)]
pub struct FacetCounts {
    pub kind: [u64; 8],
    pub status: [u64; 8],
    pub namespace: HashMap<String, u64>,
    pub category: HashMap<String, u64>,
    pub tags: HashMap<String, u64>,
    pub platform: HashMap<String, u64>,
}

#[derive(Debug, Default)]
pub struct Fruit {
    pub top: Vec<Ranked>,
    pub total: u64,
    pub facets: Option<FacetCounts>,
}

pub struct HitCollector {
    pub filter: Arc<Filter>,
    pub sort: Sort,
    /// How many top documents to keep (offset + limit).
    pub window: usize,
    pub facets: bool,
    /// Weight of popularity (0..1) added to the relevance score.
    pub pop_weight: f32,
    /// The query score is multiplied by popularity to this power.
    pub pop_exponent: f32,
    pub scoring: bool,
    /// `name_sort` values that are an exact match of the query, and the score they add.
    pub exact_names: Arc<Vec<String>>,
    pub exact_bonus: f32,
    /// How the curated kinds and the query's ecosystem words weigh in.
    pub prior: Prior,
}

/// What the relevance key adds to the text score beyond popularity: a popularity floor
/// and an exact-name bonus for the curated kinds, and a preference for the namespaces a
/// query's ecosystem words name.
#[derive(Debug, Clone, Default)]
pub struct Prior {
    /// Curated kinds' popularity is lifted to start at this (keeping their order).
    pub curated_popularity: f64,
    /// Added to a curated kind's exact name match after popularity.
    pub curated_exact: f32,
    /// Preferred namespaces (empty: no preference).
    pub prefer: Arc<Vec<String>>,
    /// Multiplies the key of an entry outside `prefer`.
    pub other_ecosystem: f64,
}

/// popularity^exponent for popularity 0, 1/1024, .. 1 (floored at 0.01).
fn pop_table(exponent: f32) -> Vec<f64> {
    (0..=1024)
        .map(|i| (f64::from(i) / 1024.0).max(0.01).powf(f64::from(exponent)))
        .collect()
}

pub struct HitSegmentCollector {
    segment: u32,
    filter: Arc<Filter>,
    sort: Sort,
    window: usize,
    pop_weight: f32,
    /// popularity^exponent, tabulated per 1/1024.
    pop_pow: Arc<Vec<f64>>,
    flags: Arc<dyn ColumnValues<u64>>,
    pop: Arc<dyn ColumnValues<f64>>,
    updated: Option<Arc<dyn ColumnValues<i64>>>,
    name_col: Option<StrColumn>,
    name_ords: Option<Arc<dyn ColumnValues<u64>>>,
    exact_ords: Vec<u64>,
    exact_bonus: f32,
    prior: Prior,
    prefer_ords: Option<Vec<u64>>,
    /// `flags_kind` of a package.
    package_kind: u64,
    ns_col: Option<StrColumn>,
    ns_ords: Column<u64>,
    private_ords: Vec<u64>,
    ns_filter: Option<Vec<u64>>,
    cat_col: Option<StrColumn>,
    cat_filter: Option<Vec<u64>>,
    tag_col: Option<StrColumn>,
    tag_filter: Option<Vec<u64>>,
    /// The platforms column, read for its facet (the filter is a query clause).
    platform_col: Option<StrColumn>,
    heap: BinaryHeap<Cand>,
    total: u64,
    facets: Option<SegFacets>,
}

struct SegFacets {
    kind: [u64; 8],
    status: [u64; 8],
    ns: HashMap<u64, u64>,
    cat: HashMap<u64, u64>,
    tags: HashMap<u64, u64>,
    platform: HashMap<u64, u64>,
}

impl Collector for HitCollector {
    type Fruit = Fruit;
    type Child = HitSegmentCollector;

    fn for_segment(&self, segment: u32, reader: &SegmentReader) -> tantivy::Result<Self::Child> {
        let pop_pow = Arc::new(match self.sort {
            Sort::Relevance => pop_table(self.pop_exponent),
            _ => vec![],
        });
        let ff = reader.fast_fields();
        let flags = ff.u64(schema::F_FLAGS)?.first_or_default_col(0);
        let pop = ff.f64(schema::F_POPULARITY)?.first_or_default_col(0.0);
        let updated = match self.sort {
            Sort::Recent => Some(ff.i64(schema::F_UPDATED)?.first_or_default_col(0)),
            _ => None,
        };
        let exact = self.sort == Sort::Relevance && !self.exact_names.is_empty();
        let (name_col, name_ords) = if self.sort == Sort::Name || exact {
            let c = ff.str(schema::F_NAME_SORT)?;
            let o = c
                .as_ref()
                .map(|c| c.ords().clone().first_or_default_col(u64::MAX));
            (c, o)
        } else {
            (None, None)
        };
        let exact_ords = if exact {
            ords_of(&name_col, &self.exact_names)?
        } else {
            vec![]
        };
        let ns_col = ff.str(schema::F_NAMESPACE)?;
        let ns_ords = match &ns_col {
            Some(c) => c.ords().clone(),
            None => Column::build_empty_column(reader.max_doc()),
        };
        let private_ords = ords_of(&ns_col, &self.filter.private_namespaces)?;
        let prefer_ords = if self.prior.prefer.is_empty() {
            None
        } else {
            Some(ords_of(&ns_col, &self.prior.prefer)?)
        };
        let f = &self.filter;
        let ns_filter = if f.namespaces.is_empty() {
            None
        } else {
            Some(ords_of(&ns_col, &f.namespaces)?)
        };
        let need_cat = !f.categories.is_empty() || self.facets;
        let cat_col = if need_cat {
            ff.str(schema::F_CATEGORY)?
        } else {
            None
        };
        let cat_filter = if f.categories.is_empty() {
            None
        } else {
            Some(ords_of(&cat_col, &f.categories)?)
        };
        let need_tags = !f.tags.is_empty() || self.facets;
        let tag_col = if need_tags {
            ff.str(schema::F_TAGS)?
        } else {
            None
        };
        let tag_filter = if f.tags.is_empty() {
            None
        } else {
            Some(ords_of(&tag_col, &f.tags)?)
        };
        let platform_col = if self.facets {
            ff.str(schema::F_PLATFORM)?
        } else {
            None
        };
        Ok(HitSegmentCollector {
            segment,
            filter: self.filter.clone(),
            sort: self.sort,
            window: self.window,
            pop_weight: self.pop_weight,
            pop_pow,
            flags,
            pop,
            updated,
            name_col,
            name_ords,
            exact_ords,
            exact_bonus: self.exact_bonus,
            prior: self.prior.clone(),
            prefer_ords,
            package_kind: quiver_model::Kind::ALL
                .iter()
                .position(|k| *k == quiver_model::Kind::Package)
                .unwrap_or(0) as u64,
            ns_col,
            ns_ords,
            private_ords,
            ns_filter,
            cat_col,
            cat_filter,
            tag_col,
            tag_filter,
            platform_col,
            heap: BinaryHeap::with_capacity(self.window + 1),
            total: 0,
            facets: self.facets.then(|| SegFacets {
                kind: [0; 8],
                status: [0; 8],
                ns: HashMap::new(),
                cat: HashMap::new(),
                tags: HashMap::new(),
                platform: HashMap::new(),
            }),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.scoring
    }

    fn merge_fruits(&self, fruits: Vec<Fruit>) -> tantivy::Result<Fruit> {
        let mut out = Fruit::default();
        let mut facets: Option<FacetCounts> = None;
        for f in fruits {
            out.total += f.total;
            out.top.extend(f.top);
            if let Some(sf) = f.facets {
                let acc = facets.get_or_insert_with(FacetCounts::default);
                for i in 0..8 {
                    acc.kind[i] += sf.kind[i];
                    acc.status[i] += sf.status[i];
                }
                for (k, v) in sf.namespace {
                    *acc.namespace.entry(k).or_default() += v;
                }
                for (k, v) in sf.category {
                    *acc.category.entry(k).or_default() += v;
                }
                for (k, v) in sf.tags {
                    *acc.tags.entry(k).or_default() += v;
                }
                for (k, v) in sf.platform {
                    *acc.platform.entry(k).or_default() += v;
                }
            }
        }
        match self.sort {
            Sort::Name => out.top.sort_by(|a, b| {
                a.name
                    .cmp(&b.name)
                    .then(b.tie.total_cmp(&a.tie))
                    .then(a.addr.cmp(&b.addr))
            }),
            _ => out.top.sort_by(|a, b| {
                b.key
                    .total_cmp(&a.key)
                    .then(b.tie.total_cmp(&a.tie))
                    .then(a.addr.cmp(&b.addr))
            }),
        }
        out.top.truncate(self.window);
        out.facets = facets;
        Ok(out)
    }
}

impl HitSegmentCollector {
    /// Text score and exact-name bonus, times popularity^exponent, plus popularity
    /// weighted; with the curated kinds' floor and bonus and the ecosystem preference.
    #[inline]
    fn relevance_key(&self, doc: DocId, flags: u64, score: f32, pop: f64) -> f64 {
        let curated = flags_kind(flags) != self.package_kind;
        let pop = if curated {
            let floor = self.prior.curated_popularity;
            floor + (1.0 - floor) * pop.clamp(0.0, 1.0)
        } else {
            pop
        };
        let exact = self.exact_bonus_of(doc);
        let mut key = f64::from(score + exact)
            * self.pop_pow[(pop.clamp(0.0, 1.0) * 1024.0) as usize]
            + f64::from(self.pop_weight) * pop;
        if curated && exact > 0.0 {
            key += f64::from(self.prior.curated_exact);
        }
        if let Some(prefer) = &self.prefer_ords {
            if !self.ns_ords.first(doc).is_some_and(|o| prefer.contains(&o)) {
                key *= self.prior.other_ecosystem;
            }
        }
        key
    }

    #[inline]
    fn exact_bonus_of(&self, doc: DocId) -> f32 {
        match &self.name_ords {
            Some(c) if !self.exact_ords.is_empty() && self.exact_ords.contains(&c.get_val(doc)) => {
                self.exact_bonus
            }
            _ => 0.0,
        }
    }

    #[inline]
    fn allowed(&self, doc: DocId, flags: u64) -> bool {
        let f = &self.filter;
        if f.status_mask & (1 << flags_status(flags)) == 0 {
            return false;
        }
        if f.kind_mask & (1 << flags_kind(flags)) == 0 {
            return false;
        }
        if !f.include_disabled && flags_disabled(flags) {
            return false;
        }
        let private_check = flags_private(flags) && !f.all_private;
        if private_check || self.ns_filter.is_some() {
            let ns = self.ns_ords.first(doc);
            if private_check {
                match ns {
                    Some(o) if self.private_ords.contains(&o) => {}
                    _ => return false,
                }
            }
            if let Some(allowed) = &self.ns_filter {
                match ns {
                    Some(o) if allowed.contains(&o) => {}
                    _ => return false,
                }
            }
        }
        if let Some(allowed) = &self.cat_filter {
            let ok = self
                .cat_col
                .as_ref()
                .is_some_and(|c| c.term_ords(doc).any(|o| allowed.contains(&o)));
            if !ok {
                return false;
            }
        }
        if let Some(allowed) = &self.tag_filter {
            let ok = self
                .tag_col
                .as_ref()
                .is_some_and(|c| c.term_ords(doc).any(|o| allowed.contains(&o)));
            if !ok {
                return false;
            }
        }
        true
    }
}

impl SegmentCollector for HitSegmentCollector {
    type Fruit = Fruit;

    fn collect(&mut self, doc: DocId, score: Score) {
        let flags = self.flags.get_val(doc);
        if !self.allowed(doc, flags) {
            return;
        }
        self.total += 1;
        if let Some(fc) = &mut self.facets {
            fc.kind[flags_kind(flags) as usize] += 1;
            fc.status[flags_status(flags) as usize] += 1;
            if let Some(o) = self.ns_ords.first(doc) {
                *fc.ns.entry(o).or_default() += 1;
            }
            if let Some(c) = &self.cat_col {
                for o in c.term_ords(doc) {
                    *fc.cat.entry(o).or_default() += 1;
                }
            }
            if let Some(c) = &self.tag_col {
                for o in c.term_ords(doc) {
                    *fc.tags.entry(o).or_default() += 1;
                }
            }
            if let Some(c) = &self.platform_col {
                for o in c.term_ords(doc) {
                    *fc.platform.entry(o).or_default() += 1;
                }
            }
        }
        let pop = self.pop.get_val(doc);
        let (key, tie) = match self.sort {
            Sort::Relevance => (self.relevance_key(doc, flags, score, pop), pop),
            Sort::Popularity => (pop, f64::from(score)),
            Sort::Recent => (
                self.updated.as_ref().map_or(0, |c| c.get_val(doc)) as f64,
                pop,
            ),
            Sort::Name => (
                -(self.name_ords.as_ref().map_or(u64::MAX, |c| c.get_val(doc)) as f64),
                pop,
            ),
        };
        let cand = Cand { key, tie, doc };
        if self.heap.len() < self.window {
            self.heap.push(cand);
        } else if let Some(worst) = self.heap.peek() {
            if cand.better(worst) == Ordering::Greater {
                self.heap.pop();
                self.heap.push(cand);
            }
        }
    }

    fn harvest(self) -> Fruit {
        let mut buf = String::new();
        let mut name_of = |col: &Option<StrColumn>, ord: u64| -> Option<String> {
            let c = col.as_ref()?;
            match c.ord_to_str(ord, &mut buf) {
                Ok(true) => Some(buf.clone()),
                _ => None,
            }
        };
        let top = self
            .heap
            .into_iter()
            .map(|c| {
                let name = match self.sort {
                    Sort::Name => name_of(&self.name_col, (-c.key) as u64),
                    _ => None,
                };
                let score = match self.sort {
                    Sort::Relevance => c.key as f32,
                    Sort::Popularity => c.tie as f32,
                    _ => 0.0,
                };
                Ranked {
                    addr: DocAddress::new(self.segment, c.doc),
                    score,
                    key: c.key,
                    tie: c.tie,
                    name,
                }
            })
            .collect();
        let facets = self.facets.map(|fc| {
            let mut conv = |col: &Option<StrColumn>, m: HashMap<u64, u64>| {
                let mut out = HashMap::new();
                for (o, n) in m {
                    if let Some(s) = name_of(col, o) {
                        *out.entry(s).or_default() += n;
                    }
                }
                out
            };
            FacetCounts {
                kind: fc.kind,
                status: fc.status,
                namespace: conv(&self.ns_col, fc.ns),
                category: conv(&self.cat_col, fc.cat),
                tags: conv(&self.tag_col, fc.tags),
                platform: conv(&self.platform_col, fc.platform),
            }
        });
        Fruit {
            top,
            total: self.total,
            facets,
        }
    }
}
