"""torchrun with 2 CPU processes (gloo) trains and evaluates as one process with the same
global batch; rank 0 alone writes the log, checkpoints and results."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import train
from engine.evaluator import ClassificationEvaluator
from tests.run_fixtures import REPO, make_workspace, train_argv

# 4 classes, 3 shots: three global batches of 4 in which the ranks' halves hold different
# numbers of CAVPT-selected triples (so the CAVPT mean must run over both ranks); an odd test
# split makes the distributed sampler repeat one image to even the shards.
CLASSES = {"ant": 6, "bee": 6, "cat": 6, "dog": 9}
SETTINGS = ("TRAINER.VPT.N_CTX", "3", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
            "TRAINER.SELECTED_COVPT.CPN", "2", "PRETRAIN.C", "1", "USE_CUDA", "False",
            "DATASET.NUM_SHOTS", "3", "DATALOADER.TEST.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2",
            # the same samples in the same global batches, without random augmentation
            "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler",
            "INPUT.TRANSFORMS", "('normalize',)")  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("ddp"), CLASSES)


# BOTTOMLIMIT 1: CAVPT in every block and a deep visual prompt of zero blocks.
@pytest.mark.slow
@pytest.mark.parametrize("bottomlimit", ["2", "1"])
def test_two_gloo_processes_give_the_one_process_run(workspace, tmp_path, bottomlimit):
    settings = (*SETTINGS, "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", bottomlimit)
    one = train.main(train_argv(workspace, tmp_path / "one", "DPT", overrides=settings))
    argv = train_argv(workspace, tmp_path / "two", "DPT", overrides=settings)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    result = subprocess.run(
        [*launcher, "--nproc_per_node", "2", "train.py", *argv],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert one["total"] % 2 == 1 and two["total"] == one["total"]  # every test image once
    assert (two["correct"], two["macro_f1"]) == (one["correct"], one["macro_f1"])
    for module in ("prompt_learner", "visual_prompt", "cavpt"):
        ours, theirs = (
            torch.load(tmp_path / run / module / "model.pth.tar-2", weights_only=False)
            for run in ("two", "one")
        )
        for key, value in theirs["state_dict"].items():
            torch.testing.assert_close(ours["state_dict"][key], value, rtol=1e-5, atol=1e-6)
    log = (tmp_path / "two" / "log.txt").read_text()
    assert "Distributed data parallel: 2 processes (gloo)" in log
    assert log.count("* accuracy:") == 1 and log.count("epoch [2/2] batch [3/3]") == 1
    assert sorted(os.listdir(tmp_path / "two")) == sorted(os.listdir(tmp_path / "one"))


def test_distributed_evaluation_counts_each_sample_once(monkeypatch):
    """The ranks' shards (with the sampler's repeated sample) merge into the plain result."""
    from engine import distributed

    labels = torch.tensor([0, 1, 1, 0, 1])
    logits = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0, 0]), 2).float()
    shards = [[0, 2, 4], [1, 3, 0]]  # DistributedSampler of 5 samples on 2 ranks
    parts = [(torch.tensor(s), logits[s].argmax(1), labels[s]) for s in shards]
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    monkeypatch.setattr(distributed, "gather_objects", lambda obj: parts)
    evaluator = ClassificationEvaluator({0: "a", 1: "b"})
    evaluator.process(logits[shards[0]], labels[shards[0]], torch.tensor(shards[0]))
    results = evaluator.evaluate()
    assert (results["total"], results["correct"]) == (5, 3)
    expected = ClassificationEvaluator({0: "a", 1: "b"})
    monkeypatch.setattr(distributed, "is_distributed", lambda: False)
    expected.process(logits, labels)
    assert results == expected.evaluate()
    assert np.isclose(results["accuracy"], 60.0)
