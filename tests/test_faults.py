"""Fault injection: train.py killed with SIGKILL at chosen and at random moments, including in
the middle of writing a checkpoint, then started again with the same command until it
finishes; every trial must end bit-identical to an uninterrupted run. The runs are forked
children (``tests/forked_train.py``: how a kill is placed on a write).
"""

import json
import os
import random
import time
from pathlib import Path

import pytest
import torch

import train
from engine.checkpoint import EPOCH_FILE, TEMP_PREFIX, committed_epoch, epoch_name
from tests.forked_train import ForkedRun, launch
from tests.run_fixtures import assert_identical, make_workspace, read_only, train_argv

CLASSES = {name: 6 for name in ["ant", "bee", "cat", "dog", "eel", "fox"]}
MODULES = ["visual_prompt", "cavpt", "prompt_learner"]
MAX_EPOCH = 4
# DPT (three modules) with a best-val deployment, so that model-best files are written too.
OVERRIDES = ("TRAINER.VPT.N_CTX", "3", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
             "TRAINER.SELECTED_COVPT.CPN", "3", "PRETRAIN.C", "1",
             "OPTIM.MAX_EPOCH", str(MAX_EPOCH), "TEST.FINAL_MODEL", "best_val")  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("faults"), CLASSES)


def final_state(out):
    """Everything a finished run leaves that must not depend on interruptions."""
    results = json.loads((out / "results.json").read_text())
    results.pop("config_digest")  # its config includes OUTPUT_DIR
    state = {"results": results}
    for module in MODULES:
        for name in (f"model.pth.tar-{MAX_EPOCH}", "model-best.pth.tar"):
            ckpt = torch.load(out / module / name, weights_only=False)
            state[f"{module}/{name}"] = {
                key: ckpt[key] for key in ("state_dict", "optimizer", "scheduler", "epoch")
            }
    return state


@pytest.fixture(scope="module")
def uninterrupted(workspace):
    """The reference run; also the sequence of files it renames into place."""
    out = workspace["root"] / "uninterrupted"
    renames = workspace["root"] / "renames.txt"
    start = time.monotonic()
    assert not launch(train_argv(workspace, out, "DPT", overrides=OVERRIDES), out,
                      renames_file=renames)  # fmt: skip
    return {
        "state": final_state(out),
        "renames": renames.read_text().split(),
        "seconds": time.monotonic() - start,
    }


def kill_point(renames, name, occurrence=1):
    """The 1-based index of the ``occurrence``-th rename of ``name`` in the reference run."""
    indices = [i + 1 for i, renamed in enumerate(renames) if renamed == name]
    return indices[occurrence - 1]


def finish_after_kills(workspace, out, kills):
    """Start the run once per kill (each ``{"kill_at": N, "when": ...}`` or
    ``{"kill_after_s": S}``), then again until it has finished; returns how many starts
    were killed."""
    argv = train_argv(workspace, out, "DPT", overrides=OVERRIDES)
    killed = 0
    for kill in kills:
        if (out / "results.json").exists():
            break
        killed += launch(argv, out, **kill)
    while not (out / "results.json").exists():
        assert not launch(argv, out)
    return killed


def check_trial(out, uninterrupted, killed):
    """Bit-identical to the uninterrupted run, nothing left over; ``killed`` + 1 starts."""
    assert_identical(final_state(out), uninterrupted["state"])
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files
                 if f.startswith(TEMP_PREFIX)]  # fmt: skip
    assert leftovers == []
    assert json.loads((out / EPOCH_FILE).read_text())["epoch"] == MAX_EPOCH
    log = (out / "log.txt").read_text()
    assert log.count("** Run started") == killed + 1
    return log


# Kill points named by the file being renamed (and which time it is renamed in the reference
# run); "before": the process dies with that file half written.
CHOSEN = {
    "between modules: the second one's file half written": ("cavpt/model.pth.tar-3", 1, "before"),
    "one module a whole epoch ahead of the others": ("visual_prompt/model.pth.tar-2", 1, "after"),
    "all modules written, epoch not committed": (EPOCH_FILE, 2, "before"),
    "epoch committed, Dassl's pointers not moved": (EPOCH_FILE, 3, "after"),
    "a best-model file half written": ("prompt_learner/model-best.pth.tar", 1, "before"),
    "during the final evaluation's results.json": ("results.json", 1, "before"),
}  # fmt: skip


@pytest.mark.parametrize("moment", list(CHOSEN))
def test_kill_at_a_chosen_write_then_resume_is_bit_identical(
    workspace, uninterrupted, tmp_path, moment
):
    name, occurrence, when = CHOSEN[moment]
    kill_at = kill_point(uninterrupted["renames"], name, occurrence)
    out = tmp_path / "run"
    killed = finish_after_kills(workspace, out, [{"kill_at": kill_at, "when": when}])
    assert killed == 1
    log = check_trial(out, uninterrupted, killed)
    assert "Note: took over" in log and "from a process that is no longer running" in log
    if when == "before":  # the half-written temporary file was found and removed
        assert f"Removed '{out}" in log and TEMP_PREFIX in log
    if name == "results.json":  # item 4: the resumed run reports the deployed model's epoch
        assert "Resumed from" in log and f"at epoch {MAX_EPOCH}" in log


def test_kills_at_random_writes_then_resume_is_bit_identical(workspace, uninterrupted, tmp_path):
    rng = random.Random(12)
    total = len(uninterrupted["renames"])
    for trial in range(3):
        out = tmp_path / f"trial{trial}"
        kills = [{"kill_at": rng.randint(1, total), "when": rng.choice(["before", "after"])}
                 for _ in range(2)]  # fmt: skip
        killed = finish_after_kills(workspace, out, kills)
        assert killed >= 1, kills
        check_trial(out, uninterrupted, killed)


def test_kills_at_random_times_then_resume_is_bit_identical(workspace, uninterrupted, tmp_path):
    rng = random.Random(7)
    seconds = uninterrupted["seconds"]
    killed_total = 0
    for trial in range(3):
        out = tmp_path / f"trial{trial}"
        kills = [{"kill_after_s": rng.uniform(0.1, 0.9) * seconds} for _ in range(2)]
        killed = finish_after_kills(workspace, out, kills)
        killed_total += killed
        check_trial(out, uninterrupted, killed)
    assert killed_total >= 3  # most starts were killed before they finished


def test_a_run_killed_in_its_final_evaluation_reports_its_last_epoch(workspace, tmp_path):
    """Resumed after the last epoch, nothing is left to train: results.json still names the
    epoch of the model it evaluates (it said 1)."""
    out = tmp_path / "run"
    argv = train_argv(workspace, out, "CoOp", overrides=("OPTIM.MAX_EPOCH", "2"))
    assert launch(argv, out, kill_at="results.json", when="before")
    assert not (out / "results.json").exists()
    assert not launch(argv, out)
    assert json.loads((out / "results.json").read_text())["epoch"] == 2
    assert "Resumed from" in (out / "log.txt").read_text()


def test_a_module_folder_made_read_only_mid_run_stops_it_resumably(
    workspace, uninterrupted, tmp_path, capsys
):
    """The issue's case: while epoch 3 is saved, cavpt/ cannot be written. The run stops with
    a message; nothing of epoch 3 is used; once writable again it resumes from epoch 2 and ends
    bit-identical (it used to resume on a mix of epochs 2 and 3)."""
    out = tmp_path / "run"
    argv = train_argv(workspace, out, "DPT", overrides=OVERRIDES)
    run = ForkedRun(argv, out, pause_at="visual_prompt/model.pth.tar-3")
    run.wait_paused()
    with read_only(out / "cavpt"):
        run.resume()
        assert not run.wait(status=2)
        console = run.console.read_text()
        assert f"error: Could not save epoch 3 in '{out}' (" in console
        assert f"{out / 'cavpt'}/{TEMP_PREFIX}model.pth.tar-3" in console
        assert "The run can resume from epoch 2: fix the cause (permissions, free space)" in console
        # Started again while it is still read-only: refused before anything is written.
        assert train.cli(argv) == 2
        assert f"error: Cannot write in '{out / 'cavpt'}' (" in capsys.readouterr().err
    assert (out / "visual_prompt" / "model.pth.tar-3").exists()  # written, never committed
    assert not launch(argv, out)
    log = check_trial(out, uninterrupted, killed=1)
    assert "Resumed from" in log and "at epoch 2 (continuing with epoch 3)" in log


def test_a_run_directory_from_before_last_epoch_json_resumes_its_common_epoch(
    workspace, uninterrupted, tmp_path
):
    """As the code before last_epoch.json left a run killed between modules: visual_prompt's
    pointer names epoch 3, the others' epoch 2. Resume takes epoch 2, complete in all."""
    out = tmp_path / "run"
    argv = train_argv(workspace, out, "DPT", overrides=OVERRIDES)
    assert launch(argv, out, kill_at="visual_prompt/model.pth.tar-3", when="after")
    os.remove(out / EPOCH_FILE)
    (out / "visual_prompt" / "checkpoint").write_text("model.pth.tar-3\n")
    assert not launch(argv, out)
    log = check_trial(out, uninterrupted, killed=1)
    assert "at epoch 2 (continuing with epoch 3)" in log


# A full disk at each kind of write of the reference run: the file whose write fills the disk
# (which time it is written, and how many bytes it gets), and what the message says was lost.
FULL_DISK = {
    "a module's checkpoint, part written": ("cavpt/model.pth.tar-3", 1, 2000,
                                            "Could not save epoch 3 in '{out}'"),
    "a best-model file": ("prompt_learner/model-best.pth.tar", 1, 0, "Could not save epoch 1 in"),
    "the epoch's commit (last_epoch.json)": (EPOCH_FILE, 2, 0, "Could not save epoch 2 in"),
    "Dassl's pointer file": ("visual_prompt/checkpoint", 2, 0,
                             "Saved epoch 2 in '{out}'. Could not save Dassl's pointers"),
    "results.json": ("results.json", 1, 0, "Could not save results.json in '{out}'"),
    "the run inputs (config.yaml)": ("config.yaml", 1, 0,
                                     "Could not save config.yaml and classnames.json in '{out}'"),
}  # fmt: skip


def commits_before(renames, name, occurrence):
    """The epochs committed in the reference run before the ``occurrence``-th write of
    ``name``."""
    return renames[: kill_point(renames, name, occurrence) - 1].count(EPOCH_FILE)


def check_stopped_resumably(out, console, start):
    """Exit status 2 (checked by the caller), the message and no traceback; the epoch it
    names as the one to resume from is complete on disk."""
    resume = "its start" if start == 0 else f"epoch {start}"
    assert "Traceback" not in console
    assert f"The run can resume from {resume}: fix the cause (permissions, free space)" in console
    assert (committed_epoch(str(out)) or 0) == start
    for module in MODULES if start else ():
        assert (out / module / epoch_name(start)).is_file()


@pytest.mark.parametrize("write", list(FULL_DISK))
def test_a_full_disk_at_each_kind_of_write_stops_the_run_resumably(
    workspace, uninterrupted, tmp_path, write
):
    """ENOSPC at that write: exit status 2 with the message and no traceback; started again
    with the space back, the run ends bit-identical to an uninterrupted one."""
    name, occurrence, room, lost = FULL_DISK[write]
    out = tmp_path / "run"
    argv = train_argv(workspace, out, "DPT", overrides=OVERRIDES)
    run = ForkedRun(argv, out, full_disk=(name, occurrence, room))
    assert not run.wait(status=2)
    console = run.console.read_text()
    assert "error: " + lost.format(out=out) in console
    assert "No space left on device" in console
    check_stopped_resumably(
        out, console, commits_before(uninterrupted["renames"], name, occurrence)
    )
    assert not launch(argv, out)
    check_trial(out, uninterrupted, killed=1)


def test_a_disk_that_fills_while_the_log_is_written_stops_the_run_resumably(
    workspace, uninterrupted, tmp_path
):
    """The first write that fails is a line of log.txt, in epoch 3."""
    reference = (workspace["root"] / "uninterrupted" / "log.txt").read_text()
    room = len(reference[: reference.index("epoch [3/")])
    out = tmp_path / "run"
    argv = train_argv(workspace, out, "DPT", overrides=OVERRIDES)
    run = ForkedRun(argv, out, full_disk=("log.txt", 1, room))
    assert not run.wait(status=2)
    console = run.console.read_text()
    assert f"error: Could not save the log '{out / 'log.txt'}' ([Errno 28]" in console
    check_stopped_resumably(out, console, 2)
    assert not launch(argv, out)
    check_trial(out, uninterrupted, killed=1)


@pytest.mark.parametrize(
    "name, lost, start",
    [("zeroshot_cache/*.json", "the zero-shot evaluation in '{out}/zeroshot_cache/", 0),
     ("confusion_matrix.png", "confusion_matrix.png in '{out}'", 2)],
)  # fmt: skip
def test_a_full_disk_at_the_zeroshot_cache_or_the_confusion_matrix(
    workspace, tmp_path, name, lost, start
):
    """The other kinds of file a run writes: its zero-shot baseline's stored evaluation and,
    with TEST.PER_CLASS_RESULT, the confusion matrix (written before results.json)."""
    overrides = ("TEST.ZEROSHOT_BASELINE", "True", "TEST.PER_CLASS_RESULT", "True")
    reference, out = tmp_path / "reference", tmp_path / "run"
    assert not launch(train_argv(workspace, reference, "CoOp", overrides=overrides), reference)
    argv = train_argv(workspace, out, "CoOp", overrides=overrides)
    run = ForkedRun(argv, out, full_disk=(name, 1, 0))
    assert not run.wait(status=2)
    console = run.console.read_text()
    assert "error: Could not save " + lost.format(out=out) in console
    resume = "its start" if start == 0 else f"epoch {start}"
    assert "Traceback" not in console and f"The run can resume from {resume}:" in console
    assert not (out / "results.json").exists()
    assert not launch(argv, out)
    for run_dir in (reference, out):
        assert (run_dir / "confusion_matrix.png").stat().st_size > 0
    results = [json.loads((d / "results.json").read_text()) for d in (reference, out)]
    for record in results:
        record.pop("config_digest")
    assert results[0] == results[1]
    weights = [torch.load(d / "prompt_learner" / "model.pth.tar-2", weights_only=False)
               for d in (reference, out)]  # fmt: skip
    assert_identical(weights[0]["state_dict"], weights[1]["state_dict"])


@pytest.mark.slow
@pytest.mark.parametrize(
    "generated, what",
    [("split.json", "the split file"), ("split_fewshot/*", "the few-shot split")],
)
def test_a_full_disk_at_a_file_the_dataset_generates(tmp_path, generated, what):
    """The split file an ImageFolder without one generates, or its few-shot draw, on a full
    disk: exit status 2 naming the file, nothing half-written in the dataset's folder, no
    epoch in the run; started again with the space back, the run trains."""
    ws = make_workspace(tmp_path / "ws", CLASSES)
    data = Path(ws["data"])
    if generated == "split.json":
        os.remove(data / "split.json")
    out = tmp_path / "run"
    argv = train_argv(ws, out, "CoOp")
    run = ForkedRun(argv, out, full_disk=(str(data / generated), 1, 0))
    assert not run.wait(status=2)
    console = run.console.read_text()
    assert f"error: Could not save {what} '{data / generated.split('/')[0]}" in console
    assert "No space left on device" in console and "Traceback" not in console
    assert "then run the command again" in console
    assert [f for f in data.rglob(TEMP_PREFIX + "*")] == []
    assert not list(data.glob(generated)) and committed_epoch(str(out)) is None
    assert not launch(argv, out)
    assert list(data.glob(generated)) and (out / "results.json").exists()
