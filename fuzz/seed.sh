#!/usr/bin/env bash
# Seed the fuzz corpora from the real files beside the project (../shared): the five
# systems' fixtures for `source_file` (each prefixed with the byte that picks its place),
# the data set's first lines for `dataset_tsv`, names and versions for the small parsers.
# The corpora are not committed (fuzz/.gitignore); inputs that found bugs are kept as
# regression tests in the crates they broke.
set -euo pipefail
cd "$(dirname "$0")"
shared=../../shared
fixtures=$shared/fixtures
[ -d "$fixtures" ] || { echo "no $fixtures: nothing to seed from" >&2; exit 0; }
mkdir -p corpus/{source_file,dataset_tsv,names,versions,cursor,ops_expr,jsonl,search_query}

# The place index of a fixture's path: the position in PLACES (fuzz_targets/source_file.rs)
# of the first place whose shape it has.
place() {
    case "$1" in
        */blocks.yml) echo 0 ;;
        */tools/*.yaml|*/tools/*.yml) echo 3 ;;
        */tool_optimization_profiles.yaml) echo 5 ;;
        */shared/schemas/*.json) echo 6 ;;
        */internal/recipe/recipes/*.toml) echo 8 ;;
        */recipes/discovery/*.json) echo 9 ;;
        */recipes/*.toml) echo 7 ;;
        */disambiguations/audit/*.json) echo 10 ;;
        */data/failures/*) echo 11 ;;
        */data/metrics/*) echo 12 ;;
        */data/queues/*) echo 13 ;;
        */skills-registry.json) echo 14 ;;
        */package-mappings.json) echo 15 ;;
        */scraped.json) echo 16 ;;
        */agents.json) echo 17 ;;
        */ace.config.json) echo 18 ;;
        */legacy/*.json) echo 21 ;;
        */modules.json|*/modules.generated.json) echo 19 ;;
        */advisories.json) echo 20 ;;
        */modules/*.json) echo 22 ;;
        *) echo "" ;;
    esac
}

n=0
while IFS= read -r f; do
    i=$(place "$f")
    [ -n "$i" ] || continue
    # At most 256 KiB per seed: libFuzzer's default -max_len is derived from the corpus.
    [ "$(stat -c %s "$f")" -le 262144 ] || continue
    { printf "\\$(printf '%03o' "$i")"; cat "$f"; } > "corpus/source_file/seed-$n"
    n=$((n + 1))
done < <(find "$fixtures" -type f | sort | awk 'NR % 4 == 1')

for ds in npm pypi; do
    if [ -f "$shared/data/$ds.tsv.gz" ]; then
        pick=$([ "$ds" = pypi ] && printf '\003' || printf '\001')  # 3 % 3 = 0: the PyPI header
        for k in 1 2 3; do
            { printf '%s' "$pick"; zcat "$shared/data/$ds.tsv.gz" | sed -n "$((k * 500 + 2)),$((k * 500 + 40))p"; } \
                > "corpus/dataset_tsv/$ds-$k"
            zcat "$shared/data/$ds.tsv.gz" | sed -n "$((k * 500 + 2)),$((k * 500 + 40))p" | cut -f1 \
                | head -20 | while read -r name; do
                    printf '%s' "$name" > "corpus/names/$ds-$(printf '%s' "$name" | md5sum | cut -c1-12)"
                done
            zcat "$shared/data/$ds.tsv.gz" | sed -n "$((k * 500 + 2)),$((k * 500 + 40))p" | cut -f2 \
                | head -20 | while read -r v; do
                    printf '%s' "$v" > "corpus/versions/$ds-$(printf '%s' "$v" | md5sum | cut -c1-12)"
                done
        done
    fi
done
printf 'terminal string styling' > corpus/search_query/words
printf 'ripgrp kind:tool' > corpus/search_query/typo
printf 'N * pages / 2 + (duration_ms > 100 ? 1 : 0)' > corpus/ops_expr/arith
printf '{"kind":"tool","namespace":"acme","name":"text.csv","description":"Parse CSV files"}' > corpus/jsonl/entry
echo "seeded: $n source files, $(ls corpus/dataset_tsv | wc -l) data set samples, $(ls corpus/names | wc -l) names, $(ls corpus/versions | wc -l) versions"
