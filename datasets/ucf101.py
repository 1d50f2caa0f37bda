"""UCF101 (Soomro et al. 2012) as still images: the middle frame of each video, in folders
named by the action split at capitals ("ApplyEyeMakeup" -> "Apply_Eye_Makeup"), as CoOp's
UCF-101-midframes.zip holds them; lists from the first official train/test split."""

import os
import re

from datasets.annotations import lookup, read_fields
from datasets.benchmark import Need, TrainvalTestDataset
from engine.data import Datum
from engine.registry import DATASET_REGISTRY

LIST_DIR = "ucfTrainTestlist"


def split_camel_case(action):
    """ "ApplyEyeMakeup" -> "Apply_Eye_Makeup" (CoOp's class and folder names)."""
    return "_".join(re.findall("[A-Z][^A-Z]*", action))


@DATASET_REGISTRY.register()
class UCF101(TrainvalTestDataset):
    dataset_dir = "ucf101"
    image_subdir = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"
    needs = (
        Need("UCF-101-midframes/", "<Action_Words>/v_<Action>_gNN_cNN.jpg"),
        *(
            Need(
                f"{LIST_DIR}/{name}",
                "from UCF101TrainTestSplits-RecognitionTask.zip",
                to_generate=True,
            )
            for name in ("classInd.txt", "trainlist01.txt", "testlist01.txt")
        ),
    )
    standard_num_classes = 101

    def read_trainval_and_test(self):
        """classInd.txt lines "1 ApplyEyeMakeup"; list lines
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi[ <label>]"."""
        class_file = os.path.join(self.dataset_dir, LIST_DIR, "classInd.txt")
        labels = {action: int(n) - 1 for _, (n, action) in read_fields(class_file, min_fields=2)}
        return self.read_list("trainlist01.txt", labels), self.read_list("testlist01.txt", labels)

    def read_list(self, name, labels):
        path = os.path.join(self.dataset_dir, LIST_DIR, name)
        items = []
        for number, (video, *_) in read_fields(path, min_fields=1):
            action, _, filename = video.partition("/")
            label = lookup(labels, action, path, number, "action (not in classInd.txt)")
            classname = split_camel_case(action)
            frame = os.path.splitext(filename)[0] + ".jpg"
            items.append(
                Datum(os.path.join(self.image_dir, classname, frame), label, classname=classname)
            )
        return items
