"""Using a trained run, as a new user would after the main job: DPT trained on a small Toy
with the shipped tiny CLIP by train.py, then predict.py, the Python API, CAVPT attention
maps, the learned prompt in words and the confusion matrix."""

import builtins
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

import predict
import train
from datasets import toy
from engine.cli import exit_status
from engine.config import cfg_digest
from engine.confusion import confusion_matrix
from engine.run_inputs import read_run_inputs
from inference import load_classifier
from inference.attention import cavpt_attention, shape_attention_share
from inference.classifier import read_classnames_file
from tests.data_fixtures import write_corrupt_image, write_truncated_image
from tests.forked_train import fill_disk_at
from tests.run_fixtures import REPO
from tools import attention_maps, interpret_prompt

pytestmark = pytest.mark.slow  # trains runs (and starts processes)

SMALL_TOY = ["DATASET.TOY.TRAIN_PER_CLASS", "8", "DATASET.TOY.VAL_PER_CLASS", "1",
             "DATASET.TOY.TEST_PER_CLASS", "10"]  # fmt: skip
# The main job's configs with 8 shots and 10 epochs instead of 16 and 40 (70 steps).
TRAIN_OPTS = ["DATASET.NUM_SHOTS", "8", "OPTIM.MAX_EPOCH", "10", "PRETRAIN.C", "5"]


def toy_flags(root, trainer="DPT", config="DPT/tiny.yaml"):
    return ["--trainer", trainer, "--dataset-config-file", "configs/datasets/toy.yaml",
            "--config-file", f"configs/trainers/{config}", "--root", str(root)]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def in_repo_root():
    """The configs name the tiny CLIP by a path relative to the repository root."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        yield


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("toy_run")
    run = tmp / "run"
    argv = [*toy_flags(tmp / "data"), "--output-dir", str(run), *SMALL_TOY, *TRAIN_OPTS,
            "TEST.PER_CLASS_RESULT", "True"]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "train.py", *argv], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    dataset = tmp / "data" / "toy"
    test = json.loads((dataset / "split_toy.json").read_text())["test"]
    return SimpleNamespace(
        tmp=tmp,
        root=tmp / "data",
        run=run,
        stdout=result.stdout,
        results=json.loads((run / "results.json").read_text()),
        test_paths=[str(dataset / relpath) for relpath, _, _ in test],
        test_labels=[label for _, label, _ in test],
        settings=json.loads((dataset / "toy.json").read_text()),
    )


def first_test_image(toy_run, folder):
    return next(p for p in toy_run.test_paths if f"/{folder}/test_0000.png" in p)


@pytest.fixture(scope="module")
def classifier(toy_run):
    return load_classifier(str(toy_run.run))


def test_training_saves_the_config_and_class_names_in_the_run(toy_run):
    cfg, classnames, template = read_run_inputs(str(toy_run.run))
    assert cfg_digest(cfg) == toy_run.results["config_digest"]  # the run's config, exactly
    assert classnames == [f"{c} {o}" for c, o in toy.ordered_classes()]
    assert template == "a photo of a {}."


def test_final_test_writes_the_confusion_matrix_and_per_class_accuracies(toy_run):
    path = toy_run.run / "confusion_matrix.png"
    assert f"Confusion matrix and per-class accuracies: {path}" in toy_run.stdout
    with Image.open(path) as image:
        assert min(image.size) >= 600
        pixels = np.asarray(image.convert("L"), float)
    assert pixels.std() > 20 and (pixels < 100).mean() > 0.005  # a dark diagonal, text
    per_class = toy_run.results["per_class"]
    assert len(per_class) == 30 and per_class["red circle"]["total"] == 10


def test_predict_gives_the_predictions_that_eval_only_scores(toy_run, tmp_path):
    evaluated = train.main([*toy_flags(toy_run.root), "--eval-only", "--model-dir",
                            str(toy_run.run), "--output-dir", str(tmp_path / "eval"),
                            *SMALL_TOY, "TEST.COMPUTE_CMAT", "True"])  # fmt: skip
    listing = tmp_path / "test_images.txt"
    listing.write_text("\n".join(toy_run.test_paths) + "\n")
    out = tmp_path / "predictions.csv"
    result = subprocess.run(
        [sys.executable, "predict.py", "--model-dir", str(toy_run.run), str(listing),
         "--topk", "3", "--out", str(out)],  # fmt: skip
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 300
    assert re.fullmatch(r".*red_circle/test_0000\.png  (\S+ \S+ \d+\.\d%( \| )?){3}", lines[0])
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["path", "class_1", "prob_1", "class_2", "prob_2", "class_3",
                             "prob_3"]  # fmt: skip
    names = {name: label for label, name in enumerate(read_run_inputs(str(toy_run.run))[1])}
    predicted = [names[row["class_1"]] for row in rows]
    assert [row["path"] for row in rows] == toy_run.test_paths
    cmat = confusion_matrix(toy_run.test_labels, predicted, 30)
    assert cmat.tolist() == evaluated["confusion_matrix"]
    assert evaluated["accuracy"] == toy_run.results["accuracy"]


def test_api_takes_paths_pil_images_and_tensor_batches_alike(toy_run, classifier):
    paths = toy_run.test_paths[:2]
    from_paths = classifier.predict(paths)
    images = [Image.open(p) for p in paths]
    from_pil = classifier.predict(images)
    batch = torch.stack([classifier.transform(image.convert("RGB")) for image in images])
    from_tensor = classifier.predict(batch)
    for other in (from_pil, from_tensor):
        torch.testing.assert_close(other.probs, from_paths.probs, rtol=0, atol=0)
    assert from_paths.probs.shape == (2, 30)
    torch.testing.assert_close(from_paths.probs.sum(1), torch.ones(2))
    assert from_paths.names == [name for name, _ in (row[0] for row in from_paths.top(1))]
    one = classifier.predict(paths[0])  # a single image
    torch.testing.assert_close(one.probs, from_paths.probs[:1])


def test_unreadable_images_are_named_skipped_and_change_the_exit_code(toy_run, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(toy_run.test_paths[0], folder / "good.png")
    write_corrupt_image(str(folder / "corrupt.png"))
    write_truncated_image(str(folder / "sub" / "truncated.png"))
    (folder / "notes.txt").write_text("not an image, not listed: a folder's .txt is ignored")
    out = tmp_path / "predictions.json"
    assert predict.main(["--model-dir", str(toy_run.run), str(folder), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0].startswith(f"{folder / 'good.png'}  red circle")
    assert f"skipped unreadable image {folder / 'corrupt.png'} (UnidentifiedImageError" in (
        captured.err
    )
    assert "2 of 3 images could not be read" in captured.err
    saved = json.loads(out.read_text())
    assert [p["path"] for p in saved["predictions"]] == [str(folder / "good.png")]
    assert len(saved["predictions"][0]["top"]) == 5
    unreadable = [str(folder / "corrupt.png"), str(folder / "sub" / "truncated.png")]
    assert sorted(u["path"] for u in saved["unreadable"]) == unreadable
    assert len(saved["classnames"]) == 30


@pytest.mark.parametrize(
    "args, error, message",
    [
        (["nope.png"], FileNotFoundError, "No such image, folder or list: nope.png"),
        (["IMG", "--topk", "0"], ValueError, "--topk must be >= 1, got 0"),
        (["IMG", "--out", "p.txt"], ValueError, "--out 'p.txt' must end in .csv or .json"),
        (
            ["IMG", "--classnames", "none.txt"],
            FileNotFoundError,
            "--classnames file 'none.txt' does not exist",
        ),
        (["IMG", "--root", "data"], ValueError, "--root is read only with --trainer"),
        (
            ["IMG", "--opts", "TEST.SPLITT", "val"],
            KeyError,
            "Unknown config key 'TEST.SPLITT' on the command line. Did you mean 'TEST.SPLIT'",
        ),
    ],
)
def test_bad_arguments_are_errors_that_say_what_to_fix(toy_run, args, error, message):
    args = [toy_run.test_paths[0] if a == "IMG" else a for a in args]
    with pytest.raises(error, match=re.escape(message)):
        predict.main(["--model-dir", str(toy_run.run), *args])


def test_a_run_saved_without_its_config_needs_the_training_flags(toy_run, tmp_path, capsys):
    old = tmp_path / "old_run"
    shutil.copytree(toy_run.run, old)
    for name in ("config.yaml", "classnames.json"):
        os.remove(old / name)
    result = subprocess.run(
        [sys.executable, "predict.py", "--model-dir", str(old), toy_run.test_paths[0]],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2
    assert f"error: '{old}' has no config.yaml and no classnames.json" in result.stderr
    for flag in ("--trainer", "--config-file", "--dataset-config-file", "--root", "--opts"):
        assert flag in result.stderr
    images = toy_run.test_paths[:40:4]
    assert predict.main(["--model-dir", str(toy_run.run), *images]) == 0
    expected = capsys.readouterr().out
    rebuilt = ["--model-dir", str(old), *images, *toy_flags(toy_run.root), "--opts", *SMALL_TOY,
               *TRAIN_OPTS]  # fmt: skip
    assert predict.main(rebuilt) == 0
    assert capsys.readouterr().out == expected


def test_other_class_names_give_an_open_vocabulary_classifier(toy_run, tmp_path):
    names = tmp_path / "names.txt"
    names.write_text("blue star\n\nred circle\ngreen heart\n")
    with pytest.warns(UserWarning, match="more than the 3 classes: using K = 3"):
        clf = load_classifier(str(toy_run.run), classnames=read_classnames_file(str(names)))
    predictions = clf.predict([first_test_image(toy_run, "red_circle"),
                               first_test_image(toy_run, "blue_star")])  # fmt: skip
    assert predictions.classnames == ["blue star", "red circle", "green heart"]
    assert predictions.names == ["red circle", "blue star"]
    torch.testing.assert_close(predictions.probs.sum(1), torch.ones(2))


def test_attention_maps_are_pngs_of_each_class_query(toy_run, tmp_path, capsys):
    images = [first_test_image(toy_run, "red_circle"), first_test_image(toy_run, "blue_star")]
    out = tmp_path / "maps"
    assert attention_maps.main(["--model-dir", str(toy_run.run), *images, "--out", str(out)]) == 0
    written = capsys.readouterr().out.split()
    assert written == [
        str(out / "red_circle__test_0000.png"),
        str(out / "blue_star__test_0000.png"),
    ]
    for path in written:
        with Image.open(path) as image:
            width, height = image.size
            rgb = np.asarray(image.convert("RGB"), float)
        assert width >= 1000 and height >= 350  # 1 + 5 panels across, 2 rows (K = 10)
        # The heatmaps: strong colours over much of the figure, from both ends of the colour
        # map (blue where the attention is low, red to yellow where it is high).
        red, blue = rgb[..., 0], rgb[..., 2]
        assert (rgb.max(-1) - rgb.min(-1) > 60).mean() > 0.3
        assert (red > blue + 60).mean() > 0.03 and (blue > red + 60).mean() > 0.03


def test_attention_of_the_true_class_falls_on_the_drawn_shape(toy_run, classifier):
    """CAVPT's query of the true class puts more of its patch attention on the patches that
    the shape covers than their share of the image, on average over the test images.
    Measured: trained as here, 1.58, 1.80 and 1.71 times the area share with seeds 1, 2 and
    3; the CAVPT blocks at their random initialisation, 1.10; the main job's run on its 3,000
    test images, 1.72 (1.07 at initialisation)."""
    images, masks = [], []
    for path, label in zip(toy_run.test_paths, toy_run.test_labels):
        index = int(re.search(r"test_(\d+)\.png$", path).group(1))
        image, mask = toy.render_image_and_mask(toy_run.settings, label, "test", index)
        images.append(classifier.transform(image))
        masks.append(torch.from_numpy(mask))
    attention = cavpt_attention(classifier, torch.stack(images))
    labels = torch.tensor(toy_run.test_labels)
    selected = attention.classes == labels[:, None]  # [B, K]: the true class's query
    has = selected.any(1)
    assert has.float().mean() > 0.9  # zero-shot CLIP's top 10 nearly always hold it
    slot = selected.float().argmax(1)[has]
    true_query = attention.patches[0, has][torch.arange(len(slot)), slot]  # [n, g, g]
    on_shape, area = shape_attention_share(true_query, torch.stack(masks)[has])
    assert on_shape.mean() > 1.3 * area.mean()
    assert (on_shape > area).float().mean() > 0.5  # and so on most images


def test_the_learned_prompt_in_words(toy_run, capsys):
    assert interpret_prompt.main([str(toy_run.run), "--topk", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == (f"{toy_run.run} (DPT, epoch 10): 4 context vectors of width 64, "
                        "shared by all classes")  # fmt: skip
    rows = [re.findall(r"'([^']*)' (\d+\.\d+)", line) for line in lines[1:5]]
    assert [line.split(":")[0] for line in lines[1:5]] == [f"  context {i}" for i in (1, 2, 3, 4)]
    for row in rows:
        distances = [float(d) for _, d in row]
        assert len(row) == 3 and distances == sorted(distances)
    # Initialised from "a photo of a" and trained a little: still next to those words.
    assert [row[0][0] for row in rows[:3]] == ["a", "photo", "of"]
    assert lines[5].startswith("  nearest words in order: a photo of ")


def test_zero_shot_run_directories_predict_and_explain_what_they_lack(toy_run, tmp_path):
    run = tmp_path / "zeroshot"
    results = train.main([*toy_flags(toy_run.root, "ZeroshotCLIP", "CoOp/tiny.yaml"),
                          "--eval-only", "--output-dir", str(run), *SMALL_TOY])  # fmt: skip
    clf = load_classifier(str(run))
    predicted = clf.predict_files(toy_run.test_paths)[0].probs.argmax(1)
    correct = (predicted == torch.tensor(toy_run.test_labels)).sum().item()
    assert correct == results["correct"]
    with pytest.raises(
        ValueError,
        match="Attention maps need a run that learns class-aware visual "
        r"prompts \(CAVPT, as DPT\); this run was trained with ZeroshotCLIP",
    ):
        attention_maps.main(["--model-dir", str(run), toy_run.test_paths[0], "--out", "x"])
    with pytest.raises(
        ValueError,
        match="Prompt interpretations need a run that learns a text "
        "context; this run was trained with ZeroshotCLIP, which learns none",
    ):
        interpret_prompt.main([str(run)])


@pytest.mark.parametrize("tool", ["predict", "attention_maps"])
def test_a_full_disk_at_the_output_is_a_message_and_leaves_no_part(
    toy_run, tmp_path, monkeypatch, capsys, tool
):
    """predict.py's --out and an attention map on a full disk: exit status 2 naming the
    file, no traceback, nothing half-written."""
    images = toy_run.test_paths[:2]
    folder = tmp_path / "out"
    folder.mkdir()
    if tool == "predict":
        name, argv = "predictions.json", ["--out", str(folder / "predictions.json")]
        main, what = predict.main, f"the predictions '{folder / name}'"
    else:
        name = attention_maps.output_names(images)[os.path.abspath(images[0])]
        argv = ["--out", str(folder)]
        main, what = attention_maps.main, f"the attention map '{folder / name}'"
    monkeypatch.setattr(builtins, "open", builtins.open)  # both put back after the test
    monkeypatch.setattr(os, "fdopen", os.fdopen)
    fill_disk_at(str(folder), name)
    assert exit_status(lambda: main(["--model-dir", str(toy_run.run), *images, *argv])) == 2
    err = capsys.readouterr().err
    assert f"error: Could not save {what} ([Errno 28] No space left on device: " in err
    assert "Traceback" not in err
    assert os.listdir(folder) == []
