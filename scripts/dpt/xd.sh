#!/bin/bash
# DPT cross-dataset transfer (seeds 1 2 3 by default): train on ImageNet, evaluate on the
# other ten datasets.
#   bash scripts/dpt/xd.sh CFG [SHOTS (16)] [sweep flags]
# Run from the repository root; DATA is the folder holding the datasets, SEEDS the seeds
# (scripts/wrapper_args.sh).
source "$(dirname "$0")/../wrapper_args.sh"
CFG=$1 SHOTS=16
shift
if [[ $# -gt 0 && $1 != -* ]]; then SHOTS=$1; shift; fi
python -m scripts.sweep --protocol cross --source imagenet "${ROOT[@]}" \
    --trainers DPT --configs "$CFG" --shots "$SHOTS" --seeds "${SEED_LIST[@]}" \
    --datasets caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft \
    sun397 dtd eurosat ucf101 "$@"
