import argparse
import glob
import json
import os
import pkgutil
import subprocess
import sys

import pytest
from yacs.config import CfgNode as CN

import trainers  # (registers the trainers' config blocks)
from engine.config import (
    CFG_EXTENSIONS,
    _all_keys,
    _dassl_defaults,
    cfg_digest,
    get_cfg_default,
    get_value,
    inert_key_notes,
    merge_from_file,
    merge_from_list,
    setup_cfg,
)
from engine.run_inputs import read_saved_config
from tests.run_fixtures import REPO
from trainers import builtin
from trainers.method import method_for


def _args(**kw):
    base = dict(
        root="",
        output_dir="",
        resume="",
        seed=-1,
        trainer="",
        backbone="",
        head="",
        config_file="",
        dataset_config_file="",
        opts=[],
    )
    base.update(kw)
    return argparse.Namespace(**base)


def test_defaults_have_dassl_and_original_dpt_keys():
    cfg = get_cfg_default()
    assert cfg.INPUT.SIZE == (224, 224)
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32
    assert cfg.OPTIM.WARMUP_CONS_LR == 1e-5
    assert cfg.TRAINER.COOP.N_CTX == 16
    assert cfg.TRAINER.SELECTED_COVPT.CPN == 10
    assert cfg.TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT == 12
    assert cfg.PRETRAIN.C == 30 and cfg.TRAINER.ALPHA == 0.3
    assert cfg.TRAINER.DPT.TEXT_LR == 0.002


def test_merge_order_files_then_flags_then_overrides(tmp_path):
    ds = tmp_path / "ds.yaml"
    ds.write_text("DATASET:\n  NAME: ImageFolder\nOPTIM:\n  LR: 0.5\n")
    method = tmp_path / "m.yaml"
    method.write_text("OPTIM:\n  LR: 0.1\n  MAX_EPOCH: 7\nSEED: 3\n")
    args = _args(
        dataset_config_file=str(ds),
        config_file=str(method),
        seed=5,
        trainer="CoOp",
        opts=["OPTIM.MAX_EPOCH", "9"],
    )
    cfg = setup_cfg(args)
    assert cfg.OPTIM.LR == 0.1  # method file after dataset file
    assert cfg.SEED == 5  # flag after files
    assert cfg.OPTIM.MAX_EPOCH == 9  # override last
    assert cfg.TRAINER.NAME == "CoOp"


def test_unknown_key_in_file_names_key_and_closest(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("OPTIM:\n  MAX_EPOCHS: 3\n")
    with pytest.raises(
        KeyError, match=r"OPTIM.MAX_EPOCHS.*bad.yaml.*Did you mean 'OPTIM.MAX_EPOCH'"
    ):
        merge_from_file(get_cfg_default(), str(path))


def test_unknown_override_names_closest_valid_key():
    with pytest.raises(KeyError, match=r"TRAINER.COOP.NCTX.*Did you mean 'TRAINER.COOP.N_CTX'"):
        merge_from_list(get_cfg_default(), ["TRAINER.COOP.NCTX", "4"])


def test_odd_override_list_and_missing_file():
    with pytest.raises(ValueError, match="KEY VALUE"):
        merge_from_list(get_cfg_default(), ["OPTIM.LR"])
    with pytest.raises(FileNotFoundError, match="no/such.yaml"):
        merge_from_file(get_cfg_default(), "no/such.yaml")


def test_digest_changes_with_config():
    a, b = get_cfg_default(), get_cfg_default()
    assert cfg_digest(a) == cfg_digest(b)
    b.OPTIM.LR = 1.0
    assert cfg_digest(a) != cfg_digest(b)


TRAINER_MODULES = sorted(module.name for module in pkgutil.iter_modules(trainers.__path__))


# Each child of one interpreter that has loaded torch (the slow import) but none of this
# project: it loads one trainer module by path (the package's __init__ would import them all),
# builds every registered trainer's settings, and exits with 0 or prints the error.
IMPORT_ALONE = """
import json, os, sys, traceback
import torch, torchvision
statuses = {}
for module in sys.argv[1:]:
    pid = os.fork()
    if pid == 0:
        try:
            import importlib, types
            pkg = types.ModuleType("trainers"); pkg.__path__ = ["trainers"]
            sys.modules["trainers"] = pkg
            importlib.import_module("trainers." + module)
            from engine.config import get_cfg_default
            from engine.registry import TRAINER_REGISTRY
            cfg = get_cfg_default()
            for name in TRAINER_REGISTRY.names():
                TRAINER_REGISTRY.get(name)(cfg)
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)
    statuses[module] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(statuses))
"""


@pytest.fixture(scope="module")
def imported_alone():
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_ALONE, *TRAINER_MODULES],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1]), result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("module", TRAINER_MODULES)
def test_each_trainer_module_imports_alone_with_every_key_it_reads(module, imported_alone):
    """In a fresh interpreter, importing one trainer module declares every key its method
    reads: a run of that trainer alone does not depend on the package importing the others."""
    statuses, errors = imported_alone
    assert statuses[module] == 0, errors[-3000:]


def test_every_config_block_has_one_owner():
    """Each extension declares its keys on Dassl's defaults alone (it needs no other
    extension's block) and no key is declared by two extensions."""
    owners = {}
    for extend in CFG_EXTENSIONS:
        cfg = _dassl_defaults()
        before = set(_all_keys(cfg))
        extend(cfg)
        for key in set(_all_keys(cfg)) - before:
            node = cfg
            for part in key.split("."):
                node = node[part]
            if not isinstance(node, CN):
                assert key not in owners, f"{key}: {owners[key]} and {extend.__module__}"
                owners[key] = extend.__module__
    assert owners["TRAINER.VPT.N_CTX"] == "trainers.vpt"
    assert owners["TRAINER.DPT.TEXT_LR"] == owners["PRETRAIN.C"] == "trainers.dpt"
    assert owners["TRAINER.COOP.PREC"] == "trainers.method"


def test_dassl_keys_the_builtin_engine_does_not_read_are_noted_when_set():
    cfg = get_cfg_default()
    assert builtin.unused_settings(cfg) == []
    merge_from_list(cfg, ["OPTIM.STAGED_LR", "True", "MODEL.HEAD.NAME", "mlp", "OPTIM.LR", "0.1"])
    why = (
        "the builtin engine does not read it (Dassl's key is accepted so that its config "
        "files load)."
    )
    assert builtin.unused_settings(cfg) == [
        f"Note: MODEL.HEAD.NAME is 'mlp' (default ''), but {why}",
        f"Note: OPTIM.STAGED_LR is True (default False), but {why}",
    ]


CONFIG_FILES = sorted(
    os.path.relpath(path, REPO)
    for path in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
)


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_every_shipped_config_file_merges(path):
    merge_from_file(get_cfg_default(), os.path.join(REPO, path))


def _trainer_cfg(name):
    cfg = get_cfg_default()
    merge_from_file(cfg, os.path.join(REPO, "configs", "trainers", f"{name}.yaml"))
    return cfg


@pytest.mark.parametrize(
    "name, backbone, epochs, ctx_init",
    [
        ("CoOp/rn101_ep50", "RN101", 50, ""),
        ("CoOp/rn50_ctxv1", "RN50", 200, "a photo of a"),
        ("CoOp/rn50_ep50_ctxv1", "RN50", 50, "a photo of a"),
        ("CoOp/vit_b16_ctxv1", "ViT-B/16", 200, "a photo of a"),
        ("CoOp/vit_b16_ep50_ctxv1", "ViT-B/16", 50, "a photo of a"),
        ("CoOp/vit_b16_ep100_ctxv1", "ViT-B/16", 100, "a photo of a"),
    ],
)
def test_coop_configs_as_coop_ships_them(name, backbone, epochs, ctx_init):
    cfg = _trainer_cfg(name)
    settings = (cfg.MODEL.BACKBONE.NAME, cfg.OPTIM.MAX_EPOCH, cfg.TRAINER.COOP.CTX_INIT)
    assert settings == (backbone, epochs, ctx_init)
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.LR_SCHEDULER) == ("sgd", 0.002, "cosine")
    assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 32 and cfg.DATALOADER.TEST.BATCH_SIZE == 100


def test_coop_rn50_val_cocoop_contexts_and_the_original_vpt_deep_config():
    val = _trainer_cfg("CoOp/rn50_val")
    assert val.DATALOADER.TRAIN_X.BATCH_SIZE == val.DATALOADER.TEST.BATCH_SIZE == 200
    assert val.MODEL.BACKBONE.NAME == "RN50"
    for n in (8, 16):
        cfg = _trainer_cfg(f"CoCoOp/vit_b16_c{n}_ep10_batch1")
        context = (cfg.TRAINER.COCOOP.N_CTX, cfg.TRAINER.COCOOP.CTX_INIT)
        assert context == (n, "")
        assert cfg.DATALOADER.TRAIN_X.BATCH_SIZE == 1 and cfg.OPTIM.MAX_EPOCH == 10
    deep = _trainer_cfg("VPT/vit_b32_deep")
    assert deep.DATALOADER.NUM_WORKERS == 2 and deep.DATALOADER.TEST.BATCH_SIZE == 50
    assert (deep.OPTIM.LR, deep.OPTIM.MAX_EPOCH, deep.OPTIM.WARMUP_EPOCH) == (0.01, 100, 10)


def test_original_keys_that_nothing_reads_are_accepted_with_a_note():
    cfg = get_cfg_default()
    assert inert_key_notes(cfg) == []
    merge_from_list(cfg, ["TRAINER.VPT.LN", "True", "TRAINER.TOPDOWN_SECOVPT.LR", "0.02"])
    assert sorted(inert_key_notes(cfg)) == [
        "Note: TRAINER.TOPDOWN_SECOVPT.LR 0.02 has no effect (the original DPT code defines it, "
        "never reads it: CAVPT learns at OPTIM.LR).",
        "Note: TRAINER.VPT.LN True has no effect (the original DPT code defines it, never reads "
        "it).",
    ]


def _dpt(*opts):
    config = os.path.join(REPO, "configs", "trainers", "DPT", "vit_b16.yaml")
    return setup_cfg(_args(trainer="DPT", config_file=config, opts=list(opts)))


def test_epoch_scale_shortens_the_warm_ups_and_the_guidance_with_the_run_and_names_it():
    from scripts import naming

    cfg = _dpt("OPTIM.EPOCH_SCALE", "0.25")  # 60 epochs, warm-up 10, PRETRAIN.C 30
    assert (cfg.OPTIM.MAX_EPOCH, cfg.OPTIM.WARMUP_EPOCH, cfg.PRETRAIN.C) == (15, 2, 8)
    assert cfg.TRAINER.DPT.TEXT_WARMUP_EPOCH == 1  # 1 stays at least 1
    assert cfg.TRAINER.DPT.VISUAL_WARMUP_EPOCH == -1  # unset stays unset
    assert naming.setting(cfg) == "nctx16_cscFalse_ctpend_vctx10_epochs0.25x"
    assert naming.setting(_dpt()) == "nctx16_cscFalse_ctpend_vctx10"
    assert method_for(cfg).notes() == []
    with pytest.raises(ValueError, match=r"OPTIM.EPOCH_SCALE must be > 0 \(1 keeps the schedule"):
        _dpt("OPTIM.EPOCH_SCALE", "0")


def test_a_warm_up_or_guidance_that_reaches_the_end_of_the_run_is_noted():
    assert method_for(_dpt("OPTIM.MAX_EPOCH", "10")).notes() == [
        "Note: PRETRAIN.C 30 reaches OPTIM.MAX_EPOCH 10: the guidance terms (frozen CLIP's "
        "features against the learned prompts) stay in the loss for the whole run.",
        "Note: OPTIM.WARMUP_EPOCH 10 reaches OPTIM.MAX_EPOCH 10: the whole run trains at the "
        "warm-up learning rate.",
    ]
    coop = os.path.join(REPO, "configs", "trainers", "CoOp", "vit_b32.yaml")
    cfg = setup_cfg(_args(trainer="CoOp", config_file=coop,
                          opts=["OPTIM.MAX_EPOCH", "2", "OPTIM.WARMUP_EPOCH", "2"]))  # fmt: skip
    assert method_for(cfg).notes() == [
        "Note: OPTIM.WARMUP_EPOCH 2 reaches OPTIM.MAX_EPOCH 2: the whole run trains at the "
        "warm-up learning rate."
    ]
    # PRETRAIN.C is DPT's: another method is never told about it
    assert not any("PRETRAIN.C" in note for note in method_for(cfg).notes())


def test_an_integer_for_a_float_key_is_that_float(tmp_path):
    method = tmp_path / "m.yaml"
    method.write_text("OPTIM:\n  LR: 1\n  WEIGHT_DECAY: 0\n")
    cfg = setup_cfg(_args(config_file=str(method), opts=["OPTIM.EPOCH_SCALE", "2"]))
    assert cfg.OPTIM.LR == 1.0 and isinstance(cfg.OPTIM.LR, float)
    assert cfg.OPTIM.WEIGHT_DECAY == 0.0 and cfg.OPTIM.EPOCH_SCALE == 2.0
    cfg = setup_cfg(_args(opts=["OPTIM.LR", "3", "TRAINER.COOP.N_CTX", "4"]))
    assert cfg.OPTIM.LR == 3.0 and cfg.TRAINER.COOP.N_CTX == 4
    with pytest.raises(ValueError, match="Type mismatch"):  # a bool stays a bool
        setup_cfg(_args(opts=["OPTIM.LR", "True"]))


@pytest.mark.parametrize(
    "name, backbone, epochs, batch, ctx_init, keys",
    [
        ("KgCoOp/rn50_ep100", "RN50", 100, 128, True, {"TRAINER.COOP.W": 1.0}),
        ("KgCoOp/vit_b16_ep100_ctxv1", "ViT-B/16", 100, 128, True, {"TRAINER.COOP.W": 1.0}),
        ("ProGrad/rn50", "RN50", 200, 32, True, {"LOSS.NAME": "prograd", "LOSS.T": 1.0}),
        ("ProGrad/rn50_ep50", "RN50", 50, 32, True, {"LOSS.LAMBDA": 1.0}),
    ],
)  # fmt: skip
def test_kgcoop_and_prograd_configs_as_their_authors_ship_them(
    name, backbone, epochs, batch, ctx_init, keys
):
    cfg = _trainer_cfg(name)
    settings = (cfg.MODEL.BACKBONE.NAME, cfg.OPTIM.MAX_EPOCH, cfg.DATALOADER.TRAIN_X.BATCH_SIZE)
    assert settings == (backbone, epochs, batch) and cfg.TRAINER.COOP.CTX_INIT is ctx_init
    assert (cfg.OPTIM.NAME, cfg.OPTIM.LR, cfg.OPTIM.WARMUP_EPOCH) == ("sgd", 0.002, 1)
    assert {key: get_value(cfg, key) for key in keys} == keys


def test_ctx_init_is_words_or_a_boolean_in_files_overrides_and_saved_configs(tmp_path):
    """KgCoOp's and ProGrad's boolean TRAINER.COOP.CTX_INIT loads, words override it (and it
    them); a boolean is refused by CoOp, whose CTX_INIT is words."""
    path = os.path.join(REPO, "configs", "trainers", "KgCoOp", "rn50_ep100.yaml")
    cfg = setup_cfg(_args(config_file=path, trainer="KgCoOp"))
    assert cfg.TRAINER.COOP.CTX_INIT is True
    assert method_for(cfg).text_cfg.ctx_init == "a photo of a"
    cfg = setup_cfg(_args(config_file=path, opts=["TRAINER.COOP.CTX_INIT", "a_photo_of"]))
    assert cfg.TRAINER.COOP.CTX_INIT == "a_photo_of"
    cfg = setup_cfg(_args(trainer="ProGrad", opts=["TRAINER.COOP.CTX_INIT", "False"]))
    assert cfg.TRAINER.COOP.CTX_INIT is False and method_for(cfg).text_cfg.ctx_init == ""
    (tmp_path / "config.yaml").write_text(cfg.dump())
    assert read_saved_config(str(tmp_path)).TRAINER.COOP.CTX_INIT is False
    with pytest.raises(ValueError, match="Type mismatch"):  # neither words nor a boolean
        setup_cfg(_args(opts=["TRAINER.COOP.CTX_INIT", "4"]))
    cfg = setup_cfg(_args(config_file=path, trainer="CoOp"))
    with pytest.raises(ValueError, match="TRAINER.COOP.CTX_INIT must be the words"):
        method_for(cfg)


@pytest.mark.parametrize("trainer", ["KgCoOp", "ProGrad"])
def test_a_boolean_ctx_init_gets_no_word_count_note(trainer):
    from trainers.method import context_notes

    config = os.path.join(REPO, "configs", "trainers", trainer, "tiny.yaml")
    cfg = setup_cfg(_args(trainer=trainer, config_file=config))
    assert cfg.TRAINER.COOP.CTX_INIT is True
    assert context_notes(cfg) == []
