"""Parameter names of the original DPT code (github fanrena/DPT) and ours.

Also here: loading such a state dict into our model (``load_upstream_state_dict``), as timm
keeps a model's ``checkpoint_filter_fn`` beside it.

Ours are ``<learnable module>.<key in that module's state dict>``, the module names being the
folder names of the run directory (``prompt_learner``, ``visual_prompt``, ``cavpt``). The
original registers its learnable modules under longer names (``ORIGINAL_FOLDERS``; which of a
method's modules each one holds, the method says: ``Method.original_dpt_folders``), keeps the
CAVPT key/value tokens of all blocks in one stacked tensor, and saves buffers derived from the
class names and CLIP (``DERIVED_KEYS``), which we recompute instead of loading.
"""

import re
import warnings

import torch

# The original's learnable modules: their attribute paths, the folders of its run directories.
ORIGINAL_TEXT_PROMPT = "prompt_learner"
ORIGINAL_VISUAL_PROMPT = "image_encoder.transformer.ctx_learner"
ORIGINAL_CAVPT = "image_encoder.transformer.extractor"
ORIGINAL_FOLDERS = (ORIGINAL_TEXT_PROMPT, ORIGINAL_VISUAL_PROMPT, ORIGINAL_CAVPT)

DERIVED_KEYS = ("prompt_learner.token_prefix", "prompt_learner.token_suffix", "text_features")

# (original, ours); "{i}" is a CAVPT block index
_RENAMES = [
    (ORIGINAL_TEXT_PROMPT + ".ctx", "prompt_learner.ctx"),
    (ORIGINAL_VISUAL_PROMPT + ".ctx", "visual_prompt.tokens"),
    (ORIGINAL_CAVPT + ".meta_nets.{i}.weight", "cavpt.blocks.{i}.meta_net.weight"),
    (ORIGINAL_CAVPT + ".meta_nets.{i}.bias", "cavpt.blocks.{i}.meta_net.bias"),
    (ORIGINAL_CAVPT + ".attns.{i}.qmlp.weight", "cavpt.blocks.{i}.q_proj.weight"),
    (ORIGINAL_CAVPT + ".attns.{i}.kmlp.weight", "cavpt.blocks.{i}.k_proj.weight"),
    (ORIGINAL_CAVPT + ".attns.{i}.vmlp.weight", "cavpt.blocks.{i}.v_proj.weight"),
    (ORIGINAL_CAVPT + ".lns.{i}.weight", "cavpt.blocks.{i}.logit_norm.weight"),
    (ORIGINAL_CAVPT + ".lns.{i}.bias", "cavpt.blocks.{i}.logit_norm.bias"),
    (ORIGINAL_CAVPT + ".classfiers.{i}.weight", "cavpt.blocks.{i}.classifier.weight"),  # sic
    (ORIGINAL_CAVPT + ".lns2.{i}.weight", "cavpt.blocks.{i}.prompt_norm.weight"),
    (ORIGINAL_CAVPT + ".lns2.{i}.bias", "cavpt.blocks.{i}.prompt_norm.bias"),
]

# original tensor stacked over CAVPT blocks -> our per-block name
_STACKED = {ORIGINAL_CAVPT + ".ctx": "cavpt.blocks.{i}.kv_tokens"}


def _pattern(template):
    return re.compile(re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)") + "$")


_FORWARD = [(_pattern(theirs), ours) for theirs, ours in _RENAMES]
_BACKWARD = [(_pattern(ours), theirs) for theirs, ours in _RENAMES]
_UNSTACK = {_pattern(ours): theirs for theirs, ours in _STACKED.items()}


def _rename(name, rules):
    for pattern, template in rules:
        match = pattern.match(name)
        if match:
            return template.format(**match.groupdict())
    return None


def upstream_to_ours(state_dict):
    """Split an original-code state dict into (our parameters, derived buffers, unknown keys)."""
    params, derived, unknown = {}, {}, []
    for name, value in state_dict.items():
        if name in DERIVED_KEYS:
            derived[name] = value
        elif name in _STACKED:
            for i, block_value in enumerate(value.unbind(0)):
                params[_STACKED[name].format(i=i)] = block_value
        else:
            ours = _rename(name, _FORWARD)
            if ours is None:
                unknown.append(name)
            else:
                params[ours] = value
    return params, derived, unknown


def ours_to_upstream(state_dict):
    """Our parameter names (or gradients keyed by them) -> the original code's names.

    Raises ``KeyError`` for a name the original code has no counterpart for.
    """
    out, stacked = {}, {}
    for name, value in state_dict.items():
        theirs = _rename(name, _BACKWARD)
        if theirs is not None:
            out[theirs] = value
            continue
        for pattern, target in _UNSTACK.items():
            match = pattern.match(name)
            if match:
                stacked.setdefault(target, {})[int(match["i"])] = value
                break
        else:
            raise KeyError(f"no parameter of the original code corresponds to {name!r}")
    for target, blocks in stacked.items():
        if sorted(blocks) != list(range(len(blocks))):
            raise KeyError(f"{target} needs blocks 0..{len(blocks) - 1}, got {sorted(blocks)}")
        out[target] = torch.stack([blocks[i] for i in range(len(blocks))])
    return out


def upstream_buffers(model):
    """The derived buffers the original code saves, as ``model`` recomputes them."""
    buffers = {}
    if model.text is not None:
        token_embedding = model.clip.token_embedding
        for key, value in model.text.prompt_learner.upstream_buffers(token_embedding).items():
            buffers[f"prompt_learner.{key}"] = value
    if model.zeroshot is not None:
        buffers["text_features"] = model.zeroshot.text_features
    return buffers


def _disagreement(ours, theirs):
    """Why a derived buffer from a checkpoint does not match ours, or None if it does."""
    if tuple(theirs.shape) != tuple(ours.shape):
        return f"shape {tuple(theirs.shape)}, expected {tuple(ours.shape)}"
    diff = (theirs.to(ours.device).float() - ours.float()).abs().max().item()
    scale = ours.float().abs().max().item()
    if diff > 1e-2 * scale + 1e-6:  # loose enough for a float16 checkpoint
        return f"differs by up to {diff:.3g} (values up to {scale:.3g})"
    return None


def load_upstream_state_dict(model, state_dict, strict=True):
    """Load learnable parameters saved by the original code (its names, fp16 or fp32) into
    ``model`` (a ``PromptTuningModel``).

    Derived buffers (``token_prefix``, ``token_suffix``, ``text_features``) are not loaded
    but compared with ours: a mismatch means other class names, template or CLIP weights.
    With ``strict`` such mismatches and missing or unexpected keys raise ``ValueError``;
    otherwise they warn. Shape mismatches always raise.
    """
    params, derived, unknown = upstream_to_ours(state_dict)
    ours = model.learnable_state_dict()
    problems = [f"unknown key {name!r}" for name in unknown]
    problems += [f"missing {name!r}" for name in ours if name not in params]
    problems += [f"unexpected {name!r}" for name in params if name not in ours]
    expected = upstream_buffers(model)
    for name, value in derived.items():
        if name not in expected:
            problems.append(f"unexpected {name!r}")
        elif (why := _disagreement(expected[name], value)) is not None:
            problems.append(f"{name} {why}: other class names, template or CLIP weights?")
    shape_errors = [
        f"{name}: checkpoint {tuple(value.shape)}, model {tuple(ours[name].shape)}"
        for name, value in params.items()
        if name in ours and value.shape != ours[name].shape
    ]
    if shape_errors:
        raise ValueError("shape mismatch loading upstream state dict: " + "; ".join(shape_errors))
    if problems:
        message = "upstream state dict: " + "; ".join(problems)
        if strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=2)
    with torch.no_grad():
        for name, value in params.items():
            if name in ours:
                ours[name].copy_(value)
