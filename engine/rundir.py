"""Run directories: what marks a finished run and what it records; a finished run is never
overwritten by accident. (No torch here: the results parser imports this.)"""

import os
import shutil
import tempfile
import time
from collections import OrderedDict

from engine.checkpoint import LATEST_POINTER, saved_epochs
from engine.config import cfg_digest, experiment_digest

RESULTS_FILE = "results.json"  # written last: its presence marks a finished run
CONFIG_FILE = "config.yaml"  # the merged config of the run (engine/run_inputs.py)
CLASSES_FILE = "classnames.json"  # {"classnames": [...], "template": "a photo of a {}."}
# In results.json: the model evaluated was never trained (--eval-only without --model-dir),
# so the results parser leaves it out of tables.
UNTRAINED = "untrained"
KEPT_ON_OVERWRITE = ("log.txt",)  # grows across sessions; previous-*/ and hidden files stay too


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
        # equal for the runs of one experiment (all that can change a result, but the seed)
        experiment_digest=experiment_digest(cfg),
    )
    record.update(results)
    record.update(extra or {})
    return record


def is_finished(output_dir):
    return os.path.isfile(os.path.join(output_dir, RESULTS_FILE))


def _nearest_existing(path):
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _holds_checkpoints(folder):
    return os.path.isfile(os.path.join(folder, LATEST_POINTER)) or bool(saved_epochs(folder))


def check_output_dir(output_dir):
    """Refuse, before anything is written, an output directory that is a file, lies below a
    file, or cannot be written (the folder, or the nearest existing folder above it, and its
    module folders that hold checkpoints)."""
    path = os.path.abspath(output_dir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise NotADirectoryError(
            f"--output-dir '{output_dir}' is a file, not a folder: choose another --output-dir."
        )
    existing = _nearest_existing(path)
    if not os.path.isdir(existing):
        raise NotADirectoryError(
            f"--output-dir '{output_dir}' cannot be created: '{existing}' is a file. Choose "
            "another --output-dir."
        )
    folders = [existing]
    if existing == path:
        subfolders = [os.path.join(path, d) for d in sorted(os.listdir(path))]
        folders += [d for d in subfolders if os.path.isdir(d) and _holds_checkpoints(d)]
    for folder in folders:
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise PermissionError(
                f"Cannot write in '{folder}' ({err.strerror}), which this run (--output-dir "
                f"'{output_dir}') writes to. Make it writable (e.g. chmod u+w '{folder}'), or "
                "choose another --output-dir."
            ) from err


def new_archive(output_dir):
    """A new ``previous-<timestamp>[-N]/`` folder in ``output_dir`` (``-N`` when runs were
    overwritten twice within one second)."""
    stem = os.path.join(output_dir, f"previous-{time.strftime('%Y%m%d-%H%M%S')}")
    archive, n = stem, 1
    while True:
        try:
            os.makedirs(archive)
            return archive
        except FileExistsError:
            n += 1
            archive = f"{stem}-{n}"


def prepare_output_dir(output_dir, overwrite=False):
    """Refuse a directory that holds a finished run, unless ``overwrite``.

    With ``overwrite`` nothing is deleted: the old run's results and checkpoints, finished or
    not, move into ``<output_dir>/previous-<timestamp>/``; ``log.txt`` keeps growing.
    Without it, an unfinished run (checkpoints, no results) is left in place: training
    resumes from it.
    """
    if not overwrite:
        if is_finished(output_dir):
            raise FileExistsError(
                f"'{output_dir}' already holds a finished run ({RESULTS_FILE} exists). "
                "Choose another --output-dir, or pass --overwrite to run again (the old "
                "results are moved to a previous-<timestamp>/ folder, not deleted)."
            )
        return
    if not os.path.isdir(output_dir):
        return
    entries = [
        entry
        for entry in sorted(os.listdir(output_dir))
        if entry not in KEPT_ON_OVERWRITE and not entry.startswith(("previous-", "."))
    ]
    if not entries:
        return
    what = "finished" if is_finished(output_dir) else "unfinished"
    archive = new_archive(output_dir)
    for entry in entries:
        shutil.move(os.path.join(output_dir, entry), os.path.join(archive, entry))
    print(f"Moved the previous ({what}) run's results and checkpoints to {archive}")


def check_not_in_evaluated_run(output_dir, model_dir, default_dir):
    """An evaluation never writes into the run it evaluates, nor into a folder that holds it:
    its ``results.json`` would mark that run finished (or hide the runs below it from the
    results parser), and ``--overwrite`` would move the checkpoints it evaluates aside."""
    out, model = os.path.realpath(output_dir), os.path.realpath(model_dir)
    if model == out or model.startswith(out + os.sep):
        where = "is the --model-dir" if model == out else f"holds the --model-dir '{model_dir}'"
        raise FileExistsError(
            f"The output directory '{output_dir}' {where}: an evaluation never writes into "
            "the run it evaluates (and --overwrite would move its checkpoints aside). Leave "
            f"--output-dir out (the evaluation then goes to '{default_dir}'), or choose a "
            "folder outside the model's run directory."
        )
