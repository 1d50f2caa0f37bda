"""Split files in CoOp's JSON format, and deterministic generation of new splits.

A split file is ``{"train": [[relative_path, label, classname], ...], "val": [...],
"test": [...]}`` with paths relative to the dataset's image folder (``path_prefix``) and
written with forward slashes, so the same file works on every machine.
"""

import contextlib
import gc
import json
import os
import random

from engine.checkpoint import atomic_write
from engine.data.datum import Datum
from engine.data.images import IMG_EXTENSIONS
from engine.data.sampling import split_dataset_by_label
from engine.data.split_checks import check_split

SPLIT_KEYS = ("train", "val", "test")
_MAX_NAMED = 5  # missing images named in an error message


@contextlib.contextmanager
def gc_paused():
    """Pause the cyclic garbage collector while building large lists: creating 100k+ objects
    otherwise triggers repeated full collections, each scanning every live object, which
    doubles the time to read a split (the objects made here hold no reference cycles)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def write_json_atomic(obj, filepath):
    """Write ``obj`` as indented JSON, atomically (see ``write_text_atomic``)."""
    write_text_atomic(json.dumps(obj, indent=4), filepath)


def write_text_atomic(text, filepath):
    """Write through a temporary file renamed into place (``atomic_write``): readers and
    interrupted runs never see a half-written file."""
    atomic_write(filepath, lambda f: f.write(text), mode="w")


def _relative_path(impath, path_prefix):
    rel = os.path.relpath(impath, path_prefix)
    if rel == os.pardir or rel.startswith(os.pardir + os.sep) or os.path.isabs(rel):
        raise ValueError(
            f"Image '{impath}' is not under '{path_prefix}'; split files store paths relative "
            "to the image folder"
        )
    return rel.replace(os.sep, "/")


def _relative_paths(impaths, path_prefix):
    """``_relative_path`` of each path; paths plainly under the prefix (the usual case) are
    cut by string, as ``os.path.relpath`` costs seconds on 100k-image datasets."""
    base = os.path.join(path_prefix, "")
    out = []
    for impath in impaths:
        rel = impath[len(base) :]
        if impath.startswith(base) and rel and os.path.normpath(rel) == rel:
            out.append(rel.replace(os.sep, "/"))
        else:
            out.append(_relative_path(impath, path_prefix))
    return out


def _rows_text(obj):
    """``{key: [row, ...]}`` as JSON with one row per line: readable, easy to diff, and fast
    to write (``indent`` would fall back to the pure-Python encoder)."""
    lists = []
    for key, rows in obj.items():
        body = "".join(f"\n        {json.dumps(row)}," for row in rows)[:-1]
        lists.append(
            f"    {json.dumps(key)}: [{body}\n    ]" if rows else f"    {json.dumps(key)}: []"
        )
    return "{\n" + ",\n".join(lists) + "\n}\n"


def write_items(filepath, path_prefix, lists):
    """Save ``{key: [Datum, ...]}`` as ``{key: [[relative_path, label, classname], ...]}``."""
    with gc_paused():
        obj = {
            key: [
                [rel, d.label, d.classname]
                for rel, d in zip(_relative_paths([d.impath for d in items], path_prefix), items)
            ]
            for key, items in lists.items()
        }
        text = _rows_text(obj)
    write_text_atomic(text, filepath)


def read_items(filepath, path_prefix, keys, check_images=True):
    """Load the lists under ``keys`` from a split-format file as Datums with absolute paths,
    checking (unless not ``check_images``) that every image they name exists."""
    if not os.path.isfile(filepath):
        raise FileNotFoundError(
            f"Split file not found: '{filepath}'. Put the dataset's split file there (for the "
            "CoOp benchmarks, the split_zhou_<Name>.json that CoOp's dataset instructions "
            "link to), or point DATASET.ROOT at the folder that holds the dataset."
        )
    with gc_paused():
        lists = _read_lists(filepath, path_prefix, keys)
    if check_images:
        _check_images_exist(filepath, path_prefix, lists)
    return lists


def _read_lists(filepath, path_prefix, keys):
    try:
        with open(filepath) as f:
            obj = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"Split file '{filepath}' is not valid JSON: {err}") from err
    absent = [key for key in keys if key not in obj]
    if absent:
        raise ValueError(f"Split file '{filepath}' has no {', '.join(absent)} list")
    base = os.path.join(path_prefix, "")  # joining by string: 100k calls of os.path.join add up
    lists = []
    for key in keys:
        try:
            lists.append(
                [
                    Datum(
                        os.path.join(base, rel) if os.path.isabs(rel) else base + rel,
                        label,
                        classname=classname,
                    )
                    for rel, label, classname in obj[key]
                ]
            )
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"Split file '{filepath}', list '{key}': entries must be "
                f"[relative_path, label, classname] ({err})"
            ) from err
    return lists


def _missing_paths(paths):
    """The paths that do not exist, found by listing each folder once: a split names tens of
    thousands of images in a few hundred folders, and one listing per folder costs far less
    than one ``stat`` per image (most of all on network file systems)."""
    by_folder = {}
    for path in paths:
        folder, name = os.path.split(path)
        by_folder.setdefault(folder, []).append((path, name))
    missing = []
    for folder, entries in by_folder.items():
        try:
            present = set(os.listdir(folder))
        except (FileNotFoundError, NotADirectoryError):
            present = set()
        missing.extend(path for path, name in entries if name not in present)
    return missing


def _check_images_exist(filepath, path_prefix, lists):
    paths = {d.impath for items in lists for d in items}
    missing = sorted(_missing_paths(paths))
    if missing:
        named = ", ".join(_relative_path(p, path_prefix) for p in missing[:_MAX_NAMED])
        more = ", ..." if len(missing) > _MAX_NAMED else ""
        raise FileNotFoundError(
            f"{len(missing)} of {len(paths)} images listed in '{filepath}' do not exist under "
            f"'{path_prefix}': {named}{more}. Check that DATASET.ROOT points at the dataset "
            "and that its image folder is complete; images removed on purpose must leave the "
            "split file too (remove their entries, or delete a split file that the dataset "
            "generated: it is made again from the images there)."
        )


def read_split(filepath, path_prefix):
    """``(train, val, test)`` from a CoOp split file, whose lists must agree (classes, names,
    no image twice: ``split_checks.check_split``)."""
    lists = read_items(filepath, path_prefix, SPLIT_KEYS)
    check_split(filepath, path_prefix, dict(zip(SPLIT_KEYS, lists)))
    return tuple(lists)


def save_split(train, val, test, filepath, path_prefix):
    write_items(filepath, path_prefix, dict(zip(SPLIT_KEYS, (train, val, test))))
    print(f"Saved split to {filepath}")


def list_class_dirs(image_dir, ignored=()):
    """Class folders of ``image_dir``: non-hidden sub-folders (or links to folders) not in
    ``ignored``, sorted. ``os.scandir`` tells folders from files without a ``stat`` per entry
    on common file systems, which keeps listing 100k-image datasets fast."""
    return sorted(
        entry.name
        for entry in os.scandir(image_dir)
        if not entry.name.startswith(".") and entry.name not in ignored and entry.is_dir()
    )


def list_images(folder):
    """Non-hidden image files of ``folder`` (by extension, any case), sorted."""
    return sorted(
        entry.name
        for entry in os.scandir(folder)
        if not entry.name.startswith(".")
        and entry.name.lower().endswith(IMG_EXTENSIONS)
        and entry.is_file()
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
    with gc_paused():
        return _split_folders(image_dir, classes, p_trn, p_val, new_cnames, seed)


def _split_folders(image_dir, classes, p_trn, p_val, new_cnames, seed):
    rng = random.Random(seed)
    train, val, test = [], [], []
    for label, folder in enumerate(classes):
        class_dir = os.path.join(image_dir, folder)
        prefix = os.path.join(class_dir, "")
        images = [prefix + name for name in list_images(class_dir)]
        if not images:
            raise ValueError(
                f"Class folder '{class_dir}' has no images (extensions: "
                f"{' '.join(IMG_EXTENSIONS)}); add images or remove the folder"
            )
        parts = _cut_three_ways(images, p_trn, p_val, rng)
        if parts is None:
            raise ValueError(
                f"Class folder '{class_dir}' has {len(images)} images, too few to split into "
                f"train/val/test with proportions {_proportions(p_trn, p_val)}"
            )
        classname = (new_cnames or {}).get(folder, folder)
        for out, paths in zip((train, val, test), parts):
            out.extend(Datum(path, label, classname=classname) for path in paths)
    return train, val, test


def split_by_class(data_source, p_trn=0.5, p_val=0.2, *, seed):
    """CoOp's train/val/test cut of each class of ``data_source`` (classes in order of first
    appearance), for datasets whose labels come from an annotation file rather than from
    folders; shuffled with a local ``random.Random(seed)`` like ``read_and_split_data``."""
    rng = random.Random(seed)
    train, val, test = [], [], []
    for label, items in split_dataset_by_label(data_source).items():
        parts = _cut_three_ways(list(items), p_trn, p_val, rng)
        if parts is None:
            raise ValueError(
                f"Class {label} ('{items[0].classname}') has {len(items)} items, too few to "
                f"split into train/val/test with proportions {_proportions(p_trn, p_val)}"
            )
        for out, part in zip((train, val, test), parts):
            out.extend(part)
    return train, val, test


def _cut_three_ways(items, p_trn, p_val, rng):
    """Shuffle ``items`` in place and cut it into train/val/test by CoOp's rounding; ``None``
    when a part would be empty."""
    rng.shuffle(items)
    n_train = round(len(items) * p_trn)
    n_val = round(len(items) * p_val)
    if min(n_train, n_val, len(items) - n_train - n_val) < 1:
        return None
    return items[:n_train], items[n_train : n_train + n_val], items[n_train + n_val :]


def _proportions(p_trn, p_val):
    return f"{p_trn}/{p_val}/{1 - p_trn - p_val:.2f}"


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
