"""The exact speed-ups give the plain path's results (float32, tight tolerance)."""

import dataclasses

import pytest
import torch

import train
from engine.config import setup_cfg
from engine.registry import TRAINER_REGISTRY
from models.prompting import DeepPrompt
from models.settings import TextPromptCfg
from models.speed import PLAIN, Speed, apply_speed
from models.text import LearnedTextFeatures, PromptLearner
from tests.conftest import CLASSNAMES
from tests.run_fixtures import make_workspace, train_argv
from trainers.builtin import build_trainer

TOL = 1e-5  # largest difference relative to the plain path's largest magnitude
# Each switch on its own, and all of the defaults together.
SETTINGS = {
    "truncate": dataclasses.replace(PLAIN, truncate_text=True),
    "sdpa": dataclasses.replace(PLAIN, sdpa=True),
    "shared_prefix": dataclasses.replace(PLAIN, sdpa=True, shared_text_prefix=True),
    "checkpoint": dataclasses.replace(PLAIN, checkpoint_text=True),
    "defaults": Speed(),
    "defaults+checkpoint": Speed(checkpoint_text=True),
}


def assert_same(ours, plain, tol=TOL):
    ours, plain = ours.detach().float(), plain.detach().float()
    assert ours.shape == plain.shape
    scale = plain.abs().max().clamp_min(1e-12)
    assert (ours - plain).abs().max() <= tol * scale, (ours - plain).abs().max() / scale


@pytest.fixture(scope="module")
def clip_model(small_clip):
    return small_clip


@pytest.fixture(scope="module")
def batch(image_batch):
    return image_batch


def learner_with(clip_model, **settings):
    return PromptLearner(clip_model, CLASSNAMES, settings=TextPromptCfg(**settings))


def text_run(text, speed, train=True):
    """Features and the context's gradient with ``speed`` (train mode, with autograd)."""
    apply_speed(text, speed)
    text.train(train)
    text.prompt_learner.ctx.grad = None
    features = text()
    features.pow(2).sum().backward()
    return features.detach(), text.prompt_learner.ctx.grad.clone()


@pytest.mark.parametrize(
    "position,csc,ctx_init,shared",
    [("end", False, "", 1 + 5), ("middle", False, "", 1 + 2), ("front", False, "", 1),
     ("end", True, "", 1), ("end", False, "a_photo_of_a", 1 + 4)],
)  # fmt: skip
def test_shared_prefix_length(clip_model, position, csc, ctx_init, shared):
    learner = learner_with(
        clip_model, n_ctx=5, ctx_init=ctx_init, csc=csc, class_token_position=position
    )
    assert learner.shared_prefix_length == shared
    full, eos = learner(full_length=True)
    prefix = full[:, :shared]
    assert torch.equal(prefix, prefix[:1].expand_as(prefix)) and int(eos.min()) >= shared
    assert full.shape[1] == 77 and learner()[0].shape[1] == learner.truncated_length < 77


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("position,csc", [("end", False), ("middle", False), ("front", True)])
def test_text_features_and_gradients_match_the_plain_path(clip_model, setting, position, csc):
    torch.manual_seed(0)
    learner = learner_with(clip_model, n_ctx=5, csc=csc, class_token_position=position)
    text = LearnedTextFeatures(clip_model, learner)
    features, grad = text_run(text, SETTINGS[setting])
    plain_features, plain_grad = text_run(text, PLAIN)
    assert_same(features, plain_features)
    assert_same(grad, plain_grad)


@pytest.mark.parametrize("setting", ["shared_prefix", "defaults+checkpoint"])
@pytest.mark.parametrize("position,csc", [("end", False), ("middle", False), ("front", True)])
def test_deep_text_prompts_match_the_plain_path(clip_model, setting, position, csc):
    """Context replaced before the second text block, wherever its slots are: in the shared
    prefix, after it, or both (the middle position splits the context around the name)."""
    torch.manual_seed(0)
    learner = learner_with(clip_model, n_ctx=4, csc=csc, class_token_position=position)
    text = LearnedTextFeatures(clip_model, learner, DeepPrompt(1, 4, 64))
    deep = text.deep_prompt.tokens
    features, grad = text_run(text, SETTINGS[setting])
    deep_grad, deep.grad = deep.grad.clone(), None
    plain_features, plain_grad = text_run(text, PLAIN)
    assert_same(features, plain_features)
    assert_same(grad, plain_grad)
    assert_same(deep_grad, deep.grad)
    assert deep.grad.abs().gt(0).all()


def eval_logits(model, speed, images):
    """Eval-mode logits with ``speed``."""
    apply_speed(model, speed)
    with torch.no_grad():
        return model.eval()(images).logits


def model_run(model, speed, images, labels):
    """Train-mode outputs, loss and gradients, then eval-mode logits, with ``speed``."""
    apply_speed(model, speed)
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(images)
    loss, _ = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return out, loss.detach(), grads, eval_logits(model, speed, images)


@pytest.mark.parametrize("name", sorted(TRAINER_REGISTRY.names()))
def test_models_match_the_plain_path_in_training_and_evaluation(method_model, batch, name):
    """Every registered method's model, as the method builds it (with its regularisers); one
    that does not train (zero-shot CLIP), in evaluation."""
    model = method_model(name)
    if not TRAINER_REGISTRY.get(name).trains:
        assert_same(eval_logits(model, Speed(), batch[0]), eval_logits(model, PLAIN, batch[0]))
        return
    fast = model_run(model, Speed(), *batch)
    plain = model_run(model, PLAIN, *batch)
    for field in ("logits", "frozen_image_logits", "frozen_text_logits"):
        if getattr(plain[0], field, None) is not None:
            assert_same(getattr(fast[0], field), getattr(plain[0], field))
    if getattr(plain[0], "cavpt_logits", None) is not None:  # DPT's
        assert torch.equal(fast[0].top_k_classes, plain[0].top_k_classes)  # the same top-K
        for ours, theirs in zip(fast[0].cavpt_logits, plain[0].cavpt_logits, strict=True):
            assert_same(ours, theirs)
    assert_same(fast[1], plain[1])
    assert fast[2].keys() == plain[2].keys()
    for name, grad in plain[2].items():
        assert_same(fast[2][name], grad)
    assert_same(fast[3], plain[3])


def test_zero_shot_branch_runs_without_autograd(build_model, batch):
    model = build_model("dpt").train()
    features = model.zeroshot.image_features(batch[0])
    assert features.grad_fn is None and not features.requires_grad
    apply_speed(model, PLAIN)
    plain = model.zeroshot.image_features(batch[0])
    assert_same(features, plain)
    scale = model.logit_scale()
    assert torch.equal(
        model.zeroshot.top_classes(features, 3, scale), model.zeroshot.top_classes(plain, 3, scale)
    )


@pytest.mark.slow
def test_compiled_blocks_match_eager(build_model, batch):
    model = build_model("dpt")
    compiled = model_run(model, Speed(compile="aot_eager"), *batch)
    eager = model_run(model, Speed(), *batch)
    assert_same(compiled[1], eager[1])
    for name, grad in eager[2].items():
        assert_same(compiled[2][name], grad)
    assert_same(compiled[3], eager[3])


def test_eval_mode_reuses_text_features_unless_switched_off(clip_model):
    text = LearnedTextFeatures(clip_model, learner_with(clip_model, n_ctx=4)).eval()
    with torch.no_grad():
        assert text() is text()
        apply_speed(text, dataclasses.replace(Speed(), cache_text=False))
        assert text() is not text()


def test_shared_prefix_needs_sdpa():
    with pytest.raises(ValueError, match="needs sdpa"):
        Speed(sdpa=False)


# ---- in the trainer ------------------------------------------------------------------------
PLAIN_KEYS = (
    "TRAINER.SPEED.SDPA",
    "False",
    "TRAINER.SPEED.TRUNCATE_TEXT",
    "False",
    "TRAINER.SPEED.SHARED_TEXT_PREFIX",
    "False",
    "TRAINER.SPEED.CACHE_TEXT",
    "False",
)
DPT_SMALL = ("TRAINER.VPT.N_CTX", "3", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
             "TRAINER.SELECTED_COVPT.CPN", "3", "PRETRAIN.C", "1", "OPTIM.MAX_EPOCH", "1",
             "DATALOADER.TEST.BATCH_SIZE", "4")  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    classes = {name: 6 for name in ["ant", "bee", "cat", "dog"]}
    return make_workspace(tmp_path_factory.mktemp("speed"), classes)


def dpt_argv(ws, out, *overrides):
    return train_argv(ws, out, "DPT", overrides=DPT_SMALL + overrides)


def dpt_trainer(ws, out, *overrides):
    args = train.build_parser().parse_args(dpt_argv(ws, out, *overrides))
    return build_trainer(setup_cfg(args))


@pytest.mark.parametrize("cache", [True, False])
def test_text_encoded_once_per_step_and_once_per_evaluation(workspace, tmp_path, cache):
    trainer = dpt_trainer(workspace, tmp_path, "TRAINER.SPEED.CACHE_TEXT", str(cache))
    calls = []
    trainer.model.text.encoder.register_forward_hook(lambda *args: calls.append(1))
    trainer.run_epoch()
    assert len(calls) == len(trainer.dm.train_loader_x)  # one for all uses in a step
    calls.clear()
    trainer.test(write_results=False)
    assert len(calls) == (1 if cache else len(trainer.dm.test_loader)) > 1 - cache


@pytest.mark.slow
def test_fast_and_plain_trainers_give_the_same_run(workspace, tmp_path):
    fast = train.main(dpt_argv(workspace, tmp_path / "fast"))
    plain = train.main(dpt_argv(workspace, tmp_path / "plain", *PLAIN_KEYS))
    assert fast["accuracy"] == plain["accuracy"] and fast["macro_f1"] == plain["macro_f1"]
    for module in ("prompt_learner", "visual_prompt", "cavpt"):
        ours, theirs = (
            torch.load(tmp_path / run / module / "model.pth.tar-1", weights_only=False)
            for run in ("fast", "plain")
        )
        for key, value in theirs["state_dict"].items():
            assert_same(ours["state_dict"][key], value, tol=1e-4)


def test_auto_precision_is_float32_on_the_cpu_and_keys_are_checked(workspace, tmp_path):
    assert dpt_trainer(workspace, tmp_path, "TRAINER.COOP.PREC", "auto").precision == "fp32"
    with pytest.raises(ValueError, match="SHARED_TEXT_PREFIX True needs TRAINER.SPEED.SDPA"):
        dpt_trainer(workspace, tmp_path, "TRAINER.SPEED.SDPA", "False")
