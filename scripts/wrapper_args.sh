# Sourced by the sweep wrappers. DATA: the folder holding the datasets (unset: the dataset
# config file's DATASET.ROOT, e.g. Toy's .cache/data, where the main job put it). SEEDS: the
# seeds to run (default "1 2 3").
ROOT=()
if [ -n "${DATA:-}" ]; then ROOT=(--root "$DATA"); fi
read -r -a SEED_LIST <<< "${SEEDS:-1 2 3}"
