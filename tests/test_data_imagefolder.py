import json
import os
import random
import subprocess
import sys

import pytest

import datasets
from datasets.imagefolder import ImageFolder
from engine.data import build_dataset
from engine.registry import DATASET_REGISTRY
from tests.data_fixtures import data_cfg, make_image_folder

CLASSES = {"red_car": 6, "blue": 5, "green": 8}


@pytest.mark.slow
def test_datasets_package_imports_every_module():
    """In a fresh interpreter, ``import datasets`` alone imports each module of the package."""
    code = (
        "import pkgutil, sys, datasets; "
        "from engine.registry import DATASET_REGISTRY; "
        "names = [m.name for m in pkgutil.iter_modules(datasets.__path__)]; "
        "print(all('datasets.' + n in sys.modules for n in names), 'imagefolder' in names, "
        "'ImageFolder' in DATASET_REGISTRY)"
    )
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["True", "True", "True"]


def test_build_dataset_uses_the_registry(tmp_path):
    assert datasets.imagefolder.ImageFolder is DATASET_REGISTRY.get("ImageFolder")
    root = make_image_folder(tmp_path, {"a": 4, "b": 4})
    assert type(build_dataset(data_cfg(root))) is ImageFolder
    with pytest.raises(KeyError, match="ImageFolder"):
        build_dataset(data_cfg(root, {"DATASET.NAME": "ImageFoldr"}))


def test_generates_saves_and_then_reads_split(tmp_path):
    root = make_image_folder(tmp_path / "data", CLASSES)
    dataset = build_dataset(data_cfg(root))
    assert dataset.classnames == ["blue", "green", "red car"]
    assert [len(dataset.train_x), len(dataset.val), len(dataset.test)] == [
        2 + 4 + 3,
        1 + 2 + 1,
        2 + 2 + 2,
    ]
    split_path = os.path.join(root, "split.json")
    with open(split_path) as f:
        raw = json.load(f)
    assert raw["test"][0][1:] == [0, "blue"] and raw["test"][0][0].startswith("blue/")
    before = os.stat(split_path).st_mtime_ns

    again = ImageFolder(data_cfg(root))
    assert (again.train_x, again.val, again.test) == (dataset.train_x, dataset.val, dataset.test)
    assert os.stat(split_path).st_mtime_ns == before  # read, not rewritten


def test_existing_split_file_is_used_and_kept(tmp_path):
    root = make_image_folder(tmp_path / "data", {"blue": 3, "green": 3})
    split = {
        "train": [["blue/blue_0.png", 0, "sky"], ["green/green_0.png", 1, "grass"]],
        "val": [],
        "test": [["blue/blue_1.png", 0, "sky"]],
    }
    text = json.dumps(split)
    (tmp_path / "data" / "split.json").write_text(text)
    dataset = ImageFolder(data_cfg(root))
    assert dataset.classnames == ["sky", "grass"]
    assert [d.impath for d in dataset.test] == [os.path.join(root, "blue", "blue_1.png")]
    assert (tmp_path / "data" / "split.json").read_text() == text


def test_fewshot_cache_and_base_new(tmp_path):
    root = make_image_folder(tmp_path / "data", CLASSES)
    random.seed(1)
    dataset = ImageFolder(data_cfg(root, {"DATASET.NUM_SHOTS": 2}))
    assert (
        len(dataset.train_x) == 6 and len(dataset.val) == 4
    )  # val: 1 + 2 + 1 (two classes have < 2)
    cache = os.path.join(root, "split_fewshot", "shot_2-seed_1.json")
    assert os.path.isfile(cache)

    os.remove(os.path.join(root, "split.json"))  # regenerate: split_fewshot is no class
    random.seed(7)
    cached = ImageFolder(data_cfg(root, {"DATASET.NUM_SHOTS": 2}))
    assert cached.train_x == dataset.train_x and cached.num_classes == 3

    new = ImageFolder(data_cfg(root, {"DATASET.NUM_SHOTS": 2, "DATASET.SUBSAMPLE_CLASSES": "new"}))
    assert new.classnames == ["red car"] and {d.label for d in new.test} == {0}
    base = ImageFolder(data_cfg(root, {"DATASET.SUBSAMPLE_CLASSES": "base"}))
    assert base.classnames == ["blue", "green"] and len(base.test) == 4


def test_root_errors(tmp_path):
    with pytest.raises(ValueError, match="DATASET.ROOT is not set"):
        ImageFolder(data_cfg(""))
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as err:
        ImageFolder(data_cfg(missing))
    assert str(missing) in str(err.value) and "ROOT/<class>/<image>" in str(err.value)
    (tmp_path / "empty_root").mkdir()
    with pytest.raises(ValueError, match="No class folders"):
        ImageFolder(data_cfg(tmp_path / "empty_root"))


def test_empty_class_folder_and_missing_split_images(tmp_path):
    root = make_image_folder(tmp_path / "data", CLASSES)
    os.makedirs(os.path.join(root, "orange"))
    with pytest.raises(ValueError, match="orange' has no images"):
        ImageFolder(data_cfg(root))
    os.rmdir(os.path.join(root, "orange"))

    ImageFolder(data_cfg(root))
    os.remove(os.path.join(root, "green", "green_3.png"))
    with pytest.raises(FileNotFoundError, match=r"1 of 19 images .* green/green_3.png"):
        ImageFolder(data_cfg(root))
