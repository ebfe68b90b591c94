#!/usr/bin/env bash
# Every whole-process figure in BENCHMARKS.md, in one go.
# Usage: benches/whole_process.sh [CORPORA_DIR]   (default: target/bench-corpora)
# Generates the corpora on first use (2,500 files / 250 MB seed 7; 10,000 files /
# 1 GB seed 11), then runs compare.py (ours vs ccusage 20.0.24 vs cat),
# append_cost.py and big_inputs.py.
set -euo pipefail
cd "$(dirname "$0")/.."
corpora=${1:-target/bench-corpora}
shared=../shared/tools
cargo build --release --quiet
bin=$PWD/target/release/ccotel
gen() { # name files mb seed
  [ -f "$corpora/$1/truth.json" ] || python3 $shared/gen_corpus.py --out "$corpora/$1" --files "$2" --target-mb "$3" --seed "$4"
}
gen c7 2500 250 7
gen c11 10000 1000 11
for c in c7 c11; do
  echo "== full scan, $c"
  python3 $shared/compare.py --corpus "$corpora/$c" --truth "$corpora/$c/truth.json" --ours "$bin report daily --json --full" --runs 5
  echo "== rerun over the unchanged corpus (the warm-up run fills the manifest), $c"
  state=$(mktemp -d)
  python3 $shared/compare.py --corpus "$corpora/$c" --truth "$corpora/$c/truth.json" --ours "$bin report daily --json" --env CCOTEL_STATE_DIR="$state" --runs 5
  rm -rf "$state"
done
echo "== incremental cost, c7"
python3 benches/append_cost.py --corpus "$corpora/c7" --bin "$bin"
echo "== bounded memory"
python3 benches/big_inputs.py --corpus "$corpora/c11" --bin "$bin"
