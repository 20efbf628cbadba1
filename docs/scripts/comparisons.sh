#!/usr/bin/env bash
# The equal-budget comparisons of docs/RESULTS.md, run one after another on
# an otherwise idle machine (each training gets the same wall-clock budget):
#   1. paper Fig 11: resettable vs non-resettable (mini-unroll) vs full unroll;
#   2. paper 5.4 / issue 6: 48/48 vs 96/96 vs 96 image / 48 state.
# Usage: docs/scripts/comparisons.sh [MINUTES_FIG11] [MINUTES_HIRES]
# Writes runs/compare/*; the plots go to docs/img/.
set -euo pipefail
cd "$(dirname "$0")/../.."
M11=${1:-5}
MHR=${2:-4}
DATA=${CA_PETS_DIR:-../shared/data/oxford-pets-160}
B=target/release/examples
OUT=runs/compare
mkdir -p "$OUT" docs/img
cargo build --release --example train_pets --example evaluate

train() { # NAME MINUTES FLAGS...
  local name=$1 minutes=$2; shift 2
  rm -rf "$OUT/$name"
  "$B/train_pets" --data "$DATA" --steps 1000000 --minutes "$minutes" --batch 8 --lr 2e-3 \
    --eval-every 0 --checkpoint-every 100 --out "$OUT/$name" "$@" | tail -6
}

for spec in "resettable:" "non_resettable:--reset-gate false" "full_unroll:--full-unroll"; do
  name=${spec%%:*}; flags=${spec#*:}
  # shellcheck disable=SC2086
  train "$name" "$M11" $flags
  for protocol in stability switching; do
    "$B/evaluate" "$protocol" --model "$OUT/$name/model.safetensors" --data "$DATA" \
      --limit 16 --batch 16 --steps 400 --every 5 --out "$OUT/$name/eval"
  done
done
for protocol in stability switching; do
  "$B/evaluate" compare --column iou_object --title "object IoU, $protocol (${M11} min of training each)" \
    --out "docs/img/fig11-$protocol.png" \
    "resettable=$OUT/resettable/eval/$protocol.csv" \
    "non-resettable=$OUT/non_resettable/eval/$protocol.csv" \
    "full unroll=$OUT/full_unroll/eval/$protocol.csv"
done

train plain48 "$MHR" --size 48
train plain96 "$MHR" --size 96
train hires96_48 "$MHR" --image-size 96 --state-size 48
