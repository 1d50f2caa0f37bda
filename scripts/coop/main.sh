#!/bin/bash
# CoOp few-shot runs (seeds 1 2 3 by default) with the arguments of CoOp's scripts/coop/main.sh:
#   bash scripts/coop/main.sh DATASET CFG CTP NCTX SHOTS CSC [sweep flags]
#   e.g. bash scripts/coop/main.sh caltech101 vit_b16_ep50 end 16 1 False
# Run from the repository root; DATA is the folder holding the datasets, SEEDS the seeds
# (scripts/wrapper_args.sh).
# Finished runs are skipped, unfinished ones resume; --dry-run shows the commands.
source "$(dirname "$0")/../wrapper_args.sh"
DATASET=$1 CFG=$2 CTP=$3 NCTX=$4 SHOTS=$5 CSC=$6
python -m scripts.sweep "${ROOT[@]}" --trainers CoOp --datasets "$DATASET" \
    --configs "$CFG" --shots "$SHOTS" --seeds "${SEED_LIST[@]}" \
    --opts TRAINER.COOP.N_CTX "$NCTX" TRAINER.COOP.CSC "$CSC" \
    TRAINER.COOP.CLASS_TOKEN_POSITION "$CTP" "${@:7}"
