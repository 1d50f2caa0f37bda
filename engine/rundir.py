"""Guard run directories: a finished run is never overwritten by accident."""

import os
import shutil
import time

from engine.trainer import RESULTS_FILE


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
