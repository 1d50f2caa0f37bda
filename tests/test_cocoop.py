"""CoCoOp: the meta-net conditioned prompts against a direct reference, both text paths, runs."""

import json

import pytest
import torch

import train
from models.base import l2_normalize
from models.cocoop import CoCoOpModel
from models.settings import CoCoOpCfg
from models.speed import PLAIN, Speed, apply_speed
from tests.conftest import CLASSNAMES
from tests.run_fixtures import make_workspace, train_argv


@pytest.fixture(scope="module")
def clip_model(small_clip):
    return small_clip


@pytest.fixture(scope="module")
def images(image_batch):
    return image_batch[0][:3]


def reference_logits(model, images):
    """CoCoOp as its paper states it, one image at a time: context + meta_net(f), CoOp's
    prefix/context/suffix concatenation at the full 77 tokens, CLIP's own text transformer."""
    clip_model, learner = model.clip, model.prompt_learner
    buffers = learner.upstream_buffers(clip_model.token_embedding)
    n_cls = len(CLASSNAMES)
    eos = learner.tokenized_prompts.argmax(dim=-1)
    rows = []
    for feature in l2_normalize(clip_model.encode_image(images)):
        ctx = (learner.ctx + learner.meta_net(feature)).expand(n_cls, -1, -1)
        x = torch.cat([buffers["token_prefix"], ctx, buffers["token_suffix"]], dim=1)
        x = clip_model.transformer((x + clip_model.positional_embedding).permute(1, 0, 2))
        x = clip_model.ln_final(x.permute(1, 0, 2))[torch.arange(n_cls), eos]
        text = l2_normalize(x @ clip_model.text_projection)
        rows.append(model.logit_scale() * feature @ text.t())
    return torch.stack(rows)


def logits_and_grads(model, compute_logits):
    model.zero_grad()
    logits = compute_logits()
    (logits * torch.arange(logits.numel()).view_as(logits)).sum().backward()
    return logits.detach(), [p.grad.clone() for p in model.prompt_learner.parameters()]


@pytest.mark.parametrize("speed", [Speed(), PLAIN], ids=["fast", "plain"])
@pytest.mark.parametrize("per_pass", [1, 2, 0])
def test_every_text_path_matches_the_reference(clip_model, images, per_pass, speed):
    torch.manual_seed(0)
    settings = CoCoOpCfg(n_ctx=4, images_per_text_pass=per_pass)
    model = CoCoOpModel(clip_model, CLASSNAMES, cocoop_cfg=settings)
    with torch.no_grad():  # a meta-net far from zero, so that the bias matters
        model.prompt_learner.meta_net.linear2.weight.normal_(std=0.5)
    apply_speed(model, speed)
    logits, grads = logits_and_grads(model, lambda: model(images).logits)
    expected, expected_grads = logits_and_grads(model, lambda: reference_logits(model, images))
    assert logits.shape == (3, len(CLASSNAMES))
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    for ours, theirs in zip(grads, expected_grads):
        torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits[0], logits[1])  # per-image prompts, not one set


def test_state_dict_has_cocoop_keys_and_no_class_buffers(clip_model):
    model = CoCoOpModel(clip_model, CLASSNAMES, cocoop_cfg=CoCoOpCfg(ctx_init="a photo of a"))
    state = model.prompt_learner.state_dict()
    assert set(state) == {"ctx", "meta_net.linear1.weight", "meta_net.linear1.bias",
                          "meta_net.linear2.weight", "meta_net.linear2.bias"}  # fmt: skip
    assert state["ctx"].shape == (4, 64)  # one vector per word of ctx_init
    assert state["meta_net.linear1.weight"].shape == (32 // 16, 32)  # vis_dim // 16 x vis_dim
    assert state["meta_net.linear2.weight"].shape == (64, 32 // 16)  # ctx_dim x hidden


def test_base_to_new_train_then_eval_only(tmp_path):
    ws = make_workspace(tmp_path, {name: 6 for name in ["ant", "bee", "cat", "dog"]})
    overrides = ("DATALOADER.TRAIN_X.BATCH_SIZE", "1", "OPTIM.MAX_EPOCH", "1",
                 "TRAINER.COCOOP.IMAGES_PER_TEXT_PASS", "1")  # fmt: skip
    config = "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"

    def argv(out, *flags, subsample):
        more = ("DATASET.SUBSAMPLE_CLASSES", subsample, *overrides)
        return train_argv(ws, out, "CoCoOp", *flags, overrides=more, config=config)

    base = train.main(argv(tmp_path / "base", subsample="base"))
    log = (tmp_path / "base" / "log.txt").read_text()
    assert "batch [4/4]" in log  # batch size 1: one step per image (2 classes x 2 shots)
    new = train.main(argv(tmp_path / "new", "--eval-only", "--model-dir", str(tmp_path / "base"),
                          subsample="new"))  # fmt: skip
    saved = json.loads((tmp_path / "new" / "results.json").read_text())
    assert base["total"] == new["total"] == saved["total"] == 4  # 2 classes x 2 test images
    assert saved["subsample_classes"] == "new" and saved["trainer"] == "CoCoOp"
