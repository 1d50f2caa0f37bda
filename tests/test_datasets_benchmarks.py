"""Every benchmark loads from a miniature in its real layout: class names, label order, split
sizes, few-shot counts and base/new classes, with a generated and with a given split file."""

import json
import math
import os
import random

import pytest
import yaml

import datasets  # noqa: F401  (registers the datasets)
from engine.data import build_dataset
from engine.registry import DATASET_REGISTRY
from tests.data_fixtures import data_cfg
from tests.dataset_miniatures import BUILDERS, build

NAMES = list(BUILDERS)
WITH_SPLIT_FILE = [n for n in NAMES if DATASET_REGISTRY.get(n).split_file]
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(root, name, **overrides):
    cfg = data_cfg(
        root, {"DATASET.NAME": name, **{k.replace("__", "."): v for k, v in overrides.items()}}
    )
    return build_dataset(cfg)


def sizes(dataset):
    return tuple(
        None if part is None else len(part) for part in (dataset.train_x, dataset.val, dataset.test)
    )


def split_path(root, name):
    cls = DATASET_REGISTRY.get(name)
    return os.path.join(root, cls.dataset_dir, cls.split_file)


def rows(items, root, name):
    """Datums as split-file rows, paths relative to the dataset's image folder."""
    cls = DATASET_REGISTRY.get(name)
    image_dir = os.path.join(root, cls.dataset_dir, cls.image_subdir)
    return [
        [os.path.relpath(d.impath, image_dir).replace(os.sep, "/"), d.label, d.classname]
        for d in items
    ]


def per_class(items):
    counts = {}
    for item in items:
        counts[item.label] = counts.get(item.label, 0) + 1
    return counts


@pytest.mark.parametrize("name", NAMES)
def test_loads_without_split_file(tmp_path, name):
    expected = build(name, tmp_path)
    dataset = load(tmp_path, name)
    assert dataset.classnames == expected.classnames
    assert sizes(dataset) == expected.sizes
    for part in (dataset.train_x, dataset.val or [], dataset.test):
        assert all(dataset.lab2cname[d.label] == d.classname for d in part)
        assert all(os.path.isfile(d.impath) for d in part)
    assert {d.label for d in dataset.test} == set(range(len(expected.classnames)))
    if name in WITH_SPLIT_FILE:
        path = split_path(tmp_path, name)
        before = os.stat(path).st_mtime_ns
        again = load(tmp_path, name)
        assert (again.train_x, again.val, again.test) == (
            dataset.train_x,
            dataset.val,
            dataset.test,
        )
        assert os.stat(path).st_mtime_ns == before  # read, never rewritten


@pytest.mark.parametrize("name", WITH_SPLIT_FILE)
def test_given_split_file_is_used_unchanged(tmp_path, name):
    """A split file written as CoOp writes it (indent 4) decides train/val/test, whatever the
    annotation files say; here train and test trade places."""
    build(name, tmp_path)
    path = split_path(tmp_path, name)
    load(tmp_path, name)
    with open(path) as f:
        generated = json.load(f)
    given = {"train": generated["test"], "val": generated["val"], "test": generated["train"]}
    text = json.dumps(given, indent=4, separators=(",", ": "))
    with open(path, "w") as f:
        f.write(text)

    dataset = load(tmp_path, name)
    assert rows(dataset.train_x, tmp_path, name) == given["train"]
    assert rows(dataset.test, tmp_path, name) == given["test"]
    with open(path) as f:
        assert f.read() == text


def test_caltech101_reads_coop_rows(tmp_path):
    """Rows as they stand in CoOp's split_zhou_Caltech101.json."""
    build("Caltech101", tmp_path)
    given = {
        "train": [
            ["Faces/image_0001.jpg", 0, "face"],
            ["Leopards/image_0001.jpg", 1, "leopard"],
            ["accordion/image_0001.jpg", 2, "accordion"],
            ["airplanes/image_0001.jpg", 3, "airplane"],
        ],
        "val": [["Leopards/image_0002.jpg", 1, "leopard"]],
        "test": [["airplanes/image_0004.jpg", 3, "airplane"]],
    }
    (tmp_path / "caltech-101" / "split_zhou_Caltech101.json").write_text(json.dumps(given))
    dataset = load(tmp_path, "Caltech101")
    assert dataset.classnames == ["face", "leopard", "accordion", "airplane"]
    assert rows(dataset.train_x, tmp_path, "Caltech101") == given["train"]
    assert rows(dataset.test, tmp_path, "Caltech101") == given["test"]


def test_stanford_cars_split_paths_are_relative_to_the_dataset_folder(tmp_path):
    build("StanfordCars", tmp_path)
    load(tmp_path, "StanfordCars")
    with open(split_path(tmp_path, "StanfordCars")) as f:
        split = json.load(f)
    assert split["train"][0][0].startswith("cars_train/")
    assert split["test"][0][0].startswith("cars_test/")
    assert {row[2] for row in split["test"]} == {
        "2000 AM General Hummer SUV",
        "2012 Acura RL Sedan",
        "2012 Tesla Model S Sedan",
    }


@pytest.mark.parametrize("name", NAMES)
def test_two_shot_counts_and_cache(tmp_path, name):
    expected = build(name, tmp_path)
    full = load(tmp_path, name)
    random.seed(1)
    dataset = load(tmp_path, name, DATASET__NUM_SHOTS=2)
    assert sizes(dataset)[:2] == expected.two_shot
    full_train = per_class(full.train_x)
    assert per_class(dataset.train_x) == {c: min(2, n) for c, n in full_train.items()}
    cls = DATASET_REGISTRY.get(name)
    cache = os.path.join(tmp_path, cls.dataset_dir, "split_fewshot", "shot_2-seed_1.json")
    if expected.sizes[1] is None:  # test-only sets: no sampling, nothing cached
        assert not os.path.exists(cache)
        return
    random.seed(99)
    cached = load(tmp_path, name, DATASET__NUM_SHOTS=2)
    assert cached.train_x == dataset.train_x and cached.val == dataset.val


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("subsample", ["base", "new"])
def test_base_and_new_classes(tmp_path, name, subsample):
    expected = build(name, tmp_path)
    full = load(tmp_path, name)
    dataset = load(tmp_path, name, DATASET__SUBSAMPLE_CLASSES=subsample)
    half = math.ceil(len(expected.classnames) / 2)
    kept = range(half) if subsample == "base" else range(half, len(expected.classnames))
    assert dataset.classnames == [expected.classnames[c] for c in kept]
    test_counts = per_class(full.test)
    assert len(dataset.test) == sum(test_counts[c] for c in kept)
    assert {d.label for d in dataset.test} == set(range(len(kept)))


@pytest.mark.parametrize("name", [n for n in NAMES if n in WITH_SPLIT_FILE])
def test_generated_split_is_the_same_everywhere(tmp_path, monkeypatch, name):
    """Neither the file system's listing order nor the global RNG changes a generated split."""
    build(name, tmp_path / "a")
    build(name, tmp_path / "b")
    random.seed(0)
    load(tmp_path / "a", name, SEED=3)
    real_scandir, real_listdir = os.scandir, os.listdir
    monkeypatch.setattr(os, "scandir", lambda p=".": list(reversed(list(real_scandir(p)))))
    monkeypatch.setattr(os, "listdir", lambda p=".": list(reversed(real_listdir(p))))
    random.seed(12345)
    state = random.getstate()
    load(tmp_path / "b", name, SEED=3)
    assert random.getstate() == state
    with open(split_path(tmp_path / "a", name)) as fa, open(split_path(tmp_path / "b", name)) as fb:
        assert json.load(fa) == json.load(fb)


def test_split_seed_is_the_runs_seed(tmp_path):
    for seed in (1, 2):
        build("DescribableTextures", tmp_path / str(seed))
        load(tmp_path / str(seed), "DescribableTextures", SEED=seed)
    files = [split_path(tmp_path / str(seed), "DescribableTextures") for seed in (1, 2)]
    contents = []
    for path in files:
        with open(path) as f:
            contents.append(json.load(f))
    assert contents[0] != contents[1]


def test_dataset_configs_name_registered_datasets():
    folder = os.path.join(REPO, "configs", "datasets")
    stems = {
        "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
        "stanford_cars": "StanfordCars", "oxford_flowers": "OxfordFlowers", "food101": "Food101",
        "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DescribableTextures",
        "eurosat": "EuroSAT", "ucf101": "UCF101", "imagenetv2": "ImageNetV2",
        "imagenet_sketch": "ImageNetSketch", "imagenet_a": "ImageNetA", "imagenet_r": "ImageNetR",
        "imagefolder": "ImageFolder",
    }  # fmt: skip
    for stem, name in stems.items():
        with open(os.path.join(folder, stem + ".yaml")) as f:
            assert yaml.safe_load(f) == {"DATASET": {"NAME": name}}
        assert name in DATASET_REGISTRY
