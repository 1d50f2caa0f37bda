"""Run directories written by the original DPT code: detect, read, convert to our layout.

The original saves each learnable module in its own folder, named after its attribute path
(``image_encoder.transformer.ctx_learner``, ``image_encoder.transformer.extractor``,
``prompt_learner``: ``models.upstream.ORIGINAL_FOLDERS``), with keys relative to that module
and tensors often in float16. Which folder holds which of a method's modules, the method says
(``Method.original_dpt_folders``).
"""

import os

from engine.checkpoint import SavedModule, load_checkpoint, read_run_states, save_checkpoint
from models.upstream import (
    ORIGINAL_CAVPT,
    ORIGINAL_FOLDERS,
    ORIGINAL_VISUAL_PROMPT,
    upstream_to_ours,
)
from trainers.authors_checkpoints import authors_checkpoint, split_by_module

# Folders that only the original layout has (its text prompt's, ``prompt_learner``, is ours too).
_ORIGINAL_ONLY = (ORIGINAL_VISUAL_PROMPT, ORIGINAL_CAVPT)


def is_original_layout(directory):
    return any(os.path.isdir(os.path.join(directory, name)) for name in _ORIGINAL_ONLY)


def read_original_run(directory, epoch=None, folders=ORIGINAL_FOLDERS):
    """Our modules' state dicts (float32, our names) and the epoch, from the ``folders`` of an
    original run dir that it has."""
    flat, found_epoch = {}, None
    for folder in folders:
        module_dir = os.path.join(directory, folder)
        if not os.path.isdir(module_dir):
            continue
        path = authors_checkpoint(module_dir, epoch)
        ckpt = load_checkpoint(path)
        found_epoch = ckpt.get("epoch", found_epoch)
        for key, value in ckpt["state_dict"].items():
            flat[f"{folder}.{key}"] = value
    params, _derived, unknown = upstream_to_ours(flat)
    if unknown:
        raise ValueError(f"Unknown parameters in the original run directory {directory}: {unknown}")
    return split_by_module(params), found_epoch


def convert_original_run(src, dst, epoch=None):
    """Write an original run directory's weights in our layout; returns the written paths."""
    modules, found_epoch = read_original_run(src, epoch)
    written = []
    for name, state_dict in modules.items():
        state = {"state_dict": state_dict, "epoch": found_epoch or 0, "optimizer": None,
                 "scheduler": None, "val_result": None}  # fmt: skip
        written.append(save_checkpoint(state, os.path.join(dst, name)))
    return written


def read_trained_states(directory, names, folders, epoch=None, best=False):
    """``{name: SavedModule}`` for the modules ``names`` (our names), from a run directory of
    this project, of Dassl, or of the original DPT code (detected by its folders; ``folders``
    maps a module of ours to its folder there)."""
    if not is_original_layout(directory):
        return read_run_states(directory, names, epoch, best)
    wanted = [folders[name] for name in names if name in folders]
    modules, found_epoch = read_original_run(directory, epoch, wanted)
    print(f"Loading weights from the original code's run directory {directory} "
          f"(epoch = {found_epoch})")  # fmt: skip
    missing = [name for name in names if name not in modules]
    if missing:
        raise FileNotFoundError(
            f"{directory} has no checkpoint for {missing} (found {sorted(modules)})"
        )
    return {name: SavedModule(modules[name], found_epoch) for name in names}
