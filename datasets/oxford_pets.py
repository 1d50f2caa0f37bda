"""Oxford-IIIT Pets (Parkhi et al. 2012): 37 cat and dog breeds. The breed is the image name
without its number, lower-cased ("american_bulldog"); labels come from the list files."""

import os

from datasets.annotations import read_fields
from datasets.benchmark import Need, TrainvalTestDataset
from engine.data import Datum
from engine.registry import DATASET_REGISTRY


@DATASET_REGISTRY.register()
class OxfordPets(TrainvalTestDataset):
    dataset_dir = "oxford_pets"
    image_subdir = "images"
    split_file = "split_zhou_OxfordPets.json"
    needs = (
        Need("images/", "<Breed>_<n>.jpg, from images.tar.gz"),
        Need("annotations/trainval.txt", "from annotations.tar.gz", to_generate=True),
        Need("annotations/test.txt", "from annotations.tar.gz", to_generate=True),
    )
    standard_num_classes = 37

    def read_trainval_and_test(self):
        return self.read_list("trainval.txt"), self.read_list("test.txt")

    def read_list(self, name):
        """Lines "<image name> <class id from 1> <species> <breed id>"."""
        items = []
        for _, (imname, class_id, *_) in read_fields(
            os.path.join(self.dataset_dir, "annotations", name), min_fields=2
        ):
            breed = imname.rsplit("_", 1)[0].lower()
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(Datum(impath, int(class_id) - 1, classname=breed))
        return items
