"""Toy: a generated 30-class benchmark that the shipped tiny CLIP can name, under a domain shift.

Classes are the colour-object pairs of ``toy_render.benchmark_classes()`` ("red circle",
"blue star", ...). Every image, train and test alike, is drawn under one domain shift
(``DATASET.TOY.SHIFT``, a ``toy_render.SHIFT_PRESETS`` name; by default ``style``: colours
faded and hue-rotated, a look pretraining never showed), so zero-shot CLIP is well above
chance but far from what tuning on the shifted domain reaches.

The first 15 labels (CoCoOp's base half) form a checkerboard of the colour x object grid, so
base and new classes both use every colour and every object word: base-to-new then asks
whether a prompt tuned on some compositions carries over to unseen compositions of the same
words. With ``DATASET.TOY.BASE_CLASSES warm`` (configs/datasets/toy_warm.yaml) the base half
is every object in red, orange and yellow and the new half every object in green, blue and
purple: colours no base class has. The shift turns hues by 30 degrees, so zero-shot CLIP
confuses the warm colours with each other (red looks orange, orange yellow) and names the cool
ones better; a prompt fitted to undo the shift on the warm colours need not help, or may harm,
the cool ones (the protocol in which learned prompts lose the new classes). Only the labels
change: the same images, each with the same class name.

On first use the generator writes, under ``DATASET.ROOT/toy``: ``images/<colour>_<object>/
<split>_<index>.png``, ``split_toy.json`` (CoOp's split format) and ``toy.json`` (the
generator's settings). Every image has its own random stream seeded by (DATASET.TOY.SEED,
label, split, index), so the files are the same on every machine. A folder made with other
settings is an error, never silently reused.
"""

import functools
import json
import os
import re
import shutil
import socket
import tempfile

import numpy as np
from tqdm import tqdm
from yacs.config import CfgNode as CN

from datasets import toy_render
from engine.checkpoint import saving
from engine.config import extend_cfg
from engine.data import DatasetBase, Datum, read_split, write_items
from engine.permissions import share_as_umask
from engine.registry import DATASET_REGISTRY

GENERATOR_VERSION = 1
SPLITS = ("train", "val", "test")
DEFAULT_ROOT = ".cache/data"  # DATASET.ROOT in configs/datasets/toy.yaml


@extend_cfg
def add_toy_keys(cfg):
    cfg.DATASET.TOY = CN()
    cfg.DATASET.TOY.SHIFT = "style"  # a toy_render.SHIFT_PRESETS name, or "none"
    cfg.DATASET.TOY.TRAIN_PER_CLASS = 32
    cfg.DATASET.TOY.VAL_PER_CLASS = 8
    cfg.DATASET.TOY.TEST_PER_CLASS = 100
    cfg.DATASET.TOY.IMAGE_SIZE = 32
    cfg.DATASET.TOY.SEED = 0
    cfg.DATASET.TOY.BASE_CLASSES = "checkerboard"  # a BASE_CLASSES name: base-to-new's halves


@functools.cache
def ordered_classes():
    """(colour, object) pairs by label: the checkerboard half of the grid, then the rest."""
    colours, objects = toy_render.BENCHMARK_COLOURS, toy_render.BENCHMARK_OBJECTS
    grid = [(i, j) for i in range(len(colours)) for j in range(len(objects))]
    base = [(colours[i], objects[j]) for i, j in grid if (i + j) % 2 == 0]
    new = [(colours[i], objects[j]) for i, j in grid if (i + j) % 2 == 1]
    return tuple(base + new)


def _checkerboard(i, j):
    return (i + j) % 2 == 0


def _warm_colours(i, j):
    return toy_render.BENCHMARK_COLOURS[i] in ("red", "orange", "yellow")


# Which (colour index, object index) cells form the base half (the first labels).
BASE_CLASSES = {"checkerboard": _checkerboard, "warm": _warm_colours}


def labels_for(base_classes):
    """``{label in the generated split: label in this protocol}``: the base cells first, each
    half in the grid's order. The identity for the checkerboard, the generator's own order."""
    if base_classes not in BASE_CLASSES:
        raise ValueError(
            f"DATASET.TOY.BASE_CLASSES '{base_classes}' is not a split of Toy's classes; choose "
            f"one of {', '.join(BASE_CLASSES)}"
        )
    colours, objects = toy_render.BENCHMARK_COLOURS, toy_render.BENCHMARK_OBJECTS
    in_base = BASE_CLASSES[base_classes]
    grid = [(i, j) for i in range(len(colours)) for j in range(len(objects))]
    order = [cell for cell in grid if in_base(*cell)] + [c for c in grid if not in_base(*c)]
    generated = ordered_classes()
    return {generated.index((colours[i], objects[j])): label for label, (i, j) in enumerate(order)}


def folder_name(colour, obj):
    return f"{colour}_{obj}".replace(" ", "-")


def generator_settings(cfg):
    toy = cfg.DATASET.TOY
    if toy.SHIFT != "none" and toy.SHIFT not in toy_render.SHIFT_PRESETS:
        raise ValueError(
            f"DATASET.TOY.SHIFT '{toy.SHIFT}' is not a shift; choose 'none' or one of "
            f"{', '.join(toy_render.SHIFT_PRESETS)}"
        )
    counts = {
        "train": toy.TRAIN_PER_CLASS,
        "val": toy.VAL_PER_CLASS,
        "test": toy.TEST_PER_CLASS,
    }
    for split, count in counts.items():
        if count < 1:
            raise ValueError(f"DATASET.TOY.{split.upper()}_PER_CLASS must be >= 1; got {count}")
    if toy.IMAGE_SIZE < 8:
        raise ValueError(f"DATASET.TOY.IMAGE_SIZE must be >= 8 pixels; got {toy.IMAGE_SIZE}")
    return {
        "version": GENERATOR_VERSION,
        "shift": toy.SHIFT,
        "per_class": counts,
        "image_size": toy.IMAGE_SIZE,
        "seed": toy.SEED,
    }


def render_image_and_mask(settings, label, split, index):
    """One image of class ``label``, from its own seeded random stream, and where its object
    is drawn (``toy_render.render_with_mask``: per-pixel coverage in [0, 1])."""
    colour, obj = ordered_classes()[label]
    rng = np.random.default_rng([settings["seed"], label, SPLITS.index(split), index])
    attrs = toy_render.sample_attrs(rng, objects=(obj,), colours=(colour,), exclude=())
    shift = toy_render.SHIFT_PRESETS.get(settings["shift"])
    return toy_render.render_with_mask(attrs, settings["image_size"], rng, shift)


def render_image(settings, label, split, index):
    """One image of class ``label``, from its own seeded random stream."""
    return render_image_and_mask(settings, label, split, index)[0]


def relabelled(item, relabel):
    return Datum(item.impath, relabel[item.label], item.domain, item.classname)


def check_root(cfg_root, dataset_dir):
    """Generate only where the user asked: ``DATASET.ROOT`` must exist, or at least its parent
    (then it is made), so that a mistyped ``--root`` fails instead of filling a new folder.
    The default root of configs/datasets/toy.yaml (``DEFAULT_ROOT``) is made when missing."""
    root = os.path.dirname(dataset_dir)
    if os.path.isdir(root) or os.path.normpath(cfg_root) == os.path.normpath(DEFAULT_ROOT):
        return
    parent = os.path.dirname(root)
    if not os.path.isdir(parent):
        raise FileNotFoundError(
            f"DATASET.ROOT '{cfg_root}' does not exist, and neither does its parent '{parent}', "
            f"so Toy would be generated in a new folder tree at '{dataset_dir}'. Check --root "
            "(or DATASET.ROOT); to generate Toy there, create the parent folder first."
        )


TEMP_PREFIX = ".toy-"  # a generation's folder, renamed to the dataset's when complete
_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(?P<pid>\d+)@(?P<host>.+)-\w{8}$")


def _is_running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_leftovers(parent):
    """Delete the folders of generations in ``parent`` that were killed (their process, on
    this host, is gone); returns their paths."""
    removed = []
    host = socket.gethostname()
    for name in sorted(os.listdir(parent)) if os.path.isdir(parent) else ():
        match = _TEMP_NAME.match(name)
        if match and match["host"] == host and not _is_running(int(match["pid"])):
            path = os.path.join(parent, name)
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                print(f"Removed '{path}', left by a Toy generation that was interrupted")
                removed.append(path)
    return removed


def generate(root, settings):
    """Write the images, split file and settings of a Toy dataset into the new folder
    ``root``, through a temporary sibling folder renamed at the end (so an interrupted or
    concurrent generation never leaves a half-written dataset behind; the folder of one
    that was killed is removed by the next run, ``remove_leftovers``)."""
    parent = os.path.dirname(root)
    count = len(ordered_classes()) * sum(settings["per_class"].values())
    print(f"Toy is not in '{root}' yet: generating it there ({count:,} images)", flush=True)
    os.makedirs(parent, exist_ok=True)
    prefix = f"{TEMP_PREFIX}{os.getpid()}@{socket.gethostname()}-"
    with saving(f"the Toy dataset in '{root}'"):
        _write_into(tempfile.mkdtemp(prefix=prefix, dir=parent), root, settings)


def _write_into(tmp, root, settings):
    """Generate into ``tmp``, then rename it to ``root``; ``tmp`` never stays."""
    try:
        lists = {split: [] for split in SPLITS}
        classes = ordered_classes()
        jobs = [
            (label, split, index)
            for label in range(len(classes))
            for split in SPLITS
            for index in range(settings["per_class"][split])
        ]
        for label, split, index in tqdm(jobs, desc=f"Generating Toy in {root}", unit="img"):
            colour, obj = classes[label]
            relpath = os.path.join("images", folder_name(colour, obj), f"{split}_{index:04d}.png")
            os.makedirs(os.path.join(tmp, os.path.dirname(relpath)), exist_ok=True)
            render_image(settings, label, split, index).save(os.path.join(tmp, relpath))
            name = toy_render.class_name(colour, obj)
            lists[split].append(Datum(os.path.join(tmp, relpath), label, 0, name))
        write_items(os.path.join(tmp, Toy.split_file), tmp, lists)
        with open(os.path.join(tmp, Toy.settings_file), "w") as f:
            json.dump(settings, f, indent=2)
        share_as_umask(tmp)  # mkdtemp's 0700 would hide the dataset from other users
        try:
            os.rename(tmp, root)
        except OSError:
            if not os.path.isdir(root):  # not a concurrent generation that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_settings(root, settings):
    path = os.path.join(root, Toy.settings_file)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"'{root}' exists but has no {Toy.settings_file}, so it was not made by the Toy "
            "generator; move it away, or point DATASET.ROOT elsewhere"
        )
    with open(path) as f:
        found = json.load(f)
    if found != settings:
        raise ValueError(
            f"'{root}' holds a Toy dataset generated with other settings:\n  on disk: {found}\n"
            f"  asked:   {settings}\nDelete that folder to regenerate it, or point "
            "DATASET.ROOT elsewhere for a second variant"
        )


@DATASET_REGISTRY.register()
class Toy(DatasetBase):
    """The generated benchmark; see the module docstring."""

    dataset_dir = "toy"
    split_file = "split_toy.json"
    settings_file = "toy.json"
    template = "a photo of a {}."

    @classmethod
    def check_config(cls, cfg):
        generator_settings(cfg)
        labels_for(cfg.DATASET.TOY.BASE_CLASSES)

    def __init__(self, cfg):
        settings = generator_settings(cfg)
        relabel = labels_for(cfg.DATASET.TOY.BASE_CLASSES)
        self.dataset_dir = self.dataset_path(cfg)
        remove_leftovers(os.path.dirname(self.dataset_dir))
        if not os.path.exists(self.dataset_dir):
            check_root(cfg.DATASET.ROOT, self.dataset_dir)
            generate(self.dataset_dir, settings)
        check_settings(self.dataset_dir, settings)
        train, val, test = read_split(
            os.path.join(self.dataset_dir, self.split_file), self.dataset_dir
        )
        if cfg.DATASET.TOY.BASE_CLASSES != "checkerboard":
            train, val, test = ([relabelled(item, relabel) for item in items]
                                for items in (train, val, test))  # fmt: skip
            # Other labels: a few-shot cache of their own (Dassl's does not check them).
            self.fewshot_dir = f"split_fewshot_{cfg.DATASET.TOY.BASE_CLASSES}"
        train, val, test = self.fewshot_and_subsample(cfg, train, val, test, self.dataset_dir)
        super().__init__(train_x=train, val=val, test=test)
