#!/bin/bash
# Zero-shot CLIP, CoOp, VPT, VLP and DPT on Toy (tiny CLIP): 1/4/16 shots x seeds 1-3, then the
# table (mean ± std) and the accuracy-vs-shots plot. Run from the repository root:
#   bash scripts/toy/compare.sh [sweep flags, e.g. --jobs 2 or --dry-run]
# Finished runs are skipped, so an interrupted comparison completes when run again. A dry run
# (or --help) only prints the plan: there are no results to parse after it.
set -e
python -m scripts.sweep --spec scripts/toy/compare.yaml "$@"
for arg in "$@"; do
    case "$arg" in
        --dry-run | -h | --help) exit 0 ;;
    esac
done
python -m scripts.parse_results output/toy_comparison --out output/toy_comparison/summary
