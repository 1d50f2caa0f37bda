"""ImageFolder's optional files: the prompt template and the class-name map, with and without
split.json, with base/new classes and through train.py."""

import json
import os
import random

import pytest

import train
from datasets.annotations import AnnotationError
from datasets.imagefolder import ImageFolder
from engine.data import DataManager
from tests.clip_fixtures import save_clip_checkpoint
from tests.data_fixtures import data_cfg, make_image_folder
from tests.run_fixtures import read_only, snapshot
from trainers import adapter

CLASSES = {"n001": 6, "n002": 5, "red_car": 8}


def test_template_and_classnames_txt(tmp_path):
    root = make_image_folder(tmp_path, CLASSES)
    (tmp_path / "template.txt").write_text("\na drawing of a {}.\n")
    (tmp_path / "classnames.txt").write_text("n001 great white shark\nn002 tench\n")
    dataset = DataManager(data_cfg(root)).dataset
    assert dataset.template == "a drawing of a {}."
    assert dataset.classnames == ["great white shark", "tench", "red car"]
    assert set(os.listdir(root)) == {*CLASSES, "classnames.txt", "split.json", "template.txt"}


def test_without_optional_files_template_is_none(tmp_path):
    dataset = ImageFolder(data_cfg(make_image_folder(tmp_path, CLASSES)))
    assert dataset.template is None and dataset.classnames == ["n001", "n002", "red car"]


def test_classnames_json_renames_over_an_existing_split(tmp_path):
    root = make_image_folder(tmp_path, CLASSES)
    first = ImageFolder(data_cfg(root))  # writes split.json with the folder names
    split_text = (tmp_path / "split.json").read_text()
    (tmp_path / "classnames.json").write_text(json.dumps({"red_car": "sports car"}))
    renamed = ImageFolder(data_cfg(root))
    assert renamed.classnames == ["n001", "n002", "sports car"]
    assert [d.impath for d in renamed.test] == [d.impath for d in first.test]
    assert (tmp_path / "split.json").read_text() == split_text  # the file is kept as it is


def test_given_split_file_with_class_map(tmp_path):
    root = make_image_folder(tmp_path, {"n001": 6, "n002": 5})
    split = {
        "train": [["n001/n001_0.png", 0, "x"], ["n002/n002_0.png", 1, "y"]],
        "val": [],
        "test": [["n002/n002_1.png", 1, "y"]],
    }
    (tmp_path / "split.json").write_text(json.dumps(split))
    (tmp_path / "classnames.txt").write_text("n002 tench\n")
    dataset = ImageFolder(data_cfg(root))
    assert dataset.classnames == ["x", "tench"] and len(dataset.test) == 1


@pytest.mark.parametrize("subsample, names", [("base", ["shark", "n002"]), ("new", ["red car"])])
def test_base_new_with_class_map(tmp_path, subsample, names):
    root = make_image_folder(tmp_path, CLASSES)
    (tmp_path / "classnames.json").write_text(json.dumps({"n001": "shark"}))
    dataset = ImageFolder(data_cfg(root, {"DATASET.SUBSAMPLE_CLASSES": subsample}))
    assert dataset.classnames == names


@pytest.mark.parametrize(
    "files, message",
    [
        ({"template.txt": "a photo of a cat."}, r"template.txt must start with a prompt template"),
        ({"template.txt": "{} and {}"}, r"one '\{\}'"),
        ({"classnames.txt": "n001\n"}, r"classnames.txt, line 1: expected '<folder> <class name>'"),
        ({"classnames.json": '{"zebra": "z"}'}, r"names folders that are not in .*zebra"),
        ({"classnames.json": "[1, 2]"}, r"must hold one JSON object"),
        ({"classnames.json": "{}", "classnames.txt": "n001 a\n"}, r"keep one class-name file"),
    ],
)
def test_bad_optional_files(tmp_path, files, message):
    root = make_image_folder(tmp_path, CLASSES)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(AnnotationError, match=message):
        ImageFolder(data_cfg(root))


@pytest.mark.parametrize(
    "trainer, overrides",
    [
        ("ZeroshotCLIP", []),
        ("DPT", ["TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2", "TRAINER.SELECTED_COVPT.CPN", "2"]),
    ],
)
def test_trainers_prompt_with_the_folders_template_and_names(
    tmp_path, monkeypatch, trainer, overrides
):
    """No code: a folder, its template and class names, and train.py."""
    seen = []
    real_template = adapter.template_for
    monkeypatch.setattr(
        adapter, "template_for", lambda *args: seen.append(real_template(*args)) or seen[-1]
    )
    data = make_image_folder(tmp_path / "data", {"n001": 5, "n002": 5}, size=(32, 32))
    (tmp_path / "data" / "template.txt").write_text("a drawing of a {}.\n")
    (tmp_path / "data" / "classnames.txt").write_text("n001 tench\nn002 goldfish\n")
    clip_path = save_clip_checkpoint(tmp_path / "clip.pt")
    train.main(
        ["--root", data, "--trainer", trainer, "--output-dir", str(tmp_path / "out"),
         "--seed", "1", "--eval-only",
         "DATASET.NAME", "ImageFolder", "MODEL.BACKBONE.NAME", clip_path,
         "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "USE_CUDA", "False",
         *overrides]
    )  # fmt: skip
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "* accuracy:" in log and "* total: 4" in log
    assert seen and set(seen) == {"a drawing of a {}."}


def test_a_class_folder_added_after_the_split_is_named_then_a_new_split_redraws_the_shots(
    tmp_path, capsys
):
    root = make_image_folder(tmp_path, CLASSES)
    first = ImageFolder(data_cfg(root, {"DATASET.NUM_SHOTS": 2}))
    split_text = (tmp_path / "split.json").read_text()
    make_image_folder(tmp_path / "aardvark", {"": 6})  # sorts first: every label moves on
    with pytest.raises(ValueError) as err:
        ImageFolder(data_cfg(root, {"DATASET.NUM_SHOTS": 2}))
    assert str(err.value) == (
        f"'{root}' has class folders with images that {root}/split.json does not list: "
        f"aardvark (added after the split was generated?). Delete {root}/split.json to "
        f"generate a split of every class folder, or move those folders out of '{root}'."
    )
    assert (tmp_path / "split.json").read_text() == split_text
    os.remove(tmp_path / "split.json")
    capsys.readouterr()
    second = ImageFolder(data_cfg(root, {"DATASET.NUM_SHOTS": 2}))
    assert "was drawn from another version of the split" in capsys.readouterr().out
    assert second.classnames == ["aardvark", *first.classnames]
    folders = ["aardvark", *sorted(CLASSES)]
    for item in second.train_x + second.val:  # the cached shots had the old labels
        assert item.label == folders.index(os.path.relpath(item.impath, root).split(os.sep)[0])


@pytest.mark.parametrize(
    "folders, files, message",
    [
        ({"red_circle": 4, "red circle": 4, "blue": 4}, {},
         "The class folders 'red circle', 'red_circle' in '{root}' all have the class name "
         "'red circle' ('_' reads as a space), so their prompts would be identical"),
        ({"n1": 4, "n2": 4, "n3": 4}, {"classnames.txt": "n1 cat\nn3 cat\n"},
         "The class folders 'n1', 'n3' in '{root}' all have the class name 'cat' (through "
         "classnames.txt or classnames.json)"),
        ({"cat": 6}, {}, "'{root}' holds one class ('cat'): a classifier needs two or more "
         "class folders."),
        ({"cat": 2, "dog": 2}, {"split.json": json.dumps({
            "train": [["cat/cat_0.png", 0, "cat"], ["dog/dog_0.png", 1, "dog"]], "val": [],
            "test": [["cat/cat_1.png", 1, "dog"], ["dog/dog_1.png", 1, "dog"]]})},
         "The class folder 'cat' holds images of labels 0 and 1 in {root}/split.json"),
    ],
)  # fmt: skip
def test_classes_that_cannot_be_told_apart_are_refused_before_a_split_is_saved(
    tmp_path, folders, files, message
):
    root = make_image_folder(tmp_path, folders)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ValueError) as err:
        ImageFolder(data_cfg(root))
    assert message.format(root=root) in str(err.value)
    assert sorted(os.listdir(root)) == sorted([*folders, *files])  # no split.json written


def test_a_read_only_dataset_keeps_its_generated_files_in_the_split_cache(tmp_path, capsys):
    """No split.json and a new seed on a folder that cannot be written: the split and the
    few-shot draw go below DATASET.SPLIT_CACHE, and the next run reads them from there."""
    root = make_image_folder(tmp_path / "shared", CLASSES)
    cache = tmp_path / "cache"
    cfg = data_cfg(root, {"DATASET.NUM_SHOTS": 2, "DATASET.SPLIT_CACHE": str(cache)})
    before = snapshot(root)
    with read_only(root):
        random.seed(1)
        first = ImageFolder(cfg)
        mirrored = cache / root.lstrip(os.sep)
        out = capsys.readouterr().out
        assert f"saving it to {mirrored / 'split.json'} instead (DATASET.SPLIT_CACHE)" in out
        assert f"Saved few-shot data to {mirrored / 'split_fewshot' / 'shot_2-seed_1.json'}" in out
        again = ImageFolder(cfg)
        out = capsys.readouterr().out
        assert f"Loading few-shot data from {mirrored / 'split_fewshot'}" in out
        assert "Saved" not in out
    assert snapshot(root) == before
    assert (again.train_x, again.val, again.test) == (first.train_x, first.val, first.test)
    assert sorted(os.listdir(mirrored)) == ["split.json", "split_fewshot"]
