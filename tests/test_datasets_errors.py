"""Bad input to the benchmarks: errors that name the file or folder and say what to do."""

import os
import shutil

import pytest

import datasets  # noqa: F401  (registers the datasets)
from datasets.annotations import AnnotationError
from datasets.benchmark import DatasetLayoutError
from engine.data import BadImageError, DataManager, build_dataset
from engine.registry import DATASET_REGISTRY
from tests.data_fixtures import data_cfg, write_truncated_image
from tests.dataset_miniatures import BUILDERS, build


def load(root, name, **overrides):
    cfg = data_cfg(root, {"DATASET.NAME": name, **overrides})
    return build_dataset(cfg)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_wrong_root_lists_layout_and_missing_paths(tmp_path, name):
    cls = DATASET_REGISTRY.get(name)
    with pytest.raises(DatasetLayoutError) as err:
        load(tmp_path, name)
    message = str(err.value)
    assert os.path.join(str(tmp_path), cls.dataset_dir) in message
    for need in cls.needs:
        assert f"missing {need.describe()}" in message  # what is missing ...
        assert need.path in message.split("Expected layout")[1]  # ... within the layout
    assert f"python -m datasets.check --root {tmp_path} --name {name}" in message


def test_annotation_files_are_needed_only_without_split_file(tmp_path):
    build("OxfordPets", tmp_path)
    os.remove(tmp_path / "oxford_pets" / "annotations" / "test.txt")
    with pytest.raises(DatasetLayoutError, match=r"missing annotations/test.txt"):
        load(tmp_path, "OxfordPets")

    build("OxfordPets", tmp_path / "full")
    load(tmp_path / "full", "OxfordPets")  # writes the split file
    shutil.rmtree(tmp_path / "full" / "oxford_pets" / "annotations")
    assert len(load(tmp_path / "full", "OxfordPets").test) == 6


def test_annotation_lines_that_do_not_parse_name_file_and_line(tmp_path):
    build("FGVCAircraft", tmp_path)
    path = tmp_path / "fgvc_aircraft" / "images_variant_val.txt"
    path.write_text(path.read_text() + "1000099 Boeing 999\n")
    with pytest.raises(AnnotationError, match=r"images_variant_val.txt, line 7: unknown variant"):
        load(tmp_path, "FGVCAircraft")

    build("UCF101", tmp_path / "ucf")
    (tmp_path / "ucf" / "ucf101" / "ucfTrainTestlist" / "classInd.txt").write_text("1\n")
    with pytest.raises(AnnotationError, match=r"classInd.txt, line 1: expected at least 2"):
        load(tmp_path / "ucf", "UCF101")


def test_empty_class_folder(tmp_path):
    build("Caltech101", tmp_path)
    os.makedirs(tmp_path / "caltech-101" / "101_ObjectCategories" / "zebra")
    with pytest.raises(ValueError, match=r"zebra' has no images"):
        load(tmp_path, "Caltech101")

    build("ImageNet", tmp_path / "in")
    for name in os.listdir(tmp_path / "in" / "imagenet" / "images" / "val" / "n01443537"):
        os.remove(tmp_path / "in" / "imagenet" / "images" / "val" / "n01443537" / name)
    with pytest.raises(ValueError, match=r"val/n01443537' has no images"):
        load(tmp_path / "in", "ImageNet")


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_truncated_image_is_named_or_skipped_with_a_count(tmp_path, capsys, policy):
    build("EuroSAT", tmp_path)
    dataset = load(tmp_path, "EuroSAT")
    broken = dataset.test[0].impath
    write_truncated_image(broken)
    cfg = data_cfg(tmp_path, {"DATASET.NAME": "EuroSAT", "DATASET.ON_BAD_IMAGE": policy})
    loader = DataManager(cfg).test_loader
    if policy == "error":
        with pytest.raises(BadImageError, match=broken):
            list(loader)
        return
    batches = list(loader)
    assert sum(len(b["label"]) for b in batches) == len(dataset.test) - 1
    assert f"skipped unreadable image '{broken}'" in capsys.readouterr().out
    assert loader.dataset.num_skipped == 1


def test_imagenet_val_not_in_class_folders_explains_the_fix(tmp_path):
    build("ImageNet", tmp_path)
    val = tmp_path / "imagenet" / "images" / "val"
    for wnid in os.listdir(val):
        for name in os.listdir(val / wnid):
            os.rename(val / wnid / name, val / name)
        os.rmdir(val / wnid)
    with pytest.raises(DatasetLayoutError) as err:
        load(tmp_path, "ImageNet")
    assert "not one folder per class" in str(err.value) and "valprep.sh" in str(err.value)


def test_imagenet_train_and_val_must_share_classes(tmp_path):
    build("ImageNet", tmp_path)
    shutil.rmtree(tmp_path / "imagenet" / "images" / "val" / "n01484850")
    with pytest.raises(FileNotFoundError, match=r"only in train: \['n01484850'\]"):
        load(tmp_path, "ImageNet")


def test_classnames_txt_must_name_every_folder(tmp_path):
    build("ImageNetSketch", tmp_path)
    os.makedirs(tmp_path / "imagenet-sketch" / "images" / "n99999999")
    with pytest.raises(AnnotationError, match=r"n99999999"):
        load(tmp_path, "ImageNetSketch")


def test_imagenet_a_names_missing_class_folders(tmp_path):
    build("ImageNetA", tmp_path)
    shutil.rmtree(tmp_path / "imagenet-adversarial" / "imagenet-a" / "n01498041")
    with pytest.raises(FileNotFoundError, match=r"1 of 200 class folders .*n01498041"):
        load(tmp_path, "ImageNetA")


def test_shift_sets_need_classnames_in_either_place(tmp_path):
    build("ImageNetV2", tmp_path)
    os.remove(tmp_path / "imagenetv2" / "classnames.txt")
    with pytest.raises(DatasetLayoutError, match=r"classnames.txt \(or ../imagenet/classnames"):
        load(tmp_path, "ImageNetV2")
    os.makedirs(tmp_path / "imagenet")
    (tmp_path / "imagenet" / "classnames.txt").write_text("n01 tench\nn02 goldfish\nn03 shark\n")
    assert load(tmp_path, "ImageNetV2").classnames == ["tench", "goldfish", "shark"]


def test_split_file_naming_missing_images_names_the_first_few(tmp_path):
    build("SUN397", tmp_path)
    load(tmp_path, "SUN397")
    shutil.rmtree(tmp_path / "sun397" / "SUN397" / "a")
    with pytest.raises(FileNotFoundError) as err:
        load(tmp_path, "SUN397")
    message = str(err.value)
    assert "14 of 21 images" in message and "split_zhou_SUN397.json" in message
    named = [f"a/abbey/sun_0{i}.jpg" for i in range(5)]
    assert ", ".join(named) + ", ..." in message


def test_without_scipy_the_mat_files_error_points_to_the_split_file(tmp_path, monkeypatch):
    import builtins

    build("OxfordFlowers", tmp_path)
    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("No module named 'scipy'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    with pytest.raises(ImportError, match=r"needs scipy .* CoOp's split file"):
        load(tmp_path, "OxfordFlowers")
