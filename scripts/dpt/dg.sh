#!/bin/bash
# DPT domain generalisation, seeds 1 2 3: train on ImageNet, evaluate on ImageNet-V2/Sketch/A/R.
#   bash scripts/dpt/dg.sh CFG [SHOTS (16)] [sweep flags]
# Run from the repository root; DATA is the folder holding the datasets (default ./data).
# The ImageNet runs are those of scripts/dpt/xd.sh (whichever runs first trains them).
python -m scripts.sweep --protocol cross --source imagenet --root "${DATA:-./data}" \
    --trainers DPT --configs "$1" --shots "${2:-16}" --seeds 1 2 3 \
    --datasets imagenetv2 imagenet_sketch imagenet_a imagenet_r "${@:3}"
