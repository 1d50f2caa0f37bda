import json
import os
import random

import pytest

from engine.data import Datum, read_and_split_data, read_split, save_split, split_trainval


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()
    return path


def touch_classes(root, counts):
    """Empty files laid out as root/<class>/<i>.png: enough for split generation."""
    for name, count in counts.items():
        for i in range(count):
            touch(os.path.join(root, name, f"{i:02d}.png"))
    return str(root)


def items_under(root, rows):
    return [Datum(os.path.join(root, rel), label, classname=c) for rel, label, c in rows]


def test_split_round_trip_is_relative_json(tmp_path):
    root = str(tmp_path / "images")
    train = items_under(root, [("a/1.jpg", 0, "cat"), ("b/2.jpg", 1, "big dog")])
    val = items_under(root, [("a/3.jpg", 0, "cat")])
    test = items_under(root, [("b/sub/4.jpg", 1, "big dog")])
    for item in train + val + test:
        touch(item.impath)
    path = str(tmp_path / "split_zhou_Toy.json")
    save_split(train, val, test, path, root)

    with open(path) as f:
        raw = json.load(f)
    assert raw == {
        "train": [["a/1.jpg", 0, "cat"], ["b/2.jpg", 1, "big dog"]],
        "val": [["a/3.jpg", 0, "cat"]],
        "test": [["b/sub/4.jpg", 1, "big dog"]],
    }
    assert read_split(path, root) == (train, val, test)
    assert sorted(os.listdir(tmp_path)) == ["images", "split_zhou_Toy.json"]  # no temp file


def test_save_split_rejects_paths_outside_prefix(tmp_path):
    outside = [Datum(str(tmp_path / "elsewhere" / "x.jpg"), 0, classname="c")]
    with pytest.raises(ValueError, match="not under"):
        save_split(outside, [], [], str(tmp_path / "s.json"), str(tmp_path / "images"))


def test_missing_split_file_says_which_and_what_to_do(tmp_path):
    path = str(tmp_path / "split_zhou_Caltech101.json")
    with pytest.raises(FileNotFoundError) as err:
        read_split(path, str(tmp_path))
    assert path in str(err.value) and "split_zhou_<Name>.json" in str(err.value)


def test_missing_images_are_named_and_counted(tmp_path):
    rows = [[f"c/{i}.jpg", 0, "c"] for i in range(8)]
    touch(str(tmp_path / "c" / "0.jpg"))
    path = tmp_path / "split.json"
    path.write_text(json.dumps({"train": rows[:4], "val": rows[4:6], "test": rows[6:]}))
    with pytest.raises(FileNotFoundError) as err:
        read_split(str(path), str(tmp_path))
    message = str(err.value)
    assert "7 of 8 images" in message and str(path) in message
    assert "c/1.jpg" in message and "c/5.jpg" in message and "c/0.jpg" not in message


def test_generated_split_proportions_labels_and_names(tmp_path):
    root = touch_classes(tmp_path, {"b_class": 10, "a": 7, ".hidden": 4, "ignored": 5})
    touch(os.path.join(root, "a", "notes.txt"))
    train, val, test = read_and_split_data(
        root, ignored=("ignored",), new_cnames={"b_class": "b class"}, seed=1
    )
    by_class = {
        (name, label): [len([d for d in part if d.label == label]) for part in (train, val, test)]
        for name, label in (("a", 0), ("b class", 1))
    }
    # a: round(3.5)=4, round(1.4)=1, rest 2; b: 5, 2, 3
    assert by_class == {("a", 0): [4, 1, 2], ("b class", 1): [5, 2, 3]}
    assert {d.classname for d in train} == {"a", "b class"}
    all_paths = [d.impath for d in train + val + test]
    assert len(set(all_paths)) == 17 and not any(p.endswith(".txt") for p in all_paths)


def test_generated_split_is_pinned(tmp_path):
    """The same split on every machine: sorted listing, local random.Random(1)."""
    root = touch_classes(tmp_path, {"x": 6})
    train, val, test = read_and_split_data(root, seed=1)
    names = [[os.path.basename(d.impath) for d in part] for part in (train, val, test)]
    assert names == [["02.png", "03.png", "05.png"], ["00.png"], ["04.png", "01.png"]]


def test_generated_split_ignores_listing_order_and_global_rng(tmp_path, monkeypatch):
    root = touch_classes(tmp_path, {"x": 9, "y": 8, "z": 5})
    random.seed(0)
    first = read_and_split_data(root, seed=3)

    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda path: list(reversed(list(real_scandir(path)))))
    random.seed(12345)
    state = random.getstate()
    second = read_and_split_data(root, seed=3)
    assert random.getstate() == state  # the global RNG is neither used nor disturbed
    assert second == first
    assert read_and_split_data(root, seed=4) != first


def test_layout_errors_name_the_folder(tmp_path):
    with pytest.raises(ValueError, match="No class folders"):
        read_and_split_data(str(tmp_path), seed=1)
    touch_classes(tmp_path, {"full": 5})
    os.makedirs(tmp_path / "empty")
    with pytest.raises(ValueError, match=r"empty' has no images"):
        read_and_split_data(str(tmp_path), seed=1)
    os.rmdir(tmp_path / "empty")
    touch_classes(tmp_path, {"tiny": 2})
    with pytest.raises(ValueError, match="tiny' has 2 images, too few"):
        read_and_split_data(str(tmp_path), seed=1)


def test_split_trainval_is_deterministic_and_local(tmp_path):
    trainval = [
        Datum(f"/d/{label}/{i}.jpg", label, classname=str(label))
        for i in range(10)
        for label in (1, 0)
    ]
    random.seed(0)
    state = random.getstate()
    train, val = split_trainval(trainval, seed=1)
    assert random.getstate() == state
    assert (train, val) == split_trainval(trainval, seed=1)
    assert [d.label for d in val].count(0) == 2 and [d.label for d in val].count(1) == 2
    assert sorted(train + val, key=str) == sorted(trainval, key=str)
    assert split_trainval(trainval, seed=2) != (train, val)


GOOD_ROWS = {
    "train": [["a/1.png", 0, "cat"], ["a/2.png", 0, "cat"], ["b/1.png", 1, "dog"],
              ["b/2.png", 1, "dog"], ["c/1.png", 2, "eel"]],
    "val": [["a/3.png", 0, "cat"], ["b/3.png", 1, "dog"]],
    "test": [["a/4.png", 0, "cat"], ["b/4.png", 1, "dog"], ["c/2.png", 2, "eel"]],
}  # fmt: skip


def split_file_with(tmp_path, **changes):
    """A split file of GOOD_ROWS with ``changes`` ({list: {index: row}}), its images on disk."""
    root = tmp_path / "images"
    rows = {key: [list(row) for row in items] for key, items in GOOD_ROWS.items()}
    for key, edits in changes.items():
        for index, row in edits.items():
            rows[key][index] = row
    for items in rows.values():
        for rel, _, _ in items:
            touch(str(root / rel))
    path = tmp_path / "split.json"
    path.write_text(json.dumps(rows))
    return str(path), str(root)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"test": {2: ["c/2.png", 7, "eel"]}},
         "list 'test', entry 2 ['c/2.png', 7, 'eel']: label 7 is not a class of the list "
         "'train' (labels 0..2)"),
        ({"val": {0: ["a/3.png", -1, "cat"]}}, "list 'val', entry 0 ['a/3.png', -1, 'cat']: "
         "label -1 is not a class"),
        ({"test": {1: ["b/4.png", 1, "cat"]}},
         "entry 1 ['b/4.png', 1, 'cat']: label 1 is 'cat' here but 'dog' in list 'train', "
         "entry 2; a label has one class name in every list"),
        ({"train": {3: ["b/2.png", 1, "hound"]}}, "list 'train', entry 3 ['b/2.png', 1, "
         "'hound']: label 1 is 'hound' here but 'dog' in list 'train', entry 2"),
        ({"test": {1: ["a/4.png", 0, "cat"]}}, "list 'test', entry 1 ['a/4.png', 0, 'cat']: "
         "the image is listed twice in 'test' (entries 0 and 1)"),
        ({"train": {4: ["c/1.png", 3, "eel"]}}, "list 'train': labels must be 0..2 without "
         "gaps, one per class, but no image has label 2 (labels found: [0, 1, 3])"),
    ],
)  # fmt: skip
def test_every_list_of_a_split_file_is_checked(tmp_path, changes, message):
    path, root = split_file_with(tmp_path, **changes)
    with pytest.raises(ValueError) as err:
        read_split(path, root)
    assert str(err.value).startswith(f"Split file '{path}', list ")
    assert message in str(err.value)
    assert "Correct the entry in the file" in str(err.value)


def test_test_images_that_are_train_images_are_counted_in_a_warning(tmp_path, capsys):
    path, root = split_file_with(tmp_path, test={0: ["a/1.png", 0, "cat"]},
                                 val={1: ["b/1.png", 1, "dog"]})  # fmt: skip
    train, val, test = read_split(path, root)
    assert len(test) == 3
    assert (
        f"Warning: 1 of 3 test images and 1 of 2 val images in '{path}' are also train images"
        in capsys.readouterr().out
    )
    read_split(*split_file_with(tmp_path))
    assert "Warning" not in capsys.readouterr().out
