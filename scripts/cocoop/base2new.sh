#!/bin/bash
# CoCoOp base-to-new as in its paper (16 shots, seeds 1 2 3):
#   bash scripts/cocoop/base2new.sh DATASET [CFG (vit_b16_c4_ep10_batch1_ctxv1)] [sweep flags]
# Run from the repository root; DATA is the folder holding the datasets (default ./data).
python -m scripts.sweep --protocol base2new --root "${DATA:-./data}" --trainers CoCoOp \
    --datasets "$1" --configs "${2:-vit_b16_c4_ep10_batch1_ctxv1}" --shots 16 --seeds 1 2 3 "${@:3}"
