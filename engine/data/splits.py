"""Split files in CoOp's JSON format, and deterministic generation of new splits.

A split file is ``{"train": [[relative_path, label, classname], ...], "val": [...],
"test": [...]}`` with paths relative to the dataset's image folder (``path_prefix``) and
written with forward slashes, so the same file works on every machine.
"""

import contextlib
import json
import os
import random
import tempfile

from engine.data.datum import Datum
from engine.data.images import IMG_EXTENSIONS
from engine.data.sampling import split_dataset_by_label

SPLIT_KEYS = ("train", "val", "test")
_MAX_NAMED = 5  # missing images named in an error message


def write_json_atomic(obj, filepath):
    """Write JSON through a temporary file and ``os.replace``: readers and interrupted runs
    never see a half-written file."""
    folder = os.path.dirname(os.path.abspath(filepath))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=4)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide shared split files from other users
        os.replace(tmp, filepath)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _relative_path(impath, path_prefix):
    rel = os.path.relpath(impath, path_prefix)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise ValueError(
            f"Image '{impath}' is not under '{path_prefix}'; split files store paths relative "
            "to the image folder"
        )
    return rel.replace(os.sep, "/")


def write_items(filepath, path_prefix, lists):
    """Save ``{key: [Datum, ...]}`` as ``{key: [[relative_path, label, classname], ...]}``."""
    obj = {
        key: [[_relative_path(d.impath, path_prefix), d.label, d.classname] for d in items]
        for key, items in lists.items()
    }
    write_json_atomic(obj, filepath)


def read_items(filepath, path_prefix, keys):
    """Load the lists under ``keys`` from a split-format file as Datums with absolute paths,
    checking that every image they name exists."""
    if not os.path.isfile(filepath):
        raise FileNotFoundError(
            f"Split file not found: '{filepath}'. Put the dataset's split file there (for the "
            "CoOp benchmarks, the split_zhou_<Name>.json that CoOp's dataset instructions "
            "link to), or point DATASET.ROOT at the folder that holds the dataset."
        )
    try:
        with open(filepath) as f:
            obj = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"Split file '{filepath}' is not valid JSON: {err}") from err
    absent = [key for key in keys if key not in obj]
    if absent:
        raise ValueError(f"Split file '{filepath}' has no {', '.join(absent)} list")
    lists = []
    for key in keys:
        try:
            lists.append(
                [
                    Datum(os.path.join(path_prefix, rel), label, classname=classname)
                    for rel, label, classname in obj[key]
                ]
            )
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"Split file '{filepath}', list '{key}': entries must be "
                f"[relative_path, label, classname] ({err})"
            ) from err
    _check_images_exist(filepath, path_prefix, lists)
    return lists


def _check_images_exist(filepath, path_prefix, lists):
    paths = {d.impath for items in lists for d in items}
    missing = sorted(p for p in paths if not os.path.exists(p))
    if missing:
        named = ", ".join(_relative_path(p, path_prefix) for p in missing[:_MAX_NAMED])
        more = ", ..." if len(missing) > _MAX_NAMED else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} images listed in '{filepath}' do not exist under "
            f"'{path_prefix}': {named}{more}. Check that DATASET.ROOT points at the dataset "
            "and that its image folder is complete."
        )


def read_split(filepath, path_prefix):
    """``(train, val, test)`` from a CoOp split file."""
    return tuple(read_items(filepath, path_prefix, SPLIT_KEYS))


def save_split(train, val, test, filepath, path_prefix):
    write_items(filepath, path_prefix, dict(zip(SPLIT_KEYS, (train, val, test))))
    print(f"Saved split to {filepath}")


def list_class_dirs(image_dir, ignored=()):
    """Class folders of ``image_dir``: non-hidden sub-folders not in ``ignored``, sorted."""
    return sorted(
        name
        for name in os.listdir(image_dir)
        if not name.startswith(".")
        and name not in ignored
        and os.path.isdir(os.path.join(image_dir, name))
    )


def list_images(folder):
    """Non-hidden image files of ``folder`` (by extension, any case), sorted."""
    return sorted(
        name
        for name in os.listdir(folder)
        if not name.startswith(".")
        and name.lower().endswith(IMG_EXTENSIONS)
        and os.path.isfile(os.path.join(folder, name))
    )


def read_and_split_data(image_dir, p_trn=0.5, p_val=0.2, ignored=(), new_cnames=None, *, seed):
    """Split ``image_dir/<class>/<image>`` per class into train/val/test (CoOp's proportions).

    Classes are labelled in sorted folder order. Folders and files are listed sorted and
    shuffled with a local ``random.Random(seed)``: the split is the same on every machine and
    the global RNG, which few-shot sampling draws from, is left untouched. ``new_cnames`` maps
    folder names to class names.
    """
    classes = list_class_dirs(image_dir, ignored)
    if not classes:
        raise ValueError(
            f"No class folders in '{image_dir}'; expected the layout <folder>/<class>/<image>"
        )
    rng = random.Random(seed)
    train, val, test = [], [], []
    for label, folder in enumerate(classes):
        class_dir = os.path.join(image_dir, folder)
        images = [os.path.join(class_dir, name) for name in list_images(class_dir)]
        if not images:
            raise ValueError(
                f"Class folder '{class_dir}' has no images (extensions: "
                f"{' '.join(IMG_EXTENSIONS)}); add images or remove the folder"
            )
        rng.shuffle(images)
        n_train = round(len(images) * p_trn)
        n_val = round(len(images) * p_val)
        if min(n_train, n_val, len(images) - n_train - n_val) < 1:
            raise ValueError(
                f"Class folder '{class_dir}' has {len(images)} images, too few to split into "
                f"train/val/test with proportions {p_trn}/{p_val}/{1 - p_trn - p_val:.2f}"
            )
        classname = (new_cnames or {}).get(folder, folder)
        parts = (images[:n_train], images[n_train : n_train + n_val], images[n_train + n_val :])
        for out, paths in zip((train, val, test), parts):
            out.extend(Datum(path, label, classname=classname) for path in paths)
    return train, val, test


def split_trainval(trainval, p_val=0.2, *, seed):
    """Split each class of ``trainval`` into train and val (p_val of it), as CoOp does, with a
    local ``random.Random(seed)`` (same reasons as ``read_and_split_data``)."""
    rng = random.Random(seed)
    train, val = [], []
    for label, items in split_dataset_by_label(trainval).items():
        n_val = round(len(items) * p_val)
        if n_val < 1:
            raise ValueError(
                f"Class {label} ('{items[0].classname}') has {len(items)} items, too few for "
                f"a validation share of {p_val}"
            )
        items = list(items)
        rng.shuffle(items)
        val.extend(items[:n_val])
        train.extend(items[n_val:])
    return train, val
