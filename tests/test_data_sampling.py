import json
import os
import random

import pytest

from engine.data import DatasetBase, Datum, generate_fewshot_dataset, subsample_classes


def coop_reference(items, k):
    """Straight from the description of CoOp's loop: group by label in order of first
    appearance, then per class random.sample(items, k), or all items when fewer."""
    groups = {}
    for item in items:
        groups.setdefault(item.label, []).append(item)
    out = []
    for group in groups.values():
        out.extend(random.sample(group, k) if len(group) >= k else group)
    return out


def make_items(root, counts, tag):
    """Items of labels in the order given (interleaved), ``counts`` = {label: n}."""
    items, i = [], 0
    while any(counts.values()):
        for label in list(counts):
            if counts[label]:
                counts[label] -= 1
                path = os.path.join(root, f"c{label}", f"{tag}{i}.png")
                items.append(Datum(path, label, classname=f"class {label}"))
                i += 1
    return items


def touch_all(items):
    for item in items:
        os.makedirs(os.path.dirname(item.impath), exist_ok=True)
        open(item.impath, "wb").close()


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shots", [1, 2, 4, 8])
def test_fewshot_equals_coop_draw(tmp_path, capsys, seed, shots):
    root = str(tmp_path)
    # label 2 appears first; label 1 has fewer items than 4 or 8 shots
    train = make_items(root, {2: 12, 0: 10, 1: 3}, "t")
    val = make_items(root, {0: 5, 2: 6, 1: 2}, "v")
    random.seed(seed)
    expected = (coop_reference(train, shots), coop_reference(val, min(shots, 4)))

    random.seed(seed)
    got = DatasetBase().fewshot_from_cache_or_sample(
        train, val, shots, seed, str(tmp_path / "split_fewshot"), root
    )
    assert got == expected
    assert [d.label for d in got[0]][:shots] == [2] * shots  # first-appearance order
    warned = f"class 'class 1' (label 1) has only 3 items for {shots} shots"
    assert (warned in capsys.readouterr().out) == (shots > 3)


def test_fewshot_cache_is_json_and_reused(tmp_path):
    root = str(tmp_path / "images")
    train = make_items(root, {0: 6, 1: 6}, "t")
    val = make_items(root, {0: 3, 1: 3}, "v")
    touch_all(train + val)
    cache_dir = str(tmp_path / "split_fewshot")
    dataset = DatasetBase()

    random.seed(1)
    first = dataset.fewshot_from_cache_or_sample(train, val, 2, 1, cache_dir, root)
    with open(os.path.join(cache_dir, "shot_2-seed_1.json")) as f:
        raw = json.load(f)
    assert set(raw) == {"train", "val"}
    assert raw["train"] == [
        [os.path.relpath(d.impath, root), d.label, d.classname] for d in first[0]
    ]

    random.seed(999)  # a different draw would follow from here; the cache must win
    state = random.getstate()
    again = dataset.fewshot_from_cache_or_sample(train, val, 2, 1, cache_dir, root)
    assert again == first
    assert random.getstate() == state


def test_fewshot_all_data_and_unseeded_runs_write_no_cache(tmp_path):
    train = make_items(str(tmp_path), {0: 5}, "t")
    cache_dir = str(tmp_path / "split_fewshot")
    dataset = DatasetBase()
    assert dataset.fewshot_from_cache_or_sample(train, None, -1, 1, cache_dir, str(tmp_path)) == (
        train,
        None,
    )
    sampled, val = dataset.fewshot_from_cache_or_sample(
        train, None, 2, -1, cache_dir, str(tmp_path)
    )
    assert len(sampled) == 2 and val is None
    assert not os.path.exists(cache_dir)


def test_generate_fewshot_dataset_returns_like_dassl():
    a = [Datum(f"/a{i}", i % 2) for i in range(6)]
    b = [Datum(f"/b{i}", i % 2) for i in range(6)]
    assert len(generate_fewshot_dataset(a, num_shots=1)) == 2
    assert [len(x) for x in generate_fewshot_dataset(a, b, num_shots=2)] == [4, 4]


def test_base_new_relabel(tmp_path):
    names = ["apple", "bee", "cat", "dog", "eel"]
    train = [Datum(f"/t{y}", y, classname=names[y]) for y in (4, 0, 3, 1, 2)]
    test = [Datum(f"/s{y}", y, classname=names[y]) for y in (0, 1, 2, 3, 4, 4)]

    base_train, base_val, base_test = subsample_classes(train, None, test, subsample="base")
    assert sorted((d.label, d.classname) for d in base_train) == [
        (0, "apple"),
        (1, "bee"),
        (2, "cat"),
    ]
    assert base_val is None
    assert [d.impath for d in base_test] == ["/s0", "/s1", "/s2"]

    new_train, new_test = subsample_classes(train, test, subsample="new")
    assert [(d.impath, d.label, d.classname) for d in new_train] == [
        ("/t4", 1, "eel"),
        ("/t3", 0, "dog"),
    ]
    assert [(d.label, d.classname) for d in new_test] == [(0, "dog"), (1, "eel"), (1, "eel")]

    assert subsample_classes(train, test, subsample="all") == (train, test)
    with pytest.raises(ValueError, match="all, base, new"):
        subsample_classes(train, subsample="novel")


def test_datasetbase_classes_from_train_x():
    train = [Datum("/a", 1, classname="b"), Datum("/b", 0, classname="a")]
    dataset = DatasetBase(train_x=train, test=train)
    assert (dataset.num_classes, dataset.classnames, dataset.lab2cname) == (
        2,
        ["a", "b"],
        {0: "a", 1: "b"},
    )
    with pytest.raises(ValueError, match="without gaps"):
        DatasetBase(train_x=[Datum("/a", 0), Datum("/b", 2)])
    with pytest.raises(ValueError, match="two class names"):
        DatasetBase(train_x=[Datum("/a", 0, classname="x"), Datum("/b", 0, classname="y")])
    with pytest.raises(AttributeError):
        train[0].label = 3
