//! The "blocked by" analysis: which missing dependencies hold back the most, weighted by
//! the popularity of what they block, directly and through the items they block in turn
//! (`libpng` blocks `imagemagick`, which blocks what needs `imagemagick`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use quiver_store::pipeline::Block;
use serde::Serialize;

/// One item a dependency blocks.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BlockedItem {
    pub id: String,
    pub popularity: f64,
    /// The environments where the dependency blocks it (empty when blocked only through
    /// another item).
    pub environments: Vec<String>,
    /// Blocked through another blocked item, not by the dependency itself.
    pub transitive: bool,
}

/// A missing dependency and what it holds back.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Blocker {
    /// The dependency as the failures name it.
    pub dependency: String,
    /// The recipe it resolves to through the dependency mapping, when the mapping names
    /// one (otherwise the dependency's own name is the recipe to write).
    pub recipe: Option<String>,
    /// Items it blocks directly and in all.
    pub direct: u64,
    pub total: u64,
    /// The summed popularity of every item it blocks, directly and transitively (an item
    /// of unknown popularity counts 0.01, so that a queue without popularity figures
    /// still ranks by how much is blocked).
    pub impact: f64,
    /// The items, most popular first (at most the number asked for).
    pub items: Vec<BlockedItem>,
}

/// What an item of unknown (zero) popularity weighs in a blocker's impact.
pub const UNKNOWN_POPULARITY: f64 = 0.01;

/// Rank the dependencies of `blocks` by impact. `recipe_of(dependency)` is the recipe a
/// dependency resolves to (the mapping), `None` when unmapped; items are found as
/// dependencies by their own names.
pub fn rank(
    blocks: &[Block],
    recipe_of: &dyn Fn(&str, &str) -> Option<String>,
    limit: usize,
    items_each: usize,
) -> Vec<Blocker> {
    // item id → (popularity, name); dependency → item → environments.
    let mut items: HashMap<&str, (f64, &str)> = HashMap::new();
    let mut direct: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
    // The key a dependency is known by: the recipe it resolves to, else its own name.
    let mut by_key: HashMap<String, BTreeSet<&str>> = HashMap::new();
    let mut recipes: HashMap<&str, Option<String>> = HashMap::new();
    for b in blocks {
        items.insert(&b.item_id, (b.popularity, &b.name));
        direct
            .entry(&b.dependency)
            .or_default()
            .entry(&b.item_id)
            .or_default()
            .push(&b.environment);
        let r = recipe_of(&b.ecosystem, &b.dependency);
        let key = r.clone().unwrap_or_else(|| b.dependency.clone());
        by_key.entry(key).or_default().insert(&b.dependency);
        recipes.entry(&b.dependency).or_insert(r);
    }
    // Items that are themselves someone's dependency: dependency key → items it blocks
    // through the item of that name.
    let mut out: Vec<Blocker> = direct
        .iter()
        .map(|(dep, blocked)| {
            let mut seen: BTreeMap<&str, BlockedItem> = BTreeMap::new();
            let mut queue: VecDeque<&str> = VecDeque::new();
            for (id, envs) in blocked {
                let (popularity, _) = items[id];
                seen.insert(
                    id,
                    BlockedItem {
                        id: id.to_string(),
                        popularity,
                        environments: envs.iter().map(|e| e.to_string()).collect(),
                        transitive: false,
                    },
                );
                queue.push_back(id);
            }
            while let Some(id) = queue.pop_front() {
                let (_, name) = items[id];
                // Whatever is blocked by a dependency known by this item's name.
                for d in by_key.get(name).into_iter().flatten() {
                    for next in direct[d].keys() {
                        if !seen.contains_key(next) {
                            seen.insert(
                                next,
                                BlockedItem {
                                    id: next.to_string(),
                                    popularity: items[next].0,
                                    environments: vec![],
                                    transitive: true,
                                },
                            );
                            queue.push_back(next);
                        }
                    }
                }
            }
            let impact: f64 = seen
                .values()
                .map(|i| i.popularity.max(UNKNOWN_POPULARITY))
                .sum();
            let mut list: Vec<BlockedItem> = seen.into_values().collect();
            let total = list.len() as u64;
            list.sort_by(|a, b| {
                a.transitive
                    .cmp(&b.transitive)
                    .then(b.popularity.total_cmp(&a.popularity))
                    .then(a.id.cmp(&b.id))
            });
            list.truncate(items_each);
            Blocker {
                dependency: dep.to_string(),
                recipe: recipes.get(dep).cloned().flatten(),
                direct: blocked.len() as u64,
                total,
                impact,
                items: list,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.impact
            .total_cmp(&a.impact)
            .then(b.total.cmp(&a.total))
            .then(a.dependency.cmp(&b.dependency))
    });
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_store::pipeline::ItemStatus;

    fn block(id: &str, pop: f64, env: &str, dep: &str) -> Block {
        let (eco, name) = id.split_once(':').unwrap();
        Block {
            item_id: id.into(),
            ecosystem: eco.into(),
            name: name.into(),
            popularity: pop,
            status: ItemStatus::Blocked,
            environment: env.into(),
            dependency: dep.into(),
        }
    }

    #[test]
    fn direct_and_transitive_impact() {
        let blocks = vec![
            block("homebrew:imagemagick", 0.5, "linux", "libpng"),
            block("homebrew:imagemagick", 0.5, "darwin", "libpng"),
            block("homebrew:gimp", 0.3, "linux", "imagemagick"),
            block("homebrew:ffmpeg", 0.9, "linux", "x264"),
            block("homebrew:tool", 0.2, "linux", "png-alias"),
        ];
        let mapping = |_: &str, d: &str| (d == "png-alias").then(|| "libpng".to_string());
        let r = rank(&blocks, &mapping, 10, 10);
        let top = &r[0];
        assert_eq!(top.dependency, "x264");
        assert!((top.impact - 0.9).abs() < 1e-9);
        let png = r.iter().find(|b| b.dependency == "libpng").unwrap();
        assert_eq!((png.direct, png.total), (1, 2));
        assert!(
            (png.impact - 0.8).abs() < 1e-9,
            "imagemagick and gimp through it"
        );
        assert_eq!(png.items[0].environments, ["linux", "darwin"]);
        assert!(png.items[1].transitive);
        let alias = r.iter().find(|b| b.dependency == "png-alias").unwrap();
        assert_eq!(alias.recipe.as_deref(), Some("libpng"));
    }

    #[test]
    fn without_popularity_impact_counts_items() {
        let blocks = vec![
            block("homebrew:a", 0.0, "linux", "zlib"),
            block("homebrew:b", 0.0, "linux", "zlib"),
            block("homebrew:c", 0.0, "linux", "xz"),
        ];
        let r = rank(&blocks, &|_, _| None, 10, 10);
        assert_eq!(r[0].dependency, "zlib");
        assert!((r[0].impact - 2.0 * UNKNOWN_POPULARITY).abs() < 1e-12);
        assert!((r[1].impact - UNKNOWN_POPULARITY).abs() < 1e-12);
    }

    #[test]
    fn cycles_end() {
        let blocks = vec![
            block("homebrew:a", 0.1, "linux", "b"),
            block("homebrew:b", 0.2, "linux", "a"),
        ];
        let r = rank(&blocks, &|_, _| None, 10, 10);
        assert!(r.iter().all(|b| b.total == 2));
    }
}
