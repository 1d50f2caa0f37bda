"""train.py end to end on a small CLIP checkpoint and a generated image folder (CoOp)."""

import json
import os
import subprocess
import sys

import pytest
import torch

import train
from tests.run_fixtures import REPO, make_workspace, train_argv
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


@pytest.mark.slow
def test_help_shows_coop_flags():
    result = run_cli(["--help"])
    assert result.returncode == 0
    for flag in ["--root", "--output-dir", "--resume", "--seed", "--trainer", "--backbone",
                 "--config-file", "--dataset-config-file", "--eval-only", "--model-dir",
                 "--load-epoch", "--no-train"]:  # fmt: skip
        assert flag in result.stdout


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
