"""Loading the original code's parameter names, and the mapping back to them."""

import pytest
import torch

from models import CAVPTCfg, TextPromptCfg
from models.upstream import (
    ORIGINAL_CAVPT,
    load_upstream_state_dict,
    ours_to_upstream,
    upstream_buffers,
    upstream_to_ours,
)


@pytest.fixture(scope="module")
def dpt(build_model):
    def build(seed, template="a photo of a {}."):
        text_cfg, cavpt_cfg = TextPromptCfg(n_ctx=3), CAVPTCfg(first_block=2, top_k=2)
        return build_model("dpt", seed=seed, template=template, text_cfg=text_cfg,
                           cavpt_cfg=cavpt_cfg)  # fmt: skip

    return build


def upstream_state(model):
    """What the original code's state dict holds: parameters and derived buffers."""
    state = ours_to_upstream(model.learnable_state_dict())
    buffers = upstream_buffers(model)
    state.update({name: value.clone() for name, value in buffers.items()})
    return state


def test_names_map_both_ways(dpt):
    model = dpt(seed=0)
    state = upstream_state(model)
    extractor = ORIGINAL_CAVPT
    assert state[f"{extractor}.ctx"].shape == (2, 10, 64)  # stacked over CAVPT blocks
    assert f"{extractor}.classfiers.1.weight" in state
    assert f"{extractor}.attns.0.qmlp.weight" in state
    assert state["image_encoder.transformer.ctx_learner.ctx"].shape == (1, 2, 64)
    params, derived, unknown = upstream_to_ours(state)
    assert not unknown
    assert set(derived) == {
        "prompt_learner.token_prefix",
        "prompt_learner.token_suffix",
        "text_features",
    }
    ours = model.learnable_state_dict()
    assert set(params) == set(ours)
    assert all(torch.equal(params[name], ours[name]) for name in ours)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_load_upstream_state_dict(dpt, dtype):
    source = dpt(seed=0)
    state = {name: value.to(dtype) for name, value in upstream_state(source).items()}
    target = dpt(seed=1)
    load_upstream_state_dict(target, state)
    for name, value in target.learnable_state_dict().items():
        assert value.dtype == torch.float32
        expected = source.learnable_state_dict()[name].to(dtype).float()
        assert torch.equal(value, expected), name


def test_derived_buffers_are_checked(dpt):
    state = upstream_state(dpt(seed=0))
    other = dpt(seed=1, template="{} texture.")
    with pytest.raises(ValueError, match="text_features differs"):
        load_upstream_state_dict(other, state)
    with pytest.warns(UserWarning, match="text_features differs"):
        load_upstream_state_dict(other, state, strict=False)


def test_missing_unknown_and_misshaped_keys(dpt, build_model):
    model = dpt(seed=0)
    state = upstream_state(model)
    with pytest.raises(ValueError, match="unknown key 'extra.weight'"):
        load_upstream_state_dict(model, {**state, "extra.weight": torch.zeros(1)})
    del state["prompt_learner.ctx"]
    with pytest.raises(ValueError, match="missing 'prompt_learner.ctx'"):
        load_upstream_state_dict(model, state)
    coop = build_model("coop", text_cfg=TextPromptCfg(n_ctx=3, csc=True))
    with pytest.raises(ValueError, match=r"prompt_learner.ctx: checkpoint \(3, 64\)"):
        load_upstream_state_dict(coop, {"prompt_learner.ctx": torch.zeros(3, 64)})


def test_unmappable_name_raises():
    with pytest.raises(KeyError, match="no parameter of the original code"):
        ours_to_upstream({"cavpt.blocks.0.new_thing": torch.zeros(1)})
