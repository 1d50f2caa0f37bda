"""Run directories: a finished run is never overwritten by accident, and a run keeps what
rebuilding its model needs besides the checkpoints (its config and class names)."""

import json
import os
import shutil
import time

from engine.checkpoint import atomic_write, atomic_write_json
from engine.config import get_cfg_default, merge_from_file
from engine.trainer import RESULTS_FILE

CONFIG_FILE = "config.yaml"  # the merged config of the run
CLASSES_FILE = "classnames.json"  # {"classnames": [...], "template": "a photo of a {}."}


def is_finished(output_dir):
    return os.path.isfile(os.path.join(output_dir, RESULTS_FILE))


def prepare_output_dir(output_dir, overwrite=False):
    """Refuse a directory that holds a finished run, unless ``overwrite``.

    With ``overwrite`` nothing is deleted: the old results and checkpoints move into
    ``<output_dir>/previous-<timestamp>/``; ``log.txt`` keeps growing.
    An unfinished run (checkpoints, no results) is left in place: training resumes from it.
    """
    if not is_finished(output_dir):
        return
    if not overwrite:
        raise FileExistsError(
            f"'{output_dir}' already holds a finished run ({RESULTS_FILE} exists). "
            "Choose another --output-dir, or pass --overwrite to run again (the old results "
            "are moved to a previous-<timestamp>/ folder, not deleted)."
        )
    archive = os.path.join(output_dir, f"previous-{time.strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(archive)
    for entry in os.listdir(output_dir):
        if entry == "log.txt" or entry.startswith("previous-"):
            continue
        shutil.move(os.path.join(output_dir, entry), os.path.join(archive, entry))
    print(f"Moved the previous run's results and checkpoints to {archive}")


def save_run_inputs(output_dir, cfg, classnames, template):
    """Write the merged config and the class names with the prompt template into the run
    directory: with the checkpoints, all that ``inference.load_classifier`` needs."""
    atomic_write(os.path.join(output_dir, CONFIG_FILE), lambda f: f.write(cfg.dump()), "w")
    record = {"classnames": list(classnames), "template": template}
    atomic_write_json(os.path.join(output_dir, CLASSES_FILE), record)


def read_run_inputs(model_dir):
    """The config (defaults merged with the saved one), class names and template of a run.

    Import ``trainers`` (and ``datasets``) first, so that their config keys are known."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"The run directory '{model_dir}' does not exist")
    missing = [
        n for n in (CONFIG_FILE, CLASSES_FILE) if not os.path.isfile(os.path.join(model_dir, n))
    ]
    if missing:
        raise FileNotFoundError(
            f"'{model_dir}' has no {' and no '.join(missing)} (runs trained before these files "
            "were saved lack them). Rebuild the model as train.py --eval-only does: add the "
            "training run's --trainer, --config-file and --dataset-config-file, --root (the "
            "dataset, for its class names) and its KEY VALUE overrides after --opts."
        )
    cfg = get_cfg_default()
    merge_from_file(cfg, os.path.join(model_dir, CONFIG_FILE))
    with open(os.path.join(model_dir, CLASSES_FILE)) as f:
        record = json.load(f)
    return cfg, record["classnames"], record["template"]
