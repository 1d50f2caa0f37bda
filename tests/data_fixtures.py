"""Image folders, broken images, split files and configs on disk, for tests of data code."""

import os

import numpy as np
from PIL import Image

from engine.config import get_cfg_default

PALETTE = [(220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 200, 30), (160, 50, 200)]


def write_image(path, size=(16, 16), color=(128, 128, 128), noise_seed=None):
    """Save an image of ``size`` (width, height) in the format of the extension: flat
    ``color``, or uniform noise when ``noise_seed`` is given (noise compresses badly, which
    keeps a truncated copy from holding the whole picture)."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    w, h = size
    if noise_seed is None:
        pixels = np.full((h, w, 3), color, dtype=np.uint8)
    else:
        pixels = np.random.default_rng(noise_seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def make_image_folder(root, classes, size=(16, 16)):
    """``root/<class>/<class>_<i>.png`` for ``classes`` = {folder name: image count}; each
    class its own colour, brightened slightly per image. Returns ``root``."""
    for label, (name, count) in enumerate(classes.items()):
        base = np.array(PALETTE[label % len(PALETTE)])
        for i in range(count):
            color = tuple(int(c) for c in np.clip(base + 3 * i, 0, 255))
            write_image(os.path.join(root, name, f"{name}_{i}.png"), size, color)
    return str(root)


def write_corrupt_image(path):
    """A file with an image extension and bytes that are no image at all."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"this is not an image" * 10)
    return path


def write_truncated_image(path, size=(32, 32)):
    """A PNG cut off half way: its header opens, decoding its pixels fails."""
    write_image(path, size, noise_seed=0)
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    return path


def data_cfg(root, overrides=None):
    """A small config for ImageFolder at ``root``: 16x16 inputs, CLIP-free defaults, no worker
    processes, batch size 4. ``overrides`` = {"KEY.PATH": value}."""
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = "ImageFolder"
    cfg.INPUT.SIZE = (16, 16)
    cfg.INPUT.TRANSFORMS = ("random_resized_crop", "random_flip", "normalize")
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 4
    cfg.SEED = 1
    for key, value in (overrides or {}).items():
        cfg.merge_from_list([key, value])
    return cfg
