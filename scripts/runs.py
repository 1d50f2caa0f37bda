"""Read run directories: ours (``results.json``, written last) and Dassl's (``log.txt`` only).

A run of ours is finished exactly when ``results.json`` exists. A folder with only a
``log.txt`` is read as Dassl writes it: the last ``* accuracy: X%`` line of an evaluation
on the test split is the result; a log without one (crashed, killed, still training) is an
unfinished run, and so is a log of ours without ``results.json``.
"""

import json
import math
import os
import re
from dataclasses import dataclass

from engine.rundir import RESULTS_FILE as RESULTS
from engine.rundir import UNTRAINED
from scripts.naming import OTHER, RunId, parse_run_dir, seed_of_dir

LOG = "log.txt"
OUR_LOG_MARK = "** Run started"  # first line train.py writes into every log.txt
# "Evaluate on the *test* set" (ours, recent Dassl; ours may name a baseline before "on"),
# "Do evaluation on test set" (the Dassl of CoOp's time).
_EVALUATE = re.compile(r"^(?:Evaluate (?P<what>.*?)on the \*(?P<split>\w+)\* set"
                       r"|Do evaluation on (?P<old_split>\w+) set)")  # fmt: skip
_ACCURACY = re.compile(r"^\* accuracy: (?P<value>[-\d.]+)%")
_ARGUMENT = re.compile(r"^(?P<key>trainer|dataset_config_file): (?P<value>.*)$")


@dataclass
class Run:
    path: str
    id: RunId
    finished: bool
    accuracy: float | None = None
    why: str = ""  # why an unfinished run is not finished
    unreadable: bool = False  # its results.json could not be read (why says how)
    digest: str | None = None  # results.json's experiment_digest: equal within an experiment
    zeroshot: float | None = None  # zero-shot CLIP's accuracy on the same split, if evaluated
    backbone: str | None = None

    def as_dict(self):
        return {"path": self.path, **vars(self.id), "finished": self.finished,
                "accuracy": self.accuracy, "why": self.why}  # fmt: skip


def final_test_accuracy(lines):
    """The accuracy of the last evaluation on the test split (not of a baseline), or None."""
    split, found = "test", None
    for line in lines:
        if match := _EVALUATE.match(line):
            split = match["split"] or match["old_split"]
            if match["what"]:  # e.g. "Evaluate zero-shot CLIP on the *test* set"
                split = "baseline"
        elif (match := _ACCURACY.match(line)) and split == "test":
            found = float(match["value"])
    return found


def _log_arguments(lines):
    """The trainer and dataset config file from a log's ``** Arguments **`` section."""
    return {m["key"]: m["value"].strip() for line in lines if (m := _ARGUMENT.match(line))}


def fallback_id(path, results, log_lines):
    """A ``RunId`` from the files' contents, for folders not named by a known layout."""
    args = _log_arguments(log_lines)
    config_file = os.path.basename(args.get("dataset_config_file", ""))
    seed = seed_of_dir(path)  # seed<N> folders of one experiment are averaged together
    return RunId(
        OTHER,
        dataset=results.get("dataset") or os.path.splitext(config_file)[0] or "?",
        trainer=results.get("trainer") or args.get("trainer") or "?",
        config="",
        shots=results.get("num_shots"),
        setting=os.path.dirname(path) if seed is not None else path,
        seed=seed,
    )


def read_run(path):
    """The ``Run`` in ``path``; a path that does not exist is an unfinished (missing) run."""
    results_path, log_path = os.path.join(path, RESULTS), os.path.join(path, LOG)
    lines = []
    if os.path.isfile(log_path):
        with open(log_path, errors="replace") as f:
            lines = f.read().splitlines()
    results = {}
    if os.path.isfile(results_path):
        try:
            with open(results_path) as f:
                results = json.load(f)
        except (OSError, ValueError) as err:
            why = (f"cannot read {results_path} ({type(err).__name__}: {err}): fix it, or delete "
                   "it and run the run again")  # fmt: skip
            run_id = parse_run_dir(path) or fallback_id(path, {}, lines)
            return Run(path, run_id, False, why=why, unreadable=True)
    run_id = parse_run_dir(path) or fallback_id(path, results, lines)
    if results:
        if not isinstance(results, dict) or "accuracy" not in results:
            return Run(path, run_id, False, why=f"{RESULTS} holds no accuracy: not a run's")
        if results.get(UNTRAINED):
            return Run(path, run_id, False, why="an untrained model (--eval-only without "
                       "--model-dir): left out")  # fmt: skip
        accuracy = results["accuracy"]
        if not isinstance(accuracy, (int, float)) or not math.isfinite(accuracy):
            return Run(path, run_id, False, why=f"failed: its accuracy is {accuracy} (see its "
                       f"{LOG})")  # fmt: skip
        return Run(
            path,
            run_id,
            True,
            accuracy,
            digest=results.get("experiment_digest"),
            zeroshot=results.get("zeroshot_accuracy"),
            backbone=results.get("backbone"),
        )
    if not os.path.isdir(path):
        return Run(path, run_id, False, why="missing")
    if not lines:
        return Run(path, run_id, False, why=f"no {RESULTS} and no {LOG}")
    if any(line.startswith(OUR_LOG_MARK) for line in lines):
        return Run(path, run_id, False, why=f"unfinished: no {RESULTS} (see its {LOG})")
    accuracy = final_test_accuracy(lines)
    if accuracy is None:
        return Run(path, run_id, False, why=f"unfinished: no test accuracy in its {LOG}")
    return Run(path, run_id, True, accuracy)


def find_run_dirs(root):
    """Every folder below ``root`` holding ``results.json`` or ``log.txt``, sorted; runs moved
    aside by ``--overwrite`` (``previous-*``) and hidden folders are left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "previous-")))
        if RESULTS in filenames or LOG in filenames:
            found.append(dirpath)
            dirnames[:] = []  # a run's subfolders hold its checkpoints
    return found
