"""Checkpoints in Dassl's run-directory layout, written atomically.

``<run_dir>/<module>/model.pth.tar-<epoch>`` (1-based epoch) or ``model-best.pth.tar``, each a
dict with ``state_dict``, ``epoch``, ``optimizer``, ``scheduler`` and ``val_result``; the file
``<run_dir>/<module>/checkpoint`` names the latest one, as Dassl's resume logic expects.
"""

import json
import os
import tempfile

import torch

from engine.permissions import share_as_umask

LATEST_POINTER = "checkpoint"
BEST_NAME = "model-best.pth.tar"


def epoch_name(epoch):
    return f"model.pth.tar-{epoch}"


def atomic_write(path, write_fn, mode="wb"):
    """Write through ``write_fn(file)`` to a temp file beside ``path``, then rename it (with
    the mode ``open()`` would give, not mkstemp's 0600)."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-" + os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        share_as_umask(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_json(path, obj):
    atomic_write(path, lambda f: json.dump(obj, f, indent=2), mode="w")


def save_checkpoint(state, module_dir, is_best=False, remove_previous=False):
    """Save ``state`` (its ``epoch`` is 1-based) and point ``checkpoint`` at it."""
    name = epoch_name(state["epoch"])
    path = os.path.join(module_dir, name)
    previous = latest_checkpoint(module_dir)
    atomic_write(path, lambda f: torch.save(state, f))
    atomic_write(os.path.join(module_dir, LATEST_POINTER), lambda f: f.write(name + "\n"), "w")
    if is_best:
        atomic_write(os.path.join(module_dir, BEST_NAME), lambda f: torch.save(state, f))
    if remove_previous and previous and os.path.basename(previous) != name:
        os.remove(previous)
    return path


def latest_checkpoint(module_dir):
    """Path of the checkpoint that ``<module_dir>/checkpoint`` names, or None."""
    pointer = os.path.join(module_dir, LATEST_POINTER)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.readline().strip()
    path = os.path.join(module_dir, name)
    return path if os.path.isfile(path) else None


def load_checkpoint(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: '{path}'")
    return torch.load(path, map_location="cpu", weights_only=False)
