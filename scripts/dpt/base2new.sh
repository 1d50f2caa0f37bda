#!/bin/bash
# DPT base-to-new, seeds 1 2 3: train on the base classes, evaluate on the new ones.
#   bash scripts/dpt/base2new.sh DATASET CFG [SHOTS (16)] [sweep flags]
# Run from the repository root; DATA is the folder holding the datasets (default ./data).
python -m scripts.sweep --protocol base2new --root "${DATA:-./data}" --trainers DPT \
    --datasets "$1" --configs "$2" --shots "${3:-16}" --seeds 1 2 3 "${@:4}"
