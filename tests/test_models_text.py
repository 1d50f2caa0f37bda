"""CoOp prompt learner, causal text encoder and hand-crafted template features."""

import warnings

import pytest
import torch

from models.prompting import DeepPrompt
from models.settings import SettingError, TextPromptCfg
from models.text import (
    LearnedTextFeatures,
    PromptLearner,
    TextEncoder,
    count_tokens,
    encode_template,
)
from tests.conftest import CLASSNAMES


@pytest.fixture(scope="module")
def clip_model(small_clip):
    return small_clip


def learner_with(clip_model, classnames=CLASSNAMES, **settings):
    return PromptLearner(clip_model, classnames, settings=TextPromptCfg(**settings))


def coop_reference_prompts(learner, ctx, token_embedding):
    """The original CoOp concatenation (prefix, ctx halves, class, suffix) per position."""
    buffers = learner.upstream_buffers(token_embedding)
    prefix, suffix = buffers["token_prefix"], buffers["token_suffix"]
    half = learner.n_ctx // 2
    prompts = []
    for i, name in enumerate(CLASSNAMES):
        name_len = count_tokens(name.replace("_", " "))
        c, cls, rest = ctx[i], suffix[i, :name_len], suffix[i, name_len:]
        parts = {
            "end": [prefix[i], c, suffix[i]],
            "front": [prefix[i], cls, c, rest],
            "middle": [prefix[i], c[:half], cls, c[half:], rest],
        }[learner.class_token_position]
        prompts.append(torch.cat(parts))
    return torch.stack(prompts)


def test_template_features_match_clip_encode_text(clip_model):
    import clip

    features = encode_template(clip_model, CLASSNAMES, "a photo of a {}.")
    texts = [f"a photo of a {name.replace('_', ' ')}." for name in CLASSNAMES]
    with torch.no_grad():
        expected = clip_model.encode_text(clip.tokenize(texts))
    expected = expected / expected.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_prompt_layout_matches_coop(clip_model, position, csc):
    learner = learner_with(clip_model, CLASSNAMES, n_ctx=5, csc=csc, class_token_position=position)
    assert learner.ctx.shape == ((len(CLASSNAMES), 5, 64) if csc else (5, 64))
    assert learner.ctx.dtype == torch.float32
    with torch.no_grad():
        learner.ctx.normal_()
    prompts, eos = learner()
    ctx = learner.ctx if csc else learner.ctx.expand(len(CLASSNAMES), -1, -1)
    reference = coop_reference_prompts(learner, ctx, clip_model.token_embedding)
    seq_len = prompts.shape[1]
    assert seq_len == int(eos.max()) + 1 < 77  # cut after the longest prompt's EOS
    torch.testing.assert_close(prompts, reference[:, :seq_len], rtol=0, atol=0)
    assert torch.equal(eos, learner.tokenized_prompts.argmax(dim=-1))


def test_ctx_init_gives_the_template_features(clip_model):
    learner = learner_with(clip_model, CLASSNAMES, n_ctx=16, ctx_init="a_photo_of_a")
    assert learner.n_ctx == 4 and learner.ctx.shape == (4, 64)
    text = LearnedTextFeatures(clip_model, learner)
    with torch.no_grad():
        features = text()
    features = features / features.norm(dim=-1, keepdim=True)
    expected = encode_template(clip_model, CLASSNAMES, "a photo of a {}.")
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-5)


def test_ctx_init_shares_context_even_with_csc(clip_model):
    with pytest.warns(UserWarning, match="csc=True is ignored"):
        learner = learner_with(clip_model, CLASSNAMES, ctx_init="a photo of", csc=True)
    assert learner.ctx.shape == (3, 64)


def test_too_long_class_name_names_class_and_limit(clip_model):
    long_name = "very " * 75 + "long_cat"
    with pytest.raises(ValueError, match=r"class 'very .*long_cat'.*context length of 77"):
        learner_with(clip_model, ["cat", long_name], n_ctx=16)
    with pytest.raises(ValueError, match="long_cat"):
        encode_template(clip_model, ["cat", long_name], "a photo of a {}.")


def test_invalid_arguments(clip_model):
    with pytest.raises(SettingError, match="class_token_position"):
        learner_with(clip_model, CLASSNAMES, class_token_position="start")
    with pytest.raises(SettingError, match="n_ctx"):
        learner_with(clip_model, CLASSNAMES, n_ctx=0)
    with pytest.raises(ValueError, match="at least one class name"):
        learner_with(clip_model, [])


def test_text_features_cached_at_eval_until_ctx_changes(clip_model):
    text = LearnedTextFeatures(clip_model, learner_with(clip_model, CLASSNAMES, n_ctx=4))
    text.eval()
    with torch.no_grad():
        first = text()
        assert text() is first
        text.prompt_learner.ctx.add_(0.1)
        second = text()
    assert second is not first and not torch.equal(second, first)
    text.train()
    assert text().requires_grad


def test_cached_text_features_follow_deep_prompts_too(clip_model):
    learner = learner_with(clip_model, CLASSNAMES, n_ctx=4)
    text = LearnedTextFeatures(clip_model, learner, DeepPrompt(1, 4, 64)).eval()
    with torch.no_grad():
        first = text()
        assert text() is first
        text.deep_prompt.tokens.add_(0.1)  # the context is unchanged
        second = text()
    assert not torch.equal(second, first)


def test_deep_prompts_replace_the_context_before_later_blocks(clip_model):
    """Before block 1 the context slots hold the deep tokens, whatever block 0 made of the
    input context; the other tokens are block 0's outputs."""
    learner = learner_with(clip_model, CLASSNAMES, n_ctx=4, class_token_position="middle")
    deep = torch.randn(4, 64)
    entering = []  # the sequence entering block 1, as its first LayerNorm sees it
    ln_1 = clip_model.transformer.resblocks[1].ln_1
    handle = ln_1.register_forward_pre_hook(lambda module, args: entering.append(args[0]))
    try:
        with torch.no_grad():
            TextEncoder(clip_model)(*learner.frozen_prompts(), 0, learner.prompts([deep]))
    finally:
        handle.remove()
    x = entering[0]  # [C, S, D]
    rows = torch.arange(len(CLASSNAMES))[:, None]
    torch.testing.assert_close(x[rows, learner.ctx_slots], deep.expand(len(CLASSNAMES), -1, -1))
    is_ctx = torch.zeros(x.shape[:2], dtype=torch.bool)
    is_ctx[rows, learner.ctx_slots] = True
    assert not torch.isclose(x[~is_ctx], torch.zeros(())).all()


def test_text_encoder_is_causal(clip_model):
    """Cutting the sequence after EOS leaves the EOS features unchanged."""
    import clip

    ids = clip.tokenize(["a photo of a face.", "a leopard."])
    eos = ids.argmax(dim=-1)
    encoder = TextEncoder(clip_model)
    with torch.no_grad():
        embeddings = clip_model.token_embedding(ids)
        full = encoder(embeddings, eos)
        cut = encoder(embeddings[:, : int(eos.max()) + 1], eos)
    torch.testing.assert_close(full, cut, atol=1e-5, rtol=1e-5)


def test_multi_token_ctx_init_word_warns(clip_model):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        learner_with(clip_model, CLASSNAMES, ctx_init="a photo of aeroplanes")
    assert any("BPE tokens" in str(w.message) for w in caught)
