"""DPT and VLP under ``--engine dassl`` train step for step like the original DPT code
(github fanrena/DPT, commit 11fef90, imported from its own checkout: ``DPT_ORIGINAL_DIR``, by
default ``../DPT`` beside this repository).

Both run in Dassl (same install, same seed, same few-shot Toy data and batch order, the
shipped tiny CLIP, float32 on the CPU; ours with its default exact speed-ups, TRAINER.SPEED),
ours from the original's initial weights, each in its own process (``tests/trajectory_runner.py``,
which also lists what it adapts in the original). Six epochs cross the visual modules' constant
warm-up (2 epochs at WARMUP_CONS_LR), the text prompt's (1 epoch, hard-coded in the original),
the end of the guidance terms (PRETRAIN.C 3) and the cosine decay; CPN 3 of 30 classes makes
DPT's auxiliary loss select only some of its (image, block, slot) triples, in two CAVPT blocks
(BOTTOMLIMIT 3 of 4).
"""

import argparse
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from tools.original_code import default_original_dir, original_unavailable

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_DIR = default_original_dir()
METHODS = ("DPT", "VLP")
SEED = 1
EPOCHS = 6
# Toy at 2 shots: 60 images, 3 steps an epoch at batch 16 (Dassl drops the last partial batch).
OVERRIDES = [
    "DATASET.NUM_SHOTS", 2,
    "DATASET.TOY.TRAIN_PER_CLASS", 4,
    "DATASET.TOY.VAL_PER_CLASS", 1,
    "DATASET.TOY.TEST_PER_CLASS", 1,
    "DATALOADER.TRAIN_X.BATCH_SIZE", 16,
    "DATALOADER.NUM_WORKERS", 0,
    "RANDOMNESS", "global",  # the original draws order and augmentation as Dassl does
    "OPTIM.MAX_EPOCH", EPOCHS,
    "OPTIM.LR_SCHEDULER", "cosine",
    "OPTIM.WARMUP_EPOCH", 2,
    "OPTIM.WARMUP_TYPE", "constant",
    "PRETRAIN.C", 3,
    "TRAINER.COOP.PREC", "fp32",
    "MODEL.BACKBONE.NAME", str(REPO / "assets" / "tiny_clip" / "tiny_clip_vit.pt"),
    "USE_CUDA", False,
    "TEST.ZEROSHOT_BASELINE", False,
    "TEST.NO_TEST", True,
]  # fmt: skip
DPT_OVERRIDES = ["TRAINER.SELECTED_COVPT.CPN", 3, "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", 3]
# Measured: per-step losses within 4e-6, final weights within 2e-6 of each tensor's largest
# weight (float32 rounding of equal computations done in another order).
LOSS_ATOL = 5e-5
WEIGHT_RTOL = 2e-5
RUNNER_TIMEOUT_S = 600


def dassl_engine_or_skip():
    import dassl_engine

    try:
        return dassl_engine.load()
    except dassl_engine.DasslUnavailable as err:
        pytest.skip(f"both sides train in Dassl: {err}")


def original_dir_or_skip():
    reason = original_unavailable(ORIGINAL_DIR)
    if reason:
        pytest.skip(reason)
    return ORIGINAL_DIR


def write_configs(engine, work_dir, data_root):
    """``<method>/original.yaml`` and ``ours.yaml``: the full config of each side, built the
    way ``train.py --engine dassl`` builds it, different only in OUTPUT_DIR."""
    for method in METHODS:
        run_dir = work_dir / method
        run_dir.mkdir()
        for side in ("original", "ours"):
            args = argparse.Namespace(
                dataset_config_file=str(REPO / "configs" / "datasets" / "toy.yaml"),
                config_file=str(REPO / "configs" / "trainers" / method / "tiny.yaml"),
                trainer=method,
                root=str(data_root),
                output_dir=str(run_dir / side),
                seed=SEED,
                opts=OVERRIDES + (DPT_OVERRIDES if method == "DPT" else []),
            )
            (run_dir / f"{side}.yaml").write_text(engine.setup_cfg(args).dump())


def run_side(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "tests.trajectory_runner", *map(str, args)]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUNNER_TIMEOUT_S
    )
    if done.returncode:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """``{method: (original record, our record)}``, both sides trained once for the module."""
    engine = dassl_engine_or_skip()
    original_dir = original_dir_or_skip()
    work_dir = tmp_path_factory.mktemp("trajectory")
    write_configs(engine, work_dir, tmp_path_factory.mktemp("data"))
    run_side("original", work_dir, "--original-dir", original_dir)
    run_side("ours", work_dir)
    return {
        method: tuple(torch.load(work_dir / method / f"{side}.pt") for side in ("original", "ours"))
        for method in METHODS
    }


def in_our_names(original):
    """The original's initial and final weights (our names) and its steps' learning rates
    keyed by our module names."""
    from models.upstream import upstream_to_ours
    from trainers.dpt import DPT

    ours_of = {theirs: ours for ours, theirs in DPT.original_dpt_folders.items()}
    steps = [
        {**step, "lr": {ours_of[name]: lr for name, lr in step["lr"].items()}}
        for step in original["steps"]
    ]
    init, _, _ = upstream_to_ours(original["init"])
    final, _, unknown = upstream_to_ours(original["final"])
    assert not unknown, f"original parameters without our counterpart: {unknown}"
    return init, final, steps


def loss_difference_per_epoch(original_steps, our_steps):
    worst = defaultdict(float)
    for theirs, ours in zip(original_steps, our_steps):
        worst[theirs["epoch"]] = max(worst[theirs["epoch"]], abs(theirs["loss"] - ours["loss"]))
    return dict(worst)


def weight_difference_per_module(original_final, our_final):
    """``{module: (max |difference|, max over its tensors of max |difference| / max |weight|)}``."""
    table = {}
    for name, theirs in original_final.items():
        diff = (theirs - our_final[name]).abs().max().item()
        relative = diff / theirs.abs().max().item()
        worst = table.get(name.split(".")[0], (0.0, 0.0))
        table[name.split(".")[0]] = (max(worst[0], diff), max(worst[1], relative))
    return table


def largest_change(init, final):
    by_module = defaultdict(float)
    for name, value in final.items():
        module = name.split(".")[0]
        by_module[module] = max(by_module[module], (value - init[name]).abs().max().item())
    return dict(by_module)


def report(method, losses, weights):
    lines = [f"{method}: largest |loss difference| per epoch (ours vs the original)"]
    lines += [f"  epoch {epoch + 1}: {diff:.3g}" for epoch, diff in sorted(losses.items())]
    lines.append(
        f"{method}: final weights, max |difference| (relative: per tensor, to its max |weight|)"
    )
    lines += [f"  {module}: {abs_:.3g} ({rel:.3g})" for module, (abs_, rel) in weights.items()]
    return "\n".join(lines)


@pytest.mark.parametrize("method", METHODS)
def test_trajectory_equals_original(records, method):
    original, ours = records[method]
    init, original_final, original_steps = in_our_names(original)
    our_steps = ours["steps"]

    # Same few-shot items, batches and per-module learning rates at every step.
    assert ours["train_items"] == original["train_items"]
    assert len(our_steps) == len(original_steps) == EPOCHS * 3
    batches = [(s["epoch"], s["batch"], s["indices"]) for s in our_steps]
    assert batches == [(s["epoch"], s["batch"], s["indices"]) for s in original_steps]
    assert [s["lr"] for s in our_steps] == [s["lr"] for s in original_steps]

    losses = loss_difference_per_epoch(original_steps, our_steps)
    weights = weight_difference_per_module(original_final, ours["final"])
    summary = report(method, losses, weights)
    print(summary)
    assert set(ours["final"]) == set(original_final)
    assert max(losses.values()) <= LOSS_ATOL, summary
    assert all(rel <= WEIGHT_RTOL for _, rel in weights.values()), summary
    # Training moved every module far beyond the tolerance.
    assert all(change > 1e-3 for change in largest_change(init, original_final).values())


def test_schedule_crosses_warmups_guidance_and_decay(records):
    """The settings exercise what the single-step references cannot: both warm-ups end, the
    learning rates then change every epoch, and DPT's loss drops when the guidance terms stop
    after PRETRAIN.C epochs."""
    _, _, steps = in_our_names(records["DPT"][0])
    first = {
        module: [s["lr"][module] for s in steps if s["batch"] == 0] for module in steps[0]["lr"]
    }
    assert first["visual_prompt"][:2] == first["cavpt"][:2] == [1e-5, 1e-5]
    assert first["prompt_learner"][0] == 1e-5 and first["prompt_learner"][1] == 0.002
    for rates in first.values():
        assert len(set(rates[2:])) == EPOCHS - 2  # a new rate every epoch after the warm-ups
    mean_loss = [sum(s["loss"] for s in steps if s["epoch"] == e) / 3 for e in range(EPOCHS)]
    assert mean_loss[3] < 0.5 * mean_loss[2]  # guidance terms (two full CEs) gone at epoch 4
