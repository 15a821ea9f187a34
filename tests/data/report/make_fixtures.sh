#!/usr/bin/env bash
# Regenerates the report fixtures made from real runs (see README.md): fixture_workload.py, copied to a long path
# (so that graph-break locations are long), run through `torch-otel run` with the embedded default file export.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${TORCH_OTEL_BIN:-$here/../../../.venv/bin}"
dir=/tmp/torch-otel-fixtures/workspace/project_with_a_long_name/src/model_package/serving/handlers
mkdir -p "$dir"
cp "$here/fixture_workload.py" "$dir/model_step.py"
run() {  # FILE, then environment
  local file="$1"; shift
  rm -f "$here/$file"
  env -u RANK -u WORLD_SIZE -u LOCAL_RANK "$@" TORCH_OTEL_FILE="$here/$file" \
    "$bin/torch-otel" run -- "$bin/python" "$dir/model_step.py"
}
run serve.jsonl                 # one serving process
run serve_second.jsonl          # another, with no rank: two processes told apart by service name and instance
# A two-rank run as torchrun starts it: both ranks at once, each writing its own file, sharing a fresh inductor
# cache. Rank 1 sees a longer sequence at step 2: it alone recompiles.
cache="$(mktemp -d)"
run rank0.jsonl RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 TORCHINDUCTOR_CACHE_DIR="$cache" &
run rank1.jsonl RANK=1 WORLD_SIZE=2 LOCAL_RANK=1 TORCHINDUCTOR_CACHE_DIR="$cache" &
wait
rm -rf "$cache"
# A two-rank run whose rank 1 is stuck in its backend compile, both ranks killed (SIGTERM) after 12 s: rank 1's
# compile never ends; rank 0's is slow (pytorch.compile.slow at 0.5 s and 1 s) but ends.
for rank in 0 1; do
  rm -f "$here/stuck$rank.jsonl"
  env RANK=$rank WORLD_SIZE=2 LOCAL_RANK=$rank TORCH_OTEL_SLOW_COMPILE=0.5 TORCH_OTEL_FILE="$here/stuck$rank.jsonl" \
    timeout -s TERM 12 "$bin/torch-otel" run -- "$bin/python" "$here/stuck_workload.py" || true &
done
wait
# Two functions past torch's recompile limit: one then runs eagerly, the fullgraph one raises.
rm -f "$here/limit.jsonl"
env -u RANK -u WORLD_SIZE -u LOCAL_RANK TORCH_OTEL_FILE="$here/limit.jsonl" \
  "$bin/torch-otel" run -- "$bin/python" "$here/limit_workload.py"
