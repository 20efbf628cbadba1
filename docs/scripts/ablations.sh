#!/usr/bin/env bash
# The ablations of paper Figs 6, 12 and 13 (issue 5) at an equal budget of
# optimizer steps each, on the real shared set at 48x48. The base is the
# depthwise 48/72 cell (instance norm, residual, reset gate); each variant
# changes one thing:
#   learned      the base (learned depthwise filters)
#   random       --perception random_depthwise (frozen random filters, Fig 6)
#   norm_none, norm_batch, norm_channel   --norm (Fig 12; the base is instance)
#   no_residual  --residual false (Fig 13)
# Each model is then evaluated on all test pairs for 200 CA steps (stability).
#
# Usage: docs/scripts/ablations.sh STEPS [NAME...]   (default: all six names)
# Budgets are in steps, not minutes, so runs sharing the machine with other
# jobs get the same training; run two lanes at once with RAYON_NUM_THREADS=1
# and disjoint NAME lists. Writes runs/ablations/NAME; `--plot` instead draws
# docs/img/ablation-*.png from the runs' CSVs.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${CA_PETS_DIR:-../shared/data/oxford-pets-160}
B=${CA_BIN:-target/release/examples}  # where the built examples are
OUT=runs/ablations

if [ "${1:-}" = "--plot" ]; then
  csv() { echo "$1=$OUT/$2/eval/stability.csv"; }
  "$B/evaluate" compare --column iou_object --title "random vs learned depthwise filters (Fig 6)" \
    --out docs/img/ablation-random.png "$(csv learned learned)" "$(csv random random)"
  "$B/evaluate" compare --column iou_object --title "state normalization (Fig 12)" \
    --out docs/img/ablation-norms.png "$(csv instance learned)" "$(csv none norm_none)" \
    "$(csv batch norm_batch)" "$(csv channel norm_channel)"
  "$B/evaluate" compare --column iou_object --title "residual update on / off (Fig 13)" \
    --out docs/img/ablation-residual.png "$(csv residual learned)" "$(csv "no residual" no_residual)"
  exit 0
fi

STEPS=${1:?usage: docs/scripts/ablations.sh STEPS [NAME...] | --plot}
shift
NAMES=("$@")
[ ${#NAMES[@]} -gt 0 ] || NAMES=(learned random norm_none norm_batch norm_channel no_residual)

flags_of() { # the flags that differ from the base, which is --perception depthwise
  case $1 in
    learned) echo "--perception depthwise" ;;
    random) echo "--perception random_depthwise" ;;
    norm_none) echo "--perception depthwise --norm none" ;;
    norm_batch) echo "--perception depthwise --norm batch" ;;
    norm_channel) echo "--perception depthwise --norm channel" ;;
    no_residual) echo "--perception depthwise --residual false" ;;
    *) echo "unknown ablation '$1' (learned, random, norm_none, norm_batch, norm_channel, no_residual)" >&2; return 1 ;;
  esac
}

mkdir -p "$OUT"
for name in "${NAMES[@]}"; do
  flags=$(flags_of "$name")
  rm -rf "${OUT:?}/$name"
  # shellcheck disable=SC2086
  "$B/train_pets" --data "$DATA" --size 48 --steps "$STEPS" --batch 8 \
    --lr 2e-3 --eval-every 0 --checkpoint-every 100 --out "$OUT/$name" $flags | tail -8
  # norm batch: live statistics of the evaluated batch (paper 3.5), so the
  # batch matters; 17 x 6 = 102 test pairs.
  "$B/evaluate" stability --model "$OUT/$name/model.safetensors" --data "$DATA" \
    --batch 17 --steps 200 --every 5 --out "$OUT/$name/eval"
done
