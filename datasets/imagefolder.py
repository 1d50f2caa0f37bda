"""Any folder of class folders, as a CoOp-style dataset."""

import os

from datasets.annotations import AnnotationError, read_json_mapping, read_lines
from engine.data import (
    DatasetBase,
    Datum,
    list_class_dirs,
    read_and_split_data,
    read_split,
    save_split,
)
from engine.registry import DATASET_REGISTRY

LAYOUT = "ROOT/<class>/<image> (one folder per class; '_' in a folder name reads as a space)"


@DATASET_REGISTRY.register()
class ImageFolder(DatasetBase):
    """``DATASET.ROOT`` is the folder of class folders itself.

    ``ROOT/split.json`` (CoOp's format, paths relative to ROOT) is used when present. Otherwise
    a split is generated with CoOp's proportions (50% train, 20% val, 30% test per class) and
    the fixed seed ``SPLIT_SEED`` = 1, independent of the run's seed so that every run sees the
    same test set, and saved there; an existing split file is never overwritten (delete it
    to regenerate after adding images). Few-shot subsets are cached in ``ROOT/split_fewshot``.

    Optional files in ROOT: ``template.txt``, the prompt template with "{}" for the class
    name (exposed as ``template``; the trainers otherwise use a per-dataset default), and
    ``classnames.txt`` (lines "<folder> <class name>") or ``classnames.json`` ({folder:
    class name}), which names classes by folder, also over the names in split.json.
    """

    split_file = "split.json"
    template_file = "template.txt"
    classnames_files = ("classnames.txt", "classnames.json")
    SPLIT_SEED = 1

    def __init__(self, cfg):
        self.dataset_dir = self.dataset_path(cfg)
        root = self.dataset_dir
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"DATASET.ROOT '{root}' is not a folder; ImageFolder expects {LAYOUT}"
            )
        self.template = read_template(os.path.join(root, self.template_file))
        renamed = read_classname_map(root, self.classnames_files)
        split_path = os.path.join(root, self.split_file)
        if os.path.exists(split_path):
            train, val, test = read_split(split_path, root)
        else:
            folders = list_class_dirs(root, ignored=(self.fewshot_dir,))
            train, val, test = read_and_split_data(
                root,
                ignored=(self.fewshot_dir,),
                new_cnames={name: name.replace("_", " ") for name in folders},
                seed=self.SPLIT_SEED,
            )
            save_split(train, val, test, split_path, root)
        if renamed:
            train, val, test = (
                rename_by_folder(items, renamed, root) for items in (train, val, test)
            )
        train, val, test = self.fewshot_and_subsample(cfg, train, val, test, root)
        super().__init__(train_x=train, val=val, test=test)


def read_template(path):
    """The first non-empty line of ``path`` (must hold one "{}"), or ``None`` without a file."""
    if not os.path.isfile(path):
        return None
    lines = read_lines(path)
    if not lines or lines[0][1].count("{}") != 1:
        raise AnnotationError(
            f"{path} must start with a prompt template holding one '{{}}' for the class name, "
            "e.g. 'a photo of a {}.'"
        )
    return lines[0][1]


def read_classname_map(root, names):
    """``{folder: class name}`` from the first of ``names`` present in ``root`` (only one may
    be); every folder it names must be a class folder."""
    present = [name for name in names if os.path.isfile(os.path.join(root, name))]
    if not present:
        return {}
    if len(present) > 1:
        raise AnnotationError(
            f"Both {' and '.join(present)} are in '{root}'; keep one class-name file"
        )
    path = os.path.join(root, present[0])
    if path.endswith(".json"):
        mapping = read_json_mapping(path)
    else:
        mapping = {}
        for number, line in read_lines(path):
            folder, _, name = line.partition(" ")
            if not name.strip():
                raise AnnotationError(f"{path}, line {number}: expected '<folder> <class name>'")
            mapping[folder] = name.strip()
    unknown = sorted(set(mapping) - set(list_class_dirs(root)))
    if unknown:
        raise AnnotationError(
            f"{path} names folders that are not in '{root}': {', '.join(unknown[:5])}"
        )
    return mapping


def rename_by_folder(items, renamed, root):
    """Datums whose class folder (first path component under ``root``) is in ``renamed``
    get that class name."""
    out = []
    for item in items:
        folder = os.path.relpath(item.impath, root).split(os.sep)[0]
        name = renamed.get(folder, item.classname)
        out.append(Datum(item.impath, item.label, item.domain, name))
    return out
