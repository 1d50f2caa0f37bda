"""ImageNetV2 (Recht et al. 2019), matched-frequency version: a new test set for ImageNet's
1,000 classes, in folders named by the label number (0..999) rather than the wnid; the names
come from line <label> of ImageNet's classnames.txt."""

from datasets.benchmark import EvalOnlyDataset, Need
from datasets.imagenet_classes import CLASSNAMES_NEED, read_class_folders, read_classnames
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class ImageNetV2(EvalOnlyDataset):
    dataset_dir = "imagenetv2"
    image_subdir = "imagenetv2-matched-frequency-format-val"
    needs = (
        Need(
            "imagenetv2-matched-frequency-format-val/",
            "folders 0 ... 999, from imagenetv2-matched-frequency.tar.gz",
        ),
        CLASSNAMES_NEED,
    )
    standard_num_classes = 1000

    def read_data(self):
        names = list(read_classnames(CLASSNAMES_NEED.found_in(self.dataset_dir)).values())
        folders = [str(label) for label in range(len(names))]
        return read_class_folders(self.image_dir, folders, names)
