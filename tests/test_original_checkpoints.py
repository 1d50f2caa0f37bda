"""Run directories written by the original DPT code: evaluated directly and converted."""

import json
import os
import subprocess
import sys

import pytest
import torch

import train
from engine.config import setup_cfg
from engine.registry import TRAINER_REGISTRY
from models.upstream import ORIGINAL_FOLDERS, upstream_to_ours
from tests.data_fixtures import make_image_folder
from tests.run_fixtures import REPO
from trainers.builtin import build_trainer
from trainers.original_checkpoints import read_trained_states

EPOCH = 5


@pytest.fixture(scope="module")
def golden(golden_dir):
    return torch.load(golden_dir / "dpt.pt", map_location="cpu", weights_only=False)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, golden):
    """The golden's CLIP on disk, an image folder of its classes, an original run dir."""
    root = tmp_path_factory.mktemp("original")
    torch.save(golden["clip_state_dict"], root / "clip.pt")
    classes = {name: 4 for name in golden["config"]["classnames"]}
    make_image_folder(root / "data", classes, size=(36, 36))
    make_image_folder(root / "data4", dict(list(classes.items())[:4]), size=(36, 36))
    original = root / "original_run"
    for folder in ORIGINAL_FOLDERS:
        prefix = folder + "."
        state = {
            key[len(prefix) :]: value.half()  # the original pickles float16 tensors
            for key, value in golden["upstream_state_dict"].items()
            if key.startswith(prefix)
        }
        os.makedirs(original / folder)
        torch.save({"state_dict": state, "epoch": EPOCH, "optimizer": None, "scheduler": None},
                   original / folder / f"model.pth.tar-{EPOCH}")  # fmt: skip
        (original / folder / "checkpoint").write_text(f"model.pth.tar-{EPOCH}\n")
    return root


def dpt_argv(root, out, data="data", *flags):
    return [
        "--root", str(root / data), "--trainer", "DPT", "--output-dir", str(out), "--seed", "1",
        "--config-file", os.path.join(REPO, "configs/trainers/DPT/vit_b32.yaml"), *flags,
        "DATASET.NAME", "ImageFolder", "MODEL.BACKBONE.NAME", str(root / "clip.pt"),
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "TRAINER.COOP.PREC", "fp32",
        "TRAINER.COOP.N_CTX", "4", "TRAINER.VPT.N_CTX", "4",
        "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "3", "TRAINER.SELECTED_COVPT.CPN", "3",
    ]  # fmt: skip


def test_eval_only_loads_the_original_layout(workspace, golden, tmp_path):
    args = train.build_parser().parse_args(dpt_argv(workspace, tmp_path / "x"))
    trainer = build_trainer(setup_cfg(args))
    trainer.load_model(str(workspace / "original_run"))
    expected, _, _ = upstream_to_ours(golden["upstream_state_dict"])
    loaded = trainer.model.learnable_state_dict()
    assert set(loaded) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(loaded[name], value.half().float(), rtol=0, atol=0)
    assert trainer.epoch == EPOCH - 1

    out = tmp_path / "eval"
    result = train.main(dpt_argv(workspace, out, "data", "--eval-only", "--model-dir",
                                 str(workspace / "original_run")))  # fmt: skip
    assert json.loads((out / "results.json").read_text())["accuracy"] == result["accuracy"]


@pytest.mark.parametrize(
    "name", [n for n in TRAINER_REGISTRY.names() if TRAINER_REGISTRY.get(n).original_dpt_folders]
)
def test_each_method_reads_its_modules_from_the_folders_it_names(workspace, golden, name):
    """A method of the original DPT code's (its ``original_dpt_folders``: CoOp, VPT, VLP,
    DPT) reads its own modules from an original run directory, as its folders hold them."""
    folders = TRAINER_REGISTRY.get(name).original_dpt_folders
    saved = read_trained_states(str(workspace / "original_run"), list(folders), folders)
    expected, _, _ = upstream_to_ours(golden["upstream_state_dict"])
    assert set(saved) == set(folders)
    for module, state in saved.items():
        assert state.epoch == EPOCH
        mine = {key: value for key, value in expected.items() if key.startswith(module + ".")}
        assert {f"{module}.{key}" for key in state.state_dict} == set(mine)
        for key, value in state.state_dict.items():
            assert torch.equal(value, mine[f"{module}.{key}"].half().float())


@pytest.mark.slow
def test_converter_writes_our_layout_with_the_same_weights(workspace, tmp_path):
    converted = tmp_path / "converted"
    done = subprocess.run(
        [sys.executable, "tools/convert_checkpoint.py", str(workspace / "original_run"),
         str(converted), "--epoch", str(EPOCH)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(converted)) == ["cavpt", "prompt_learner", "visual_prompt"]
    state = torch.load(converted / "cavpt" / f"model.pth.tar-{EPOCH}", weights_only=False)
    assert state["state_dict"]["blocks.1.kv_tokens"].dtype == torch.float32
    a = train.main(dpt_argv(workspace, tmp_path / "a", "data", "--eval-only", "--model-dir",
                            str(converted)))  # fmt: skip
    b = train.main(dpt_argv(workspace, tmp_path / "b", "data", "--eval-only", "--model-dir",
                            str(workspace / "original_run")))  # fmt: skip
    assert a["correct"] == b["correct"]
    again = subprocess.run(
        [sys.executable, "tools/convert_checkpoint.py", str(converted), str(tmp_path / "c")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2 and "not an original DPT/VLP/VPT run directory" in again.stderr


def test_heads_of_other_classes_are_skipped(workspace, tmp_path, capsys):
    result = train.main(dpt_argv(workspace, tmp_path / "four", "data4", "--eval-only",
                                 "--model-dir", str(workspace / "original_run")))  # fmt: skip
    assert result["total"] > 0
    assert "CAVPT heads have 6 classes, this run 4" in capsys.readouterr().out
