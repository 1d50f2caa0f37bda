#!/bin/bash
# DPT domain generalisation (seeds 1 2 3 by default): train on ImageNet, evaluate on
# ImageNet-V2/Sketch/A/R.
#   bash scripts/dpt/dg.sh CFG [SHOTS (16)] [sweep flags]
# Run from the repository root; DATA is the folder holding the datasets, SEEDS the seeds
# (scripts/wrapper_args.sh).
# The ImageNet runs are those of scripts/dpt/xd.sh (whichever runs first trains them).
source "$(dirname "$0")/../wrapper_args.sh"
CFG=$1 SHOTS=16
shift
if [[ $# -gt 0 && $1 != -* ]]; then SHOTS=$1; shift; fi
python -m scripts.sweep --protocol cross --source imagenet "${ROOT[@]}" \
    --trainers DPT --configs "$CFG" --shots "$SHOTS" --seeds "${SEED_LIST[@]}" \
    --datasets imagenetv2 imagenet_sketch imagenet_a imagenet_r "$@"
