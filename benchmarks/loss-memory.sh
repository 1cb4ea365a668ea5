#!/usr/bin/env bash
# Loss-memory rerun (issue #5): the loss's own memory (`loss_mib`, peak RSS during the timed loop over the RSS
# before it) for the CLIP form at N=4096 and 16384 against open_clip and info-nce, the SimCLR form at N=4096
# against compiled PyTorch, and the SimCLR form at N=65536 (pairlab only; every dense peer needs >= 16 GiB).
# Usage: nohup benchmarks/loss-memory.sh > benchmarks/results/loss-memory.log 2>&1 &
set -uo pipefail
cd "$(dirname "$0")/.."
R=benchmarks/results
B=(.venv/bin/pairlab bench loss --mem-cap-gib 14 --json --threads 1)
"${B[@]}" --form clip --n 4096 --n 16384 --impl pairlab --impl open_clip --impl info_nce --warmup 1 --repeats 2 \
  --budget 0 --timeout 3600 --out $R/loss-mem-clip.json > /dev/null
"${B[@]}" --form simclr --n 4096 --impl pairlab --impl torch-ce-compile --warmup 1 --repeats 2 --budget 0 \
  --timeout 3600 --out $R/loss-mem-simclr.json > /dev/null
"${B[@]}" --form simclr --n 65536 --impl pairlab --warmup 0 --repeats 1 --budget 0 --timeout 5400 \
  --out $R/loss-mem-64k.json > /dev/null
.venv/bin/python benchmarks/merge_loss.py $R/loss-mem-clip.json $R/loss-mem-simclr.json $R/loss-mem-64k.json \
  --notes $R/loss-memory-notes.md --command "nohup benchmarks/loss-memory.sh > benchmarks/results/loss-memory.log 2>&1 &" \
  --out $R/loss-memory.json --md $R/loss-memory.md
