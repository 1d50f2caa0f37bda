#!/bin/bash
# CoCoOp base-to-new as in its paper (16 shots, seeds 1 2 3 by default):
#   bash scripts/cocoop/base2new.sh DATASET [CFG (vit_b16_c4_ep10_batch1_ctxv1)] [sweep flags]
# Run from the repository root; DATA is the folder holding the datasets, SEEDS the seeds
# (scripts/wrapper_args.sh).
source "$(dirname "$0")/../wrapper_args.sh"
DATASET=$1 CFG=vit_b16_c4_ep10_batch1_ctxv1
shift
if [[ $# -gt 0 && $1 != -* ]]; then CFG=$1; shift; fi
python -m scripts.sweep --protocol base2new "${ROOT[@]}" --trainers CoCoOp \
    --datasets "$DATASET" --configs "$CFG" --shots 16 --seeds "${SEED_LIST[@]}" "$@"
