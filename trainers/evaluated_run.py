"""An evaluation matches the run it evaluates (``--eval-only --model-dir RUN``): the same
method, the settings that define its model, and, for a context learned per class or a
closed-set method, classes it was trained on. Checked from the run's saved ``config.yaml`` and
``classnames.json``; run directories without them (older ones, the original code's) are
loaded as before."""

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
    method = method_for(cfg)
    if method.closed_set:
        check_closed_set_classes(method.name, saved, cfg, model_dir)
    keys = method.model_keys()
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


def closed_set_advice(name):
    """What to evaluate a run of the closed-set method ``name`` (``Method.closed_set``) on."""
    return (
        f"{name} classifies only the classes it was fitted on: evaluate it on those (or a "
        "subset, as ImageNet-A/R of ImageNet), not on base-to-new's new classes or another "
        "dataset's."
    )


def check_closed_set_classes(name, saved, cfg, model_dir):
    """Before any work: a closed-set run (``saved``, its config) evaluated on classes of its
    own dataset that it was not trained on (DATASET.SUBSAMPLE_CLASSES: the new classes of a
    run on the base ones, or all of them) is an error. Another dataset's classes are checked
    when the weights load (``adapt_loaded_state``): some are a subset of the run's."""
    same_data = all(
        get_value(saved, k) == get_value(cfg, k) for k in ("DATASET.NAME", "DATASET.ROOT")
    )
    trained, evaluated = saved.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.SUBSAMPLE_CLASSES
    if not same_data or trained in ("all", evaluated):
        return
    raise ValueError(
        f"--model-dir '{model_dir}' was fitted on the {trained} classes of {cfg.DATASET.NAME} "
        f"(DATASET.SUBSAMPLE_CLASSES {trained}, its config.yaml), and this evaluation takes "
        f"{evaluated} of its classes (DATASET.SUBSAMPLE_CLASSES {evaluated}): some have no "
        f"weights in it. {closed_set_advice(name)}"
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
