"""Caltech101 (Fei-Fei et al. 2004): 100 object categories; CoOp leaves out the background
class and the duplicate face class, and gives four categories singular names."""

from datasets.benchmark import ClassFolderDataset, Need
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class Caltech101(ClassFolderDataset):
    dataset_dir = "caltech-101"
    image_subdir = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"
    needs = (Need("101_ObjectCategories/", "one folder per category"),)
    standard_num_classes = 100
    ignored = ("BACKGROUND_Google", "Faces_easy")
    renamed = {
        "airplanes": "airplane",
        "Faces": "face",
        "Leopards": "leopard",
        "Motorbikes": "motorbike",
    }
