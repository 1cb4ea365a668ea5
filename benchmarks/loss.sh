#!/usr/bin/env bash
# Full loss benchmark grid (SimCLR and CLIP forms, all implementations), written to benchmarks/results/.
# Usage: nohup benchmarks/loss.sh [THREADS] > benchmarks/results/loss.log 2>&1 &
# Small N: 3+ repeats; large N: one timed iteration after one warm-up (peers take 10-40 s per iteration).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-}
T=()
[ -n "$THREADS" ] && T=(--threads "$THREADS")
R=benchmarks/results
.venv/bin/pairlab bench loss --n 1024 --n 4096 --repeats 3 --budget 5 "${T[@]}" --mem-cap-gib 14 \
  --out $R/loss-small.json --json > /dev/null
.venv/bin/pairlab bench loss --n 16384 --n 65536 --repeats 1 --budget 0 "${T[@]}" --mem-cap-gib 14 \
  --timeout 1500 --out $R/loss-large.json --json > /dev/null
.venv/bin/python benchmarks/merge_loss.py $R/loss-small.json $R/loss-large.json --out $R/loss.json --md $R/loss.md
