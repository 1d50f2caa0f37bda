"""Same config and seed, same number: a run's checkpoints (weights, optimiser and scheduler
states) and results.json do not depend on loader workers, whether they persist, a cold or warm
zero-shot cache, or a kill and resume at any epoch (RANDOMNESS keyed, the default); a kill
during the final evaluation with loader workers leaves no process and no lock behind."""

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.forked_train import ForkedRun, launch
from tests.run_fixtures import REPO, assert_identical

pytestmark = pytest.mark.slow

TINY_CLIP = os.path.join(REPO, "assets", "tiny_clip", "tiny_clip_vit.pt")
MAX_EPOCH = 4
# Toy at 2 shots (60 images, 3 steps an epoch), with random crops and flips so that the
# augmentation's draws are part of what must not change.
OPTS = ("DATASET.TOY.TRAIN_PER_CLASS", "4", "DATASET.TOY.VAL_PER_CLASS", "1",
        "DATASET.TOY.TEST_PER_CLASS", "2", "DATASET.NUM_SHOTS", "2",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "16", "OPTIM.MAX_EPOCH", str(MAX_EPOCH),
        "OPTIM.WARMUP_EPOCH", "1", "PRETRAIN.C", "2",
        "INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
        "INPUT.RRCROP_SCALE", "(0.5, 1.0)", "MODEL.BACKBONE.NAME", TINY_CLIP)  # fmt: skip
MODULES = {"DPT": ["prompt_learner", "visual_prompt", "cavpt"], "CoOp": ["prompt_learner"]}
# workers, persistent, zero-shot cache, killed at a random epoch and resumed
CELLS = list(itertools.product((0, 2), (True, False), ("cold", "warm"), (False, True)))
REFERENCE = (0, True, "cold", False)


def toy_argv(root, out, trainer, *opts, seed=1):
    config = os.path.join(REPO, "configs", "trainers", trainer, "tiny.yaml")
    return ["--root", str(root), "--trainer", trainer, "--seed", str(seed),
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "toy.yaml"),
            "--config-file", config, "--output-dir", str(out), *OPTS, *opts]  # fmt: skip


def final_state(out, trainer):
    """What must not depend on how the run was run: results.json (but the digest of the
    whole config, which holds OUTPUT_DIR and the loader keys) and every module's last
    checkpoint."""
    results = json.loads((out / "results.json").read_text())
    results.pop("config_digest")
    state = {"results": results}
    for module in MODULES[trainer]:
        ckpt = torch.load(out / module / f"model.pth.tar-{MAX_EPOCH}", weights_only=False)
        state[module] = {k: ckpt[k] for k in ("state_dict", "optimizer", "scheduler", "epoch")}
    return state


@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    return tmp_path_factory.mktemp("toy")


@pytest.fixture(scope="module")
def toy_root_large_test(tmp_path_factory):
    """A Toy generated with 60 test images a class: an evaluation long enough to be killed."""
    return tmp_path_factory.mktemp("toy_large_test")


def run_cell(root, out, trainer, cell, warm_cache, kill_epoch_rng):
    workers, persistent, cache, killed = cell
    opts = ("DATALOADER.NUM_WORKERS", str(workers),
            "DATALOADER.PERSISTENT_WORKERS", str(persistent),
            "TEST.ZEROSHOT_CACHE", str(warm_cache) if cache == "warm" else "")  # fmt: skip
    argv = toy_argv(root, out, trainer, *opts)
    if killed:  # SIGKILL just after an epoch is committed, then the same command
        epoch = kill_epoch_rng.randint(1, MAX_EPOCH - 1)
        assert launch(argv, out, kill_at=f"last_epoch.json#{epoch}", when="after")
        assert json.loads((out / "last_epoch.json").read_text())["epoch"] == epoch
    assert not launch(argv, out)


@pytest.mark.parametrize("trainer", ["DPT", "CoOp"])
def test_every_cell_of_the_matrix_is_bit_identical(toy_root, tmp_path, trainer):
    warm = tmp_path / "warm_cache"
    reference = tmp_path / "reference"
    run_cell(toy_root, reference, trainer, REFERENCE, warm, None)
    expected = final_state(reference, trainer)
    # The warm cache: the reference evaluation stored by a run of another seed.
    seed2 = toy_argv(toy_root, tmp_path / "seed2", trainer, "TEST.ZEROSHOT_CACHE", str(warm),
                     seed=2)  # fmt: skip
    assert not launch(seed2, tmp_path / "seed2")
    rng = random.Random(f"kill epochs of {trainer}")
    for cell in CELLS:
        if cell == REFERENCE:
            continue
        out = tmp_path / "_".join(map(str, cell))
        run_cell(toy_root, out, trainer, cell, warm, rng)
        assert_identical(final_state(out, trainer), expected, f"cell {cell}")
        log = (out / "log.txt").read_text()
        if cell[2] == "warm":
            assert f"Reusing the evaluation made by the run in {tmp_path / 'seed2'}" in log


def children(pid):
    """The PIDs of ``pid``'s children, started by any of its threads."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            found += [int(child) for child in f.read().split()]
    return found


def alive(pid):
    """Whether ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_for_line(path, line, process_alive, timeout=240):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if path.exists() and line in path.read_text():
            return
        assert process_alive(), f"ended before '{line}':\n{path.read_text()[-3000:]}"
        time.sleep(0.005)
    raise AssertionError(f"no '{line}' in {path} after {timeout} s")


def assert_all_end(pids, timeout=10):
    start = time.monotonic()
    while any(alive(pid) for pid in pids):
        assert time.monotonic() - start < timeout, [p for p in pids if alive(p)]
        time.sleep(0.05)


WITH_WORKERS = ("DATALOADER.NUM_WORKERS", "2", "DATASET.TOY.TEST_PER_CLASS", "60",
                "DATALOADER.TEST.BATCH_SIZE", "10")  # fmt: skip


def test_a_kill_during_the_final_evaluation_leaves_no_worker_and_no_lock(
    toy_root_large_test, tmp_path
):
    out = tmp_path / "run"
    argv = toy_argv(toy_root_large_test, out, "DPT", *WITH_WORKERS)
    run = ForkedRun(argv, out)
    wait_for_line(out / "log.txt", "Deploy the last-epoch model", lambda: alive(run.pid))
    workers = children(run.pid)  # persistent: the train loader's and the test loader's
    assert len(workers) == 4
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait()
    assert_all_end(workers)
    assert not launch(argv, out)  # the same command: not refused, and finishes
    log = (out / "log.txt").read_text()
    assert f"Resumed from {out} at epoch {MAX_EPOCH}" in log
    assert json.loads((out / "results.json").read_text())["epoch"] == MAX_EPOCH


def test_a_sweep_killed_during_a_final_evaluation_is_finished_by_the_same_command(
    toy_root_large_test, tmp_path
):
    output = tmp_path / "sweep"
    command = [sys.executable, "-m", "scripts.sweep", "--root", str(toy_root_large_test),
               "--output", str(output), "--trainers", "DPT", "--datasets", "toy",
               "--configs", "tiny", "--shots", "2", "--seeds", "1",
               "--opts", *OPTS, *WITH_WORKERS]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(tmp_path / "first.txt", "w") as console:
        sweep = subprocess.Popen(command, cwd=REPO, env=env, stdout=console, stderr=console)
    run_dir = output / "toy" / "DPT" / "tiny_2shots" / "nctx4_cscFalse_ctpend_vctx10" / "seed1"
    wait_for_line(run_dir / "log.txt", "Deploy the last-epoch model", lambda: alive(sweep.pid))
    (train_pid,) = children(sweep.pid)
    processes = [train_pid, *children(train_pid)]
    sweep.kill()
    sweep.wait()
    assert_all_end(processes)  # train.py ends with the sweep, its workers with it
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Sweep (fewshot): 1 runs: 0 finished, 1 to resume, 0 new" in again.stdout
    assert "[1/1] done" in again.stdout
    assert (run_dir / "results.json").exists()
