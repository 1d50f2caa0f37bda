"""Every trainer trains and evaluates in every precision; optimiser groups; failure modes."""

import json
import os
import re
from ast import literal_eval

import pytest
import torch

import train
from engine.config import setup_cfg
from engine.registry import TRAINER_REGISTRY
from scripts.spec import trainer_config
from tests.run_fixtures import make_workspace, train_argv
from tests.test_dassl_engine import TINY_CLIP
from trainers import builtin

CLASSES = {name: 6 for name in ["ant", "bee", "cat", "dog", "eel", "fox"]}
# Small DPT family settings: 3 visual tokens, CAVPT in the second of 2 blocks, K = 3.
DPT_FAMILY = ("TRAINER.VPT.N_CTX", "3", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
              "TRAINER.SELECTED_COVPT.CPN", "3", "PRETRAIN.C", "1")  # fmt: skip
LEARNED = [name for name in TRAINER_REGISTRY.names() if TRAINER_REGISTRY.get(name).trains]
PRECISIONS = ["fp32", "bf16", "fp16", "amp", "amp_bf16"]
# Each method in two precisions, each precision for four methods or more, taken in turn: every
# method and every precision are covered, in about the time of four methods in all five.
PRECISION_CASES = [(name, PRECISIONS[(i + shift) % len(PRECISIONS)])
                   for i, name in enumerate(LEARNED) for shift in (0, 2)]  # fmt: skip
MODULES = {
    "CoOp": ["prompt_learner"],
    "VPT": ["visual_prompt"],
    "VLP": ["visual_prompt", "prompt_learner"],
    "DPT": ["visual_prompt", "cavpt", "prompt_learner"],
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("trainers"), CLASSES)


def argv(ws, out, trainer, *flags, overrides=()):
    return train_argv(ws, out, trainer, *flags, overrides=DPT_FAMILY + tuple(overrides))


def build_trainer(ws, out, trainer, overrides=()):
    args = train.build_parser().parse_args(argv(ws, out, trainer, overrides=overrides))
    return builtin.build_trainer(setup_cfg(args))


@pytest.mark.slow
@pytest.mark.parametrize("trainer,prec", PRECISION_CASES)
def test_trains_and_evaluates_in_every_precision(workspace, tmp_path, trainer, prec):
    """The registered methods that train, with their own tiny configs on the shipped tiny
    CLIP, in the precision that their own key asks for (``PRECISION_CASES``)."""
    method_type = TRAINER_REGISTRY.get(trainer)
    out = tmp_path / "run"
    overrides = ("MODEL.BACKBONE.NAME", TINY_CLIP, method_type.precision_key, prec,
                 "OPTIM.MAX_EPOCH", "1", "TEST.ZEROSHOT_BASELINE", "False")  # fmt: skip
    config = trainer_config(trainer, "tiny")
    results = train.main(train_argv(workspace, out, trainer, overrides=DPT_FAMILY + overrides,
                                    config=config))  # fmt: skip
    assert 0.0 <= results["accuracy"] <= 100.0 and results["total"] == 12
    log = (out / "log.txt").read_text()
    assert f"Precision: {prec} ({method_type.precision_key} {prec} " in log
    modules = literal_eval(re.search(r"Learnable parameters: [\d,]+ in (\[.*\])", log)[1])
    saved = ["log.txt", "results.json", "last_epoch.json", "config.yaml", "classnames.json"]
    if not method_type.fits_in_one_go:  # a loop of steps: its curves and losses
        saved.append("tensorboard")
        assert "loss" in log and "nan" not in log.split("Finish training")[0]
    assert modules and sorted(os.listdir(out)) == sorted(saved + modules)
    for name in modules:
        state = torch.load(out / name / "model.pth.tar-1", weights_only=False)["state_dict"]
        floats = [v for v in state.values() if v.is_floating_point()]  # not class keys
        assert floats and all(v.dtype == torch.float32 for v in floats)


@pytest.mark.parametrize("trainer", ["CoOp", "VPT", "VLP", "DPT"])
def test_one_optimiser_per_module_and_the_text_prompt_schedule(workspace, tmp_path, trainer):
    t = build_trainer(workspace, tmp_path, trainer,
                      overrides=("OPTIM.WARMUP_EPOCH", "0", "OPTIM.LR", "0.01"))  # fmt: skip
    assert list(t._optims) == MODULES[trainer]
    lrs = {name: optim.param_groups[0]["lr"] for name, optim in t._optims.items()}
    if trainer in ("VLP", "DPT"):
        # As the original: the text prompt at 0.002 after one constant warm-up epoch.
        assert lrs.pop("prompt_learner") == pytest.approx(1e-5)
    assert all(lr == pytest.approx(0.01) for lr in lrs.values())
    learnable = [p for p in t.model.parameters() if p.requires_grad]
    in_optims = [p for o in t._optims.values() for g in o.param_groups for p in g["params"]]
    assert {id(p) for p in learnable} == {id(p) for p in in_optims}


def test_training_changes_the_prompts_and_improves_on_the_train_set(workspace, tmp_path):
    t = build_trainer(workspace, tmp_path, "DPT", overrides=("OPTIM.MAX_EPOCH", "3"))
    before = {k: v.clone() for k, v in t.model.learnable_state_dict().items()}
    t.train()
    after = t.model.learnable_state_dict()
    assert all(not torch.equal(before[k], after[k]) for k in before if "kv_tokens" not in k)


def test_nan_loss_stops_with_step_and_advice(workspace, tmp_path, monkeypatch):
    t = build_trainer(workspace, tmp_path, "CoOp")

    def nan_loss(out, labels, epoch=0):
        return out.logits.sum() * float("nan"), {}

    monkeypatch.setattr(t.model, "compute_loss", nan_loss)
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 1.*amp or bf16"):
        t.train()


def test_zeroshot_clip_evaluates_and_has_nothing_to_train(workspace, tmp_path):
    out = tmp_path / "zs"
    results = train.main(argv(workspace, out, "ZeroshotCLIP", "--eval-only"))
    assert json.loads((out / "results.json").read_text())["accuracy"] == results["accuracy"]
    ensemble = train.main(
        argv(workspace, tmp_path / "zs2", "ZeroshotCLIP", "--eval-only",
             overrides=("TRAINER.ZSCLIP.ENSEMBLE", "True"))
    )  # fmt: skip
    assert ensemble["total"] == results["total"]
    with pytest.raises(RuntimeError, match="nothing to train; run it with --eval-only"):
        train.main(argv(workspace, tmp_path / "zs3", "ZeroshotCLIP"))


def test_best_val_keeps_the_best_epoch_and_deploys_it(workspace, tmp_path):
    out = tmp_path / "best"
    overrides = ("TEST.FINAL_MODEL", "best_val", "OPTIM.MAX_EPOCH", "3")
    train.main(argv(workspace, out, "CoOp", overrides=overrides))
    files = sorted(os.listdir(out / "prompt_learner"))
    assert "model-best.pth.tar" in files and "model.pth.tar-3" in files
    best = torch.load(out / "prompt_learner" / "model-best.pth.tar", weights_only=False)
    assert best["val_result"] is not None
    log = (out / "log.txt").read_text()
    assert "Evaluate on the *val* set" in log and "Deploy the model with the best val" in log

    # --eval-only without --load-epoch takes the best epoch too, as Dassl does.
    deployed = json.loads((out / "results.json").read_text())
    again = train.main(argv(workspace, tmp_path / "again", "CoOp", "--eval-only",
                            "--model-dir", str(out)))  # fmt: skip
    assert again["accuracy"] == deployed["accuracy"]
    assert "model-best.pth.tar' (epoch =" in (tmp_path / "again" / "log.txt").read_text()


def test_zeroshot_baseline_is_reported_next_to_the_tuned_accuracy(workspace, tmp_path):
    out = tmp_path / "with_baseline"
    tuned = train.main(argv(workspace, out, "DPT", overrides=("TEST.ZEROSHOT_BASELINE", "True")))
    zeroshot = train.main(argv(workspace, tmp_path / "zs", "ZeroshotCLIP", "--eval-only"))
    record = json.loads((out / "results.json").read_text())
    assert record["zeroshot_accuracy"] == zeroshot["accuracy"]
    assert record["accuracy"] == tuned["accuracy"]
    log = (out / "log.txt").read_text()
    assert "Evaluate zero-shot CLIP on the *test* set" in log
    assert f"Zero-shot CLIP: {zeroshot['accuracy']:.1f}% -> DPT: {tuned['accuracy']:.1f}%" in log


@pytest.mark.parametrize(
    "trainer, key, value, message",
    [
        ("DPT", "TRAINER.SELECTED_COVPT.CPN", "0", "TRAINER.SELECTED_COVPT.CPN (K, the classes"),
        ("DPT", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "0", "BOTTOMLIMIT (the first CAVPT block)"),
        ("DPT", "TRAINER.ALPHA", "-0.1", "TRAINER.ALPHA (the CAVPT loss weight) must be >= 0"),
        ("VLP", "TRAINER.VPT.N_CTX", "0", "TRAINER.VPT.N_CTX (visual prompt tokens per block)"),
        ("VPT", "TRAINER.VPT.N_CTX", "0", "must be >= 1, got 0"),
        ("DPT", "TRAINER.DPT.CAVPT_N_KV", "0", "TRAINER.DPT.CAVPT_N_KV (CAVPT key/value tokens)"),
        ("CoOp", "TRAINER.COOP.N_CTX", "0", "TRAINER.COOP.N_CTX (context tokens) must be >= 1"),
        ("DPT", "TRAINER.COOP.CLASS_TOKEN_POSITION", "start", "CLASS_TOKEN_POSITION must be one"),
        ("CoCoOp", "TRAINER.COCOOP.IMAGES_PER_TEXT_PASS", "-1", "IMAGES_PER_TEXT_PASS (images"),
    ],
)
def test_out_of_range_prompt_settings_fail_before_clip_or_data_load(
    workspace, tmp_path, trainer, key, value, message
):
    # A backbone file that does not exist: the settings must be rejected before it is looked for.
    overrides = (key, value, "MODEL.BACKBONE.NAME", str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match=re.escape(message)):
        train.main(argv(workspace, tmp_path / "bad", trainer, overrides=overrides))
    assert not (tmp_path / "bad").exists()  # nothing written: not even the log


def test_first_cavpt_block_beyond_the_depth_names_the_key(workspace, tmp_path):
    overrides = ("TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "3")  # the workspace CLIP has 2 blocks
    with pytest.raises(ValueError, match=r"TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT must be in 1..2"):
        train.main(argv(workspace, tmp_path / "deep", "DPT", overrides=overrides))
