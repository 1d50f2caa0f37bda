"""A real full disk: train.py with its run directory on a small tmpfs, mounted in a user and
mount namespace of its own (``unshare -rm``; the test skips where that is not allowed), of a
few sizes below what the run needs. Each start must stop with exit status 2 and the message,
no traceback; with the tmpfs made larger, the same command (``--overwrite`` under
``--engine dassl``, whose checkpoints are written module by module) must end with the weights
and accuracy of a run that had space. ``tests/test_faults.py`` places the full disk at every
kind of write; this checks that a real one gives what that simulation assumes.
"""

import json
import os
import shlex
import subprocess
import sys

import pytest
import torch

from tests.run_fixtures import REPO, assert_identical, make_workspace, train_argv
from tests.test_faults import CLASSES, OVERRIDES

EXTRA = ("TEST.ZEROSHOT_BASELINE", "True", "TEST.PER_CLASS_RESULT", "True")
SIZES = 3  # tmpfs sizes tried per engine, from 8 KiB to 90% of what the run leaves


def mount_allowed(folder):
    command = ["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(folder)]
    try:
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    except OSError:  # no unshare
        return False


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("full_disk")
    if not mount_allowed(root):
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm)")
    return make_workspace(root, CLASSES)


def argv_for(ws, out, engine):
    return ["--engine", engine, *train_argv(ws, out, "DPT", overrides=OVERRIDES + EXTRA)]


def final(run_dir):
    """The final weights of every module, and the accuracy."""
    weights = {}
    for module in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, module, "model-best.pth.tar")
        if os.path.isfile(path):
            weights[module] = torch.load(path, weights_only=False)["state_dict"]
    with open(os.path.join(run_dir, "results.json")) as f:
        return weights, json.load(f)["accuracy"]


def disk_use_kib(folder):
    return sum(
        -(-os.path.getsize(os.path.join(d, f)) // 4096) * 4
        for d, _, files in os.walk(folder)
        for f in files
    )


def run_on_full_disk(ws, tmp_path, engine, size_kib):
    """Start the run on a ``size_kib`` tmpfs, then again on a large one; returns the two
    starts' exit statuses and stderr, and a copy of the run directory."""
    mount, host = tmp_path / "mnt", tmp_path / "host"
    mount.mkdir(parents=True)
    host.mkdir()
    out = mount / "run"
    argv = argv_for(ws, out, engine)
    again = (["--overwrite"] if engine == "dassl" else []) + argv
    env = "OMP_NUM_THREADS=1 PYTHONWARNINGS=ignore"
    train = f"cd {shlex.quote(REPO)} && {env} {shlex.quote(sys.executable)} train.py"
    script = "\n".join([
        f"mount -t tmpfs -o size={size_kib}k tmpfs {mount}",
        f"{train} {shlex.join(map(str, argv))} >/dev/null 2>{host}/1.err; echo $? >{host}/1.rc",
        f"mount -o remount,size=64m {mount}",
        f"{train} {shlex.join(map(str, again))} >/dev/null 2>{host}/2.err; echo $? >{host}/2.rc",
        f"cp -a {out} {host}/run",
    ])  # fmt: skip
    subprocess.run(["unshare", "-rm", "bash", "-c", script], check=True, timeout=600)
    starts = [((host / f"{i}.rc").read_text().strip(), (host / f"{i}.err").read_text())
              for i in (1, 2)]  # fmt: skip
    return starts, host / "run"


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["builtin", "dassl"])
def test_a_real_full_disk_stops_the_run_and_the_run_ends_as_if_it_had_space(
    workspace, tmp_path, engine
):
    if engine == "dassl":
        pytest.importorskip("dassl", reason="Dassl is not installed (see README)")
    reference = tmp_path / "reference"
    assert subprocess.run([sys.executable, "train.py", *map(str, argv_for(
        workspace, reference, engine))], cwd=REPO, capture_output=True).returncode == 0  # fmt: skip
    expected = final(reference)
    top = disk_use_kib(reference) * 9 // 10
    for i in range(SIZES):
        size = 8 + (top - 8) * i // (SIZES - 1)
        starts, run_dir = run_on_full_disk(workspace, tmp_path / f"{size}k", engine, size)
        (first, first_err), (second, second_err) = starts
        assert first == "2", (size, first_err[-3000:])
        assert "\nerror: Could not save" in "\n" + first_err, (size, first_err)  # after tqdm's
        assert "No space left on device" in first_err or "the disk is full" in first_err
        assert "Traceback" not in first_err
        assert second == "0", (size, second_err[-3000:])
        weights, accuracy = final(run_dir)
        assert_identical(weights, expected[0])
        assert accuracy == expected[1]
