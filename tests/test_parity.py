"""Our models against the original code's reference outputs (../shared/golden)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = ["coop", "vpt", "vlp", "dpt"]


def load_parity_tool():
    spec = importlib.util.spec_from_file_location("parity", ROOT / "tools" / "parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


parity = load_parity_tool()


@pytest.mark.parametrize("name", GOLDENS)
def test_golden_parity(name, golden_dir):
    rows = parity.run_parity(golden_dir / f"{name}.pt")
    failed = [row.line() for row in rows if not row.ok]
    assert not failed, "\n".join(failed)
    names = {row.name for row in rows}
    assert {"outputs.logits", "loss.before_c", "loss.after_c", "eval.logits"} <= names
    assert any(name.startswith("grads.after_c.") for name in names)


def test_parity_detects_a_changed_reference(golden_dir):
    golden = torch.load(golden_dir / "dpt.pt", map_location="cpu", weights_only=False)
    golden["outputs"]["layer_logits"][1] = golden["outputs"]["layer_logits"][1] * 1.001
    golden["grads"]["after_c"]["prompt_learner.ctx"] *= -1
    clip_model = parity.build_clip(golden["clip_state_dict"])
    failed = {row.name for row in parity.compare_golden(golden, clip_model) if not row.ok}
    assert failed == {"outputs.layer_logits[1]", "grads.after_c.prompt_learner.ctx"}


def test_command_line(golden_dir):
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "parity.py"), str(golden_dir / "vpt.pt")],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,  # the tool must find the repository by itself
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("parity: OK max_rel="), last
    assert float(last.split("=")[1]) <= 1e-4


def export_golden(kind, config, **model_kwargs):
    """A golden in the reference format, from our own model: checks the tool's plumbing for
    settings the shared goldens do not cover (not the semantics, which they check)."""
    from clip.model import convert_weights

    from models import CoOpModel, DPTModel, VLPModel
    from models.upstream import ours_to_upstream
    from tests.clip_fixtures import make_clip

    source = make_clip(seed=7, vision_layers=3)
    convert_weights(source)  # the original runs CLIP's matrices rounded to float16
    clip_state_dict = {key: value.float() for key, value in source.state_dict().items()}
    clip_model = parity.build_clip(clip_state_dict)
    text = dict(
        n_ctx=config["text_n_ctx"],
        ctx_init=config["text_ctx_init"],
        csc=config["text_csc"],
        class_token_position=config["class_token_position"],
    )
    classnames, template = config["classnames"], config["template"]
    torch.manual_seed(123)
    if kind == "coop":
        model = CoOpModel(clip_model, classnames, **text)
    else:
        cls = DPTModel if kind == "dpt" else VLPModel
        model = cls(clip_model, classnames, template, **text, pretrain_c=1, **model_kwargs)
    images = torch.randn(3, 3, 32, 32)
    labels = torch.tensor([0, 2, 1])
    params = {
        f"{module_name}.{key}": param
        for module_name, module in model.learnable_modules().items()
        for key, param in module.named_parameters()
    }
    golden = {
        "format": parity.FORMAT,
        "model": kind,
        "config": config,
        "clip_state_dict": clip_state_dict,
        "upstream_state_dict": {
            **ours_to_upstream(model.learnable_state_dict()),
            **model.upstream_buffers(),
        },
        "trainable": list(ours_to_upstream({k: p.detach() for k, p in params.items()})),
        "inputs": {"images": images, "labels": labels},
        "loss": {},
        "grads": {},
    }
    for phase, epoch in (("before_c", 0), ("after_c", 1)):
        model.zero_grad(set_to_none=True)
        out = model(images)
        loss, parts = model.compute_loss(out, labels, epoch)
        loss.backward()
        golden["loss"][phase] = loss.detach()
        golden["loss"]["layer_loss"] = parts.get("layer_loss")
        golden["loss"]["n_selected"] = parts.get("n_selected", 0)
        grads = {k: p.grad for k, p in params.items() if p.grad is not None}
        golden["grads"][phase] = ours_to_upstream(grads) if grads else {}
        golden["outputs"] = {
            "logits": out.logits.detach(),
            "logits1": None if out.logits1 is None else out.logits1.detach(),
            "logits2": None if out.logits2 is None else out.logits2.detach(),
            "layer_logits": [layer.detach() for layer in out.layer_logits or []],
            "indices": out.indices,
        }
    model.eval()
    with torch.no_grad():
        golden["outputs"]["eval_logits"] = model(images).logits
    return golden


SETTINGS = {
    "dpt-bottomlimit1-csc-front": (
        "dpt",
        dict(text_n_ctx=3, text_csc=True, text_ctx_init="", class_token_position="front"),
        dict(bottomlimit=1, cpn=2, vpt_n_ctx=2),
    ),
    "dpt-last-block-ctx-init-middle": (
        "dpt",
        dict(
            text_n_ctx=8, text_csc=False, text_ctx_init="a_photo_of", class_token_position="middle"
        ),
        dict(bottomlimit=3, cpn=3, vpt_n_ctx=1, cavpt_n_kv=4, cavpt_attn_dim=16),
    ),
    "vlp-csc-middle": (
        "vlp",
        dict(text_n_ctx=3, text_csc=True, text_ctx_init="", class_token_position="middle"),
        dict(vpt_n_ctx=2),
    ),
    "coop-ctx-init": (
        "coop",
        dict(text_n_ctx=16, text_csc=False, text_ctx_init="a photo", class_token_position="end"),
        {},
    ),
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_tool_reads_other_settings(setting, tmp_path):
    kind, text, model_kwargs = SETTINGS[setting]
    config = dict(
        dataset_name="DescribableTextures",
        classnames=["banded", "bubbly", "cracked_glass"],
        template="{} texture.",
        vpt_n_ctx=model_kwargs.get("vpt_n_ctx", 2),
        bottomlimit=model_kwargs.get("bottomlimit", 3),
        cpn=model_kwargs.get("cpn", 3),
        alpha=0.3,
        **text,
    )
    path = tmp_path / f"{setting}.pt"
    torch.save(export_golden(kind, config, **model_kwargs), path)
    rows = parity.run_parity(path)
    failed = [row.line() for row in rows if not row.ok]
    assert not failed, "\n".join(failed)
