"""ImageNet-Sketch (Wang et al. 2019): black-and-white sketches of ImageNet's 1,000 classes in
wnid folders; labels follow the sorted folders, names come from ImageNet's classes."""

from datasets.benchmark import Need
from datasets.imagenet_classes import CLASSNAMES_NEED, ImageNetShiftDataset
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class ImageNetSketch(ImageNetShiftDataset):
    dataset_dir = "imagenet-sketch"
    image_subdir = "images"
    needs = (Need("images/", "1,000 wnid folders, from ImageNet-Sketch.zip"), CLASSNAMES_NEED)
    standard_num_classes = 1000
