"""ImageNet's class names and folders, shared by ImageNet and its domain-shift test sets.

``classnames.txt`` (CoOp's file, names from CLIP's prompt-engineering notebook) has one line
per class, "<wnid> <class name>", in ImageNet's label order (sorted wnids). The shift sets
read it from their own folder, as CoOp does, or else from ``imagenet/classnames.txt``.
"""

import os

from datasets.annotations import AnnotationError, read_fields
from datasets.benchmark import EvalOnlyDataset, Need
from engine.data import Datum, list_class_dirs, list_images
from engine.data.splits import gc_paused

CLASSNAMES_NEED = Need(
    "classnames.txt",
    "'<wnid> <class name>' per line; CoOp's ImageNet class names",
    alternatives=("../imagenet/classnames.txt",),
)
_MAX_NAMED = 5


def read_classnames(path):
    """``{wnid: class name}`` in the file's order."""
    classnames = {}
    for number, (wnid, *words) in read_fields(path, min_fields=2):
        if wnid in classnames:
            raise AnnotationError(f"{path}, line {number}: '{wnid}' is listed twice")
        classnames[wnid] = " ".join(words)
    return classnames


def named(values):
    """The first few values, for an error message."""
    values = list(values)
    more = ", ..." if len(values) > _MAX_NAMED else ""
    return ", ".join(values[:_MAX_NAMED]) + more


def require_known(wnids, classnames, where, classnames_path):
    unknown = [wnid for wnid in wnids if wnid not in classnames]
    if unknown:
        raise AnnotationError(
            f"{len(unknown)} class folders of '{where}' are not in '{classnames_path}': "
            f"{named(unknown)}. Use CoOp's classnames.txt for ImageNet's 1,000 classes."
        )


def read_class_folders(image_dir, folders, classnames):
    """Datums for ``image_dir/<folder>/<image>``, labelled by the position of the folder in
    ``folders`` and named by ``classnames[i]``; every folder must exist and hold images."""
    absent = [folder for folder in folders if not os.path.isdir(os.path.join(image_dir, folder))]
    if absent:
        raise FileNotFoundError(
            f"{len(absent)} of {len(folders)} class folders are missing in '{image_dir}': "
            f"{named(absent)}. The download may be incomplete; extract it again."
        )
    items = []
    with gc_paused():
        for label, (folder, classname) in enumerate(zip(folders, classnames)):
            class_dir = os.path.join(image_dir, folder)
            images = list_images(class_dir)
            if not images:
                raise ValueError(f"Class folder '{class_dir}' has no images; extract it again")
            prefix = os.path.join(class_dir, "")
            items.extend(Datum(prefix + name, label, classname=classname) for name in images)
    return items


class ImageNetShiftDataset(EvalOnlyDataset):
    """A test set with ImageNet's classes in wnid folders under the image folder: the fixed
    ``wnids`` (a subset, labelled 0.. in sorted order as CoOp's sorted folder listing does),
    or every wnid folder found when ``wnids`` is empty."""

    wnids = ()

    def read_data(self):
        classnames_path = CLASSNAMES_NEED.found_in(self.dataset_dir)
        classnames = read_classnames(classnames_path)
        wnids = list(self.wnids) or list_class_dirs(self.image_dir)
        require_known(wnids, classnames, self.image_dir, classnames_path)
        return read_class_folders(self.image_dir, wnids, [classnames[w] for w in wnids])
