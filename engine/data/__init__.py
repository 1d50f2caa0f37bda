"""Data core: Datum, DatasetBase, split files, few-shot and base/new subsets, transforms,
loaders."""

from engine.data.base import DatasetBase
from engine.data.datum import Datum
from engine.data.images import BadImageError, read_image
from engine.data.manager import DataManager, DatasetWrapper, build_data_loader, build_dataset
from engine.data.sampling import (
    generate_fewshot_dataset,
    split_dataset_by_label,
    subsample_classes,
)
from engine.data.splits import (
    list_class_dirs,
    list_images,
    read_and_split_data,
    read_items,
    read_split,
    save_split,
    split_by_class,
    split_trainval,
    write_items,
    write_json_atomic,
)
from engine.data.transforms import build_transform

__all__ = [
    "BadImageError",
    "DataManager",
    "DatasetBase",
    "DatasetWrapper",
    "Datum",
    "build_data_loader",
    "build_dataset",
    "build_transform",
    "generate_fewshot_dataset",
    "list_class_dirs",
    "list_images",
    "read_and_split_data",
    "read_image",
    "read_items",
    "read_split",
    "save_split",
    "split_by_class",
    "split_dataset_by_label",
    "split_trainval",
    "subsample_classes",
    "write_items",
    "write_json_atomic",
]
