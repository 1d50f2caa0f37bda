"""A small CLIP checkpoint and image folder on disk, and train.py argument lists for them."""

import contextlib
import hashlib
import os
import subprocess
import tempfile

import pytest
import torch

from engine.data import save_split
from engine.data.splits import read_and_split_data
from tests.clip_fixtures import save_clip_checkpoint
from tests.data_fixtures import make_image_folder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_workspace(root, classes, clip_seed=0, **clip_sizes):
    """``root/data`` (class folders and a CoOp-format split.json) and ``root/clip.pt``."""
    data = make_image_folder(root / "data", classes, size=(40, 36))
    train_items, val, test = read_and_split_data(data, seed=1)
    save_split(train_items, val, test, os.path.join(data, "split.json"), data)
    clip_path = save_clip_checkpoint(root / "clip.pt", seed=clip_seed, **clip_sizes)
    return {"root": root, "data": data, "clip": clip_path}


def train_argv(ws, out, trainer, *flags, overrides=(), config="CoOp/vit_b32.yaml"):
    """Arguments for ``train.py``: ``flags`` before the overrides, ``overrides`` last."""
    return [
        "--root", ws["data"], "--trainer", trainer, "--seed", "1", "--output-dir", str(out),
        "--config-file", os.path.join(REPO, "configs", "trainers", config),
        *flags,
        "DATASET.NAME", "ImageFolder", "DATASET.NUM_SHOTS", "2",
        "MODEL.BACKBONE.NAME", ws["clip"], "INPUT.SIZE", "(32, 32)",
        "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4",
        "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.5", "TRAINER.COOP.N_CTX", "4",
        "TRAINER.COOP.PREC", "fp32", "TRAIN.PRINT_FREQ", "1", *overrides,
    ]  # fmt: skip


def snapshot(folder):
    """{relative path: content digest} of every file below ``folder`` (to show nothing moved)."""
    files = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return files


def _writable(folder):
    try:
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def read_only(folder):
    """``folder`` cannot be written while in the block: mode 555, and for root (whom modes do
    not stop) the immutable attribute; skips the test where neither works."""
    mode = os.stat(folder).st_mode
    os.chmod(folder, 0o555)
    chattr = ["chattr", "+i", str(folder)]
    immutable = _writable(folder) and subprocess.run(chattr, capture_output=True).returncode == 0
    try:
        if _writable(folder):
            pytest.skip(f"cannot make {folder} read-only here (root, and no chattr)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        os.chmod(folder, mode)


def assert_identical(a, b, path="run"):
    """Exact equality of nested dicts, lists and tensors (no tolerance)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, path
        assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), path
        for key in a:
            assert_identical(a[key], b[key], f"{path}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{path}[{i}]")
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
