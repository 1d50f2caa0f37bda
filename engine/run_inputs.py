"""What a run keeps besides its checkpoints to rebuild its model: the merged config and the
class names with the prompt template (read by ``inference.load_classifier`` and the tools)."""

import json
import os

from yacs.config import CfgNode as CN

from engine.checkpoint import atomic_write, atomic_write_json, saving
from engine.config import get_cfg_default, merge_cfg
from engine.rundir import CLASSES_FILE, CONFIG_FILE


def save_run_inputs(output_dir, cfg, classnames, template):
    """Write the merged config and the class names with the prompt template into the run
    directory: with the checkpoints, all that ``inference.load_classifier`` needs. Written
    when a run starts in the folder; a resumed run (whose config must be the same) keeps
    them, and a start that will be refused (e.g. another config) never replaces them."""
    paths = [os.path.join(output_dir, name) for name in (CONFIG_FILE, CLASSES_FILE)]
    if all(os.path.isfile(path) for path in paths):
        return
    with saving(f"{CONFIG_FILE} and {CLASSES_FILE} in '{output_dir}'", output_dir):
        atomic_write(paths[0], lambda f: f.write(cfg.dump()), "w")
        atomic_write_json(paths[1], {"classnames": list(classnames), "template": template})


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
    with open(os.path.join(model_dir, CLASSES_FILE)) as f:
        record = json.load(f)
    return read_saved_config(model_dir), record["classnames"], record["template"]


def read_saved_config(run_dir):
    """The config a run saved (``config.yaml``) merged onto the defaults, or None when it
    saved none. Import ``trainers`` (and ``datasets``) first, so that their keys are known."""
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    cfg = get_cfg_default()
    # A file this project wrote: a Dassl run's config also holds Dassl's own trainer blocks.
    cfg.set_new_allowed(True)
    with open(path) as f:
        merge_cfg(cfg, CN.load_cfg(f))
    return cfg
