"""What a split file must hold before anything trains on it: the same classes in every list.

Checked on every list of the file (train, val, test): train's labels are 0..n-1; a label of
val or test is one of train's; a label has one class name everywhere; no list names an image
twice. An image that is in test (or val) and in train is allowed, with a warning that counts
them: a test accuracy measured on training images says little.
"""

import os

FIX_SPLIT = (
    "Correct the entry in the file (or put back the dataset's original split file); a "
    "dataset that generates its split (ImageFolder, the CoOp benchmarks) makes a new one when "
    "the file is deleted."
)


def _entry(filepath, path_prefix, key, index, item):
    rel = os.path.relpath(item.impath, path_prefix).replace(os.sep, "/")
    return (
        f"Split file '{filepath}', list '{key}', entry {index} {[rel, item.label, item.classname]}"
    )


def _check_train_labels(filepath, train):
    labels = sorted({item.label for item in train})
    if labels != list(range(len(labels))):
        gaps = sorted(set(range(max(labels, default=-1) + 1)) - set(labels))
        problem = f"label {labels[0]} is negative" if labels and labels[0] < 0 else (
            f"no image has label {gaps[0]}"
        )  # fmt: skip
        raise ValueError(
            f"Split file '{filepath}', list 'train': labels must be 0..{len(labels) - 1} "
            f"without gaps, one per class, but {problem} (labels found: {labels[:10]}"
            f"{' ...' if len(labels) > 10 else ''}). {FIX_SPLIT}"
        )
    return len(labels)


def check_split(filepath, path_prefix, lists):
    """Raise ``ValueError`` for the first entry of ``lists`` (``{"train": [Datum, ...],
    "val": ..., "test": ...}``, read from ``filepath``) that breaks a rule above; print the
    warning about test and val images that are train images too."""
    n_classes = _check_train_labels(filepath, lists["train"])
    named = {}  # label -> (class name, where it was first seen)
    for key, items in lists.items():
        seen = {}
        for index, item in enumerate(items):
            where = (key, index)
            if not 0 <= item.label < n_classes:
                raise ValueError(
                    f"{_entry(filepath, path_prefix, key, index, item)}: label {item.label} "
                    f"is not a class of the list 'train' (labels 0..{n_classes - 1}). "
                    f"{FIX_SPLIT}"
                )
            name, first = named.setdefault(item.label, (item.classname, where))
            if name != item.classname:
                raise ValueError(
                    f"{_entry(filepath, path_prefix, key, index, item)}: label {item.label} "
                    f"is '{item.classname}' here but '{name}' in list '{first[0]}', entry "
                    f"{first[1]}; a label has one class name in every list. {FIX_SPLIT}"
                )
            earlier = seen.setdefault(item.impath, index)
            if earlier != index:
                raise ValueError(
                    f"{_entry(filepath, path_prefix, key, index, item)}: the image is listed "
                    f"twice in '{key}' (entries {earlier} and {index}); remove one of them. "
                    f"{FIX_SPLIT}"
                )
    _warn_overlap(filepath, lists)


def _warn_overlap(filepath, lists):
    train = {item.impath for item in lists["train"]}
    counts = {
        key: sum(item.impath in train for item in lists[key])
        for key in ("test", "val")
        if key in lists
    }
    shared = [f"{n:,} of {len(lists[key]):,} {key} images" for key, n in counts.items() if n]
    if shared:
        print(
            f"Warning: {' and '.join(shared)} in '{filepath}' are also train images; a "
            "model evaluated on images it was trained on scores higher than on new ones."
        )
