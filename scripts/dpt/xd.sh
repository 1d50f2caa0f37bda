#!/bin/bash
# DPT cross-dataset transfer, seeds 1 2 3: train on ImageNet, evaluate on the other ten datasets.
#   bash scripts/dpt/xd.sh CFG [SHOTS (16)] [sweep flags]
# Run from the repository root; DATA is the folder holding the datasets (default ./data).
python -m scripts.sweep --protocol cross --source imagenet --root "${DATA:-./data}" \
    --trainers DPT --configs "$1" --shots "${2:-16}" --seeds 1 2 3 \
    --datasets caltech101 oxford_pets stanford_cars oxford_flowers food101 fgvc_aircraft \
    sun397 dtd eurosat ucf101 "${@:3}"
