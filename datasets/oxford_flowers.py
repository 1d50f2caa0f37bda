"""Oxford Flowers-102 (Nilsback & Zisserman 2008): image_NNNNN.jpg labelled by imagelabels.mat,
named by cat_to_name.json; a missing split is cut 50/20/30 per class (not the official one)."""

import os

from datasets.annotations import AnnotationError, read_json_mapping, read_mat
from datasets.benchmark import BenchmarkDataset, Need
from engine.data import Datum, split_by_class
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class OxfordFlowers(BenchmarkDataset):
    dataset_dir = "oxford_flowers"
    image_subdir = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    needs = (
        Need("jpg/", "image_00001.jpg ..., from 102flowers.tgz"),
        Need("imagelabels.mat", "the label of each image", to_generate=True),
        Need("cat_to_name.json", "label -> flower name", to_generate=True),
    )
    standard_num_classes = 102

    def generate_split(self, seed):
        label_file = os.path.join(self.dataset_dir, "imagelabels.mat")
        names_file = os.path.join(self.dataset_dir, "cat_to_name.json")
        names = read_json_mapping(names_file)
        labels = [int(label) for label in read_mat(label_file, "labels").ravel()]
        unnamed = sorted({label for label in labels if str(label) not in names})
        if unnamed:
            raise AnnotationError(f"{names_file} has no name for the labels {unnamed}")
        items = [
            Datum(
                os.path.join(self.image_dir, f"image_{index:05d}.jpg"),
                label - 1,
                classname=names[str(label)],
            )
            for index, label in enumerate(labels, 1)
        ]
        items.sort(key=lambda item: item.label)  # stable: by label, then image number
        return split_by_class(items, seed=seed)
