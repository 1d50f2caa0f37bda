#!/bin/bash
# Zero-shot CLIP, CoOp, VPT, VLP and DPT on Toy (tiny CLIP): 1/4/16 shots x seeds 1-3, then the
# table (mean ± std) and the accuracy-vs-shots plot. Run from the repository root:
#   bash scripts/toy/compare.sh [sweep flags, e.g. --jobs 2 or --dry-run]
# Finished runs are skipped, so an interrupted comparison completes when run again.
set -e
python -m scripts.sweep --spec scripts/toy/compare.yaml "$@"
python -m scripts.parse_results output/toy_comparison --out output/toy_comparison/summary
