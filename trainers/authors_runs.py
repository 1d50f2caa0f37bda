"""Run directories of authors' codebases that save their whole model in one Dassl module
folder (MaPLe's ``MultiModalPromptLearner``, IVLP's ``VLPromptLearner``): the frozen CLIP,
derived buffers and the prompts, under the authors' parameter names.

Their prompts are read through a ``NameMap`` (models/name_map.py) built from the checkpoint's
own keys, and split into this project's learnable modules; everything else is CLIP or derived
from it and is rebuilt here, not read.
"""

import os

from engine.checkpoint import SavedModule, load_checkpoint, read_run_states
from trainers.authors_checkpoints import authors_checkpoint, split_by_module


def is_whole_model_run(directory, folder):
    return os.path.isdir(os.path.join(directory, folder))


def read_whole_model_run(directory, folder, names_in, modules, epoch=None, best=False):
    """``{module name: SavedModule}`` for ``modules`` from a run directory of the authors'
    code that saved its model in ``folder``, else (this project's or Dassl's layout) as
    ``engine.checkpoint.read_run_states``. ``names_in(state_dict)`` gives the ``NameMap`` of
    the prompts that checkpoint holds."""
    if not is_whole_model_run(directory, folder):
        return read_run_states(directory, modules, epoch, best)
    module_dir = os.path.join(directory, folder)
    path = authors_checkpoint(module_dir, epoch, best)
    ckpt = load_checkpoint(path)
    ours, _ = names_in(ckpt["state_dict"]).to_ours(ckpt["state_dict"])
    states = split_by_module(ours)
    found_epoch = ckpt.get("epoch")
    print(f"Loading the prompts from the authors' run directory {directory} ({path}, "
          f"epoch = {found_epoch})")  # fmt: skip
    missing = [name for name in modules if name not in states]
    if missing:
        raise ValueError(
            f"'{path}' has no {missing} (it holds {sorted(states)}): the run was trained with "
            "other prompt depths; evaluate with the config file it was trained with."
        )
    return {name: SavedModule(states[name], found_epoch, path=path) for name in modules}
