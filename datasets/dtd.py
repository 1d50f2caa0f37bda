"""Describable Textures (Cimpoi et al. 2014): 47 texture words, one folder each."""

from datasets.benchmark import ClassFolderDataset, Need
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class DescribableTextures(ClassFolderDataset):
    dataset_dir = "dtd"
    image_subdir = "images"
    split_file = "split_zhou_DescribableTextures.json"
    needs = (Need("images/", "one folder per texture"),)
    standard_num_classes = 47
