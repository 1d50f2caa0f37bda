"""Food-101 (Bossard et al. 2014): 101 dishes, one folder each (meta/ is not used; CoOp's split
replaces the official one)."""

from datasets.benchmark import ClassFolderDataset, Need
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class Food101(ClassFolderDataset):
    dataset_dir = "food-101"
    image_subdir = "images"
    split_file = "split_zhou_Food101.json"
    needs = (Need("images/", "one folder per dish"),)
    standard_num_classes = 101
