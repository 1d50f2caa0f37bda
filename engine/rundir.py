"""Run directories: what marks a finished run and what it records; a finished run is never
overwritten by accident. (No torch here: the results parser imports this.)"""

import os
import shutil
import time
from collections import OrderedDict

from engine.config import cfg_digest

RESULTS_FILE = "results.json"  # written last: its presence marks a finished run


def results_record(cfg, split, epoch, results, extra=None):
    """What ``results.json`` holds: the run's identity, the evaluated epoch (1-based), the
    evaluator's results and ``extra`` entries (e.g. a baseline's accuracy)."""
    record = OrderedDict(
        split=split,
        trainer=cfg.TRAINER.NAME,
        dataset=cfg.DATASET.NAME,
        num_shots=cfg.DATASET.NUM_SHOTS,
        subsample_classes=cfg.DATASET.SUBSAMPLE_CLASSES,
        backbone=cfg.MODEL.BACKBONE.NAME,
        seed=cfg.SEED,
        epoch=epoch,
        config_digest=cfg_digest(cfg),
    )
    record.update(results)
    record.update(extra or {})
    return record


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
