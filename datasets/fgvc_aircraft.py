"""FGVC-Aircraft (Maji et al. 2013) at the variant level ("737-400", "A320", 100 classes).
Its official train/val/test lists are read on every run (CoOp keeps no split file); labels
follow the order of variants.txt."""

import os

from datasets.annotations import lookup, read_lines
from datasets.benchmark import BenchmarkDataset, Need
from engine.data import Datum
from engine.registry import DATASET_REGISTRY

LISTS = {part: f"images_variant_{part}.txt" for part in ("train", "val", "test")}


@DATASET_REGISTRY.register()
class FGVCAircraft(BenchmarkDataset):
    dataset_dir = "fgvc_aircraft"
    image_subdir = "images"
    needs = (
        Need("images/", "<id>.jpg, from the data/ folder of fgvc-aircraft-2013b.tar.gz"),
        Need("variants.txt", "one variant name per line"),
        *(Need(name, "lines '<image id> <variant>'") for name in LISTS.values()),
    )
    standard_num_classes = 100

    def generate_split(self, seed):
        variants_file = os.path.join(self.dataset_dir, "variants.txt")
        labels = {name: label for label, (_, name) in enumerate(read_lines(variants_file))}
        return tuple(self.read_list(LISTS[part], labels) for part in ("train", "val", "test"))

    def read_list(self, name, labels):
        path = os.path.join(self.dataset_dir, name)
        items = []
        for number, line in read_lines(path):
            image_id, _, variant = line.partition(" ")
            label = lookup(labels, variant, path, number, "variant (not in variants.txt)")
            items.append(
                Datum(os.path.join(self.image_dir, image_id + ".jpg"), label, classname=variant)
            )
        return items
