"""ImageNet (ILSVRC-2012): 1,000 classes in wnid folders; as in CoOp, the official validation
set is the test set (and the val split), and few-shot sampling draws from train only.

Listing 1.3 million files takes a while, so the lists are kept in ``imagenet/preprocessed.json``
(the split-file format, with an empty val list) after the first run; delete it after changing
the image folders or classnames.txt. CoOp keeps a pickle instead; we never unpickle.
"""

import os

from datasets.benchmark import BenchmarkDataset, Need
from datasets.imagenet_classes import read_class_folders, read_classnames, require_known
from engine.data import list_class_dirs, subsample_classes
from engine.data.images import IMG_EXTENSIONS
from engine.registry import DATASET_REGISTRY

FLAT_VAL_FIX = (
    "images/val holds the images themselves, not one folder per class: the validation archive "
    "(ILSVRC2012_img_val.tar) unpacks flat. Sort the images into wnid folders like those of "
    "images/train, e.g. with the widely used valprep.sh script, or from the validation labels "
    "of the devkit (mind that its label numbers follow the devkit's meta.mat order, not the "
    "sorted wnids) or of the Kaggle copy (LOC_val_solution.csv)."
)


def holds_image_files(folder):
    """Whether ``folder`` has image files directly in it (stops at the first one)."""
    return any(
        entry.name.lower().endswith(IMG_EXTENSIONS) and entry.is_file()
        for entry in os.scandir(folder)
    )


@DATASET_REGISTRY.register()
class ImageNet(BenchmarkDataset):
    dataset_dir = "imagenet"
    image_subdir = "images"
    split_file = "preprocessed.json"
    split_file_role = "the image lists, made on the first run (CoOp's preprocessed.pkl is unused)"
    split_file_advice = (
        "the first run lists the images (minutes for 1.3M files) and keeps them there"
    )
    needs = (
        Need("images/train/", "1,000 wnid folders like n01440764, from ILSVRC2012_img_train.tar"),
        Need("images/val/", "the same wnid folders, from ILSVRC2012_img_val.tar (sorted)"),
        Need("classnames.txt", "'<wnid> <class name>' per line, CoOp's file", to_generate=True),
    )
    standard_num_classes = 1000

    @classmethod
    def layout_problems(cls, dataset_dir):
        problems = super().layout_problems(dataset_dir)
        val_dir = os.path.join(dataset_dir, "images", "val")
        if os.path.isdir(val_dir) and holds_image_files(val_dir):
            problems.append(FLAT_VAL_FIX)
        return problems

    def generate_split(self, seed):
        """Train from images/train, test from images/val; labels in sorted wnid order."""
        classnames_path = os.path.join(self.dataset_dir, "classnames.txt")
        classnames = read_classnames(classnames_path)
        train_dir = os.path.join(self.image_dir, "train")
        val_dir = os.path.join(self.image_dir, "val")
        wnids = list_class_dirs(train_dir)
        require_known(wnids, classnames, train_dir, classnames_path)
        val_wnids = list_class_dirs(val_dir)
        if val_wnids != wnids:
            only_train = sorted(set(wnids) - set(val_wnids))
            only_val = sorted(set(val_wnids) - set(wnids))
            raise FileNotFoundError(
                f"images/train and images/val of '{self.dataset_dir}' must hold the same class "
                f"folders; only in train: {only_train[:5]}, only in val: {only_val[:5]}"
            )
        names = [classnames[wnid] for wnid in wnids]
        print(f"Listing ImageNet's images in {self.image_dir} (once; kept in {self.split_file})")
        train = read_class_folders(train_dir, wnids, names)
        test = read_class_folders(val_dir, wnids, names)
        return train, [], test

    def build_lists(self, cfg, dry_run):
        train, _, test = self.read_lists(cfg, save=not dry_run)
        if not dry_run:
            train, _ = self.fewshot_from_cache_or_sample(
                train,
                None,
                cfg.DATASET.NUM_SHOTS,
                cfg.SEED,
                os.path.join(self.dataset_dir, self.fewshot_dir),
                self.image_dir,
                cfg.DATASET.SPLIT_CACHE,
            )
            train, test = subsample_classes(train, test, subsample=cfg.DATASET.SUBSAMPLE_CLASSES)
        return train, test, test
