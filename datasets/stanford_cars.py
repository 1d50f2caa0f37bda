"""Stanford Cars (Krause et al. 2013): 196 make-model-year classes. The annotations are MATLAB
files of the devkit; CoOp moves the year to the front ("2012 Tesla Model S")."""

import os

from datasets.annotations import read_mat
from datasets.benchmark import Need, TrainvalTestDataset
from engine.data import Datum
from engine.registry import DATASET_REGISTRY


def year_first(name):
    """ "AM General Hummer SUV 2000" -> "2000 AM General Hummer SUV"."""
    *model, year = name.split(" ")
    return " ".join([year, *model])


@DATASET_REGISTRY.register()
class StanfordCars(TrainvalTestDataset):
    dataset_dir = "stanford_cars"
    image_subdir = ""  # split paths start with cars_train/ or cars_test/
    split_file = "split_zhou_StanfordCars.json"
    needs = (
        Need("cars_train/", "training images, from cars_train.tgz"),
        Need("cars_test/", "test images, from cars_test.tgz"),
        Need("devkit/cars_meta.mat", "class names, from car_devkit.tgz", to_generate=True),
        Need("devkit/cars_train_annos.mat", "from car_devkit.tgz", to_generate=True),
        Need("cars_test_annos_withlabels.mat", "test labels", to_generate=True),
    )
    standard_num_classes = 196

    def read_trainval_and_test(self):
        meta = os.path.join(self.dataset_dir, "devkit", "cars_meta.mat")
        classnames = [year_first(str(entry[0])) for entry in read_mat(meta, "class_names")[0]]
        trainval = self.read_annotations(
            "cars_train", os.path.join("devkit", "cars_train_annos.mat"), classnames
        )
        test = self.read_annotations("cars_test", "cars_test_annos_withlabels.mat", classnames)
        return trainval, test

    def read_annotations(self, image_folder, anno_file, classnames):
        """The ``annotations`` struct array: ``fname`` and ``class`` (from 1) per image."""
        items = []
        for entry in read_mat(os.path.join(self.dataset_dir, anno_file), "annotations")[0]:
            label = int(entry["class"][0, 0]) - 1
            impath = os.path.join(self.dataset_dir, image_folder, str(entry["fname"][0]))
            items.append(Datum(impath, label, classname=classnames[label]))
        return items
