"""Any folder of class folders, as a CoOp-style dataset."""

import os

from engine.data import DatasetBase, list_class_dirs, read_and_split_data, read_split, save_split
from engine.registry import DATASET_REGISTRY

LAYOUT = "ROOT/<class>/<image> (one folder per class; '_' in a folder name reads as a space)"


@DATASET_REGISTRY.register()
class ImageFolder(DatasetBase):
    """``DATASET.ROOT`` is the folder of class folders itself.

    ``ROOT/split.json`` (CoOp's format, paths relative to ROOT) is used when present. Otherwise
    a split is generated with CoOp's proportions (50% train, 20% val, 30% test per class) and
    the fixed seed ``SPLIT_SEED`` = 1, independent of the run's seed so that every run sees the
    same test set, and saved there; an existing split file is never overwritten (delete it
    to regenerate after adding images). Few-shot subsets are cached in ``ROOT/split_fewshot``.
    """

    split_file = "split.json"
    SPLIT_SEED = 1

    def __init__(self, cfg):
        self.dataset_dir = self.dataset_path(cfg)
        root = self.dataset_dir
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"DATASET.ROOT '{root}' is not a folder; ImageFolder expects {LAYOUT}"
            )
        split_path = os.path.join(root, self.split_file)
        if os.path.exists(split_path):
            train, val, test = read_split(split_path, root)
        else:
            folders = list_class_dirs(root, ignored=(self.fewshot_dir,))
            train, val, test = read_and_split_data(
                root,
                ignored=(self.fewshot_dir,),
                new_cnames={name: name.replace("_", " ") for name in folders},
                seed=self.SPLIT_SEED,
            )
            save_split(train, val, test, split_path, root)
        train, val, test = self.fewshot_and_subsample(cfg, train, val, test, root)
        super().__init__(train_x=train, val=val, test=test)
