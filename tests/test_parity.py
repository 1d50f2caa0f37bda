"""Our models against the original code's reference outputs (../shared/golden)."""

import copy
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import CAVPTCfg, CoOpModel, VisualPromptCfg

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = ["coop", "vpt", "vlp", "dpt"]
# prompt-golden-v1, from the methods' authors' code
PROMPT_GOLDENS = ["ivlp_a", "maple_a", "promptsrc_a", "kgcoop_a"]


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


@pytest.mark.parametrize("name", PROMPT_GOLDENS)
def test_prompt_golden_parity(name, golden_dir):
    rows = parity.run_parity(golden_dir / f"{name}.pt")
    failed = [row.line() for row in rows if not row.ok]
    assert not failed, "\n".join(failed)
    names = {row.name for row in rows}
    expected = {"trainable", "outputs.logits", "loss.total", "loss.ce", "eval.logits"}
    expected |= {"eval.image_features", "eval.text_features", "train_steps.eval_logits_after"}
    expected |= {f"train_steps[{step}].loss" for step in range(3)}
    assert expected <= names
    assert any(name.startswith("grads.total.") for name in names)
    assert any(".params_after." in name for name in names)
    if name == "maple_a":  # its 768x512 couplings are compared through probe vectors
        assert "train_steps[2].probes_after.prompt_learner.proj.weight.left" in names
        assert "outputs.visual_deep_prompts[0]" in names
    if name == "promptsrc_a":  # every term of its loss, frozen CLIP's side, the aggregation
        expected = {f"loss.{term}" for term in ("l1_text", "l1_image", "kl_sum", "scl")}
        expected |= {"outputs.zero_shot_logits", "outputs.fixed_embeddings_norm"}
        assert expected | {"train_steps.gauss"} <= names
    if name == "kgcoop_a":
        assert {"loss.score", "loss.kg", "buffers.prompt_learner.text_features"} <= names
    assert all(row.max_rel < 1e-5 for row in rows)  # float32 rounding, nothing more


def test_prompt_parity_detects_a_changed_reference(golden_dir):
    golden = torch.load(golden_dir / "ivlp_a.pt", map_location="cpu", weights_only=False)
    vpt_2 = "image_encoder.transformer.resblocks.2.VPT_shallow"
    golden["grads"][vpt_2] *= 1.001
    golden["train_steps"]["params_after"][2]["prompt_learner.ctx"] *= -1
    golden["train_steps"]["lr"][1] = 0.0034
    golden["outputs"]["text_features"][0, 0] += 0.01
    golden["upstream_state_dict"]["prompt_learner.token_suffix"][1, 0] += 0.01
    clip_model = parity.build_clip(golden["clip_state_dict"])
    failed = {row.name for row in parity.compare_prompt_golden(golden, clip_model) if not row.ok}
    assert failed == {
        f"grads.total.{vpt_2}",
        "train_steps[2].params_after.prompt_learner.ctx",
        "train_steps[1].lr",
        "eval.text_features",
        "buffers.prompt_learner.token_suffix",
    }


def test_regularizer_parity_detects_a_changed_reference(golden_dir):
    golden = torch.load(golden_dir / "promptsrc_a.pt", map_location="cpu", weights_only=False)
    golden["loss"]["l1_image"] *= 1.001
    golden["loss"]["kl_sum"] *= 1.001
    golden["outputs"]["zero_shot_logits"][0, 0] += 0.01
    golden["train_steps"]["gauss"] = golden["train_steps"]["gauss"].flip(0) * 0.5
    # the aggregated prompts after the last epoch: the last step's own values instead
    last = golden["train_steps"]["params_after_update"][2]["prompt_learner.ctx"]
    golden["train_steps"]["params_after"][2]["prompt_learner.ctx"] = last
    clip_model = parity.build_clip(golden["clip_state_dict"])
    failed = {row.name for row in parity.compare_prompt_golden(golden, clip_model) if not row.ok}
    assert failed == {
        "loss.l1_image",
        "loss.kl_sum",
        "outputs.zero_shot_logits",
        "train_steps.gauss",
        "train_steps[2].params_after.prompt_learner.ctx",
    }


def test_parity_detects_a_changed_reference(golden_dir):
    golden = torch.load(golden_dir / "dpt.pt", map_location="cpu", weights_only=False)
    golden["outputs"]["layer_logits"][1] = golden["outputs"]["layer_logits"][1] * 1.001
    golden["grads"]["after_c"]["prompt_learner.ctx"] *= -1
    clip_model = parity.build_clip(golden["clip_state_dict"])
    failed = {row.name for row in parity.compare_golden(golden, clip_model) if not row.ok}
    assert failed == {"outputs.layer_logits[1]", "grads.after_c.prompt_learner.ctx"}


def run_tool(path):
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / "parity.py"), str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT.parent,  # the tool must find the repository by itself
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["vpt", "ivlp_a", "kgcoop_a"])
def test_command_line(golden_dir, name):
    result = run_tool(golden_dir / f"{name}.pt")
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("parity: OK max_rel="), last
    assert float(last.split("=")[1]) <= 1e-4


def export_golden(kind, config, clip_model, **model_settings):
    """A golden in the reference format, from our own model: checks the tool's plumbing for
    settings the shared goldens do not cover (not the semantics, which they check)."""
    from clip.model import convert_weights

    from models import DPTModel, GuidanceCfg, TextPromptCfg, VLPModel
    from models.upstream import ours_to_upstream, upstream_buffers

    source = copy.deepcopy(clip_model)
    convert_weights(source)  # the original runs CLIP's matrices rounded to float16
    clip_state_dict = {key: value.float() for key, value in source.state_dict().items()}
    clip_model = parity.build_clip(clip_state_dict)
    text_cfg = TextPromptCfg(
        n_ctx=config["text_n_ctx"],
        ctx_init=config["text_ctx_init"],
        csc=config["text_csc"],
        class_token_position=config["class_token_position"],
    )
    classnames, template = config["classnames"], config["template"]
    torch.manual_seed(123)
    if kind == "coop":
        model = CoOpModel(clip_model, classnames, text_cfg=text_cfg)
    else:
        cls = DPTModel if kind == "dpt" else VLPModel
        model = cls(clip_model, classnames, template, text_cfg=text_cfg,
                    guidance_cfg=GuidanceCfg(epochs=1), **model_settings)  # fmt: skip
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
            **upstream_buffers(model),
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
        golden["loss"]["layer_loss"] = parts.get("cavpt_loss")
        golden["loss"]["n_selected"] = parts.get("cavpt_triples", 0)
        grads = {k: p.grad for k, p in params.items() if p.grad is not None}
        golden["grads"][phase] = ours_to_upstream(grads) if grads else {}
        golden["outputs"] = {"logits": out.logits.detach()}
        for theirs, ours in parity.GUIDANCE_OUTPUTS.items():
            value = getattr(out, ours, None)
            golden["outputs"][theirs] = None if value is None else value.detach()
        golden["outputs"]["layer_logits"] = [x.detach() for x in getattr(out, "cavpt_logits", [])]
        golden["outputs"]["indices"] = getattr(out, "top_k_classes", None)
    model.eval()
    with torch.no_grad():
        golden["outputs"]["eval_logits"] = model(images).logits
    return golden


SETTINGS = {
    "dpt-bottomlimit1-csc-front": (
        "dpt",
        dict(text_n_ctx=3, text_csc=True, text_ctx_init="", class_token_position="front"),
        dict(cavpt_cfg=CAVPTCfg(first_block=1, top_k=2), vpt_cfg=VisualPromptCfg(n_ctx=2)),
    ),
    "dpt-last-block-ctx-init-middle": (
        "dpt",
        dict(
            text_n_ctx=8, text_csc=False, text_ctx_init="a_photo_of", class_token_position="middle"
        ),
        dict(
            cavpt_cfg=CAVPTCfg(first_block=3, top_k=3, n_kv=4, attn_dim=16),
            vpt_cfg=VisualPromptCfg(n_ctx=1),
        ),
    ),
    "vlp-csc-middle": (
        "vlp",
        dict(text_n_ctx=3, text_csc=True, text_ctx_init="", class_token_position="middle"),
        dict(vpt_cfg=VisualPromptCfg(n_ctx=2)),
    ),
    "coop-ctx-init": (
        "coop",
        dict(text_n_ctx=16, text_csc=False, text_ctx_init="a photo", class_token_position="end"),
        {},
    ),
}


@pytest.mark.parametrize("setting", SETTINGS)
def test_tool_reads_other_settings(setting, tmp_path, small_clip):
    kind, text, model_settings = SETTINGS[setting]
    cavpt_cfg = model_settings.get("cavpt_cfg", CAVPTCfg(first_block=3, top_k=3))
    config = dict(
        dataset_name="DescribableTextures",
        classnames=["banded", "bubbly", "cracked_glass"],
        template="{} texture.",
        vpt_n_ctx=model_settings.get("vpt_cfg", VisualPromptCfg(n_ctx=2)).n_ctx,
        bottomlimit=cavpt_cfg.first_block,
        cpn=cavpt_cfg.top_k,
        alpha=cavpt_cfg.loss_weight,
        **text,
    )
    path = tmp_path / f"{setting}.pt"
    torch.save(export_golden(kind, config, small_clip, **model_settings), path)
    rows = parity.run_parity(path)
    failed = [row.line() for row in rows if not row.ok]
    assert not failed, "\n".join(failed)
