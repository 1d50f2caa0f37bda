"""TensorBoard event files in a run directory, with Dassl's tags and steps under both engines;
a killed and resumed run's curves have each step once."""

import glob
import json
import os
import random

import numpy as np
import pytest
import torch

import train
from engine.tensorboard import FOLDER, ScalarLog
from tests.test_dassl_engine import HAVE_DASSL, needs_dassl, toy_argv

MODULES = ("visual_prompt", "cavpt", "prompt_learner")
EPOCHS, BATCHES = 2, 7  # FAST in toy_argv: 30 classes x 2 shots in batches of 8, last dropped
# DPT's log dict: the loss, the batch accuracy and the loss terms (the guidance terms while
# epoch < PRETRAIN.C, which is 1 here).
LOG_TERMS = ("loss", "acc", "ce_main", "ce_frozen_image", "ce_frozen_text", "cavpt_loss",
             "cavpt_triples")  # fmt: skip
METRICS = ("accuracy", "error_rate", "macro_f1", "perclass_accuracy")


def scalars(run_dir):
    """``{tag: [(step, value), ...]}`` of the run's event files, read as TensorBoard reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(run_dir, FOLDER))
    events.Reload()
    return {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """DPT on a small Toy under each engine (Dassl's where it is installed), with the best
    validation epoch deployed, so that the val split is evaluated each epoch too, and the
    classes' accuracies."""
    root = tmp_path_factory.mktemp("tensorboard")
    engines = ("builtin", "dassl") if HAVE_DASSL else ("builtin",)
    out = {}
    for engine in engines:
        out[engine] = root / engine
        opts = ("TEST.FINAL_MODEL", "best_val", "OPTIM.WARMUP_EPOCH", "0",
                "TEST.PER_CLASS_RESULT", "True")  # fmt: skip
        train.main(toy_argv(root / "data", out[engine], "DPT", engine, opts=opts))
    return out


def steps(curve):
    return [step for step, _ in curve]


@pytest.mark.slow
def test_the_builtin_engine_writes_dassls_tags_at_dassls_steps(runs):
    run_dir = runs["builtin"]
    written = scalars(run_dir)
    assert set(written) == {
        *(f"train/{name}" for name in LOG_TERMS),
        "train/lr",
        *(f"train/lr/{module}" for module in MODULES),
        *(f"{split}/{metric}" for split in ("val", "test") for metric in METRICS),
    }
    every_batch = list(range(EPOCHS * BATCHES))
    for tag in ("train/loss", "train/cavpt_loss", "train/lr", *(f"train/lr/{m}" for m in MODULES)):
        assert steps(written[tag]) == every_batch, tag
    assert steps(written["train/ce_frozen_image"]) == list(range(BATCHES))  # epoch 1 only
    # The text prompt has its own schedule (the original's 0.002); train/lr is the first module's.
    first = next(iter(MODULES))
    assert written["train/lr"] == written[f"train/lr/{first}"]
    assert {v for _, v in written["train/lr/prompt_learner"]} != {v for _, v in written["train/lr"]}
    assert steps(written["val/accuracy"]) == [0, 1]
    with open(run_dir / "results.json") as f:
        results = json.load(f)
    # The final evaluation, at the epoch of the deployed (best validation) model.
    [(step, accuracy)] = written["test/accuracy"]
    assert step == results["epoch"] - 1 and accuracy == pytest.approx(results["accuracy"])
    [(_, perclass)] = written["test/perclass_accuracy"]
    assert perclass == pytest.approx(results["perclass_accuracy"])


@pytest.mark.slow
@needs_dassl
def test_both_engines_write_the_same_tags_at_the_same_steps(runs):
    builtin, dassl = scalars(runs["builtin"]), scalars(runs["dassl"])
    assert set(builtin) == set(dassl)
    for tag in builtin:
        assert steps(builtin[tag]) == steps(dassl[tag]), tag


def test_writing_draws_from_no_random_generator(tmp_path):
    optim = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    log = ScalarLog()
    log.open(str(tmp_path), first_step=0)
    log.train_step(0, {"loss": 1.0}, {"model": optim})
    log.evaluation("test", {"accuracy": 50.0, "error": 50.0, "macro_f1": 40.0}, 0)
    log.close()
    after = (random.getstate(), np.random.get_state()[1], torch.get_rng_state())
    assert before[0] == after[0] and (before[1] == after[1]).all()
    assert torch.equal(before[2], after[2])
    assert scalars(tmp_path)["train/lr/model"] == [(0, pytest.approx(0.1))]


@pytest.mark.slow
def test_a_killed_run_resumed_has_each_step_once(tmp_path):
    """Killed after epoch 2's curves went to disk but before its checkpoint: the resumed run
    trains epoch 2 again, in a second event file, and hides the first one's epoch 2."""
    from tests.forked_train import ForkedRun, launch

    out = tmp_path / "run"
    argv = toy_argv(tmp_path / "data", out, "CoOp", "builtin", opts=("OPTIM.MAX_EPOCH", "3"))
    assert ForkedRun(argv, out, kill_at="last_epoch.json#2", when="before").wait()
    assert not launch(argv, out)
    assert len(glob.glob(str(out / FOLDER / "events.out.tfevents.*"))) == 2
    written = scalars(out)
    assert steps(written["train/loss"]) == list(range(3 * BATCHES))
    assert steps(written["test/accuracy"]) == [2]
