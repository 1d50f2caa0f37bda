"""The shipped tiny CLIP, the toy renderer it was trained on, and the tool that makes it."""

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from datasets import toy_render
from tools import make_tiny_clip

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip
    from clip.model import build_model

CHECKPOINT = Path(__file__).resolve().parents[1] / "assets/tiny_clip/tiny_clip_vit.pt"
# The shipped file scores 98.3% here (chance 10%); see assets/tiny_clip/README.md.
HELD_OUT_MIN_ACCURACY = 85.0


@pytest.fixture(scope="module")
def state_dict():
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)


def test_checkpoint_is_small_fp16_openai_layout(state_dict):
    assert CHECKPOINT.stat().st_size <= 16_000_000
    floats = [v for v in state_dict.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    assert state_dict["token_embedding.weight"].shape == (49408, 64)
    assert state_dict["positional_embedding"].shape == (77, 64)
    assert state_dict["visual.conv1.weight"].shape == (128, 3, 8, 8)
    assert state_dict["text_projection"].shape == (64, 64)
    assert int(state_dict["input_resolution"]) == 32


def test_checkpoint_builds_with_openai_loaders(state_dict):
    model = build_model(dict(state_dict))
    assert model.visual.input_resolution == 32
    assert len(model.visual.transformer.resblocks) == 4
    assert len(model.transformer.resblocks) == 3
    assert model.context_length == 77 and model.vocab_size == 49408
    loaded, preprocess = clip.load(str(CHECKPOINT), device="cpu", jit=False)
    assert loaded.visual.input_resolution == 32
    assert next(loaded.parameters()).dtype == torch.float32
    image = preprocess(toy_render.render(toy_render.Attrs("star", "red"), 64, _rng(0)))
    assert loaded.encode_image(image[None]).shape == (1, 64)


def test_zero_shot_on_held_out_pairs_is_well_above_chance(state_dict):
    model = build_model(dict(state_dict)).float()
    pairs = sorted(toy_render.HELD_OUT)
    pixels, labels = make_tiny_clip.render_eval_set(pairs, 6, 32, seed=123)
    accuracy = make_tiny_clip.zero_shot_accuracy(model, pairs, pixels, labels)
    assert accuracy >= HELD_OUT_MIN_ACCURACY, f"{accuracy:.1f}% (chance {100 / len(pairs):.0f}%)"


def _rng(seed):
    return np.random.default_rng(seed)


@pytest.mark.parametrize("shift", [None, *toy_render.SHIFT_PRESETS.values()])
def test_render_is_deterministic(shift):
    attrs = toy_render.sample_attrs(_rng(5))
    first = np.asarray(toy_render.render(attrs, 32, _rng(7), shift))
    again = np.asarray(toy_render.render(attrs, 32, _rng(7), shift))
    other = np.asarray(toy_render.render(attrs, 32, _rng(8), shift))
    assert first.shape == (32, 32, 3) and first.dtype == np.uint8
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_every_vocabulary_word_renders():
    rng = _rng(0)
    for obj in toy_render.OBJECTS:
        toy_render.render(toy_render.Attrs(obj, "red"), 16, rng)
    for pattern in toy_render.PATTERNS:
        for background in toy_render.BACKGROUNDS + toy_render.SHIFT_BACKGROUNDS:
            attrs = toy_render.Attrs("heart", "blue", pattern, "small", "left", background)
            toy_render.render(attrs, 16, rng)
    with pytest.raises(ValueError, match="unknown background"):
        toy_render.render(toy_render.Attrs("heart", "blue", background="sky"), 16, rng)


def test_sampling_skips_held_out_pairs_and_captions_fit_the_context():
    rng = _rng(1)
    attrs = [toy_render.sample_attrs(rng) for _ in range(500)]
    assert not {(a.colour, a.obj) for a in attrs} & toy_render.HELD_OUT
    for a in attrs:
        text, said = toy_render.caption_with_mentions(a, rng)
        assert a.obj in text and all(getattr(a, k) == v for k, v in said.items())
    clip.tokenize([toy_render.caption(a, rng) for a in attrs])  # raises beyond 77 tokens


def _tiny_run(out, seed=0):
    make_tiny_clip.main(
        ["--out", str(out), "--seed", str(seed), "--steps", "2", "--pool", "16"]
        + ["--batch-size", "8", "--eval-per-class", "1", "--vision-layers", "1"]
        + ["--text-layers", "1"]
    )
    return torch.load(out, weights_only=True)


@pytest.mark.slow
def test_make_tiny_clip_writes_a_loadable_reproducible_file(tmp_path):
    first = _tiny_run(tmp_path / "a.pt")
    model, _ = clip.load(str(tmp_path / "a.pt"), device="cpu", jit=False)
    assert len(model.visual.transformer.resblocks) == 1
    again = _tiny_run(tmp_path / "b.pt")
    assert first.keys() == again.keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
