#!/usr/bin/env bash
# Full loss benchmark grid (SimCLR and CLIP forms), written to benchmarks/results/.
# Usage: nohup benchmarks/loss.sh [THREADS] > benchmarks/results/loss.log 2>&1 &
# Three stages, run concurrently on a machine where waiting for a quiet spell is not an option:
#   small N: every implementation, 2 warm-ups and >= 3 repeats;
#   N=16384: every implementation, 1 warm-up and 1 timed iteration (peers take 10-40 s per iteration);
#   N=65536: pairlab only (every dense implementation needs >= 16 GiB), no warm-up, 1 iteration.
# The address space of each configuration is capped at 14 GiB (the machine has 24 GiB, shared).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-}
T=()
[ -n "$THREADS" ] && T=(--threads "$THREADS")
R=benchmarks/results
B=".venv/bin/pairlab bench loss --mem-cap-gib 14 --json"
$B --n 1024 --n 4096 --repeats 3 --budget 5 "${T[@]}" --out $R/loss-small.json > /dev/null &
$B --n 16384 --repeats 1 --budget 0 "${T[@]}" --timeout 3000 --out $R/loss-16k.json > /dev/null &
$B --n 65536 --impl pairlab --warmup 0 --repeats 1 --budget 0 "${T[@]}" --timeout 5400 --out $R/loss-64k.json \
  > /dev/null &
wait
.venv/bin/python benchmarks/merge_loss.py $R/loss-small.json $R/loss-16k.json $R/loss-64k.json \
  --out $R/loss.json --md $R/loss.md
