#!/usr/bin/env bash
# Full loss benchmark grid (SimCLR and CLIP forms), written to benchmarks/results/loss.{json,md}.
# Usage: nohup benchmarks/loss.sh [THREADS] > benchmarks/results/loss.log 2>&1 &
# Four stages run concurrently (on a machine shared by ~8 engineers, waiting for quiet is not an option;
# the ratios use per-iteration CPU time, which oversubscription does not inflate):
#   N=1024: every implementation, 2 warm-ups, >= 3 repeats;
#   N=4096: every implementation but pairlab-dense (>100 s per iteration), 1 warm-up, 2 repeats;
#   N=16384: the same set, 1 warm-up (torch.compile compiles there), 1 timed iteration;
#   N=65536: pairlab only (every dense implementation needs >= 16 GiB), no warm-up, 1 iteration.
# Each configuration runs in its own process under a 14 GiB address-space cap (24 GiB machine, shared).
set -uo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-1}
R=benchmarks/results
B=(.venv/bin/pairlab bench loss --mem-cap-gib 14 --json --threads "$THREADS")
PEERS=(--impl pairlab --impl torch-ce --impl torch-ce-compile --impl lightly --impl pml-supcon --impl pml-ntxent
       --impl open_clip --impl info_nce)
"${B[@]}" --n 1024 --repeats 3 --budget 2 --out $R/loss-1k.json > /dev/null &
"${B[@]}" --n 4096 "${PEERS[@]}" --warmup 1 --repeats 2 --budget 0 --out $R/loss-4k.json > /dev/null &
"${B[@]}" --n 16384 "${PEERS[@]}" --warmup 1 --repeats 1 --budget 0 --timeout 3600 --out $R/loss-16k.json > /dev/null &
"${B[@]}" --n 65536 --impl pairlab --warmup 0 --repeats 1 --budget 0 --timeout 5400 --out $R/loss-64k.json \
  > /dev/null &
wait
.venv/bin/python benchmarks/merge_loss.py $R/loss-1k.json $R/loss-4k.json $R/loss-16k.json $R/loss-64k.json \
  --notes $R/loss-notes.md --out $R/loss.json --md $R/loss.md
