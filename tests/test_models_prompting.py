"""CoOp, VPT, VLP and DPT models: interface, precision, losses, DPT's layer settings."""

import copy
import dataclasses

import pytest
import torch
from clip.model import CLIP

from models import CAVPTCfg, CoOpModel, ModelOutput, SettingError, TextPromptCfg, VisualPromptCfg
from models.clip_loader import cast_clip
from tests.clip_fixtures import make_clip
from tests.conftest import CLASSNAMES, N_BLOCKS, SMALL_SETTINGS

CAVPT_CFG = SMALL_SETTINGS["cavpt_cfg"]


def cavpt(**changes):
    return dataclasses.replace(CAVPT_CFG, **changes)


MODULES = {
    "coop": ["prompt_learner"],
    "vpt": ["visual_prompt"],
    "vlp": ["visual_prompt", "prompt_learner"],
    "dpt": ["visual_prompt", "cavpt", "prompt_learner"],
    "ivlp": ["prompt_learner", "text_prompt", "visual_prompt"],
    "maple": ["prompt_learner", "text_prompt", "coupling"],
}


@pytest.mark.parametrize("kind", MODULES)
def test_learnable_modules_hold_exactly_the_trainable_float32_parameters(
    kind, build_model, image_batch
):
    model = build_model(kind)
    modules = model.learnable_modules()
    assert list(modules) == MODULES[kind]
    learnable = {id(p) for module in modules.values() for p in module.parameters()}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert learnable == trainable
    assert all(p.dtype == torch.float32 for m in modules.values() for p in m.parameters())
    # checkpoints hold learnable tensors only, not derived buffers
    assert all(
        set(m.state_dict()) == {n for n, _ in m.named_parameters()} for m in modules.values()
    )

    images, labels = image_batch
    out = model(images)
    assert isinstance(out, ModelOutput) and out.logits.shape == (4, len(CLASSNAMES))
    loss, parts = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    assert isinstance(parts["loss"], float)
    assert all(p.grad is not None for m in modules.values() for p in m.parameters())


@pytest.mark.parametrize("kind", ["coop", "dpt"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_clip_is_close_to_float32(kind, dtype, small_clip, build_model, image_batch):
    images, labels = image_batch
    reference = build_model(kind)(images)
    model = build_model(kind, cast_clip(copy.deepcopy(small_clip), dtype))
    out = model(images)
    assert out.logits.dtype == dtype
    scale = reference.logits.abs().max()
    assert (out.logits.float() - reference.logits).abs().max() < 0.02 * scale
    loss, _ = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_autocast_on_float32_clip(build_model, image_batch):
    images, labels = image_batch
    model = build_model("dpt")
    reference = model(images).logits.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
        loss, _ = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    assert (out.logits.float() - reference).abs().max() < 0.02 * reference.abs().max()


def test_vlp_guidance_loss_schedule_and_inference(build_model, image_batch):
    images, labels = image_batch
    model = build_model("vlp")
    out = model(images)
    ce = torch.nn.functional.cross_entropy
    before, parts = model.compute_loss(out, labels, epoch=1)
    guidance = ce(out.frozen_image_logits, labels) + ce(out.frozen_text_logits, labels)
    expected = guidance + 0.1 * ce(out.logits, labels)
    torch.testing.assert_close(before, expected)
    assert set(parts) == {"loss", "ce_main", "ce_frozen_image", "ce_frozen_text"}
    after, parts = model.compute_loss(out, labels, epoch=2)
    torch.testing.assert_close(after, ce(out.logits, labels))
    assert not model.zeroshot.image_features(images).requires_grad  # f0 runs without autograd
    model.eval()
    with torch.no_grad():
        inference = model(images)
    torch.testing.assert_close(inference.logits, out.logits.detach())
    assert inference.frozen_image_logits is None  # the frozen image branch is skipped at inference


@pytest.mark.parametrize("first_block", [1, 2, N_BLOCKS])
def test_dpt_block_split_follows_first_block(first_block, build_model, image_batch):
    images, labels = image_batch
    model = build_model("dpt", cavpt_cfg=cavpt(first_block=first_block))
    assert model.visual_prompt.tokens.shape == (first_block - 1, 2, 64)
    assert len(model.cavpt.blocks) == N_BLOCKS - first_block + 1
    out = model(images)
    assert len(out.cavpt_logits) == N_BLOCKS - first_block + 1
    assert all(layer.shape == (3, 4, len(CLASSNAMES)) for layer in out.cavpt_logits)
    assert out.top_k_classes.shape == (4, 3) and not out.top_k_classes.requires_grad
    model.compute_loss(out, labels, epoch=0)[0].backward()


def test_vlp_prompts_every_block_of_the_loaded_vit(build_model):
    two_blocks = make_clip(seed=4, vision_layers=2)
    model = build_model("vlp", two_blocks, vpt_cfg=VisualPromptCfg(n_ctx=3))
    assert model.visual_prompt.tokens.shape == (2, 3, 64)


def test_dpt_cavpt_loss_over_selected_triples(build_model, image_batch):
    images, labels = image_batch
    model = build_model("dpt", cavpt_cfg=cavpt(loss_weight=0.5))
    out = model(images)
    logits = torch.stack(out.cavpt_logits)  # [J, K, B, C]
    rows, targets = [], []
    for b in range(len(labels)):
        for j in range(logits.shape[0]):
            for k in range(logits.shape[1]):
                if out.top_k_classes[b, k] == labels[b]:
                    rows.append(logits[j, k, b])
                    targets.append(labels[b])
    assert rows, "the fixture batch should select some triples"
    cavpt_loss = torch.nn.functional.cross_entropy(torch.stack(rows), torch.stack(targets))
    loss, parts = model.compute_loss(out, labels, epoch=5)
    assert parts["cavpt_triples"] == len(rows)
    torch.testing.assert_close(torch.tensor(parts["cavpt_loss"]), cavpt_loss.detach())
    expected = torch.nn.functional.cross_entropy(out.logits, labels) + 0.5 * cavpt_loss
    torch.testing.assert_close(loss, expected)


def test_dpt_without_selected_triples_adds_nothing(build_model, image_batch):
    images, _ = image_batch
    model = build_model("dpt", cavpt_cfg=cavpt(top_k=1))
    out = model(images)
    labels = (out.top_k_classes[:, 0] + 1) % len(CLASSNAMES)  # never the top-1 class
    loss, parts = model.compute_loss(out, labels, epoch=5)
    assert parts["cavpt_triples"] == 0 and "cavpt_loss" not in parts
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_dpt_text_prompt_learns_through_cavpt_but_keys_are_detached(build_model, image_batch):
    images, _ = image_batch
    model = build_model("dpt")
    out = model(images)
    sum(layer.sum() for layer in out.cavpt_logits).backward()
    assert model.text.prompt_learner.ctx.grad.abs().sum() > 0
    assert model.visual_prompt.tokens.grad is None


def test_dpt_settings_checks(build_model):
    with pytest.raises(SettingError, match=rf"first_block must be in 1..{N_BLOCKS}"):
        build_model("dpt", cavpt_cfg=cavpt(first_block=N_BLOCKS + 1))
    with pytest.raises(SettingError, match="first_block"):
        cavpt(first_block=0)
    with pytest.warns(UserWarning, match="using K = 5"):
        model = build_model("dpt", cavpt_cfg=cavpt(top_k=10))
    assert model.top_k == len(CLASSNAMES)
    model = build_model("dpt", cavpt_cfg=cavpt(n_kv=4, attn_dim=16))
    assert model.cavpt.blocks[0].kv_tokens.shape == (4, 64)
    assert model.cavpt.blocks[0].k_proj.out_features == 16


@pytest.mark.parametrize(
    "settings_type, changes, message",
    [
        (
            CAVPTCfg,
            dict(top_k=0),
            r"CAVPTCfg.top_k \(K, the classes CAVPT attends from\) must be >= 1",
        ),
        (CAVPTCfg, dict(loss_weight=-0.1), "loss_weight .* must be >= 0"),
        (CAVPTCfg, dict(n_kv=0), "n_kv .* must be >= 1"),
        (VisualPromptCfg, dict(n_ctx=0), "VisualPromptCfg.n_ctx"),
        (TextPromptCfg, dict(n_ctx=0), "TextPromptCfg.n_ctx"),
        (TextPromptCfg, dict(class_token_position="start"), "one of end, middle, front"),
    ],
)
def test_settings_validate_themselves(settings_type, changes, message):
    with pytest.raises(SettingError, match=message) as raised:
        settings_type(**changes)
    assert (raised.value.settings_type, raised.value.field) == (settings_type, next(iter(changes)))
    with pytest.raises(TypeError):  # keyword-only
        settings_type(1)


@pytest.mark.parametrize("kind", ["vpt", "vlp", "dpt"])
def test_visual_prompt_models_reject_resnet_clip(kind, build_model):
    resnet_clip = CLIP(32, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 1)
    with pytest.raises(TypeError, match="ViT CLIP backbone"):
        build_model(kind, resnet_clip)


def test_coop_works_on_resnet_clip(image_batch):
    images, _ = image_batch
    resnet_clip = CLIP(32, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 1).eval()
    text_cfg = TextPromptCfg(n_ctx=2, csc=True, class_token_position="front")
    model = CoOpModel(resnet_clip, CLASSNAMES, text_cfg=text_cfg)
    assert model(torch.nn.functional.interpolate(images, 64)).logits.shape == (4, 5)
