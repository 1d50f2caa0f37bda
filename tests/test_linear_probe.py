"""Linear-probe CLIP (``--trainer LinearProbe``): lpclip's search of C (by val, as the original
does it, deterministic), its settings' errors, and runs on a small Toy with the tiny CLIP:
exactly reproducible, evaluated again from the run directory, on a subset of its classes, under
the Dassl engine, and refused on other classes."""

import importlib.util
import json
import math
import os
import types

import numpy as np
import pytest
import torch

import train
from engine.config import get_cfg_default
from scripts import parse_results
from scripts.naming import base2new_dir
from scripts.plan import Planner
from scripts.results import summarize
from scripts.spec import Spec
from tests.run_fixtures import REPO
from tests.test_results_parse import row_of, write_ours
from trainers import logistic_search
from trainers.linear_probe import LinearProbe
from trainers.logistic_search import search

SMALL_TOY = ["DATASET.TOY.TRAIN_PER_CLASS", "8", "DATASET.TOY.VAL_PER_CLASS", "2",
             "DATASET.TOY.TEST_PER_CLASS", "6", "DATASET.NUM_SHOTS", "4",
             "TEST.ZEROSHOT_BASELINE", "False"]  # fmt: skip
GRID = [1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6]


def blobs(n_classes, per_class, seed, dim=8):
    """Gaussian clusters around class centres: ``(features, labels)``."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, dim)) * 2
    labels = np.repeat(np.arange(n_classes), per_class)
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def test_search_follows_lpclip_and_picks_by_val(monkeypatch):
    """The grid, then the interval rounds around its best: a val accuracy peaked at C = 0.3
    (a stand-in for the classifier's) leads the search there; each C is fitted once."""
    target = math.log10(0.3)
    monkeypatch.setattr(
        logistic_search, "accuracy", lambda clf, f, y: -abs(math.log10(clf.C) - target)
    )
    train_set, val_set = blobs(3, 4, seed=0), blobs(3, 2, seed=1)
    result = search(train_set, val_set, GRID, steps=8, max_iter=100)
    cs = [trial.c for trial in result.trials]
    assert cs[:7] == GRID and cs[7:9] == [0.1, 10.0]  # the interval [C/10, 10 C] around 1
    assert len(cs) == len(set(cs))
    assert abs(math.log10(result.c) - target) < 0.02
    assert result.val_accuracy == max(t.val_accuracy for t in result.trials)
    assert result.weight.shape == (3, 8) and result.bias.shape == (3,)


def test_ties_keep_the_first_of_the_grid_and_the_lower_end(monkeypatch):
    monkeypatch.setattr(logistic_search, "accuracy", lambda clf, f, y: 50.0)
    result = search(blobs(3, 4, 0), blobs(3, 2, 1), GRID, steps=3, max_iter=100)
    # 1e6 first, then [1e5, 1e7] keeps 1e5, the interval halving towards it each round
    assert result.c == pytest.approx(1e5)
    assert [t.c for t in result.trials][7] == pytest.approx(1e5)


@pytest.mark.parametrize("n_classes", [2, 5])
def test_search_is_deterministic_and_its_rows_predict_as_sklearn(n_classes):
    train_set, val_set = blobs(n_classes, 6, seed=2), blobs(n_classes, 3, seed=3)
    first = search(train_set, val_set, GRID, steps=2, max_iter=1000)
    second = search(train_set, val_set, GRID, steps=2, max_iter=1000)
    assert first.c == second.c and first.trials == second.trials
    assert np.array_equal(first.weight, second.weight) and np.array_equal(first.bias, second.bias)
    classifier = logistic_search.fit_logistic(*train_set, first.c, 1000)
    features = blobs(n_classes, 20, seed=4)[0]
    rows = (features @ first.weight.T + first.bias).argmax(1)
    assert first.weight.shape[0] == n_classes
    assert np.array_equal(rows, classifier.predict(features))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("C_GRID", (), "must be a non-empty list of positive numbers"),
        ("C_GRID", (1.0, -1.0), "must be a non-empty list of positive numbers"),
        ("C_GRID", ("1e6",), "must be a non-empty list of positive numbers"),
        ("SEARCH_STEPS", -1, "must be an integer >= 0, got -1"),
        ("MAX_ITER", 0, "must be an integer >= 1, got 0"),
    ],
)
def test_bad_settings_name_their_key(key, value, message):
    cfg = get_cfg_default()
    cfg.TRAINER.LINEAR_PROBE[key] = value
    with pytest.raises(ValueError, match=f"TRAINER.LINEAR_PROBE.{key} {message}"):
        LinearProbe(cfg)


def test_bad_key_on_the_command_line_exits_2_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    code = train.cli([*toy_argv(tmp_path / "data", out), "TRAINER.LINEAR_PROBE.MAX_ITER", "0"])
    assert code == 2
    assert "TRAINER.LINEAR_PROBE.MAX_ITER must be an integer >= 1, got 0" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "data").exists()


def test_sweeps_test_the_probe_on_its_own_classes_only(tmp_path):
    """Base-to-new: trained and tested on the base classes, no new-class step; cross-dataset:
    ImageNet's variants only (the same classes, or a subset)."""
    spec = Spec(protocol="base2new", root=str(tmp_path), output=str(tmp_path / "out"),
                trainers=["LinearProbe"], datasets=["toy"], configs=["tiny"])  # fmt: skip
    job = Planner(spec).base2new("LinearProbe", "toy", spec.configs_for("LinearProbe", 16)[0],
                                 16, 1)  # fmt: skip
    assert [os.path.basename(os.path.dirname(s.out_dir)) for s in job.steps] == ["lpclip_steps8"]
    assert "train_base" in job.steps[0].out_dir


def toy_argv(root, out, *opts, flags=(), engine="builtin", seed=1):
    config = os.path.join(REPO, "configs", "trainers", "LinearProbe", "tiny.yaml")
    argv = ["--root", root, "--trainer", "LinearProbe", "--seed", seed,
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "toy.yaml"),
            "--config-file", config, "--output-dir", str(out), "--engine", engine, *flags,
            "MODEL.BACKBONE.NAME", os.path.join(REPO, "assets", "tiny_clip", "tiny_clip_vit.pt"),
            *SMALL_TOY, *opts]  # fmt: skip
    return [str(arg) for arg in argv]


def results(out):
    record = json.loads((out / "results.json").read_text())
    return {k: v for k, v in record.items() if k not in ("config_digest", "engine")}


def head(out):
    ckpt = torch.load(out / "linear_head" / "model.pth.tar-1", weights_only=False)
    return ckpt["state_dict"]


@pytest.fixture(scope="module")
def toy_runs(tmp_path_factory):
    """The same run twice, and a third on the base classes (seed 1, tiny CLIP, small Toy)."""
    tmp = tmp_path_factory.mktemp("linear_probe")
    runs = {name: tmp / name for name in ("first", "second", "base")}
    for name, out in runs.items():
        opts = ("DATASET.SUBSAMPLE_CLASSES", "base") if name == "base" else ()
        assert train.cli(toy_argv(tmp / "data", out, *opts)) in (0, None)
    return tmp, runs


@pytest.mark.slow
def test_toy_run_is_exactly_reproducible(toy_runs):
    _, runs = toy_runs
    first, second = results(runs["first"]), results(runs["second"])
    assert first == second and first["trainer"] == "LinearProbe"
    assert first["accuracy"] > 50 and first["linear_probe_c"] > 0  # zero-shot: about 38%
    a, b = head(runs["first"]), head(runs["second"])
    assert a.keys() == b.keys() == {"weight", "bias", "class_keys"}
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = (runs["first"] / "log.txt").read_text()
    assert "Chosen C" in log and "val accuracy" in log


@pytest.mark.slow
def test_eval_only_reloads_the_head_and_subsets_use_their_rows(toy_runs):
    tmp, runs = toy_runs
    again = tmp / "eval_all"
    argv = toy_argv(tmp / "data", again, flags=("--eval-only", "--model-dir", runs["first"]))
    assert train.cli(argv) in (0, None)
    assert results(again)["accuracy"] == results(runs["first"])["accuracy"]
    # the base classes are a subset of all: their rows classify them
    base = tmp / "eval_base"
    flags = ("--eval-only", "--model-dir", runs["first"])
    argv = toy_argv(tmp / "data", base, "DATASET.SUBSAMPLE_CLASSES", "base", flags=flags)
    assert train.cli(argv) in (0, None)
    assert results(base)["total"] < results(again)["total"]


@pytest.mark.slow
@pytest.mark.parametrize("classes", ["new", "all"])
def test_classes_it_was_not_fitted_on_are_refused_before_any_work(toy_runs, capsys, classes):
    """A probe fitted on the base classes, evaluated on the new ones or on all: exit status 2
    before CLIP loads or the output directory is made."""
    tmp, runs = toy_runs
    out = tmp / f"refused_{classes}"
    flags = ("--eval-only", "--model-dir", runs["base"])
    argv = toy_argv(tmp / "data", out, "DATASET.SUBSAMPLE_CLASSES", classes, flags=flags)
    assert train.cli(argv) == 2
    printed = capsys.readouterr()
    assert (
        f"was fitted on the base classes of Toy (DATASET.SUBSAMPLE_CLASSES base, its "
        f"config.yaml), and this evaluation takes {classes} of its classes" in printed.err
    )
    assert "LinearProbe classifies only the classes it was fitted on" in printed.err
    assert "Loading CLIP" not in printed.out and not out.exists()


def test_another_datasets_classes_are_refused_when_the_head_loads():
    """Classes of another dataset can be a subset of the run's (ImageNet's variants): they are
    checked against the head's rows when it loads."""
    probe = LinearProbe(get_cfg_default())
    model = types.SimpleNamespace(class_keys=torch.tensor([7, 8]), classnames=["cat", "dog"])
    saved = {
        "class_keys": torch.tensor([1, 2]),
        "weight": torch.zeros(2, 3),
        "bias": torch.zeros(2),
    }
    with pytest.raises(ValueError, match="2 of this run's 2 classes have no weights in it .*"
                       "LinearProbe classifies only the classes it was fitted on"):  # fmt: skip
        probe.adapt_loaded_state("linear_head", model, saved)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("dassl") is None, reason="Dassl is not installed")
def test_dassl_engine_gives_the_same_probe(toy_runs):
    tmp, runs = toy_runs
    out = tmp / "dassl"
    assert train.cli(toy_argv(tmp / "data", out, engine="dassl")) in (0, None)
    dassl, builtin = results(out), results(runs["first"])
    same = ("accuracy", "total", "correct", "linear_probe_c", "linear_probe_val_accuracy")
    assert {k: dassl[k] for k in same} == {k: builtin[k] for k in same}
    a, b = head(out), head(runs["first"])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_base_to_new_table_gives_the_probe_its_base_accuracy_only(tmp_path):
    out = str(tmp_path / "output")
    for seed, (base, new) in enumerate([(80, 50), (82, 54)], start=1):
        for stage, accuracy in (("train_base", base), ("test_new", new)):
            path = base2new_dir(out, stage, "dtd", "CoOp", "vit_b16", 16, "nctx16", seed)
            write_ours(path, accuracy)
        write_ours(base2new_dir(out, "train_base", "dtd", "LinearProbe", "vit_b16", 16,
                                "lpclip_steps8", seed), base + 5)  # fmt: skip
    summary = summarize(parse_results.collect([out]))
    assert summary.incomplete == []
    probe = row_of(summary, trainer="LinearProbe")
    assert (probe["base"], probe["n_seeds"]) == (86, 2) and "new" not in probe
    assert row_of(summary, trainer="CoOp")["new"] == 52
    report = parse_results.format_report(summary)
    assert "LinearProbe" in report and "86.00 ± 1.00 | —" in report
