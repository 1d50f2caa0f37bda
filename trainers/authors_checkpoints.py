"""What reading any authors' run directory takes (the original DPT code's,
trainers/original_checkpoints.py; MaPLe's and IVLP's, trainers/authors_runs.py): the checkpoint
their evaluation loads from a module folder, and their parameters, once under our names, as
our modules' state dicts."""

import os

from engine.checkpoint import BEST_NAME, epoch_name, latest_checkpoint


def authors_checkpoint(module_dir, epoch=None, best=False):
    """The path of the epoch asked for; else of the authors' default for evaluation
    (``model-best.pth.tar``, as their ``load_model``), else of the newest epoch. One that
    does not exist is a FileNotFoundError naming what was looked for."""
    if epoch is not None:
        path = os.path.join(module_dir, epoch_name(epoch))
    else:
        best_path = os.path.join(module_dir, BEST_NAME)
        path = best_path if best or os.path.isfile(best_path) else latest_checkpoint(module_dir)
    if not path or not os.path.isfile(path):
        wanted = epoch_name(epoch) if epoch is not None else f"{BEST_NAME} or a checkpoint"
        raise FileNotFoundError(f"No {wanted} in {module_dir}")
    return path


def split_by_module(params):
    """``{"<module>.<key>": tensor}`` (our names) -> ``{module: {key: float32 tensor}}``."""
    modules = {}
    for name, value in params.items():
        module, key = name.split(".", 1)
        modules.setdefault(module, {})[key] = value.float()
    return modules
