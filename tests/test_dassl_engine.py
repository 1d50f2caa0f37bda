"""``--engine dassl``: our methods and datasets inside a real Dassl install.

Most tests need Dassl (github KaiyangZhou/Dassl.pytorch) and skip without it, with the reason;
the error for a missing Dassl is tested everywhere.
"""

import importlib.util
import json
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
from tests.data_fixtures import PALETTE, write_image
from tests.run_fixtures import REPO

HAVE_DASSL = importlib.util.find_spec("dassl") is not None
needs_dassl = pytest.mark.skipif(not HAVE_DASSL, reason="Dassl is not installed (see README)")
TINY_CLIP = os.path.join(REPO, "assets", "tiny_clip", "tiny_clip_vit.pt")
SMALL_TOY = ("DATASET.TOY.TRAIN_PER_CLASS", "4", "DATASET.TOY.VAL_PER_CLASS", "1",
             "DATASET.TOY.TEST_PER_CLASS", "2")  # fmt: skip
FAST = ("OPTIM.MAX_EPOCH", "2", "DATALOADER.TRAIN_X.BATCH_SIZE", "8", "PRETRAIN.C", "1",
        "TEST.ZEROSHOT_BASELINE", "False", "DATASET.NUM_SHOTS", "2")  # fmt: skip


def toy_argv(root, out, trainer, engine, *flags, opts=(), config=None):
    """train.py's arguments for ``trainer`` on a small Toy with ``<config>/tiny.yaml``
    (default: the trainer's own)."""
    config = os.path.join(REPO, "configs", "trainers", config or trainer, "tiny.yaml")
    return ["--engine", engine, "--root", str(root), "--trainer", trainer,
            "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "toy.yaml"),
            "--config-file", config, "--output-dir", str(out), "--seed", "1", *flags,
            "MODEL.BACKBONE.NAME", TINY_CLIP, *SMALL_TOY, *FAST, *opts]  # fmt: skip


def results(run_dir):
    with open(os.path.join(run_dir, "results.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_engine_dassl_without_dassl_says_how_to_install(tmp_path):
    argv = toy_argv(tmp_path / "data", tmp_path / "out", "DPT", "dassl")
    code = (
        "import runpy, sys\n"
        "sys.modules['dassl'] = None  # as if Dassl were not installed\n"
        f"sys.argv = ['train.py'] + {argv!r}\n"
        "runpy.run_path('train.py', run_name='__main__')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert "--engine dassl needs Dassl, which is not installed" in result.stderr
    assert "pip install --no-build-isolation -e ." in result.stderr
    assert "tested with commit c61a1b5" in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()  # no work


@needs_dassl
def test_a_dassl_without_what_we_use_is_named(monkeypatch):
    import dassl.engine

    import dassl_engine

    monkeypatch.delattr(dassl.engine, "TrainerX")
    with pytest.raises(dassl_engine.DasslUnavailable, match=r"lacks dassl\.engine\.TrainerX"):
        dassl_engine.check_dassl()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """DPT on a small Toy under each engine, same seed and data."""
    root = tmp_path_factory.mktemp("dassl")
    out = {engine: root / engine for engine in ("builtin", "dassl")}
    for engine, run_dir in out.items():
        train.main(toy_argv(root / "data", run_dir, "DPT", engine))
    return {"root": root, **out}


@pytest.mark.slow
@needs_dassl
def test_dassl_run_writes_our_run_directory_with_dassl_log_lines(runs):
    record = results(runs["dassl"])
    assert record["engine"] == "dassl" and record["trainer"] == "DPT" and record["epoch"] == 2
    assert record["split"] == "test" and 0 <= record["accuracy"] <= 100
    log = (runs["dassl"] / "log.txt").read_text()
    assert "Loading trainer: DPT" in log and "Loading dataset: Toy" in log  # Dassl's builders
    assert "epoch [2/2] batch [" in log and "* accuracy:" in log
    for module in ("visual_prompt", "cavpt", "prompt_learner"):
        ckpt = torch.load(runs["dassl"] / module / "model.pth.tar-2", weights_only=False)
        assert ckpt["epoch"] == 2 and ckpt["optimizer"] is not None


@pytest.mark.slow
@needs_dassl
def test_fewshot_subsets_come_from_dassl_and_are_cached_as_coop_caches_them(runs):
    cache = runs["root"] / "data" / "toy" / "split_fewshot"
    with open(cache / "shot_2-seed_1.pkl", "rb") as f:
        dassl_draw = pickle.load(f)
    from dassl.data.datasets import Datum

    assert all(isinstance(item, Datum) for item in dassl_draw["train"])
    with open(cache / "shot_2-seed_1.json") as f:
        builtin_draw = json.load(f)  # the builtin engine's cache of the same draw
    dassl_paths = [os.path.basename(item.impath) for item in dassl_draw["train"]]
    assert dassl_paths == [os.path.basename(path) for path, _, _ in builtin_draw["train"]]


@pytest.mark.slow
@needs_dassl
def test_a_run_of_one_engine_evaluates_under_the_other_to_the_same_accuracy(runs, tmp_path):
    for trained, evaluator in (("dassl", "builtin"), ("builtin", "dassl")):
        out = tmp_path / f"{trained}-by-{evaluator}"
        flags = ("--eval-only", "--model-dir", str(runs[trained]))
        train.main(toy_argv(runs["root"] / "data", out, "DPT", evaluator, *flags))
        assert results(out)["accuracy"] == results(runs[trained])["accuracy"]
        assert results(out)["total"] == results(runs[trained])["total"] == 60


@pytest.mark.slow
@needs_dassl
def test_zero_shot_clip_evaluates_under_dassl(tmp_path):
    for engine in ("dassl", "builtin"):
        out = tmp_path / f"zs_{engine}"
        train.main(toy_argv(tmp_path / "data", out, "ZeroshotCLIP", engine, "--eval-only",
                            config="CoOp"))  # fmt: skip
    assert (
        results(tmp_path / "zs_dassl")["accuracy"] == results(tmp_path / "zs_builtin")["accuracy"]
    )


@pytest.mark.slow
@needs_dassl
def test_the_zero_shot_baseline_is_evaluated_once_for_both_engines(tmp_path, capsys):
    """A run under either engine, and a ZeroshotCLIP run, reuse the stored baseline of another
    run (the same CLIP, data and settings), as a sweep's runs share it; the accuracy is the
    evaluated one."""
    cache = tmp_path / "zeroshot_cache"
    opts = ("TEST.ZEROSHOT_BASELINE", "True", "TEST.ZEROSHOT_CACHE", str(cache))
    first = tmp_path / "dassl_seed1"
    train.main(toy_argv(tmp_path / "data", first, "CoOp", "dassl", opts=opts))
    assert len(list(cache.iterdir())) == 1
    for engine in ("dassl", "builtin"):
        capsys.readouterr()
        out = tmp_path / f"{engine}_seed2"
        train.main(toy_argv(tmp_path / "data", out, "CoOp", engine, opts=opts))
        printed = capsys.readouterr().out
        assert f"Reusing the evaluation made by the run in {first} " in printed
        assert results(out)["zeroshot_accuracy"] == results(first)["zeroshot_accuracy"]
        assert results(out).get("engine", "builtin") == engine  # only Dassl runs say so
    out = tmp_path / "zeroshot_clip"  # the method itself, the same evaluation as the baseline
    train.main(toy_argv(tmp_path / "data", out, "ZeroshotCLIP", "dassl", "--eval-only",
                        config="CoOp", opts=opts))  # fmt: skip
    assert f"Reusing the evaluation made by the run in {first} " in capsys.readouterr().out
    assert results(out)["accuracy"] == results(first)["zeroshot_accuracy"]
    assert len(list(cache.iterdir())) == 1


@needs_dassl
def test_both_engines_know_the_same_keys():
    """Our copy of Dassl's defaults is Dassl's (less its own trainers' blocks), and every key
    this project adds exists under both engines, so a flag or config file means the same."""
    from dassl.config import get_cfg_default as dassl_cfg_default

    from engine.config import _dassl_defaults, flat_cfg, get_cfg_default

    dassl_keys = {key for key in flat_cfg(dassl_cfg_default()) if key.startswith("TRAINER.")}
    ours = set(flat_cfg(get_cfg_default()))
    on_dassl = set(flat_cfg(get_cfg_default(dassl_cfg_default)))
    assert on_dassl - ours == {key for key in dassl_keys if key not in ours}
    assert ours <= on_dassl
    assert set(flat_cfg(_dassl_defaults())) <= set(flat_cfg(dassl_cfg_default()))


@needs_dassl
def test_registering_again_keeps_dassl_names_and_ours():
    import dassl_engine

    dassl_engine.load()
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.data.datasets.dg.pacs import PACS

    from dassl_engine.datasets import register_datasets

    register_datasets()  # a name Dassl already has is not registered twice: no clash error
    assert DATASET_REGISTRY.get("PACS") is PACS
    assert DATASET_REGISTRY.get("Toy").__mro__[1].__name__ == "DasslFewshot"


@needs_dassl
def test_unknown_names_are_listed_from_dassl_registries(tmp_path):
    argv = toy_argv(
        tmp_path / "data", tmp_path / "out", "DPT", "dassl", opts=("DATASET.NAME", "PAC")
    )
    with pytest.raises(KeyError, match=r"Unknown dataset 'PAC' in Dassl's registry. Did you mean"):
        train.main(argv)


PACS_DOMAINS = ("art_painting", "cartoon", "photo", "sketch")
PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")


def make_pacs(root, per_class=2):
    """Dassl's PACS layout: images/<domain>/<class>/*.jpg and splits/<domain>_<split>_kfold.txt
    with 1-based labels."""
    for domain in PACS_DOMAINS:
        lines = {"train": [], "crossval": []}
        for label, name in enumerate(PACS_CLASSES):
            for i in range(per_class + 1):
                rel = f"{domain}/{name}/{i}.jpg"
                write_image(os.path.join(root, "pacs", "images", rel), (36, 36), PALETTE[label % 5])
                lines["crossval" if i == per_class else "train"].append(f"{rel} {label + 1}")
        for split, rows in lines.items():
            path = os.path.join(root, "pacs", "splits", f"{domain}_{split}_kfold.txt")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write("\n".join(rows) + "\n")


@pytest.mark.slow
@needs_dassl
def test_dpt_on_dassl_pacs_trained_on_three_domains_tested_on_the_fourth(tmp_path):
    make_pacs(tmp_path / "data")
    config = os.path.join(REPO, "configs", "trainers", "DPT", "tiny.yaml")
    argv = ["--engine", "dassl", "--root", str(tmp_path / "data"), "--trainer", "DPT",
            "--source-domains", *PACS_DOMAINS[:3], "--target-domains", PACS_DOMAINS[3],
            "--config-file", config, "--output-dir", str(tmp_path / "pacs"), "--seed", "1",
            "DATASET.NAME", "PACS", "MODEL.BACKBONE.NAME", TINY_CLIP,
            "OPTIM.MAX_EPOCH", "1", "DATALOADER.TRAIN_X.BATCH_SIZE", "7",
            "TEST.ZEROSHOT_BASELINE", "False"]  # fmt: skip
    train.main(argv)
    record = results(tmp_path / "pacs")
    assert record["dataset"] == "PACS" and record["trainer"] == "DPT"
    # tested on every sketch image (train and crossval lists: Dassl's "all" split)
    log = (tmp_path / "pacs" / "log.txt").read_text()
    assert f"* total: {len(PACS_CLASSES) * 3}" in log
    assert re.search(r"Source +\['art_painting', 'cartoon', 'photo'\]", log)
    assert re.search(r"# train_x +42", log)  # 3 domains x 7 classes x 2 train images


def read_if_there(path):
    return path.read_text() if path.exists() else ""


def final_weights(run_dir, epoch=2):
    """Every module's last checkpoint of a DPT run: weights, optimiser and scheduler states."""
    return {
        module: {
            key: value
            for key, value in torch.load(
                run_dir / module / f"model.pth.tar-{epoch}", weights_only=False
            ).items()
            if key in ("state_dict", "optimizer", "scheduler", "epoch")
        }
        for module in ("visual_prompt", "cavpt", "prompt_learner")
    }


AUGMENTED = ("INPUT.TRANSFORMS", "['random_resized_crop', 'random_flip', 'normalize']",
             "OPTIM.MAX_EPOCH", "3", "TRAIN.CHECKPOINT_FREQ", "1")  # fmt: skip


@pytest.mark.slow
@needs_dassl
def test_keyed_dassl_runs_do_not_depend_on_workers_the_zero_shot_cache_or_a_resume(tmp_path):
    """Under Dassl's loaders too (RANDOMNESS keyed): 2 workers, a warm zero-shot cache and a
    SIGKILL in epoch 2 (after Dassl saved epoch 1) followed by the same command give the
    reference run's weights."""
    from tests.forked_train import ForkedRun, launch
    from tests.run_fixtures import assert_identical

    data, cache = tmp_path / "data", tmp_path / "cache"
    opts = (*AUGMENTED, "TEST.ZEROSHOT_BASELINE", "True", "TEST.ZEROSHOT_CACHE", str(cache))
    reference = tmp_path / "reference"
    assert not launch(toy_argv(data, reference, "DPT", "dassl", opts=opts), reference)
    assert "Reusing the evaluation" not in (reference / "log.txt").read_text()
    again = tmp_path / "workers_warm_killed"
    argv = toy_argv(data, again, "DPT", "dassl", opts=(*opts, "DATALOADER.NUM_WORKERS", "2"))
    run, deadline = ForkedRun(argv, again), time.monotonic() + 240
    while "epoch [2/3] batch [" not in read_if_there(again / "log.txt"):
        assert time.monotonic() < deadline, read_if_there(again / "log.txt")[-2000:]
        time.sleep(0.01)
    os.kill(run.pid, signal.SIGKILL)
    assert run.wait()
    assert not launch(argv, again)
    log = (again / "log.txt").read_text()
    assert "Reusing the evaluation" in log and "(will resume training)" in log
    assert_identical(final_weights(again, 3), final_weights(reference, 3))
    assert results(again)["accuracy"] == results(reference)["accuracy"]


@pytest.mark.slow
@needs_dassl
def test_with_randomness_global_both_engines_train_bit_identical_weights(tmp_path):
    """The documented way to show the method code is one under both engines."""
    from tests.run_fixtures import assert_identical

    opts = (*AUGMENTED, "RANDOMNESS", "global")
    runs = {}
    for engine in ("builtin", "dassl"):
        runs[engine] = tmp_path / engine
        train.main(toy_argv(tmp_path / "data", runs[engine], "DPT", engine, opts=opts))
    builtin, dassl = final_weights(runs["builtin"], 3), final_weights(runs["dassl"], 3)
    for module in builtin:  # optimisers and schedulers are each engine's own objects
        assert_identical(builtin[module]["state_dict"], dassl[module]["state_dict"], module)
        assert_identical(
            builtin[module]["optimizer"]["state"], dassl[module]["optimizer"]["state"], module
        )
    assert results(runs["builtin"])["accuracy"] == results(runs["dassl"])["accuracy"]
