import os

import pytest
import torch

from engine.data import BadImageError, DataManager, DatasetBase, Datum
from tests.data_fixtures import (
    data_cfg,
    make_image_folder,
    write_corrupt_image,
    write_image,
    write_truncated_image,
)


def list_dataset(root, n_train, n_test, bad=()):
    """Two classes alternating; items whose index is in ``bad`` are corrupt or truncated."""

    def items(tag, n):
        out = []
        for i in range(n):
            path = os.path.join(root, f"{tag}{i}.png")
            if (tag, i) in bad:
                (write_corrupt_image if i % 2 else write_truncated_image)(path)
            else:
                write_image(path, color=(10 * i, 0, 0))
            out.append(Datum(path, i % 2, classname=f"c{i % 2}"))
        return out

    return DatasetBase(train_x=items("train", n_train), test=items("test", n_test))


def test_batches_and_summary(tmp_path, capsys):
    import datasets  # noqa: F401  (registers ImageFolder)

    root = make_image_folder(tmp_path / "data", {"red_car": 6, "blue": 6, "green": 6})
    dm = DataManager(data_cfg(root, {"DATALOADER.TRAIN_X.BATCH_SIZE": 3}))
    out = capsys.readouterr().out
    assert "Loading dataset: ImageFolder" in out
    for line in (
        "# classes        3",
        "# train_x        9",
        "# val            3",
        "# test           6",
    ):
        assert " ".join(line.split()) in " ".join(out.split())
    assert (dm.num_classes, dm.classnames) == (3, ["blue", "green", "red car"])
    assert dm.lab2cname == {0: "blue", 1: "green", 2: "red car"}

    batch = next(iter(dm.train_loader_x))
    assert set(batch) == {"img", "label", "domain", "impath", "index"}
    assert batch["img"].shape == (3, 3, 16, 16) and batch["img"].dtype == torch.float32
    assert batch["label"].dtype == torch.long and len(batch["impath"]) == 3
    assert len(dm.train_loader_x) == 3

    test_batches = list(dm.test_loader)
    assert [len(b["label"]) for b in test_batches] == [4, 2]  # sequential, last batch kept
    indices = torch.cat([b["index"] for b in test_batches]).tolist()
    assert indices == list(range(6))
    assert [p for b in test_batches for p in b["impath"]] == [d.impath for d in dm.dataset.test]


def test_no_val_loader_and_drop_last_like_dassl(tmp_path):
    cfg = data_cfg(tmp_path, {"VERBOSE": False, "DATALOADER.TRAIN_X.BATCH_SIZE": 4})
    small = DataManager(cfg, dataset=list_dataset(str(tmp_path), n_train=3, n_test=2))
    assert small.val_loader is None
    assert [len(b["label"]) for b in small.train_loader_x] == [3]  # smaller than a batch: kept
    larger = DataManager(cfg, dataset=list_dataset(str(tmp_path), n_train=6, n_test=2))
    assert [len(b["label"]) for b in larger.train_loader_x] == [4]  # ragged tail dropped


def test_bad_image_error_names_file_and_remedy(tmp_path):
    dataset = list_dataset(str(tmp_path), 2, 4, bad={("test", 2)})
    dm = DataManager(data_cfg(tmp_path, {"VERBOSE": False}), dataset=dataset)
    with pytest.raises(BadImageError) as err:
        list(dm.test_loader)
    assert os.path.join(str(tmp_path), "test2.png") in str(err.value)
    assert "DATASET.ON_BAD_IMAGE skip" in str(err.value)


def test_skip_mode_drops_bad_images_across_workers(tmp_path, capfd):
    bad = {("test", 2), ("test", 3), ("test", 5)}
    dataset = list_dataset(str(tmp_path), 2, 8, bad=bad)
    cfg = data_cfg(
        tmp_path,
        {
            "VERBOSE": False,
            "DATASET.ON_BAD_IMAGE": "skip",
            "DATALOADER.NUM_WORKERS": 2,
            "DATALOADER.TEST.BATCH_SIZE": 2,
        },
    )
    dm = DataManager(cfg, dataset=dataset)
    batches = list(dm.test_loader)  # the batch of test2 and test3 has nothing left: left out
    seen = [os.path.basename(p) for b in batches for p in b["impath"]]
    assert seen == ["test0.png", "test1.png", "test4.png", "test6.png", "test7.png"]
    assert dm.test_loader.dataset.num_skipped == 3
    out = capfd.readouterr().out
    assert out.count("Warning: skipped unreadable image") == 3
    assert "3 skipped so far" in out


def test_invalid_bad_image_mode(tmp_path):
    cfg = data_cfg(tmp_path, {"VERBOSE": False, "DATASET.ON_BAD_IMAGE": "ignore"})
    with pytest.raises(ValueError, match="error, skip"):
        DataManager(cfg, dataset=list_dataset(str(tmp_path), 2, 2))
