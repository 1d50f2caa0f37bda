"""Dassl's dataset container, with CoOp's few-shot cache and base/new subsampling."""

import os

from engine.data.generated import find_generated, save_generated
from engine.data.sampling import generate_fewshot_dataset, subsample_classes
from engine.data.splits import read_items, write_items


def _lab2cname(data_source):
    """``({label: classname}, [classname by label])``; labels must be 0..n-1, one name each."""
    mapping = {}
    for item in data_source:
        known = mapping.setdefault(item.label, item.classname)
        if known != item.classname:
            raise ValueError(
                f"Label {item.label} has two class names: '{known}' and '{item.classname}'"
            )
    labels = sorted(mapping)
    if labels != list(range(len(labels))):
        raise ValueError(
            f"Training labels must be 0..{len(labels) - 1} without gaps; got {labels[:10]}"
            f"{' ...' if len(labels) > 10 else ''}"
        )
    return mapping, [mapping[label] for label in labels]


def _all_in_split(subsets, train, val):
    """Whether every item of the cached ``subsets`` is in ``train`` or ``val`` as it is (by
    path first: a path's hash is cached by Python, a Datum's is computed per call)."""
    wanted = {item.impath: item for subset in subsets for item in subset}
    found = {item.impath for items in (train, val or ()) for item in items
             if item.impath in wanted and wanted[item.impath] == item}  # fmt: skip
    return len(found) == len(wanted)


class DatasetBase:
    """Lists of ``Datum`` for train_x, train_u, val and test (Dassl's ``DatasetBase``).

    A dataset subclass is registered with ``@DATASET_REGISTRY.register()``, constructed as
    ``Cls(cfg)`` and builds its lists in ``__init__``. Its class attribute ``dataset_dir`` is
    the dataset's folder under ``DATASET.ROOT``; ``__init__`` sets ``self.dataset_dir =
    self.dataset_path(cfg)``, reads (or makes) its split, calls ``fewshot_and_subsample`` and
    finally ``super().__init__(train_x=..., val=..., test=...)``. Classes and their names come
    from train_x.
    """

    dataset_dir = ""
    fewshot_dir = "split_fewshot"  # few-shot cache, inside dataset_dir

    def __init__(self, train_x=None, train_u=None, val=None, test=None):
        self._train_x = train_x
        self._train_u = train_u
        self._val = val
        self._test = test
        self._lab2cname, self._classnames = _lab2cname(train_x or [])

    @property
    def train_x(self):
        return self._train_x

    @property
    def train_u(self):
        return self._train_u

    @property
    def val(self):
        return self._val

    @property
    def test(self):
        return self._test

    @property
    def lab2cname(self):
        return self._lab2cname

    @property
    def classnames(self):
        return self._classnames

    @property
    def num_classes(self):
        return len(self._classnames)

    @classmethod
    def check_config(cls, cfg):
        """Before any work (the engines call it with the trainer's checks): raise on a bad
        value of this dataset's own keys. Nothing to check by default."""

    @classmethod
    def dataset_path(cls, cfg):
        """The absolute path of ``DATASET.ROOT/<dataset_dir>``."""
        if not cfg.DATASET.ROOT:
            raise ValueError("DATASET.ROOT is not set; pass --root <folder holding the datasets>")
        root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
        return os.path.normpath(os.path.join(root, cls.dataset_dir))

    def fewshot_from_cache_or_sample(
        self, train, val, num_shots, seed, cache_dir, path_prefix, split_cache=""
    ):
        """CoOp's few-shot train and val: ``num_shots`` per class for train, then
        ``min(num_shots, 4)`` for val, from the global RNG in that order.

        The subsets are cached as ``<cache_dir>/shot_{K}-seed_{S}.json`` (split format, keys
        "train" and "val") and read back when that file exists, unless it lists an item that
        the split no longer holds as it is (the split was made again, e.g. after class folders
        were added, or images removed): then they are drawn again. Where ``cache_dir``
        cannot be written, the file goes below ``split_cache`` (``engine.data.generated``). A
        negative seed means an unseeded run, whose draw is not cached. ``num_shots < 1`` keeps
        all data; ``val`` may be ``None`` (not sampled then).
        """
        if num_shots < 1:
            return train, val
        keys = ("train",) if val is None else ("train", "val")
        path = os.path.join(cache_dir, f"shot_{num_shots}-seed_{seed}.json")
        subsets = None
        found = find_generated(path, split_cache) if seed >= 0 else None
        if found:
            subsets = read_items(found, path_prefix, keys, check_images=False)
            if _all_in_split(subsets, train, val):
                print(f"Loading few-shot data from {found}")
            else:
                print(
                    f"Note: {found} was drawn from another version of the split (it lists "
                    "images, labels or class names the split does not): drawing again"
                )
                subsets = None
        if subsets is None:
            subsets = [generate_fewshot_dataset(train, num_shots=num_shots)]
            if val is not None:
                subsets.append(generate_fewshot_dataset(val, num_shots=min(num_shots, 4)))
            if seed >= 0:
                saved = save_generated(
                    path,
                    lambda target: write_items(target, path_prefix, dict(zip(keys, subsets))),
                    split_cache,
                    "the few-shot split",
                )
                print(f"Saved few-shot data to {saved}")
        return subsets[0], (subsets[1] if val is not None else None)

    def fewshot_and_subsample(self, cfg, train, val, test, path_prefix):
        """The common tail of a CoOp dataset: few-shot train/val (DATASET.NUM_SHOTS, cached
        under ``<dataset_dir>/split_fewshot``), then base/new (DATASET.SUBSAMPLE_CLASSES) on
        all three. Returns ``(train, val, test)``."""
        train, val = self.fewshot_from_cache_or_sample(
            train,
            val,
            cfg.DATASET.NUM_SHOTS,
            cfg.SEED,
            os.path.join(self.dataset_dir, self.fewshot_dir),
            path_prefix,
            cfg.DATASET.SPLIT_CACHE,
        )
        return subsample_classes(train, val, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
