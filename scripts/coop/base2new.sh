#!/bin/bash
# CoOp base-to-new (seeds 1 2 3 by default): train on the base classes, evaluate on the new ones.
#   bash scripts/coop/base2new.sh DATASET CFG [SHOTS (16)] [sweep flags]
#   e.g. bash scripts/coop/base2new.sh caltech101 vit_b16_ep50
# Run from the repository root; DATA is the folder holding the datasets, SEEDS the seeds
# (scripts/wrapper_args.sh).
source "$(dirname "$0")/../wrapper_args.sh"
DATASET=$1 CFG=$2 SHOTS=16
shift 2
if [[ $# -gt 0 && $1 != -* ]]; then SHOTS=$1; shift; fi
python -m scripts.sweep --protocol base2new "${ROOT[@]}" --trainers CoOp \
    --datasets "$DATASET" --configs "$CFG" --shots "$SHOTS" --seeds "${SEED_LIST[@]}" "$@"
