"""Loading the original code's parameter names, and the mapping back to them."""

import copy

import pytest
import torch

from models import CoOpModel, DPTModel
from models.upstream import UPSTREAM_MODULES, ours_to_upstream, upstream_to_ours
from tests.clip_fixtures import make_clip

CLASSNAMES = ["face", "leopard", "sunflower", "golden_retriever"]
TEMPLATE = "a photo of a {}."


@pytest.fixture(scope="module")
def base_clip():
    return make_clip(seed=5, vision_layers=3).float().eval()


def dpt(clip_model, seed, template=TEMPLATE):
    torch.manual_seed(seed)
    return DPTModel(clip_model, CLASSNAMES, template, n_ctx=3, vpt_n_ctx=2, bottomlimit=2, cpn=2)


def upstream_state(model):
    """What the original code's state dict holds: parameters and derived buffers."""
    state = ours_to_upstream(model.learnable_state_dict())
    buffers = model.upstream_buffers()
    state.update({name: value.clone() for name, value in buffers.items()})
    return state


def test_names_map_both_ways(base_clip):
    model = dpt(copy.deepcopy(base_clip), seed=0)
    state = upstream_state(model)
    extractor = UPSTREAM_MODULES["cavpt"]
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
def test_load_upstream_state_dict(base_clip, dtype):
    source = dpt(copy.deepcopy(base_clip), seed=0)
    state = {name: value.to(dtype) for name, value in upstream_state(source).items()}
    target = dpt(copy.deepcopy(base_clip), seed=1)
    target.load_upstream_state_dict(state)
    for name, value in target.learnable_state_dict().items():
        assert value.dtype == torch.float32
        expected = source.learnable_state_dict()[name].to(dtype).float()
        assert torch.equal(value, expected), name


def test_derived_buffers_are_checked(base_clip):
    state = upstream_state(dpt(copy.deepcopy(base_clip), seed=0))
    other = dpt(copy.deepcopy(base_clip), seed=1, template="{} texture.")
    with pytest.raises(ValueError, match="text_features differs"):
        other.load_upstream_state_dict(state)
    with pytest.warns(UserWarning, match="text_features differs"):
        other.load_upstream_state_dict(state, strict=False)


def test_missing_unknown_and_misshaped_keys(base_clip):
    model = dpt(copy.deepcopy(base_clip), seed=0)
    state = upstream_state(model)
    with pytest.raises(ValueError, match="unknown key 'extra.weight'"):
        model.load_upstream_state_dict({**state, "extra.weight": torch.zeros(1)})
    del state["prompt_learner.ctx"]
    with pytest.raises(ValueError, match="missing 'prompt_learner.ctx'"):
        model.load_upstream_state_dict(state)
    coop = CoOpModel(copy.deepcopy(base_clip), CLASSNAMES, n_ctx=3, csc=True)
    with pytest.raises(ValueError, match=r"prompt_learner.ctx: checkpoint \(3, 64\)"):
        coop.load_upstream_state_dict({"prompt_learner.ctx": torch.zeros(3, 64)})


def test_unmappable_name_raises():
    with pytest.raises(KeyError, match="no parameter of the original code"):
        ours_to_upstream({"cavpt.blocks.0.new_thing": torch.zeros(1)})
