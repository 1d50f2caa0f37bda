"""Bad input exits with status 2 and a message naming the key or file and what to do, before
anything is written: the run directory and the data stay as they were."""

import json
import os
import re

import pytest

import train
from engine.checkpoint import TEMP_PREFIX
from engine.run_lock import LOCK_FILE
from engine.trainer import START_AGAIN
from scripts import parse_results
from tests.forked_train import launch
from tests.run_fixtures import make_workspace, read_only, snapshot, train_argv

CLASSES = {"red_circle": 6, "green_square": 6, "blue_star": 6}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("bad_input"), CLASSES)


def refused(argv, capsys, *watched, ignoring=()):
    """Run train.py; assert status 2 and that the files in the ``watched`` folders (but those
    whose names start as one in ``ignoring``) did not change; return the error message."""

    def files():
        return [
            {k: v for k, v in snapshot(f).items() if not os.path.basename(k).startswith(ignoring)}
            for f in watched
        ]

    before = files()
    code = train.cli([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert files() == before
    return err


# A refusal found once the run has started (its checkpoints read) is appended to its log.txt,
# and what a killed process left (its lock file, half-written temporary files) is cleared.
RUN_RECORDS = ("log.txt", LOCK_FILE, TEMP_PREFIX)


@pytest.mark.parametrize(
    "override, message",
    [
        (("OPTIM.LR", "-0.1"), "OPTIM.LR (the learning rate) must be >= 0, got -0.1: set it in "
         "the config file or on the command line (OPTIM.LR VALUE)"),
        (("DATALOADER.TRAIN_X.BATCH_SIZE", "0"),
         "DATALOADER.TRAIN_X.BATCH_SIZE (the training batch size) must be >= 1, got 0"),
        (("DATALOADER.TEST.BATCH_SIZE", "0"),
         "DATALOADER.TEST.BATCH_SIZE (the evaluation batch size) must be >= 1, got 0"),
        (("OPTIM.MAX_EPOCH", "0"),
         "OPTIM.MAX_EPOCH (the number of training epochs) must be >= 1, got 0"),
        (("TRAIN.PRINT_FREQ", "0"), "TRAIN.PRINT_FREQ (batches between log lines) must be >= 1"),
        (("OPTIM.WEIGHT_DECAY", "-1.0"), "OPTIM.WEIGHT_DECAY (the weight decay) must be >= 0"),
    ],
)  # fmt: skip
def test_out_of_range_values_name_the_key(workspace, tmp_path, capsys, override, message):
    out = tmp_path / "run"
    err = refused(train_argv(workspace, out, "CoOp", overrides=override), capsys,
                  workspace["data"])  # fmt: skip
    assert f"error: {message}" in err
    assert not out.exists()


def test_malformed_yaml_names_file_and_line(workspace, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("OPTIM:\n  LR: [0.1\n")
    out = tmp_path / "run"
    err = refused(train_argv(workspace, out, "CoOp", "--config-file", bad), capsys)
    assert (
        f"error: Config file '{bad}' is not valid YAML: while parsing a flow sequence (line 2, "
        "column 7): expected ',' or ']', but got '<stream end>' (line 3, column 1). Fix the file"
    ) in err
    assert not out.exists()
    bad.write_text("OPTIM:\n  LR: fast\n")
    err = refused(train_argv(workspace, out, "CoOp", "--config-file", bad), capsys)
    assert "for config key: OPTIM.LR (in config file" in err and str(bad) in err


def test_output_dir_that_is_a_file_or_below_one(workspace, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    err = refused(train_argv(workspace, a_file, "CoOp"), capsys, tmp_path)
    assert f"error: --output-dir '{a_file}' is a file, not a folder: choose another" in err
    below = a_file / "run"
    err = refused(train_argv(workspace, below, "CoOp"), capsys, tmp_path)
    assert f"error: --output-dir '{below}' cannot be created: '{a_file}' is a file." in err
    assert a_file.read_text() == "mine"


def test_read_only_output_dir_or_module_folder(workspace, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "cavpt").mkdir(parents=True)
    (out / "cavpt" / "checkpoint").write_text("model.pth.tar-1\n")  # an unfinished run's module
    with read_only(out):
        err = refused(train_argv(workspace, out, "CoOp"), capsys, out)
        assert f"error: Cannot write in '{out}' (" in err
        assert f"Make it writable (e.g. chmod u+w '{out}'), or choose another --output-dir" in err
    with read_only(out / "cavpt"):  # e.g. the folder of one module of an unfinished run
        err = refused(train_argv(workspace, out, "DPT"), capsys, out)
        assert f"error: Cannot write in '{out / 'cavpt'}' (" in err


def test_eval_only_with_a_setting_that_changes_a_shape(workspace, tmp_path, capsys):
    model = tmp_path / "model"
    shape = ("TRAINER.VPT.N_CTX", "3", "OPTIM.MAX_EPOCH", "1")
    assert train.cli(train_argv(workspace, model, "VPT", overrides=shape)) == 0
    capsys.readouterr()
    evaluated = tmp_path / "eval"
    argv = train_argv(workspace, evaluated, "VPT", "--eval-only", "--model-dir", model,
                      overrides=("TRAINER.VPT.N_CTX", "5"))  # fmt: skip
    # The run's saved config says what it was trained with: refused before any work.
    err = refused(argv, capsys, model, workspace["data"])
    assert (
        f"error: --model-dir '{model}' was trained with other model settings than this "
        "evaluation's (TRAINER.VPT.N_CTX: 3 there, 5 here): use the run's values"
    ) in err
    assert not evaluated.exists()
    # Without it (a run of an older version), the checkpoint's shapes and saved config tell.
    (model / "config.yaml").unlink()
    err = refused(argv, capsys, model, workspace["data"])
    path = model / "visual_prompt" / "model.pth.tar-1"
    assert re.search(
        re.escape(f"error: The checkpoint '{path}' does not fit this model: 'tokens' has shape ")
        + r"\[\d+, 3, \d+\] there and \[\d+, 5, \d+\] here\. The run was trained with "
        + re.escape("TRAINER.VPT.N_CTX 3 (this run: 5): use the run's values"),
        err,
    )


def test_nan_stop_is_logged_then_a_lower_lr_starts_again_with_overwrite(
    workspace, tmp_path, capsys
):
    out = tmp_path / "run"
    warmup = ("OPTIM.WARMUP_EPOCH", "1", "OPTIM.WARMUP_TYPE", "constant", "OPTIM.MAX_EPOCH", "3")
    diverges = train_argv(workspace, out, "CoOp", overrides=warmup + ("OPTIM.LR", "1e30"))
    assert train.cli(diverges) == 2
    err = capsys.readouterr().err
    # One step an epoch: epoch 2's step at LR 1e30 makes the loss of epoch 3 NaN.
    assert "error: Loss became nan at epoch 3, batch 1 (precision fp32)" in err
    assert f"or a lower OPTIM.LR, and {START_AGAIN}." in err
    log = (out / "log.txt").read_text()
    assert "FloatingPointError: Loss became nan at epoch 3, batch 1" in log
    assert json.loads((out / "last_epoch.json").read_text())["epoch"] == 2  # epochs kept

    lower = train_argv(workspace, out, "CoOp", overrides=warmup)
    err = refused(lower, capsys, out, ignoring=RUN_RECORDS)
    checkpoint = out / "prompt_learner" / "model.pth.tar-2"
    assert (
        f"error: The checkpoint '{checkpoint}' was written with a different configuration "
        f"(OPTIM.LR: 1e+30 there, 0.5 now). Run the same command as before to resume it, use "
        f"another --output-dir, or {START_AGAIN}."
    ) in err

    assert train.cli(["--overwrite", *lower]) == 0  # item 3: it recovers
    previous = [d for d in os.listdir(out) if d.startswith("previous-")]
    assert len(previous) == 1
    moved_aside = ["classnames.json", "config.yaml", "last_epoch.json", "prompt_learner",
                   "tensorboard"]  # fmt: skip
    assert sorted(os.listdir(out / previous[0])) == moved_aside
    moved = "Moved the previous (unfinished) run's results and checkpoints"
    assert moved in capsys.readouterr().out
    assert json.loads((out / "results.json").read_text())["epoch"] == 3


@pytest.mark.parametrize(
    "cut, reason",
    [(0, re.escape("EOFError: Ran out of input")), (0.5, r"(RuntimeError|OSError): [^()]+")],
)
def test_truncated_checkpoint_is_named_then_overwrite_recovers(
    workspace, tmp_path, capsys, cut, reason
):
    out = tmp_path / "run"
    argv = train_argv(workspace, out, "CoOp")
    assert launch(argv, out, kill_at="results.json")  # epoch 2 saved, no results
    path = out / "prompt_learner" / "model.pth.tar-2"
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * cut))
    err = refused(argv, capsys, out, ignoring=RUN_RECORDS)
    assert re.search(
        re.escape(f"error: Cannot read the checkpoint '{path}': it is truncated or corrupt (")
        + reason
        + re.escape(f"). Restore it, or {START_AGAIN}."),
        err,
    ), err
    assert train.cli(["--overwrite", *argv]) == 0
    assert (out / "results.json").exists()


def test_parse_results_names_a_corrupt_results_json_and_prints_the_rest(tmp_path, capsys):
    runs = tmp_path / "toy" / "CoOp" / "tiny_16shots" / "nctx4_cscFalse_ctpend"
    for seed, text in [(1, '{"accuracy": 71.0}'), (2, '{"accuracy": 7'), (3, '{"accuracy": 73.0}')]:
        (runs / f"seed{seed}").mkdir(parents=True)
        (runs / f"seed{seed}" / "results.json").write_text(text)
    before = snapshot(tmp_path)
    assert parse_results.cli([str(tmp_path)]) == 2
    captured = capsys.readouterr()
    corrupt = runs / "seed2" / "results.json"
    assert "72.00 ± 1.00 (2)" in captured.out  # the table of the two readable seeds
    assert f"cannot read {corrupt} (JSONDecodeError: " in captured.out
    assert f"error: could not read {corrupt} (the reason is listed above)" in captured.err
    assert snapshot(tmp_path) == before


def test_eval_only_with_another_trainer_names_both(workspace, tmp_path, capsys):
    model = tmp_path / "vpt"
    fast = ("OPTIM.MAX_EPOCH", "1", "TEST.ZEROSHOT_BASELINE", "False")
    assert train.cli(train_argv(workspace, model, "VPT", overrides=fast)) == 0
    capsys.readouterr()
    evaluated = tmp_path / "eval"
    argv = train_argv(workspace, evaluated, "CoOp", "--eval-only", "--model-dir", model)
    err = refused(argv, capsys, model, workspace["data"])
    assert (
        f"error: --model-dir '{model}' holds a VPT run (its config.yaml), but this evaluation "
        "builds CoOp (--trainer): evaluate it with --trainer VPT and the config file it was "
        "trained with."
    ) in err
    assert not evaluated.exists()


def test_a_class_specific_context_is_refused_on_other_classes_of_the_same_number(tmp_path, capsys):
    """Base-to-new with 4 classes: 2 base, 2 new. Each base class's context would be applied
    to the new class of its index without a word."""
    ws = make_workspace(tmp_path, {name: 5 for name in ["ant", "bee", "cat", "dog"]})
    model = tmp_path / "base"
    csc = ("TRAINER.COOP.CSC", "True", "OPTIM.MAX_EPOCH", "1")
    assert train.cli(train_argv(ws, model, "CoOp", overrides=(*csc, "DATASET.SUBSAMPLE_CLASSES",
                                                                 "base"))) == 0  # fmt: skip
    capsys.readouterr()
    evaluated = tmp_path / "new"
    argv = train_argv(ws, evaluated, "CoOp", "--eval-only", "--model-dir", model,
                      overrides=(*csc, "DATASET.SUBSAMPLE_CLASSES", "new"))  # fmt: skip
    err = refused(argv, capsys, model, ws["data"], ignoring=RUN_RECORDS)
    assert (
        f"error: '{model}' learned a class-specific text context (TRAINER.COOP.CSC True), one "
        "per class of its 2 training classes (classnames.json); it cannot classify other "
        "classes (here 2: cat, dog)"
    ) in err
    assert not (evaluated / "results.json").exists()


def test_a_flag_after_the_overrides_is_named(workspace, tmp_path, capsys):
    out = tmp_path / "run"
    err = refused([*train_argv(workspace, out, "CoOp"), "--overwrite"], capsys, workspace["data"])
    assert (
        "error: --overwrite comes after the KEY VALUE overrides, where it is read as a key: put "
        "flags (--overwrite, --eval-only, ...) before the overrides"
    ) in err
    assert not out.exists()
