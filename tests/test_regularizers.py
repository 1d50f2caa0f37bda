"""The knowledge-preserving regularisers (TRAINER.REGULARIZER, trainers/knowledge.py) as
options of DPT, VLP, MaPLe and CoOp under both engines, and the paper methods as those options
on their base method: ``--trainer KgCoOp``, ``ProGrad`` and ``PromptSRC`` train what CoOp and
IVLP train with the options on, bit for bit (slow: short runs on a small Toy)."""

import importlib.util
import os
import signal
import time

import pytest
import torch

import train
from tests.forked_train import ForkedRun, launch
from tests.run_fixtures import assert_identical
from tests.test_dassl_engine import read_if_there, results, toy_argv

pytestmark = pytest.mark.slow

R = "TRAINER.REGULARIZER."
OPTIONS = {
    "text_consistency": (f"{R}TEXT_CONSISTENCY", "8"),
    "agreement": (f"{R}TEXT_AGREEMENT", "25", f"{R}IMAGE_AGREEMENT", "10",
                  f"{R}LOGITS_AGREEMENT", "1", f"{R}TEMPLATES", "imagenet"),
    "projection": (f"{R}PROJECTION", "1", f"{R}TEMPERATURE", "2"),
    "aggregation": (f"{R}GPA_MEAN", "1", f"{R}GPA_STD", "1"),
}  # fmt: skip
ALL = tuple(value for option in OPTIONS.values() for value in option)
BASE_METHODS = ["CoOp", "VLP", "DPT", "MaPLe"]
HAS_DASSL = importlib.util.find_spec("dassl") is not None


def train_and_evaluate(tmp_path, name, engine, opts):
    """Train ``name`` with ``opts``; the other engine evaluates the run to its accuracy."""
    data, run = tmp_path / "data", tmp_path / "run"
    train.main(toy_argv(data, run, name, engine, opts=opts))
    record = results(run)
    assert record["trainer"] == name and record["total"] == 60
    other = {"builtin": "dassl", "dassl": "builtin"}[engine] if HAS_DASSL else engine
    out = tmp_path / "eval"
    train.main(toy_argv(data, out, name, other, "--eval-only", "--model-dir", str(run), opts=opts))
    assert results(out)["accuracy"] == record["accuracy"]
    return run


LOGGED_TERMS = {  # what each option adds to the step's log line
    "text_consistency": ["text_consistency"],
    "agreement": ["text_agreement", "image_agreement", "logits_agreement"],
    "projection": ["zeroshot_distillation"],
    "aggregation": [],
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("name", BASE_METHODS)
def test_each_regularizer_trains_and_evaluates_with_each_base_method(tmp_path, name, option):
    run = train_and_evaluate(tmp_path, name, "builtin", OPTIONS[option])
    log = (run / "log.txt").read_text()
    assert all(f" {term} " in log for term in LOGGED_TERMS[option])


@pytest.mark.skipif(not HAS_DASSL, reason="Dassl is not installed")
@pytest.mark.parametrize("name", BASE_METHODS)
def test_all_regularizers_together_under_dassl(tmp_path, name):
    train_and_evaluate(tmp_path, name, "dassl", ALL)


# The whole short run at the learning rate (tiny.yaml's warm-up would last it), so that what
# each option adds moves the prompts.
NO_WARMUP = ("OPTIM.WARMUP_EPOCH", "0")


def train_toy(tmp_path, folder, name, opts, config=None):
    data, run = tmp_path / "data", tmp_path / folder
    argv = toy_argv(data, run, name, "builtin", opts=(*NO_WARMUP, *opts), config=config)
    train.main(argv)
    return run


def learned_states(run, epoch=2):
    paths = sorted(run.glob(f"*/model.pth.tar-{epoch}"))
    return {p.parent.name: torch.load(p, weights_only=False)["state_dict"] for p in paths}


def equal_states(a, b):
    return a.keys() == b.keys() and all(
        a[module].keys() == b[module].keys()
        and all(torch.equal(a[module][key], b[module][key]) for key in a[module])
        for module in a
    )


C = "TRAINER.COOP."
P = "TRAINER.PROMPTSRC."
IVLP_AS_PROMPTSRC = (  # PromptSRC's tiny.yaml in IVLP's keys
    "TRAINER.IVLP.N_CTX_VISION", "2", "TRAINER.IVLP.N_CTX_TEXT", "2",
    "TRAINER.IVLP.CTX_INIT", "a photo of a", "TRAINER.IVLP.PROMPT_DEPTH_VISION", "4",
    "TRAINER.IVLP.PROMPT_DEPTH_TEXT", "3",
)  # fmt: skip
PAPER_METHODS = {  # method, its options, its base method and the base's options
    "KgCoOp": ((f"{C}W", "8.0"), "CoOp", (f"{R}TEXT_CONSISTENCY", "8")),
    "ProGrad": (("LOSS.LAMBDA", "0.5", "LOSS.T", "2"), "CoOp",
                (f"{R}PROJECTION", "0.5", f"{R}TEMPERATURE", "2")),
    "PromptSRC": ((f"{P}GPA_MEAN", "1", f"{P}GPA_STD", "1"), "IVLP",
                  (f"{R}TEXT_AGREEMENT", "25", f"{R}IMAGE_AGREEMENT", "10",
                   f"{R}LOGITS_AGREEMENT", "1", f"{R}TEMPLATES", "imagenet",
                   f"{R}GPA_MEAN", "1", f"{R}GPA_STD", "1")),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(PAPER_METHODS))
def test_a_paper_method_is_its_base_method_with_the_options(tmp_path, name):
    """The base method with the options, on the paper method's tiny.yaml (its schedule; CoOp
    given KgCoOp's and ProGrad's initial context in words): the same learned state after
    training, bit for bit, and the same accuracy; without the options, another state."""
    opts, base, base_opts = PAPER_METHODS[name]
    paper = train_toy(tmp_path, "paper", name, opts)
    base_only = (f"{C}CTX_INIT", "a photo of a") if base == "CoOp" else IVLP_AS_PROMPTSRC
    ours = train_toy(tmp_path, "base", base, (*base_only, *base_opts), config=name)
    assert learned_states(paper) != {}
    assert equal_states(learned_states(ours), learned_states(paper))
    assert results(ours)["accuracy"] == results(paper)["accuracy"]
    without = train_toy(tmp_path, "without", base, base_only, config=name)
    assert not equal_states(learned_states(without), learned_states(paper))


# PromptSRC over 4 epochs, its aggregation centred on epoch 2: each epoch's prompts weigh
GPA_RUN = ("OPTIM.MAX_EPOCH", "4", "TRAIN.CHECKPOINT_FREQ", "1",
           "TRAINER.PROMPTSRC.GPA_MEAN", "2", "TRAINER.PROMPTSRC.GPA_STD", "1")  # fmt: skip
ENGINES = ["builtin"] + (["dassl"] if HAS_DASSL else [])


def killed_in_epoch_3(argv, out, engine):
    """A SIGKILL in epoch 3: after the builtin loop committed epoch 2, or while Dassl trains
    epoch 3 (it saved epoch 2)."""
    if engine == "builtin":
        return launch(argv, out, kill_at="last_epoch.json#2", when="after")
    run, deadline = ForkedRun(argv, out), time.monotonic() + 240
    while "epoch [3/4] batch [" not in read_if_there(out / "log.txt"):
        assert time.monotonic() < deadline, read_if_there(out / "log.txt")[-2000:]
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    return run.wait()


@pytest.mark.parametrize("engine", ENGINES)
def test_a_killed_and_resumed_aggregation_equals_the_uninterrupted_one(tmp_path, engine):
    """The running sum of PromptSRC's Gaussian prompt aggregation is saved with each
    checkpoint: a run killed in epoch 3 and started again ends with the same aggregated
    prompts, optimiser states and accuracy, bit for bit."""
    data = tmp_path / "data"
    reference, again = tmp_path / "reference", tmp_path / "killed"
    assert not launch(toy_argv(data, reference, "PromptSRC", engine, opts=GPA_RUN), reference)
    argv = toy_argv(data, again, "PromptSRC", engine, opts=GPA_RUN)
    assert killed_in_epoch_3(argv, again, engine)
    assert not launch(argv, again)
    log = (again / "log.txt").read_text()
    assert "Resumed from" in log or "(will resume training)" in log
    assert_identical(final_checkpoints(again), final_checkpoints(reference))
    assert results(again)["accuracy"] == results(reference)["accuracy"]


def final_checkpoints(run):
    """Each module's last checkpoint: weights, optimiser, schedule and the running sum."""
    keys = ("state_dict", "optimizer", "scheduler", "epoch", "training_state")
    paths = sorted(run.glob("*/model.pth.tar-4"))
    assert paths
    return {
        path.parent.name: {
            key: value for key, value in torch.load(path, weights_only=False).items() if key in keys
        }
        for path in paths
    }
