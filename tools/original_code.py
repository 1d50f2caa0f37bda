"""The original DPT code (github fanrena/DPT, commit 11fef90), imported from its own checkout
and adapted from outside only where it cannot run as it is.

Its checkout is ``DPT_ORIGINAL_DIR``, by default ``../DPT`` beside this repository. Its packages
``clip`` and ``trainers`` have the names of clip-anytorch and of ours: a process that runs only
the original installs them under those names (``install_package``, as
``tests/trajectory_runner.py`` does); ``import_original`` imports the original's trainer module
beside ours in one process (the benchmark, the GPU check) and leaves ``sys.modules`` as it was.
Its trainer modules import Dassl, and register their trainers in Dassl's registry: import it in
a process where this project's Dassl engine has not registered the same names.
"""

import contextlib
import functools
import importlib
import importlib.machinery
import importlib.util
import io
import os
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
COMMIT = "11fef90"


def default_original_dir():
    return Path(os.environ.get("DPT_ORIGINAL_DIR", REPO.parent / "DPT"))


def original_unavailable(original_dir):
    """Why the original DPT code cannot be imported from ``original_dir`` (None when it can)."""
    if not (Path(original_dir) / "trainers" / "DPT.py").is_file():
        return (
            f"the original DPT code (github fanrena/DPT, commit {COMMIT}) is not at "
            f"{original_dir}: clone it there or set DPT_ORIGINAL_DIR to its checkout"
        )
    if importlib.util.find_spec("dassl") is None:
        return "the original DPT code imports Dassl, which is not installed"
    return None


def install_package(name, directory):
    """Import ``directory`` as the top-level package ``name``, ahead of anything on sys.path
    under that name (the original's ``trainers`` has no ``__init__.py``)."""
    init = os.path.join(directory, "__init__.py")
    if os.path.exists(init):
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[directory]
        )
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [directory]
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if spec.loader is not None:
        spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def _packages_set_aside(names):
    """``sys.modules`` without the packages ``names`` (and their modules) inside the block;
    what the block imports under those names is dropped again after it."""

    def listed(key):
        return any(key == name or key.startswith(name + ".") for name in names)

    saved = {key: sys.modules.pop(key) for key in list(sys.modules) if listed(key)}
    try:
        yield
    finally:
        for key in [key for key in sys.modules if listed(key)]:
            del sys.modules[key]
        sys.modules.update(saved)


@functools.cache
def import_original(original_dir, trainer="DPT"):
    """The original's ``trainers.<trainer>`` module and its ``clip`` package, imported beside
    this project's packages of the same names (once per process)."""
    original_dir = Path(original_dir)
    with _packages_set_aside(("clip", "trainers")):
        clip_package = install_package("clip", str(original_dir / "clip"))
        install_package("trainers", str(original_dir / "trainers"))
        module = importlib.import_module(f"trainers.{trainer}")
    return module, clip_package


class FloatTargetCrossEntropy:
    """``torch.nn.functional`` whose ``cross_entropy`` casts probability targets to the
    logits' dtype. The original's CAVPT loss passes float16 one-hot targets, which half
    precision logits accept and float32 logits do not; one-hot values are exact in both."""

    def __getattr__(self, name):
        return getattr(F, name)

    @staticmethod
    def cross_entropy(logits, target, *args, **kwargs):
        if target.is_floating_point():
            target = target.to(logits.dtype)
        return F.cross_entropy(logits, target, *args, **kwargs)


def adapt_original(module, clip_package, template=None):
    """Patch the original trainer module (``trainers.DPT`` or ``trainers.VLP``) from outside:

    - ``load_clip_to_cpu`` builds CLIP from MODEL.BACKBONE.NAME, a local OpenAI-layout state
      dict (e.g. the tiny CLIP), with the original's ``clip.build_model``, instead of looking
      the name up in ``clip._MODELS`` and downloading it;
    - ``template`` (dataset name, template) is added to ``CUSTOM_TEMPLATES`` (it lists CoOp's
      datasets only);
    - DPT: CAVPT (``extractor``), which the original always casts to float16, is cast back to
      float32 under PREC fp32 (it fails at fp32 otherwise), and its auxiliary loss's float16
      targets are cast to the logits' dtype (``FloatTargetCrossEntropy``).
    """

    def load_clip_to_cpu(cfg):
        state_dict = torch.load(cfg.MODEL.BACKBONE.NAME, map_location="cpu", weights_only=True)
        return clip_package.clip.build_model(state_dict)

    module.load_clip_to_cpu = load_clip_to_cpu
    if template is not None:
        module.CUSTOM_TEMPLATES[template[0]] = template[1]
    if not hasattr(module, "CAVPT"):
        return
    trainer_type = module.DPT
    build_model = trainer_type.build_model

    def build_model_fp32_cavpt(self):
        build_model(self)
        if self.cfg.TRAINER.COOP.PREC == "fp32":
            self.model.image_encoder.transformer.extractor.float()

    trainer_type.build_model = build_model_fp32_cavpt
    module.F = FloatTargetCrossEntropy()


@functools.cache
def adapted_original_dpt(original_dir):
    """The original's ``trainers.DPT`` module and ``clip`` package, imported and adapted once
    per process."""
    module, clip_package = import_original(original_dir, "DPT")
    adapt_original(module, clip_package)
    return module, clip_package


def original_dpt_trainer(original_dir, cfg, classnames, clip_state_dict, device):
    """The original's DPT trainer, built by its own ``build_model`` (model, three optimisers
    and schedules) from ``clip_state_dict`` (OpenAI's layout), without Dassl's data manager:
    its ``forward_backward({"img", "label"})`` and ``model_inference`` run as in its training
    and test loops. ``cfg`` holds the keys the original reads (this project's defaults hold
    them all); its precision is TRAINER.COOP.PREC (the original's fp16, amp or fp32)."""
    from dassl.engine.trainer import TrainerBase

    from dassl_engine.compat import allow_current_torch_schedulers

    allow_current_torch_schedulers()
    module, clip_package = adapted_original_dpt(str(original_dir))
    # CLIP from the given weights (the adapted loader reads MODEL.BACKBONE.NAME's file)
    module.load_clip_to_cpu = lambda cfg: clip_package.clip.build_model(dict(clip_state_dict))
    trainer = module.DPT.__new__(module.DPT)
    TrainerBase.__init__(trainer)
    trainer.check_cfg(cfg)
    trainer.cfg = cfg
    trainer.device = device
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=list(classnames)))
    trainer.num_classes = len(classnames)
    trainer.start_epoch = trainer.epoch = trainer.batch_idx = 0
    trainer.num_batches = sys.maxsize  # its schedules step at an epoch's last batch: never here
    with contextlib.redirect_stdout(io.StringIO()):  # it prints every learnable parameter
        trainer.build_model()
    # its CAVPT loss writes into an expanded tensor, which torch warns about (once)
    warnings.filterwarnings("ignore", message="Use of .* on expanded tensors is deprecated")
    return trainer
