"""CoOp, VPT, VLP and DPT models: interface, precision, losses, DPT's layer settings."""

import copy

import pytest
import torch
from clip.model import CLIP

from models import CoOpModel, DPTModel, ModelOutput, VLPModel, VPTModel
from models.clip_loader import cast_clip
from tests.clip_fixtures import make_clip

CLASSNAMES = ["face", "leopard", "motor_bike", "airplane", "golden_retriever"]
TEMPLATE = "a photo of a {}."
N_BLOCKS = 3


@pytest.fixture(scope="module")
def base_clip():
    return make_clip(seed=3, vision_layers=N_BLOCKS).float().eval()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=generator), torch.tensor([0, 1, 4, 3])


def build(kind, clip_model, **kwargs):
    torch.manual_seed(0)
    text = dict(n_ctx=4)
    if kind == "coop":
        return CoOpModel(clip_model, CLASSNAMES, **text, **kwargs)
    if kind == "vpt":
        return VPTModel(clip_model, CLASSNAMES, TEMPLATE, vpt_n_ctx=2, **kwargs)
    if kind == "vlp":
        return VLPModel(clip_model, CLASSNAMES, TEMPLATE, **text, vpt_n_ctx=2, pretrain_c=2)
    defaults = dict(vpt_n_ctx=2, bottomlimit=2, cpn=3, pretrain_c=2)
    return DPTModel(clip_model, CLASSNAMES, TEMPLATE, **text, **{**defaults, **kwargs})


MODULES = {
    "coop": ["prompt_learner"],
    "vpt": ["visual_prompt"],
    "vlp": ["visual_prompt", "prompt_learner"],
    "dpt": ["visual_prompt", "cavpt", "prompt_learner"],
}


@pytest.mark.parametrize("kind", MODULES)
def test_learnable_modules_hold_exactly_the_trainable_float32_parameters(kind, base_clip, batch):
    model = build(kind, copy.deepcopy(base_clip))
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

    images, labels = batch
    out = model(images)
    assert isinstance(out, ModelOutput) and out.logits.shape == (4, len(CLASSNAMES))
    loss, parts = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    assert isinstance(parts["loss"], float)
    assert all(p.grad is not None for m in modules.values() for p in m.parameters())


@pytest.mark.parametrize("kind", ["coop", "dpt"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_clip_is_close_to_float32(kind, dtype, base_clip, batch):
    images, labels = batch
    reference = build(kind, copy.deepcopy(base_clip))(images)
    model = build(kind, cast_clip(copy.deepcopy(base_clip), dtype))
    out = model(images)
    assert out.logits.dtype == dtype
    scale = reference.logits.abs().max()
    assert (out.logits.float() - reference.logits).abs().max() < 0.02 * scale
    loss, _ = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.requires_grad)


def test_autocast_on_float32_clip(base_clip, batch):
    images, labels = batch
    model = build("dpt", copy.deepcopy(base_clip))
    reference = model(images).logits.detach()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(images)
        loss, _ = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    assert (out.logits.float() - reference).abs().max() < 0.02 * reference.abs().max()


def test_vlp_guidance_loss_schedule_and_inference(base_clip, batch):
    images, labels = batch
    model = build("vlp", copy.deepcopy(base_clip))
    out = model(images)
    ce = torch.nn.functional.cross_entropy
    before, parts = model.compute_loss(out, labels, epoch=1)
    expected = ce(out.logits1, labels) + ce(out.logits2, labels) + 0.1 * ce(out.logits, labels)
    torch.testing.assert_close(before, expected)
    assert set(parts) == {"loss", "ce_main", "ce_frozen_image", "ce_frozen_text"}
    after, parts = model.compute_loss(out, labels, epoch=2)
    torch.testing.assert_close(after, ce(out.logits, labels))
    assert not model.zeroshot.image_features(images).requires_grad  # f0 runs without autograd
    model.eval()
    with torch.no_grad():
        inference = model(images)
    torch.testing.assert_close(inference.logits, out.logits.detach())
    assert inference.logits1 is None  # the frozen image branch is skipped at inference


@pytest.mark.parametrize("bottomlimit", [1, 2, N_BLOCKS])
def test_dpt_block_split_follows_bottomlimit(bottomlimit, base_clip, batch):
    images, labels = batch
    model = build("dpt", copy.deepcopy(base_clip), bottomlimit=bottomlimit)
    assert model.visual_prompt.tokens.shape == (bottomlimit - 1, 2, 64)
    assert len(model.cavpt.blocks) == N_BLOCKS - bottomlimit + 1
    out = model(images)
    assert len(out.layer_logits) == N_BLOCKS - bottomlimit + 1
    assert all(layer.shape == (3, 4, len(CLASSNAMES)) for layer in out.layer_logits)
    assert out.indices.shape == (4, 3) and not out.indices.requires_grad
    model.compute_loss(out, labels, epoch=0)[0].backward()


def test_vlp_prompts_every_block_of_the_loaded_vit():
    model = VLPModel(make_clip(seed=4, vision_layers=2), CLASSNAMES, TEMPLATE, n_ctx=2, vpt_n_ctx=3)
    assert model.visual_prompt.tokens.shape == (2, 3, 64)


def test_dpt_cavpt_loss_over_selected_triples(base_clip, batch):
    images, labels = batch
    model = build("dpt", copy.deepcopy(base_clip), alpha=0.5)
    out = model(images)
    logits = torch.stack(out.layer_logits)  # [J, K, B, C]
    rows, targets = [], []
    for b in range(len(labels)):
        for j in range(logits.shape[0]):
            for k in range(logits.shape[1]):
                if out.indices[b, k] == labels[b]:
                    rows.append(logits[j, k, b])
                    targets.append(labels[b])
    assert rows, "the fixture batch should select some triples"
    layer_loss = torch.nn.functional.cross_entropy(torch.stack(rows), torch.stack(targets))
    loss, parts = model.compute_loss(out, labels, epoch=5)
    assert parts["n_selected"] == len(rows)
    torch.testing.assert_close(torch.tensor(parts["layer_loss"]), layer_loss.detach())
    expected = torch.nn.functional.cross_entropy(out.logits, labels) + 0.5 * layer_loss
    torch.testing.assert_close(loss, expected)


def test_dpt_without_selected_triples_adds_nothing(base_clip, batch):
    images, _ = batch
    model = build("dpt", copy.deepcopy(base_clip), cpn=1)
    out = model(images)
    labels = (out.indices[:, 0] + 1) % len(CLASSNAMES)  # never the top-1 zero-shot class
    loss, parts = model.compute_loss(out, labels, epoch=5)
    assert parts["n_selected"] == 0 and "layer_loss" not in parts
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_dpt_text_prompt_learns_through_cavpt_but_keys_are_detached(base_clip, batch):
    images, _ = batch
    model = build("dpt", copy.deepcopy(base_clip))
    out = model(images)
    sum(layer.sum() for layer in out.layer_logits).backward()
    assert model.text.prompt_learner.ctx.grad.abs().sum() > 0
    assert model.visual_prompt.tokens.grad is None


def test_dpt_argument_checks(base_clip):
    with pytest.raises(ValueError, match=rf"bottomlimit .* must be in 1..{N_BLOCKS}"):
        build("dpt", copy.deepcopy(base_clip), bottomlimit=N_BLOCKS + 1)
    with pytest.raises(ValueError, match="bottomlimit"):
        build("dpt", copy.deepcopy(base_clip), bottomlimit=0)
    with pytest.warns(UserWarning, match="using K = 5"):
        model = build("dpt", copy.deepcopy(base_clip), cpn=10)
    assert model.n_selected_classes == len(CLASSNAMES)
    model = build("dpt", copy.deepcopy(base_clip), cavpt_n_kv=4, cavpt_attn_dim=16)
    assert model.cavpt.blocks[0].kv_tokens.shape == (4, 64)
    assert model.cavpt.blocks[0].k_proj.out_features == 16


@pytest.mark.parametrize("kind", ["vpt", "vlp", "dpt"])
def test_visual_prompt_models_reject_resnet_clip(kind):
    resnet_clip = CLIP(32, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 1)
    with pytest.raises(TypeError, match="ViT CLIP backbone"):
        build(kind, resnet_clip)


def test_coop_works_on_resnet_clip(batch):
    images, _ = batch
    resnet_clip = CLIP(32, 64, (1, 1, 1, 1), 8, None, 77, 49408, 64, 1, 1).eval()
    model = CoOpModel(resnet_clip, CLASSNAMES, n_ctx=2, csc=True, class_token_position="front")
    assert model(torch.nn.functional.interpolate(images, 64)).logits.shape == (4, 5)
