"""An evaluation matches the run it evaluates (``--eval-only --model-dir RUN``): the same
method, the settings that define its model, and, for a context learned per class, the same
classes. Checked from the run's saved ``config.yaml`` and ``classnames.json``; run
directories without them (older ones, the original code's) are loaded as before."""

import json
import os

from engine.config import describe_differences, get_value
from engine.rundir import CLASSES_FILE
from trainers.method import method_for
from trainers.zeroshot_cache import backbone_identity


def check_same_model(cfg, model_dir):
    """Before any work: an evaluation that would build another model than the run trained
    (another trainer, or a model setting its config contradicts) is an error naming both."""
    from engine.run_inputs import read_saved_config  # torch: imported when needed

    saved = read_saved_config(model_dir)
    if saved is None:
        return
    if saved.TRAINER.NAME != cfg.TRAINER.NAME:
        raise ValueError(
            f"--model-dir '{model_dir}' holds a {saved.TRAINER.NAME} run (its config.yaml), "
            f"but this evaluation builds {cfg.TRAINER.NAME} (--trainer): evaluate it with "
            f"--trainer {saved.TRAINER.NAME} and the config file it was trained with."
        )
    keys = method_for(cfg).model_keys()
    differ = [(k, get_value(saved, k), get_value(cfg, k)) for k in keys
              if get_value(saved, k) != get_value(cfg, k)]  # fmt: skip
    name = "MODEL.BACKBONE.NAME"
    there, here = saved.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.NAME
    if there != here and _backbone(there) != _backbone(here):
        differ.append((name, there, here))
    if differ:
        what = describe_differences(differ, "there", "here")
        raise ValueError(
            f"--model-dir '{model_dir}' was trained with other model settings than this "
            f"evaluation's ({what}): use the run's values (drop the override, or pass the "
            "config files it was trained with)."
        )


def _backbone(name):
    """A backbone file by name and size (the run may have moved to another machine)."""
    identity = backbone_identity(name)
    return (os.path.basename(name), identity["size"]) if isinstance(identity, dict) else name


def check_classes(model, model_dir, classnames):
    """A context learned per class (TRAINER.COOP.CSC True) applies to the classes it was
    trained on only: other classes, whatever their number, are an error."""
    if not model.learns_per_class():
        return
    path = os.path.join(model_dir, CLASSES_FILE)
    if not os.path.isfile(path):
        return
    with open(path) as f:
        trained = json.load(f)["classnames"]
    if list(trained) != list(classnames):
        raise ValueError(
            f"'{model_dir}' learned a class-specific text context (TRAINER.COOP.CSC True), one "
            f"per class of its {len(trained)} training classes ({CLASSES_FILE}); it cannot "
            f"classify other classes (here {len(classnames)}: {_few(classnames)}). Evaluate "
            "it on its own classes, or train with a shared context (TRAINER.COOP.CSC False) "
            "for base-to-new or cross-dataset evaluation."
        )


def _few(names, n=3):
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")
