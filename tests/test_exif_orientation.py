"""One rule for EXIF orientation tags in training, evaluation and prediction: INPUT.EXIF_TRANSPOSE
(default False: pixels as stored, as Dassl reads them); prediction says which images carry a
tag that it does not apply."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import train
from engine.data import build_data_loader, build_transform
from engine.data.datum import Datum
from inference import load_classifier
from inference.classifier import IgnoredOrientation
from tests.data_fixtures import data_cfg
from tests.run_fixtures import REPO, make_workspace, train_argv

CLASSES = {name: 6 for name in ["ant", "bee", "cat"]}
ROTATE_90_CW = 6  # the tag of a photo taken with the camera on its side


def save_tagged(path, pixels, tag=ROTATE_90_CW):
    """``pixels`` stored on their side with the tag that turns them upright again."""
    image = Image.fromarray(pixels)
    stored = image.transpose(Image.Transpose.ROTATE_90)  # what the camera wrote
    exif = stored.getexif()
    exif[0x0112] = tag
    stored.save(path, exif=exif.tobytes())
    return str(path)


def pixels(seed=0, size=(24, 40)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


@pytest.mark.parametrize("is_train", [False, True])
def test_the_setting_turns_tagged_images_upright_in_both_transforms(tmp_path, is_train):
    upright = Image.fromarray(pixels())
    tagged = Image.open(save_tagged(tmp_path / "tagged.png", pixels())).convert("RGB")
    assert tagged.size == (24, 40)  # stored on its side

    def transformed(image, exif):
        keys = {"INPUT.EXIF_TRANSPOSE": exif, "INPUT.TRANSFORMS": ("normalize",)}
        return build_transform(data_cfg(tmp_path, keys), is_train=is_train)(image)

    assert torch.equal(transformed(tagged, True), transformed(upright, False))
    assert torch.equal(transformed(tagged, False), transformed(tagged.copy(), False))
    assert not torch.equal(transformed(tagged, False), transformed(upright, False))


def test_the_image_cache_gives_what_the_loader_reads_with_the_setting(tmp_path):
    paths = [save_tagged(tmp_path / f"{i}.png", pixels(i)) for i in range(4)]
    items = [Datum(path, i % 2, classname=f"c{i % 2}") for i, path in enumerate(paths)]
    batches = []
    for cache_mb in (0, 64):
        cfg = data_cfg(tmp_path, {"INPUT.EXIF_TRANSPOSE": True,
                                  "DATALOADER.CACHE_IMAGES_MB": cache_mb})  # fmt: skip
        torch.manual_seed(0)
        tfm = build_transform(cfg, is_train=True)
        loader = build_data_loader(cfg, items, 4, tfm, True, "SequentialSampler")
        batches.append(next(iter(loader))["img"])
    assert torch.equal(batches[0], batches[1])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("exif")
    workspace = make_workspace(root, CLASSES)
    out = root / "run"
    assert train.cli(train_argv(workspace, out, "CoOp", overrides=("OPTIM.MAX_EPOCH", "1"))) == 0
    return workspace, out


def test_prediction_says_which_tags_it_ignores_and_applies_them_when_asked(trained_run, tmp_path):
    workspace, out = trained_run
    source = os.path.join(workspace["data"], "ant", "ant_0.png")
    upright = np.asarray(Image.open(source).convert("RGB"))
    tagged = save_tagged(tmp_path / "ant_on_its_side.jpg", upright)
    Image.fromarray(upright).save(tmp_path / "ant_upright.jpg", quality=95)

    as_trained = load_classifier(str(out))
    with pytest.warns(IgnoredOrientation, match=r"1 image\(s\) carry an EXIF orientation tag"):
        predictions, _ = as_trained.predict_files([tagged, source])
    assert predictions.ignored_orientation == [tagged]
    with pytest.warns(IgnoredOrientation, match="image 0"):
        assert as_trained.predict(Image.open(tagged)).ignored_orientation == ["image 0"]

    turned = load_classifier(str(out), opts=["INPUT.EXIF_TRANSPOSE", "True"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", IgnoredOrientation)
        predictions, _ = turned.predict_files([tagged, str(tmp_path / "ant_upright.jpg")])
    assert predictions.ignored_orientation == []
    torch.testing.assert_close(predictions.probs[0], predictions.probs[1], atol=0.02, rtol=0)


@pytest.mark.slow  # a subprocess
def test_predict_py_notes_the_ignored_tags_on_stderr(trained_run, tmp_path):
    workspace, out = trained_run
    source = os.path.join(workspace["data"], "bee", "bee_0.png")
    tagged = save_tagged(tmp_path / "bee.png", np.asarray(Image.open(source).convert("RGB")))
    done = subprocess.run([sys.executable, "predict.py", "--model-dir", str(out), tagged],
                          cwd=REPO, capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Note: 1 image(s) carry an EXIF orientation tag that this run does not apply " in (
        done.stderr
    )
    assert f"possibly on their side: {tagged}. To turn them upright" in done.stderr
    assert "UserWarning" not in done.stderr
