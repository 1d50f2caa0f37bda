"""The generated Toy benchmark: files on disk, determinism, class order, settings checks, and
the main job (tiny CLIP + Toy + train.py) on a small Toy."""

import errno
import hashlib
import json
import os
import random
import signal
import socket
import stat
import time

import numpy as np
import pytest
from PIL import Image

import train
from datasets import toy, toy_render
from engine.checkpoint import RunWriteError
from engine.config import get_cfg_default
from engine.data import DataManager
from engine.utils import set_random_seed
from tests.run_fixtures import REPO, read_only

SMALL = ["DATASET.TOY.TRAIN_PER_CLASS", "3", "DATASET.TOY.VAL_PER_CLASS", "1",
         "DATASET.TOY.TEST_PER_CLASS", "2"]  # fmt: skip


def toy_cfg(root, *opts):
    cfg = get_cfg_default()
    cfg.merge_from_file(os.path.join(REPO, "configs", "datasets", "toy.yaml"))
    cfg.merge_from_list(["DATASET.ROOT", str(root), "DATASET.NUM_SHOTS", "-1", *SMALL, *opts])
    return cfg


def digest_tree(folder):
    sha = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(folder)):
        dirnames.sort()
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            sha.update(os.path.relpath(path, folder).encode())
            with open(path, "rb") as f:
                sha.update(f.read())
    return sha.hexdigest()


@pytest.fixture(scope="module")
def small_toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    return root, toy.Toy(toy_cfg(root))


def test_generates_images_split_and_settings_on_first_use(small_toy):
    root, dataset = small_toy
    folder = root / "toy"
    assert sorted(os.listdir(folder)) == ["images", "split_toy.json", "toy.json"]
    assert len(os.listdir(folder / "images")) == 30
    assert len(os.listdir(folder / "images" / "red_circle")) == 3 + 1 + 2
    split = json.loads((folder / "split_toy.json").read_text())
    assert split["train"][0] == ["images/red_circle/train_0000.png", 0, "red circle"]
    assert [len(split[k]) for k in ("train", "val", "test")] == [90, 30, 60]
    assert (len(dataset.train_x), len(dataset.val), len(dataset.test)) == (90, 30, 60)
    assert dataset.num_classes == 30 and dataset.template == "a photo of a {}."
    settings = json.loads((folder / "toy.json").read_text())
    assert settings["shift"] == "style" and settings["per_class"]["test"] == 2


def test_files_are_the_same_for_the_same_settings_and_differ_for_another_seed(small_toy, tmp_path):
    root, _ = small_toy
    toy.Toy(toy_cfg(tmp_path / "again"))
    toy.Toy(toy_cfg(tmp_path / "other", "DATASET.TOY.SEED", "1"))
    reference = digest_tree(root / "toy")
    assert digest_tree(tmp_path / "again" / "toy") == reference
    assert digest_tree(tmp_path / "other" / "toy") != reference


def test_base_and_new_halves_each_use_every_colour_and_object(small_toy):
    root, _ = small_toy
    classes = toy.ordered_classes()
    assert sorted(classes) == sorted(toy_render.benchmark_classes())
    base, new = classes[:15], classes[15:]
    for half in (base, new):
        assert {c for c, _ in half} == set(toy_render.BENCHMARK_COLOURS)
        assert {o for _, o in half} == set(toy_render.BENCHMARK_OBJECTS)
    assert not set(base) & set(new)
    subsampled = toy.Toy(toy_cfg(root, "DATASET.SUBSAMPLE_CLASSES", "new"))
    assert subsampled.classnames == [toy_render.class_name(c, o) for c, o in new]
    assert {item.label for item in subsampled.test} == set(range(15))


def test_the_renderer_tells_where_it_drew_the_object(small_toy):
    root, dataset = small_toy
    settings = json.loads((root / "toy" / "toy.json").read_text())
    item = dataset.test[7]
    assert item.label == 3 and item.impath.endswith("test_0001.png")
    image, mask = toy.render_image_and_mask(settings, item.label, "test", 1)
    with Image.open(item.impath) as on_disk:  # the same pixels as the generated file
        assert np.array_equal(np.asarray(image), np.asarray(on_disk.convert("RGB")))
    assert mask.shape == (32, 32) and mask.min() >= 0 and mask.max() <= 1
    # A large solid circle in the centre covers pi r^2 of the image, r in [0.34, 0.42].
    attrs = toy_render.Attrs("circle", "red", "solid", "large", "center", "dark")
    image, mask = toy_render.render_with_mask(attrs, 64, np.random.default_rng(3))
    assert np.array_equal(
        np.asarray(image), np.asarray(toy_render.render(attrs, 64, np.random.default_rng(3)))
    )
    assert np.pi * 0.34**2 <= mask.mean() <= np.pi * 0.42**2
    pixels = np.asarray(image, float)
    inside, outside = pixels[mask > 0.99].mean(0), pixels[mask < 0.01].mean(0)
    assert inside[0] > 150 > outside[0]  # red where the mask says, dark background elsewhere


def test_few_shot_subsets_are_cached_next_to_the_images(small_toy):
    root, _ = small_toy
    cfg = toy_cfg(root, "DATASET.NUM_SHOTS", "2", "SEED", "1")
    dataset = toy.Toy(cfg)
    assert len(dataset.train_x) == 60 and len(dataset.val) == 30
    assert (root / "toy" / "split_fewshot" / "shot_2-seed_1.json").is_file()


def test_a_folder_made_with_other_settings_is_refused(small_toy):
    root, _ = small_toy
    with pytest.raises(ValueError, match=r"other settings(.|\n)*Delete that folder"):
        toy.Toy(toy_cfg(root, "DATASET.TOY.SHIFT", "noise"))


def test_a_foreign_folder_named_toy_is_refused(tmp_path):
    (tmp_path / "toy").mkdir()
    with pytest.raises(FileNotFoundError, match="not made by the Toy generator"):
        toy.Toy(toy_cfg(tmp_path))


def test_unknown_shift_and_empty_split_are_errors_before_generation(tmp_path):
    with pytest.raises(ValueError, match="'fog' is not a shift.*clutter"):
        toy.Toy(toy_cfg(tmp_path, "DATASET.TOY.SHIFT", "fog"))
    with pytest.raises(ValueError, match="TEST_PER_CLASS must be >= 1"):
        toy.Toy(toy_cfg(tmp_path, "DATASET.TOY.TEST_PER_CLASS", "0"))
    assert not (tmp_path / "toy").exists()


def test_data_manager_reads_toy_at_the_tiny_clip_size(small_toy):
    root, _ = small_toy
    cfg = toy_cfg(root, "INPUT.SIZE", "(32, 32)", "INPUT.TRANSFORMS", "['normalize']",
                  "DATALOADER.NUM_WORKERS", "0")  # fmt: skip
    batch = next(iter(DataManager(cfg).test_loader))
    images = batch["img"]
    assert images.shape[1:] == (3, 32, 32)


def test_toy_is_generated_only_below_an_existing_folder_and_announced(tmp_path, capsys):
    typo = tmp_path / "nonexistent" / "data"
    with pytest.raises(FileNotFoundError) as err:
        toy.Toy(toy_cfg(typo))
    assert str(err.value) == (
        f"DATASET.ROOT '{typo}' does not exist, and neither does its parent "
        f"'{tmp_path / 'nonexistent'}', so Toy would be generated in a new folder tree at "
        f"'{typo / 'toy'}'. Check --root (or DATASET.ROOT); to generate Toy there, create the "
        "parent folder first."
    )
    assert not (tmp_path / "nonexistent").exists()
    # A missing root whose parent exists is made; where, and how much, is announced.
    previous = os.umask(0o022)
    try:
        toy.Toy(toy_cfg(tmp_path / "data"))
    finally:
        os.umask(previous)
    out = capsys.readouterr().out
    made = tmp_path / "data" / "toy"
    assert f"Toy is not in '{made}' yet: generating it there (180 images)" in out
    # Readable by other users as the umask allows (not tempfile's 0700).
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "toy").st_mode) == 0o755
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "toy" / "split_toy.json").st_mode) == 0o644
    # The default root of configs/datasets/toy.yaml is made even without its parent (.cache
    # does not exist in a fresh clone).
    cfg = get_cfg_default()
    cfg.merge_from_file(os.path.join(REPO, "configs", "datasets", "toy.yaml"))
    assert cfg.DATASET.ROOT == toy.DEFAULT_ROOT
    toy.check_root(toy.DEFAULT_ROOT, str(tmp_path / "missing" / "data" / "toy"))


def test_a_killed_generation_leaves_a_folder_that_the_next_run_removes(tmp_path, capsys):
    """SIGKILL in the middle of a generation: its .toy-<pid>@<host>-* folder stays until the
    next run removes it; folders of running generations and of other hosts stay."""
    pid = os.fork()
    if pid == 0:  # the child generates a Toy big enough to be killed half way
        try:
            toy.Toy(toy_cfg(tmp_path, "DATASET.TOY.TEST_PER_CLASS", "400"))
        finally:
            os._exit(0)
    deadline = time.monotonic() + 60
    while not [n for n in os.listdir(tmp_path) if n.startswith(".toy-")]:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    (killed,) = [tmp_path / n for n in os.listdir(tmp_path) if n.startswith(".toy-")]
    assert os.listdir(killed / "images") and not (tmp_path / "toy").exists()
    running = tmp_path / f".toy-{os.getpid()}@{socket.gethostname()}-abcd1234"
    elsewhere = tmp_path / f".toy-{pid}@another-host-abcd1234"
    for folder in (running, elsewhere):
        folder.mkdir()
    capsys.readouterr()
    toy.Toy(toy_cfg(tmp_path))
    assert f"Removed '{killed}', left by a Toy generation that was interrupted" in (
        capsys.readouterr().out
    )
    assert sorted(os.listdir(tmp_path)) == sorted([running.name, elsewhere.name, "toy"])


def test_a_full_disk_during_generation_is_a_message_and_leaves_nothing(tmp_path, monkeypatch):
    save, saved = Image.Image.save, [0]

    def fills_up(self, *args, **kwargs):
        saved[0] += 1
        if saved[0] > 20:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fills_up)
    with pytest.raises(RunWriteError) as err:
        toy.Toy(toy_cfg(tmp_path))
    assert str(err.value) == (
        f"Could not save the Toy dataset in '{tmp_path / 'toy'}' ([Errno 28] No space left on "
        "device). Fix the cause (permissions, free space), then run the command again."
    )
    assert os.listdir(tmp_path) == []


def test_a_new_seed_on_a_read_only_toy_keeps_its_shots_in_the_split_cache(tmp_path):
    root = tmp_path / "shared"
    toy.Toy(toy_cfg(root))
    cache = tmp_path / "cache"
    before = digest_tree(root / "toy")
    cfg = toy_cfg(root, "DATASET.NUM_SHOTS", "1", "SEED", "5", "DATASET.SPLIT_CACHE", str(cache))
    with read_only(root / "toy"):
        random.seed(5)
        first = toy.Toy(cfg).train_x
        random.seed(5)
        assert toy.Toy(cfg).train_x == first
    assert digest_tree(root / "toy") == before
    cached = cache / str(root / "toy" / "split_fewshot" / "shot_1-seed_5.json").lstrip(os.sep)
    assert cached.is_file()


def classes_of(items):
    return sorted({item.classname for item in items})


def test_warm_base_classes_are_the_warm_colours_with_the_same_images(small_toy):
    root, checkerboard = small_toy
    warm = "DATASET.TOY.BASE_CLASSES", "warm"
    halves = {
        half: toy.Toy(toy_cfg(root, *warm, "DATASET.SUBSAMPLE_CLASSES", half))
        for half in ("base", "new")
    }
    objects = toy_render.BENCHMARK_OBJECTS
    assert classes_of(halves["base"].test) == sorted(
        f"{colour} {obj}" for colour in ("red", "orange", "yellow") for obj in objects
    )
    assert classes_of(halves["new"].test) == sorted(
        f"{colour} {obj}" for colour in ("green", "blue", "purple") for obj in objects
    )
    # The same images under the same class names; only the labels moved.
    pairs = {(item.impath, item.classname) for item in checkerboard.test}
    both = halves["base"].test + halves["new"].test
    assert {(item.impath, item.classname) for item in both} == pairs
    assert halves["base"].lab2cname[0] == "red circle"  # label 0 of the checkerboard, still
    assert halves["new"].lab2cname[0] == "green circle"  # label 1 of the checkerboard's new


def test_the_checkerboard_keeps_the_generated_labels():
    assert toy.labels_for("checkerboard") == {label: label for label in range(30)}
    warm = toy.labels_for("warm")
    assert sorted(warm) == sorted(warm.values()) == list(range(30))


def test_few_shot_draws_of_other_labels_are_cached_apart(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    shots = ("DATASET.NUM_SHOTS", "2", "SEED", "1")
    set_random_seed(1)
    checkerboard = toy.Toy(toy_cfg(root, *shots))
    set_random_seed(1)
    warm = toy.Toy(toy_cfg(root, *shots, "DATASET.TOY.BASE_CLASSES", "warm"))
    folder = root / "toy"
    assert sorted(p.name for p in folder.glob("split_fewshot*")) == [
        "split_fewshot", "split_fewshot_warm"
    ]  # fmt: skip
    # The same images drawn for each class, whatever its label.
    assert {(i.impath, i.classname) for i in checkerboard.train_x} == {
        (i.impath, i.classname) for i in warm.train_x
    }


def test_an_unknown_split_of_the_classes_names_the_key_and_the_choices(small_toy):
    root, _ = small_toy
    with pytest.raises(ValueError) as err:
        toy.Toy(toy_cfg(root, "DATASET.TOY.BASE_CLASSES", "cool"))
    assert str(err.value) == (
        "DATASET.TOY.BASE_CLASSES 'cool' is not a split of Toy's classes; choose one of "
        "checkerboard, warm"
    )


@pytest.mark.parametrize("engine", ["builtin", "dassl"])
@pytest.mark.parametrize(
    "key, value, message",
    [("BASE_CLASSES", "cool", "is not a split of Toy's classes"),
     ("SHIFT", "blurry", "is not a shift; choose 'none' or one of")],
)  # fmt: skip
def test_a_bad_toy_key_stops_train_py_before_any_work(tmp_path, capsys, engine, key, value,
                                                      message):  # fmt: skip
    if engine == "dassl":
        pytest.importorskip("dassl", reason="Dassl is not installed (see README)")
    out = tmp_path / "run"
    argv = ["--engine", engine, "--trainer", "DPT", "--dataset-config-file",
            os.path.join(REPO, "configs/datasets/toy.yaml"), "--config-file",
            os.path.join(REPO, "configs/trainers/DPT/tiny.yaml"), "--root", str(tmp_path),
            "--output-dir", str(out), f"DATASET.TOY.{key}", value]  # fmt: skip
    assert train.cli(argv) == 2
    assert f"error: DATASET.TOY.{key} '{value}' {message}" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "toy").exists()
