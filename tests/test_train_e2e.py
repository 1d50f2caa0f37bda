"""train.py end to end on a small CLIP checkpoint and a generated image folder (CoOp)."""

import json
import os
import re
import stat
import subprocess
import sys

import pytest
import torch

import train
from tests.run_fixtures import REPO, make_workspace, train_argv
from trainers import builtin
from trainers.builtin import ClipTrainer

CLASSES = {"red_circle": 8, "green_square": 8, "blue_star": 8, "yellow_heart": 8}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("e2e"), CLASSES)


def coop_argv(ws, out, *flags, overrides=()):
    return train_argv(ws, out, "CoOp", *flags, overrides=overrides)


def run_cli(argv, cwd=REPO):
    return subprocess.run(
        [sys.executable, "train.py", *argv], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def ctx_of(out, epoch):
    ckpt = torch.load(os.path.join(out, "prompt_learner", f"model.pth.tar-{epoch}"),
                      weights_only=False)  # fmt: skip
    return ckpt["state_dict"]["ctx"]


def without_output_dir(argv):
    i = argv.index("--output-dir")
    return argv[:i] + argv[i + 2 :]


def tree_state(folder):
    """{relative path: (size, mtime_ns)} of every file below ``folder``."""
    state = {}
    for dirpath, _, filenames in os.walk(folder):
        for name in filenames:
            path = os.path.join(dirpath, name)
            stat = os.stat(path)
            state[os.path.relpath(path, folder)] = (stat.st_size, stat.st_mtime_ns)
    return state


@pytest.mark.slow
def test_help_shows_coop_flags_and_lists_trainers_and_datasets():
    result = run_cli(["--help"])
    assert result.returncode == 0
    for flag in ["--root", "--output-dir", "--resume", "--seed", "--trainer", "--backbone",
                 "--config-file", "--dataset-config-file", "--eval-only", "--model-dir",
                 "--load-epoch", "--no-train", "--threads"]:  # fmt: skip
        assert flag in result.stdout
    listed = " ".join(result.stdout.split())  # the lists are wrapped
    for name in [*train.TRAINER_REGISTRY.names(), *train.DATASET_REGISTRY.names()]:
        assert f" {name}," in listed or f" {name} " in listed or listed.endswith(name), name
    assert "caltech101 dtd eurosat" in listed and " toy toy_warm ucf101" in listed


@pytest.mark.slow
def test_coop_train_log_results_checkpoints_and_eval_only(workspace):
    out = workspace["root"] / "run"
    result = run_cli(coop_argv(workspace, out))
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "epoch [2/2] batch [2/2]" in log and " lr " in log and " eta " in log
    assert "* accuracy:" in log and "* macro_f1:" in log and "* total: 8" in log
    results = json.loads((out / "results.json").read_text())
    assert results["split"] == "test" and results["total"] == 8
    assert results["trainer"] == "CoOp" and len(results["config_digest"]) == 16
    assert f"* accuracy: {results['accuracy']:.1f}%" in log
    # Dassl's layout: only the last epoch is kept (CHECKPOINT_FREQ 0), pointer names it.
    assert sorted(os.listdir(out / "prompt_learner")) == ["checkpoint", "model.pth.tar-2"]
    ckpt = torch.load(out / "prompt_learner" / "model.pth.tar-2", weights_only=False)
    assert {"state_dict", "epoch", "optimizer", "scheduler", "val_result"} <= set(ckpt)
    assert ckpt["epoch"] == 2
    # The few-shot subsets are cached as JSON next to the data.
    assert os.path.isfile(os.path.join(workspace["data"], "split_fewshot", "shot_2-seed_1.json"))

    evaluated = workspace["root"] / "eval"
    result = run_cli(coop_argv(workspace, evaluated, "--eval-only", "--model-dir", str(out),
                               "--load-epoch", "2"))  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads((evaluated / "results.json").read_text())
    assert again["accuracy"] == results["accuracy"] and again["correct"] == results["correct"]


@pytest.mark.slow
def test_finished_run_is_refused_then_overwrite_moves_it_aside(workspace):
    out = workspace["root"] / "finished"
    train.main(coop_argv(workspace, out, overrides=("OPTIM.MAX_EPOCH", "1")))
    result = run_cli(coop_argv(workspace, out, overrides=("OPTIM.MAX_EPOCH", "1")))
    assert result.returncode == 2
    assert "already holds a finished run" in result.stderr and "--overwrite" in result.stderr
    train.main(coop_argv(workspace, out, "--overwrite", overrides=("OPTIM.MAX_EPOCH", "1")))
    previous = [d for d in os.listdir(out) if d.startswith("previous-")]
    assert len(previous) == 1
    assert os.path.isfile(out / previous[0] / "results.json")
    assert os.path.isfile(out / "results.json")


def test_resume_after_crash_matches_uninterrupted_run(workspace, monkeypatch):
    straight = workspace["root"] / "straight"
    train.main(coop_argv(workspace, straight))

    crashed = workspace["root"] / "crashed"
    original_save = ClipTrainer.save_model

    def save_then_die(self, epoch, *args, **kwargs):
        original_save(self, epoch, *args, **kwargs)
        if epoch == 0:
            raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(ClipTrainer, "save_model", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.main(coop_argv(workspace, crashed))
    monkeypatch.undo()
    assert not os.path.exists(crashed / "results.json")
    assert (crashed / "prompt_learner" / "checkpoint").read_text().strip() == "model.pth.tar-1"

    train.main(coop_argv(workspace, crashed, "--resume", str(crashed)))
    assert "Resumed from" in (crashed / "log.txt").read_text()
    torch.testing.assert_close(ctx_of(crashed, 2), ctx_of(straight, 2), rtol=0, atol=0)
    a = json.loads((crashed / "results.json").read_text())
    b = json.loads((straight / "results.json").read_text())
    assert a["accuracy"] == b["accuracy"]


def test_resume_refuses_a_changed_config(workspace, monkeypatch):
    out = workspace["root"] / "changed"
    original_save = ClipTrainer.save_model

    def save_then_die(self, epoch, *args, **kwargs):
        original_save(self, epoch, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(ClipTrainer, "save_model", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.main(coop_argv(workspace, out))
    monkeypatch.undo()
    changed = r"different configuration \(OPTIM.LR: 0.5 there, 0.1 now\)"
    with pytest.raises(ValueError, match=changed):
        train.main(coop_argv(workspace, out, overrides=("OPTIM.LR", "0.1")))


@pytest.mark.slow
@pytest.mark.parametrize(
    "flags, overrides, message",
    [
        (["--trainer", "CoOpp"], [], "Unknown trainer 'CoOpp'. Did you mean 'CoOp'"),
        ([], ["DATASET.NAME", "ImageFoldr"], "Unknown dataset 'ImageFoldr'"),
        (["--config-file", "configs/nope.yaml"], [], "Config file not found: 'configs/nope.yaml'"),
        ([], ["OPTIM.MAX_EPOCHS", "3"], "Did you mean 'OPTIM.MAX_EPOCH'"),
        ([], ["INPUT.SIZE", "(224, 224)"], "takes 32x32 images"),
        ([], ["MODEL.BACKBONE.NAME", "ViT-Q/3"], "neither a file nor a CLIP model name"),
    ],
)
def test_bad_input_fails_early_with_a_clear_message(workspace, tmp_path, flags, overrides, message):
    result = run_cli(coop_argv(workspace, tmp_path / "bad", *flags, overrides=overrides))
    assert result.returncode == 2, result.stderr[-2000:]
    assert message in result.stderr
    assert not os.path.exists(tmp_path / "bad" / "prompt_learner")


@pytest.mark.slow
def test_eval_only_writes_below_the_evaluated_run_and_never_moves_it(workspace):
    run = workspace["root"] / "to_evaluate"
    train.main(coop_argv(workspace, run))
    before = tree_state(run)
    evaluated = json.loads((run / "results.json").read_text())

    # No --output-dir: the evaluation goes below the run, named after the data it evaluates.
    evaluate = ("--eval-only", "--model-dir", str(run))
    train.main(without_output_dir(coop_argv(workspace, run, *evaluate)))
    results = json.loads((run / "eval" / "imagefolder_test" / "results.json").read_text())
    assert results["accuracy"] == evaluated["accuracy"] and results["epoch"] == 2
    train.main(
        without_output_dir(
            coop_argv(
                workspace,
                run,
                *evaluate,
                "--load-epoch",
                "2",
                overrides=("DATASET.SUBSAMPLE_CLASSES", "new"),
            )
        )
    )
    assert (run / "eval" / "imagefolder_new_test_epoch2" / "results.json").is_file()
    # Evaluated again (per class this time): the evaluation before it moves aside.
    per_class = ("TEST.PER_CLASS_RESULT", "True")
    train.main(without_output_dir(coop_argv(workspace, run, *evaluate, overrides=per_class)))
    again = json.loads((run / "eval" / "imagefolder_test" / "results.json").read_text())
    assert again["accuracy"] == evaluated["accuracy"] and "per_class" in again
    (previous,) = (run / "eval" / "imagefolder_test").glob("previous-*")
    assert json.loads((previous / "results.json").read_text()) == results

    # Into the run itself, or a folder holding it: refused, with --overwrite too.
    message = (f"never writes into the run it evaluates (and --overwrite would move its "
               f"checkpoints aside). Leave --output-dir out (the evaluation then goes to "
               f"'{run / 'eval' / 'imagefolder_test'}')")  # fmt: skip
    for output_dir in (run, workspace["root"]):
        for flags in ([], ["--overwrite"]):
            argv = coop_argv(workspace, output_dir, *evaluate, *flags)
            with pytest.raises(FileExistsError, match=re.escape(message)):
                train.main(argv)
    result = run_cli(argv)
    assert result.returncode == 2 and message in result.stderr, result.stderr[-3000:]
    assert f"error: The output directory '{workspace['root']}' holds the --model-dir" in (
        result.stderr)  # fmt: skip
    after = tree_state(run)
    assert {k: v for k, v in after.items() if not k.startswith("eval/")} == before


def test_default_run_directory_is_named_after_dataset_trainer_config_and_seed(
    workspace, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    train.main(without_output_dir(coop_argv(workspace, "unused")))
    run = tmp_path / "output/imagefolder/CoOp/vit_b32_2shots/nctx4_cscFalse_ctpend/seed1"
    assert (run / "results.json").is_file()
    assert "Output directory: output/imagefolder/CoOp/" in (run / "log.txt").read_text()
    # A dataset config file names the dataset; base classes get CoCoOp's layout.
    args = train.build_parser().parse_args(
        ["--dataset-config-file", os.path.join(REPO, "configs/datasets/toy.yaml"), "--trainer",
         "DPT", "--config-file", os.path.join(REPO, "configs/trainers/DPT/tiny.yaml"),
         "DATASET.SUBSAMPLE_CLASSES", "base"]
    )  # fmt: skip
    chosen = train.choose_output_dir(args, builtin.setup_cfg(args)).OUTPUT_DIR
    expected = "output/base2new/train_base/toy/shots_16/DPT/tiny/nctx4_cscFalse_ctpend_vctx10"
    assert chosen == f"{expected}/seed1"
    # An OUTPUT_DIR in a config file is kept (Dassl's behaviour).
    config = tmp_path / "with_output.yaml"
    config.write_text('OUTPUT_DIR: "my/run"\n')
    args = train.build_parser().parse_args(["--trainer", "CoOp", "--config-file", str(config)])
    assert train.choose_output_dir(args, builtin.setup_cfg(args)).OUTPUT_DIR == "my/run"


def test_results_and_checkpoints_follow_the_umask(workspace):
    out = workspace["root"] / "shared"
    previous = os.umask(0o022)
    try:
        train.main(coop_argv(workspace, out, overrides=("OPTIM.MAX_EPOCH", "1")))
    finally:
        os.umask(previous)
    for name in ("results.json", "log.txt", "prompt_learner/model.pth.tar-1",
                 "prompt_learner/checkpoint"):  # fmt: skip
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o644, name


def test_a_resumed_run_reuses_its_zero_shot_baseline(workspace, monkeypatch):
    out = workspace["root"] / "baseline"
    argv = coop_argv(workspace, out, overrides=("TEST.ZEROSHOT_BASELINE", "True"))
    original_save = ClipTrainer.save_model

    def save_then_die(self, epoch, *args, **kwargs):
        original_save(self, epoch, *args, **kwargs)
        raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(ClipTrainer, "save_model", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train.main(argv)
    monkeypatch.undo()
    train.main(argv)
    log = (out / "log.txt").read_text()
    assert log.count("Evaluate zero-shot CLIP on the *test* set") == 2
    assert log.count("Reusing the evaluation made by the run in") == 1
    assert log.count("Resumed from") == 1
    first, second = log.split("new session in this run")
    assert "Reusing" not in first and "Reusing" in second
    # The reused evaluation prints the same result block as the evaluation it reuses.
    block = first[first.index("Evaluate zero-shot CLIP") :].split("* macro_f1")[0]
    assert block.split("\n", 1)[1] in second
    results = json.loads((out / "results.json").read_text())
    assert f"Zero-shot CLIP: {results['zeroshot_accuracy']:.1f}%" in second


@pytest.mark.slow
def test_a_negative_thread_count_is_refused_before_any_work(workspace, tmp_path):
    result = run_cli(coop_argv(workspace, tmp_path / "bad", "--threads", "-2"))
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: NUM_THREADS (--threads) is -2: give a number of threads, or 0 to take them from "
        "the CPUs available to this process\n"
    )
    assert not os.path.exists(tmp_path / "bad")
