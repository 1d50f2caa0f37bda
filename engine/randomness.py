"""Random streams by purpose, keyed by the run's seed.

With ``RANDOMNESS keyed`` (the default) a run draws its initialisation, each epoch's data
order and each sample's augmentation from its own stream: a generator seeded by a hash of
(SEED, purpose, epoch, sample index). Nothing that draws before them (an evaluation, a cache
miss, a loader worker starting, a resume) can shift them, and every loader worker computes
the same augmentation for a sample, whichever worker gets it. CoOp's few-shot draw is not
one of them: it stays Python's ``random`` seeded at start-up (engine/utils.set_random_seed).

``RANDOMNESS global`` is how Dassl and CoOp draw: one global generator seeded once.
"""

import contextlib
import hashlib
import os
import random

import numpy as np
import torch

MODES = ("keyed", "global")


def is_keyed(cfg):
    return cfg.RANDOMNESS == "keyed"


def run_seed(cfg):
    """The seed of the run's streams: SEED, or for a negative SEED (no fixed seed) one drawn
    from the operating system, once per process."""
    global _UNSEEDED
    if cfg.SEED >= 0:
        return cfg.SEED
    if _UNSEEDED is None:
        _UNSEEDED = int.from_bytes(os.urandom(8), "little") >> 1
    return _UNSEEDED


_UNSEEDED = None


def stream_seed(seed, *key):
    """A 63-bit seed for the stream ``key`` (e.g. ``("order", epoch)``) of ``seed``."""
    text = repr((int(seed), *key)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def generator(seed, *key):
    """A CPU ``torch.Generator`` seeded for the stream ``key`` of ``seed``."""
    return torch.Generator().manual_seed(stream_seed(seed, *key))


@contextlib.contextmanager
def seeded(seed, *key):
    """Inside: Python's, NumPy's and torch's global CPU generators seeded for the stream
    ``key`` of ``seed`` (for code that draws from them, such as torchvision's transforms);
    after: all three as they were, so that the block draws nothing from the caller's."""
    value = stream_seed(seed, *key)
    with untouched_global_rng():
        random.seed(value)
        np.random.seed(value % 2**32)
        torch.random.default_generator.manual_seed(value)
        yield


@contextlib.contextmanager
def initialisation(cfg):
    """Where a model's random initial values come from: the run's ``init`` stream (keyed),
    or the global generators as they stand (global, as Dassl and CoOp)."""
    if not is_keyed(cfg):
        yield
        return
    with seeded(run_seed(cfg), "init"):
        yield


@contextlib.contextmanager
def untouched_global_rng():
    """Whatever the block draws, the global generators are as before afterwards: an
    evaluation (or a cached one that draws nothing) leaves training's draws unchanged."""
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
