//! The five systems' readers (YAML, TOML, JSON, JSON lines) on one file each: the first
//! byte picks the file's place (which reader claims it), the rest is its content. As in
//! an import, every reader that claims the file reads it; a reader never panics, and
//! what it cannot read is a rejection.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use quiver_import::formats;

/// Where the five systems keep their files (see `quiver_import::formats`).
pub const PLACES: &[&str] = &[
    // blocks
    "blocks.yml",
    "team/catalog.blocks.yaml",
    "catalog.yml",
    // ops profiles
    "tools/linux/ps.yaml",
    "tools/windows/get-process.yml",
    "tool_optimization_profiles.yaml",
    "shared/schemas/pattern.json",
    // recipes
    "recipes/a/age.toml",
    "internal/recipe/recipes/gh.toml",
    "recipes/discovery/r/ri/ripgrep.json",
    "data/disambiguations/audit/bat.json",
    "data/failures/homebrew-2026.jsonl",
    "data/metrics/runs.jsonl",
    "data/queues/priority-queue.json",
    // skills
    ".upskill/skills-registry.json",
    "package-mappings.json",
    "scraped.json",
    "agents.json",
    "ace.config.json",
    // modules
    "modules.json",
    "registry/advisories.json",
    "registry/legacy/modules.json",
    "registry/modules/alice/util/0.1.0.json",
    "registry/_index/all.json",
];

fn root() -> &'static Path {
    static ROOT: OnceLock<tempfile::TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        // Memory-backed where there is one: a file per run.
        let base = Path::new("/dev/shm");
        let dir = if base.is_dir() {
            tempfile::tempdir_in(base)
        } else {
            tempfile::tempdir()
        };
        dir.expect("a temporary directory")
    })
    .path()
}

fuzz_target!(|data: &[u8]| {
    let Some((&pick, content)) = data.split_first() else {
        return;
    };
    let rel = PathBuf::from(PLACES[pick as usize % PLACES.len()]);
    let path = root().join(&rel);
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("the file's folder");
    std::fs::write(&path, content).expect("the file");
    let head = &content[..content.len().min(8192)];
    for reader in formats::readers() {
        if reader.claims(&rel, head) {
            let _ = reader.read(root(), std::slice::from_ref(&rel));
        }
    }
});
