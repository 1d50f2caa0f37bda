#!/bin/bash
# DPT few-shot runs, seeds 1 2 3 by default:
#   bash scripts/dpt/main.sh DATASET CFG SHOTS [sweep flags]
#   e.g. bash scripts/dpt/main.sh caltech101 vit_b16_ep50 1     (ep100: 2/4 shots, ep200: 8/16)
# Run from the repository root; DATA is the folder holding the datasets, SEEDS the seeds
# (scripts/wrapper_args.sh).
# Finished runs are skipped, unfinished ones resume; --dry-run shows the commands.
source "$(dirname "$0")/../wrapper_args.sh"
python -m scripts.sweep "${ROOT[@]}" --trainers DPT --datasets "$1" \
    --configs "$2" --shots "$3" --seeds "${SEED_LIST[@]}" "${@:4}"
