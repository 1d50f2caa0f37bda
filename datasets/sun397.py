"""SUN397 (Xiao et al. 2010): 397 scene categories in folders like a/apartment_building/outdoor.
CoOp drops the initial-letter folder and puts a trailing qualifier first
("outdoor apartment_building"); the lists are the first of the ten official partitions."""

import os

from datasets.annotations import lookup, read_lines
from datasets.benchmark import Need, TrainvalTestDataset
from engine.data import Datum
from engine.registry import DATASET_REGISTRY


def scene_name(category):
    """ "a/apartment_building/outdoor" -> "outdoor apartment_building"."""
    return " ".join(reversed(category.split("/")[1:]))


@DATASET_REGISTRY.register()
class SUN397(TrainvalTestDataset):
    dataset_dir = "sun397"
    image_subdir = "SUN397"
    split_file = "split_zhou_SUN397.json"
    needs = (
        Need("SUN397/", "<letter>/<category>/*.jpg, from SUN397.tar.gz"),
        Need("ClassName.txt", "from Partitions.zip", to_generate=True),
        Need("Training_01.txt", "from Partitions.zip", to_generate=True),
        Need("Testing_01.txt", "from Partitions.zip", to_generate=True),
    )
    standard_num_classes = 397

    def read_trainval_and_test(self):
        """ClassName.txt lines "/a/abbey"; list lines "/a/abbey/sun_aaalbzqrimafwbiv.jpg"."""
        class_file = os.path.join(self.dataset_dir, "ClassName.txt")
        labels = {line.lstrip("/"): label for label, (_, line) in enumerate(read_lines(class_file))}
        return self.read_list("Training_01.txt", labels), self.read_list("Testing_01.txt", labels)

    def read_list(self, name, labels):
        path = os.path.join(self.dataset_dir, name)
        items = []
        for number, line in read_lines(path):
            relpath = line.lstrip("/")
            category = os.path.dirname(relpath)
            label = lookup(labels, category, path, number, "category (not in ClassName.txt)")
            impath = os.path.join(self.image_dir, relpath)
            items.append(Datum(impath, label, classname=scene_name(category)))
        return items
