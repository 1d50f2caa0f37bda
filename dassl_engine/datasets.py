"""This project's datasets as Dassl datasets.

Each registered dataset class becomes a Dassl ``DatasetBase`` subclass of the same name: it
reads (or makes) the same split files, draws its few-shot subsets with Dassl's
``generate_fewshot_dataset`` and caches them as CoOp does, pickled under
``<dataset_dir>/split_fewshot/shot_<K>-seed_<S>.pkl``. A name Dassl already has (its own
datasets, or CoOp's when its ``datasets`` package was imported) is left to Dassl.
"""

import os
import pickle

from dassl.data.datasets import DATASET_REGISTRY as DASSL_DATASETS
from dassl.data.datasets import DatasetBase as DasslDatasetBase
from dassl.data.datasets import Datum as DasslDatum

import datasets  # noqa: F401  (registers this project's datasets)
from engine.checkpoint import atomic_write
from engine.data import Datum
from engine.data.generated import find_generated, save_generated
from engine.registry import DATASET_REGISTRY


def to_dassl(items):
    return [DasslDatum(item.impath, item.label, item.domain, item.classname) for item in items]


def to_ours(items):
    return [Datum(item.impath, item.label, item.domain, item.classname) for item in items]


class DasslFewshot:
    """Mixed in after one of our dataset classes, before Dassl's ``DatasetBase``: our class
    builds the splits; the few-shot draw and the final lists are Dassl's."""

    def __init__(self, cfg):
        super().__init__(cfg)  # our dataset: split files, few-shot (below), base/new
        DasslDatasetBase.__init__(
            self,
            train_x=to_dassl(self.train_x),
            val=to_dassl(self.val) if self.val else None,
            test=to_dassl(self.test),
        )

    def fewshot_from_cache_or_sample(
        self, train, val, num_shots, seed, cache_dir, path_prefix, split_cache=""
    ):
        """CoOp's few-shot train and val subsets (val with min(K, 4) shots), drawn with
        Dassl's sampler from the global RNG, cached as CoOp caches them (below
        ``split_cache`` when the dataset's folder cannot be written)."""
        if num_shots < 1:
            return train, val
        path = os.path.join(cache_dir, f"shot_{num_shots}-seed_{seed}.pkl")
        found = find_generated(path, split_cache) if seed >= 0 else None
        if found:
            print(f"Loading preprocessed few-shot data from {found}")
            with open(found, "rb") as file:
                data = pickle.load(file)
        else:
            data = {"train": self.generate_fewshot_dataset(to_dassl(train), num_shots=num_shots)}
            if val is not None:
                shots = min(num_shots, 4)
                data["val"] = self.generate_fewshot_dataset(to_dassl(val), num_shots=shots)
            if seed >= 0:
                print(f"Saving preprocessed few-shot data to {path}")
                save_generated(
                    path,
                    lambda target: atomic_write(
                        target, lambda f: pickle.dump(data, f, protocol=pickle.HIGHEST_PROTOCOL)
                    ),
                    split_cache,
                    "the few-shot split",
                )
        subset_val = data.get("val")
        return to_ours(data["train"]), (to_ours(subset_val) if subset_val is not None else None)


def dassl_dataset(dataset_type):
    """``dataset_type`` as a Dassl dataset class of the same name."""
    return type(
        dataset_type.__name__,
        (DasslFewshot, dataset_type, DasslDatasetBase),
        {"__doc__": f"{dataset_type.__name__} (this project's) as a Dassl dataset."},
    )


def register_datasets():
    """Register every dataset of ours whose name Dassl does not have yet."""
    for name in DATASET_REGISTRY.names():
        if name not in DASSL_DATASETS.registered_names():
            DASSL_DATASETS.register(dassl_dataset(DATASET_REGISTRY.get(name)))
