"""The decoded-image cache changes nothing in what the train loader yields; loader options."""

import os

import pytest
import torch

from engine.data import BadImageError, DataManager, DatasetBase, Datum
from engine.utils import set_random_seed
from tests.data_fixtures import data_cfg, write_corrupt_image, write_image


def noisy_dataset(root, n_train=10, bad=(), scale=1):
    """Train images of different sizes full of noise (so every crop differs)."""
    items = []
    for i in range(n_train):
        path = os.path.join(root, f"train{i}.png")
        if i in bad:
            write_corrupt_image(path)
        else:
            write_image(path, size=(scale * (20 + 2 * i), scale * (18 + i)), noise_seed=i)
        items.append(Datum(path, i % 2, classname=f"c{i % 2}"))
    test = [Datum(items[0].impath, 0, classname="c0")]
    return DatasetBase(train_x=items, test=test)


def epochs(root, dataset, n_epochs=2, **overrides):
    """Everything the train loader yields in ``n_epochs`` epochs after seeding."""
    cfg = data_cfg(root, {"VERBOSE": False, **overrides})
    dm = DataManager(cfg, dataset=dataset)
    set_random_seed(cfg.SEED)
    return dm, [batch for _ in range(n_epochs) for batch in dm.train_loader_x]


def assert_same_batches(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a["img"], b["img"]) and torch.equal(a["index"], b["index"])


@pytest.mark.parametrize(
    "transforms",
    [("random_resized_crop", "random_flip", "normalize"), ("random_flip", "normalize")],
)
@pytest.mark.parametrize("workers", [0, 1])
def test_cached_loader_yields_what_the_uncached_one_yields(tmp_path, transforms, workers):
    dataset = noisy_dataset(tmp_path)
    options = {"INPUT.TRANSFORMS": transforms, "DATALOADER.NUM_WORKERS": workers}
    dm, cached = epochs(tmp_path, dataset, **options)
    _, uncached = epochs(tmp_path, dataset, **options, **{"DATALOADER.CACHE_IMAGES_MB": 0})
    assert len(dm.train_loader_x.dataset.cache) == len(dataset.train_x)
    assert_same_batches(cached, uncached)
    first, second = cached[: len(cached) // 2], cached[len(cached) // 2 :]
    assert not all(torch.equal(a["img"], b["img"]) for a, b in zip(first, second, strict=True))


def test_cache_stores_the_resized_image_when_the_transform_starts_with_resize(tmp_path):
    dm, _ = epochs(tmp_path, noisy_dataset(tmp_path), 0, **{"INPUT.TRANSFORMS": ("random_flip",)})
    cache = dm.train_loader_x.dataset.cache
    assert cache.get(3).size == (16, 16) and "Resize" in repr(cache.prefix)
    dm, _ = epochs(tmp_path, noisy_dataset(tmp_path), 0)
    assert dm.train_loader_x.dataset.cache.get(3).size == (26, 21)  # random crop: full image


def test_over_budget_and_unreadable_images_stay_on_disk(tmp_path, capsys):
    dataset = noisy_dataset(tmp_path, n_train=12, bad={1}, scale=10)  # 0.1 to 0.3 MiB each
    options = {"DATASET.ON_BAD_IMAGE": "skip", "DATALOADER.CACHE_IMAGES_MB": 1}
    dm, cached = epochs(tmp_path, dataset, **options)
    cache = dm.train_loader_x.dataset.cache
    assert [i for i in range(12) if cache.get(i) is not None] == [0, 2, 3, 4, 5, 6]
    assert "Cached" in capsys.readouterr().out
    _, uncached = epochs(tmp_path, dataset, **{**options, "DATALOADER.CACHE_IMAGES_MB": 0})
    assert_same_batches(cached, uncached)
    assert dm.train_loader_x.dataset.num_skipped == 2  # the bad image, once per epoch


def test_loader_options(tmp_path):
    dataset = noisy_dataset(tmp_path)
    dm = DataManager(data_cfg(tmp_path, {"DATALOADER.NUM_WORKERS": 1}), dataset=dataset)
    assert dm.train_loader_x.persistent_workers and dm.test_loader.persistent_workers
    dm = DataManager(
        data_cfg(
            tmp_path,
            {
                "DATALOADER.NUM_WORKERS": 1,
                "DATALOADER.PERSISTENT_WORKERS": False,
                "DATALOADER.CACHE_IMAGES_MB": 0,
            },
        ),
        dataset=dataset,
    )
    assert not dm.train_loader_x.persistent_workers and dm.train_loader_x.dataset.cache is None


def test_an_unreadable_train_image_stops_before_the_first_epoch(tmp_path):
    dataset = noisy_dataset(tmp_path, bad={3, 7})
    with pytest.raises(BadImageError) as err:
        DataManager(data_cfg(tmp_path, {"VERBOSE": False}), dataset=dataset)
    first, second = (os.path.join(str(tmp_path), f"train{i}.png") for i in (3, 7))
    assert str(err.value).startswith(f"Cannot read image '{first}' (UnidentifiedImageError: ")
    assert "set DATASET.ON_BAD_IMAGE skip" in str(err.value)
    assert str(err.value).endswith(f"(1 more unreadable train images: ['{second}'])")


def test_skip_mode_announces_unreadable_train_images_before_the_first_epoch(tmp_path, capsys):
    dataset = noisy_dataset(tmp_path, bad={3})
    cfg = data_cfg(tmp_path, {"VERBOSE": False, "DATASET.ON_BAD_IMAGE": "skip"})
    dm = DataManager(cfg, dataset=dataset)
    bad = os.path.join(str(tmp_path), "train3.png")
    assert (
        "Warning: 1 unreadable train image(s) will be skipped in every epoch "
        f"(DATASET.ON_BAD_IMAGE skip): ['{bad}']"
    ) in capsys.readouterr().out
    assert bad not in [p for batch in dm.train_loader_x for p in batch["impath"]]
