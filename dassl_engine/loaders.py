"""Dassl's data manager with this project's randomness (engine/randomness.py).

Dassl's loaders draw the data order and the augmentations from the global generators, in
worker processes that start anew each epoch. With RANDOMNESS keyed the trainer seeds the
global generators from the stream ("epoch", epoch) before each epoch, so that an epoch's
order does not depend on what was drawn before it (evaluations, a resume), and this wrapper
draws each train sample's augmentation from the stream ("augment", epoch, index), as the
builtin engine does, so that it does not depend on the number of workers either. Worker
processes end with the run that started them.
"""

import os

from dassl.data import DataManager
from dassl.data.data_manager import DatasetWrapper

from engine.lifetime import exit_with_parent
from engine.randomness import is_keyed, run_seed, seeded

_ENDS_WITH_PARENT = False  # set in a worker process once it is bound to its parent


class KeyedDatasetWrapper(DatasetWrapper):
    """Dassl's ``DatasetWrapper``; ``epoch`` is set by the trainer before each epoch."""

    def __init__(self, cfg, data_source, transform=None, is_train=False):
        super().__init__(cfg, data_source, transform=transform, is_train=is_train)
        self.keyed = is_train and is_keyed(cfg)
        self.seed = run_seed(cfg)
        self.epoch = 0
        self._parent_pid = os.getpid()

    def __getitem__(self, idx):
        global _ENDS_WITH_PARENT
        if not _ENDS_WITH_PARENT and os.getpid() != self._parent_pid:  # a loader worker
            _ENDS_WITH_PARENT = exit_with_parent(self._parent_pid) or True
        if not self.keyed:
            return super().__getitem__(idx)
        with seeded(self.seed, "augment", self.epoch, idx):
            return super().__getitem__(idx)


def build_data_manager(cfg):
    return DataManager(cfg, dataset_wrapper=KeyedDatasetWrapper)
