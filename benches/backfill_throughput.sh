#!/usr/bin/env bash
# Backfill throughput: `ccotel backfill` of a whole corpus into a real collector
# (rotel, blackhole exporter) over OTLP/gRPC, and into the embedded default
# (OTLP-JSON files), timed by compare.py beside ccusage's report and `cat` on the
# same corpus. Each run starts from an empty state directory.
# Usage: benches/backfill_throughput.sh [CORPUS]   (default: target/bench-corpora/c7)
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=${1:-target/bench-corpora/c7}
[ -f "$corpus/truth.json" ] || python3 ../shared/tools/gen_corpus.py --out "$corpus" --files 2500 --target-mb 250 --seed 7
cargo build --release --quiet
bin=$PWD/target/release/ccotel
agent=$(scripts/install-rotel.sh)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
hport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$agent" start --otlp-grpc-endpoint 127.0.0.1:$port --otlp-http-endpoint 127.0.0.1:$hport --exporter blackhole >/dev/null 2>&1 &
rotel=$!
trap 'kill $rotel 2>/dev/null; rm -rf "$work"' EXIT
work=$(mktemp -d)
sleep 1
echo "== backfill into rotel over OTLP/gRPC (gzip), $corpus"
python3 ../shared/tools/compare.py --corpus "$corpus" --runs 5 \
  --ours "sh -c 'rm -rf $work/state && exec $bin backfill'" \
  --env CCOTEL_STATE_DIR=$work/state --env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$port
echo "== backfill into rotel over OTLP/HTTP protobuf (gzip), $corpus"
python3 ../shared/tools/compare.py --corpus "$corpus" --runs 5 \
  --ours "sh -c 'rm -rf $work/state && exec $bin backfill'" \
  --env CCOTEL_STATE_DIR=$work/state --env OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$hport \
  --env OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf
echo "== backfill into the embedded default (OTLP-JSON files), $corpus"
python3 ../shared/tools/compare.py --corpus "$corpus" --runs 5 \
  --ours "sh -c 'rm -rf $work/state $work/data && exec $bin backfill'" \
  --env CCOTEL_STATE_DIR=$work/state --env CCOTEL_DATA_DIR=$work/data
