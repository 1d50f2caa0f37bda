"""Miniatures of the CoOp benchmarks, generated on disk in their real layouts: the real folder
and file names, annotation files in their real formats, a few classes of tiny images.

``build(name, root)`` writes the miniature of dataset ``name`` under ``root`` (DATASET.ROOT)
and returns its ``Expected`` outcome without a split file.
"""

import json
import os
from dataclasses import dataclass

import numpy as np
from scipy.io import savemat

from datasets.imagenet_a import IMAGENET_A_WNIDS
from datasets.imagenet_r import IMAGENET_R_WNIDS
from tests.data_fixtures import PALETTE, write_image

TINY = (8, 8)


@dataclass(frozen=True)
class Expected:
    """What a miniature loads as: class names by label, (train, val, test) sizes with all
    data (val ``None`` for test-only sets), and (train, val) sizes at 2 shots."""

    classnames: list
    sizes: tuple
    two_shot: tuple


def images(folder, names):
    """Tiny images ``folder/<name>`` in the format of each extension; returns the names."""
    for i, name in enumerate(names):
        write_image(os.path.join(folder, name), TINY, PALETTE[i % len(PALETTE)])
    return names


def write_text(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("".join(line + "\n" for line in lines))


def class_folders(image_dir, folders, count, pattern="{folder}_{i}.jpg"):
    for folder in folders:
        names = [pattern.format(folder=folder, i=i) for i in range(1, count + 1)]
        images(os.path.join(image_dir, folder), names)


def caltech101(root):
    image_dir = os.path.join(root, "caltech-101", "101_ObjectCategories")
    folders = ["BACKGROUND_Google", "Faces", "Faces_easy", "Leopards", "accordion", "airplanes"]
    class_folders(image_dir, folders, 6, "image_{i:04d}.jpg")
    return Expected(["face", "leopard", "accordion", "airplane"], (12, 4, 8), (8, 4))


def dtd(root):
    image_dir = os.path.join(root, "dtd", "images")
    class_folders(image_dir, ["zigzagged", "banded", "crystalline"], 6)
    write_text(os.path.join(image_dir, "banded", ".directory"), ["[Dolphin]"])  # hidden file
    os.makedirs(os.path.join(root, "dtd", "labels"))
    return Expected(["banded", "crystalline", "zigzagged"], (9, 3, 6), (6, 3))


def food101(root):
    image_dir = os.path.join(root, "food-101", "images")
    class_folders(image_dir, ["apple_pie", "baby_back_ribs", "waffles"], 6, "{i}0{i}.jpg")
    write_text(os.path.join(root, "food-101", "meta", "classes.txt"), ["apple_pie"])
    return Expected(["apple_pie", "baby_back_ribs", "waffles"], (9, 3, 6), (6, 3))


def eurosat(root):
    image_dir = os.path.join(root, "eurosat", "2750")
    class_folders(image_dir, ["SeaLake", "AnnualCrop", "Forest"], 6)
    return Expected(["Annual Crop Land", "Forest", "Sea or Lake"], (9, 3, 6), (6, 3))


PETS = [("Abyssinian", 1, 1), ("american_bulldog", 2, 2), ("Bengal", 3, 1)]


def oxford_pets(root):
    folder = os.path.join(root, "oxford_pets")
    trainval, test = [], []
    for breed, class_id, species in PETS:
        names = images(os.path.join(folder, "images"), [f"{breed}_{i}.jpg" for i in range(1, 8)])
        rows = [f"{name[:-4]} {class_id} {species} {class_id}" for name in names]
        trainval += rows[:5]
        test += rows[5:]
    write_text(os.path.join(folder, "annotations", "trainval.txt"), trainval)
    write_text(os.path.join(folder, "annotations", "test.txt"), test)
    return Expected(["abyssinian", "american_bulldog", "bengal"], (12, 3, 6), (6, 3))


CARS = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Tesla Model S Sedan 2012"]


def _save_annotations(path, rows):
    """A devkit-style struct array ``annotations`` with bbox, class (from 1) and fname."""

    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]
    table = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
    for i, (fname, class_id) in enumerate(rows):
        box = [np.array([[v]], dtype=np.uint16) for v in (0, 0, 7, 7)]
        table[0, i] = (*box, np.array([[class_id]], dtype=np.uint8), np.array([fname]))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    savemat(path, {"annotations": table})


def stanford_cars(root):

    folder = os.path.join(root, "stanford_cars")
    for part, per_class in (("train", 5), ("test", 2)):
        rows = [(f"{n:05d}.jpg", n % len(CARS) + 1) for n in range(1, per_class * len(CARS) + 1)]
        images(os.path.join(folder, f"cars_{part}"), [fname for fname, _ in rows])
        anno = (
            "devkit/cars_train_annos.mat" if part == "train" else "cars_test_annos_withlabels.mat"
        )
        _save_annotations(os.path.join(folder, anno), rows)
    names = np.empty((1, len(CARS)), dtype=object)
    names[0, :] = CARS
    savemat(os.path.join(folder, "devkit", "cars_meta.mat"), {"class_names": names})
    expected = ["2000 AM General Hummer SUV", "2012 Acura RL Sedan", "2012 Tesla Model S Sedan"]
    return Expected(expected, (12, 3, 6), (6, 3))


FLOWERS = {"1": "pink primrose", "2": "hard-leaved pocket orchid", "3": "canterbury bells"}


def oxford_flowers(root):

    folder = os.path.join(root, "oxford_flowers")
    labels = [3, 1, 2] * 6  # interleaved, as in the real file
    images(os.path.join(folder, "jpg"), [f"image_{i:05d}.jpg" for i in range(1, 19)])
    savemat(os.path.join(folder, "imagelabels.mat"), {"labels": np.array([labels], float)})
    with open(os.path.join(folder, "cat_to_name.json"), "w") as f:
        json.dump(FLOWERS, f)
    return Expected(list(FLOWERS.values()), (9, 3, 6), (6, 3))


AIRCRAFT = ["Cessna 172", "707-320", "F-16A/B"]  # variants.txt order, not sorted


def fgvc_aircraft(root):
    folder = os.path.join(root, "fgvc_aircraft")
    write_text(os.path.join(folder, "variants.txt"), AIRCRAFT)
    image_id = 1000000
    for part in ("train", "val", "test"):
        rows = []
        for variant in AIRCRAFT[::-1]:
            for _ in range(2):
                image_id += 1
                images(os.path.join(folder, "images"), [f"{image_id:07d}.jpg"])
                rows.append(f"{image_id:07d} {variant}")
        write_text(os.path.join(folder, f"images_variant_{part}.txt"), rows)
    return Expected(AIRCRAFT, (6, 6, 6), (6, 6))


SCENES = ["/a/abbey", "/a/apartment_building/outdoor", "/b/bakery/shop"]


def sun397(root):
    folder = os.path.join(root, "sun397")
    write_text(os.path.join(folder, "ClassName.txt"), SCENES)
    lists = {"Training_01.txt": [], "Testing_01.txt": []}
    for n, scene in enumerate(SCENES):
        names = images(
            os.path.join(folder, "SUN397", scene.lstrip("/")), [f"sun_{n}{i}.jpg" for i in range(7)]
        )
        lists["Training_01.txt"] += [f"{scene}/{name}" for name in names[:5]]
        lists["Testing_01.txt"] += [f"{scene}/{name}" for name in names[5:]]
    for name, lines in lists.items():
        write_text(os.path.join(folder, name), lines)
    expected = ["abbey", "outdoor apartment_building", "shop bakery"]
    return Expected(expected, (12, 3, 6), (6, 3))


# classInd.txt names -> CoOp's folder and class names.
ACTIONS = {
    "ApplyEyeMakeup": "Apply_Eye_Makeup",
    "Archery": "Archery",
    "HandstandPushups": "Handstand_Pushups",
}


def ucf101(root):
    folder = os.path.join(root, "ucf101")
    lists = os.path.join(folder, "ucfTrainTestlist")
    write_text(os.path.join(lists, "classInd.txt"), [f"{i} {a}" for i, a in enumerate(ACTIONS, 1)])
    train, test = [], []
    for label, (action, words) in enumerate(ACTIONS.items(), 1):
        video = action.replace("Handstand", "HandStand")  # as the real video names spell it
        frames = [f"v_{video}_g{g:02d}_c01" for g in range(1, 8)]
        images(os.path.join(folder, "UCF-101-midframes", words), [f + ".jpg" for f in frames])
        train += [f"{action}/{f}.avi {label}" for f in frames[:5]]
        test += [f"{action}/{f}.avi" for f in frames[5:]]
    write_text(os.path.join(lists, "trainlist01.txt"), train)
    write_text(os.path.join(lists, "testlist01.txt"), test)
    return Expected(list(ACTIONS.values()), (12, 3, 6), (6, 3))


IMAGENET = {"n01440764": "tench", "n01443537": "goldfish", "n01484850": "great white shark"}


def imagenet_names():
    """``{wnid: name}`` for the miniature's classes and those of ImageNet-A/R."""
    names = {w: f"class {w}" for w in IMAGENET_A_WNIDS + IMAGENET_R_WNIDS}
    names.update(IMAGENET, n01498041="stingray", n01531178="goldfinch")
    return dict(sorted(names.items()))


def imagenet_classnames(path):
    """CoOp's classnames.txt format: "<wnid> <class name>" lines in sorted wnid order."""
    write_text(path, [f"{w} {n}" for w, n in imagenet_names().items()])


def imagenet(root):
    folder = os.path.join(root, "imagenet")
    imagenet_classnames(os.path.join(folder, "classnames.txt"))
    for wnid in reversed(list(IMAGENET)):
        images(os.path.join(folder, "images", "train", wnid),
               [f"{wnid}_{i}.JPEG" for i in range(4)])  # fmt: skip
        images(os.path.join(folder, "images", "val", wnid),
               [f"ILSVRC2012_val_{wnid[-3:]}{i}.JPEG" for i in range(2)])  # fmt: skip
    return Expected(list(IMAGENET.values()), (12, 6, 6), (6, 6))


def imagenetv2(root):
    folder = os.path.join(root, "imagenetv2")
    write_text(os.path.join(folder, "classnames.txt"), [f"{w} {n}" for w, n in IMAGENET.items()])
    for label in range(len(IMAGENET)):
        images(os.path.join(folder, "imagenetv2-matched-frequency-format-val", str(label)),
               [f"{label}a{i}.jpeg" for i in range(2)])  # fmt: skip
    return Expected(list(IMAGENET.values()), (6, None, 6), (6, None))


def imagenet_sketch(root):
    folder = os.path.join(root, "imagenet-sketch")
    imagenet_classnames(os.path.join(folder, "classnames.txt"))
    for wnid in IMAGENET:
        images(os.path.join(folder, "images", wnid), [f"sketch_{i}.JPEG" for i in range(2)])
    return Expected(list(IMAGENET.values()), (6, None, 6), (6, None))


def _imagenet_subset(root, folder, image_subdir, wnids):
    """All of the subset's wnid folders, one image each, and the README of the download;
    class names from ``imagenet/classnames.txt`` (not copied, the other accepted place)."""
    imagenet_classnames(os.path.join(root, "imagenet", "classnames.txt"))
    image_dir = os.path.join(root, folder, image_subdir)
    for wnid in wnids:
        images(os.path.join(image_dir, wnid), [f"{wnid[-4:]}.jpg"])
    write_text(os.path.join(image_dir, "README.txt"), ["200 classes"])
    names = imagenet_names()
    return Expected([names[w] for w in wnids], (200, None, 200), (200, None))


def imagenet_a(root):
    return _imagenet_subset(root, "imagenet-adversarial", "imagenet-a", IMAGENET_A_WNIDS)


def imagenet_r(root):
    return _imagenet_subset(root, "imagenet-rendition", "imagenet-r", IMAGENET_R_WNIDS)


BUILDERS = {
    "ImageNet": imagenet,
    "Caltech101": caltech101,
    "OxfordPets": oxford_pets,
    "StanfordCars": stanford_cars,
    "OxfordFlowers": oxford_flowers,
    "Food101": food101,
    "FGVCAircraft": fgvc_aircraft,
    "SUN397": sun397,
    "DescribableTextures": dtd,
    "EuroSAT": eurosat,
    "UCF101": ucf101,
    "ImageNetV2": imagenetv2,
    "ImageNetSketch": imagenet_sketch,
    "ImageNetA": imagenet_a,
    "ImageNetR": imagenet_r,
}


def build(name, root):
    """Write the miniature of ``name`` under ``root``; returns its ``Expected``."""
    return BUILDERS[name](str(root))
