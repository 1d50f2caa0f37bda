"""Any folder of class folders, as a CoOp-style dataset."""

import os

from datasets.annotations import AnnotationError, read_json_mapping, read_lines
from engine.data import (
    DatasetBase,
    Datum,
    list_class_dirs,
    list_images,
    read_and_split_data,
    read_split,
    save_split,
)
from engine.data.generated import find_generated, save_generated
from engine.registry import DATASET_REGISTRY

LAYOUT = "ROOT/<class>/<image> (one folder per class; '_' in a folder name reads as a space)"
CLASSNAMES_FILES = ("classnames.txt", "classnames.json")
_MAX_NAMED = 5  # folders named in an error message


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
    classnames_files = CLASSNAMES_FILES
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
        found = find_generated(split_path, cfg.DATASET.SPLIT_CACHE)
        generated = found is None
        if generated:
            folders = list_class_dirs(root, ignored=(self.fewshot_dir,))
            train, val, test = read_and_split_data(
                root,
                ignored=(self.fewshot_dir,),
                new_cnames={name: name.replace("_", " ") for name in folders},
                seed=self.SPLIT_SEED,
            )
        else:
            train, val, test = read_split(found, root)
            check_every_folder_listed(root, found, train + val + test, self.fewshot_dir)
        named = [rename_by_folder(items, renamed, root) for items in (train, val, test)]
        check_classes(root, found or split_path, named, renamed)
        if generated:
            save_generated(
                split_path,
                lambda target: save_split(train, val, test, target, root),
                cfg.DATASET.SPLIT_CACHE,
                "the split file",
            )
        train, val, test = self.fewshot_and_subsample(cfg, *named, root)
        super().__init__(train_x=train, val=val, test=test)


def folder_of(item, root):
    """The class folder (first path component under ``root``) of a Datum."""
    return os.path.relpath(item.impath, root).split(os.sep)[0]


def check_every_folder_listed(root, split_path, items, fewshot_dir):
    """A class folder with images that the split file does not list (added after it was
    generated?) would be left out without a word: an error naming it."""
    listed = {folder_of(item, root) for item in items}
    unlisted = [
        folder
        for folder in list_class_dirs(root, ignored=(fewshot_dir,))
        if folder not in listed and list_images(os.path.join(root, folder))
    ]
    if unlisted:
        raise ValueError(
            f"'{root}' has class folders with images that {split_path} does not list: "
            f"{', '.join(unlisted[:_MAX_NAMED])}{' ...' if len(unlisted) > _MAX_NAMED else ''} "
            f"(added after the split was generated?). Delete {split_path} to generate a split "
            f"of every class folder, or move those folders out of '{root}'."
        )


def check_classes(root, split_path, lists, renamed):
    """Two classes or more, one label per class folder, one class name per label: two labels
    with one name would get identical prompts."""
    label_of, folders_of, name_of = {}, {}, {}
    for item in (item for items in lists for item in items):
        folder = folder_of(item, root)
        label = label_of.setdefault(folder, item.label)
        if label != item.label:
            raise ValueError(
                f"The class folder '{folder}' holds images of labels {label} and {item.label} "
                f"in {split_path} (e.g. '{item.impath}'): a folder is one class. Correct the "
                "labels, or delete the file to generate the split again."
            )
        folders_of.setdefault(label, set()).add(folder)
        name_of[label] = item.classname
    labels_of_name = {}
    for label, name in sorted(name_of.items()):
        labels_of_name.setdefault(name, []).append(label)
    for name, labels in labels_of_name.items():
        if len(labels) > 1:
            folders = sorted(f for label in labels for f in folders_of[label])
            how = "through " + " or ".join(CLASSNAMES_FILES) if renamed else "'_' reads as a space"
            raise ValueError(
                f"The class folders {', '.join(repr(f) for f in folders)} in '{root}' all have "
                f"the class name '{name}' ({how}), so their prompts would be identical: rename "
                "a folder, or give each its own name in classnames.txt."
            )
    if len(name_of) < 2:
        raise ValueError(
            f"'{root}' holds one class ({', '.join(repr(n) for n in name_of.values())}): a "
            "classifier needs two or more class folders."
        )


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
        name = renamed.get(folder_of(item, root), item.classname)
        out.append(Datum(item.impath, item.label, item.domain, name))
    return out
