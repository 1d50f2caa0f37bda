import os

import numpy as np
import pytest
import torch

from engine.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from engine.evaluator import ClassificationEvaluator, macro_f1
from engine.registry import Registry
from models.clip_loader import ClipWeightsNotFound, load_clip, resolve_checkpoint
from tests.clip_fixtures import make_clip, save_clip_checkpoint


def test_registry_lists_names_and_suggests():
    reg = Registry("trainer")

    @reg.register()
    class CoOp:
        pass

    assert reg.get("CoOp") is CoOp
    with pytest.raises(KeyError, match="Did you mean 'CoOp'.*Registered: CoOp"):
        reg.get("Coop")


def test_checkpoint_layout_and_pointer(tmp_path):
    module_dir = tmp_path / "prompt_learner"
    save_checkpoint({"state_dict": {"ctx": torch.ones(2)}, "epoch": 1}, str(module_dir))
    save_checkpoint(
        {"state_dict": {"ctx": torch.zeros(2)}, "epoch": 2},
        str(module_dir),
        is_best=True,
        remove_previous=True,
    )
    assert sorted(os.listdir(module_dir)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2"]
    assert (module_dir / "checkpoint").read_text().strip() == "model.pth.tar-2"
    assert load_checkpoint(latest_checkpoint(str(module_dir)))["epoch"] == 2


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    module_dir = tmp_path / "m"
    save_checkpoint({"state_dict": {}, "epoch": 1}, str(module_dir))

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {}, "epoch": 2}, str(module_dir))
    assert sorted(os.listdir(module_dir)) == ["checkpoint", "model.pth.tar-1"]


def test_evaluator_prints_dassl_block(capsys):
    ev = ClassificationEvaluator({0: "cat", 1: "dog"}, per_class=True)
    ev.process(
        torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1, 1, 1])
    )
    res = ev.evaluate()
    out = capsys.readouterr().out
    assert "* total: 4\n* correct: 3\n* accuracy: 75.0%\n* error: 25.0%\n" in out
    assert res["per_class"]["dog"]["accuracy"] == pytest.approx(200 / 3)
    # F1: cat 2*1/(2+1+0)=2/3, dog 2*2/(4+0+1)=0.8
    assert res["macro_f1"] == pytest.approx(100 * (2 / 3 + 0.8) / 2)
    assert macro_f1(np.array([0, 0]), np.array([1, 1])) == 0.0


@pytest.mark.parametrize("jit", [False, True])
def test_load_clip_from_local_file(tmp_path, jit):
    path = save_clip_checkpoint(tmp_path / "tiny.pt", jit=jit)
    model = load_clip(path)
    ref = make_clip().float()
    assert model.visual.input_resolution == 32
    assert all(not p.requires_grad for p in model.parameters())
    assert model.dtype == torch.float32
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :2] = torch.tensor([49406, 49407])
    torch.testing.assert_close(
        model.encode_text(tokens), ref.encode_text(tokens), rtol=2e-2, atol=2e-3
    )


def test_missing_weights_offline_names_file_url_and_fix(tmp_path, monkeypatch):
    import clip

    def offline(url, root):
        raise OSError("network is unreachable")

    monkeypatch.setattr(clip.clip, "_download", offline)
    with pytest.raises(ClipWeightsNotFound) as info:
        resolve_checkpoint("ViT-B/16", cache_dir=str(tmp_path))
    msg = str(info.value)
    assert os.path.join(str(tmp_path), "ViT-B-16.pt") in msg
    assert "https://" in msg and "ViT-B-16.pt" in msg and "copy the file" in msg


def test_unknown_backbone_and_corrupt_file(tmp_path):
    with pytest.raises(ClipWeightsNotFound, match="neither a file nor a CLIP model name"):
        resolve_checkpoint("ViT-X/99", cache_dir=str(tmp_path))
    missing = os.path.join("assets", "nope", "clip.pt")
    with pytest.raises(ClipWeightsNotFound, match="run from the repository root") as info:
        resolve_checkpoint(missing, cache_dir=str(tmp_path))
    assert os.path.abspath(missing) in str(info.value)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="Cannot read CLIP checkpoint"):
        load_clip(str(bad))
