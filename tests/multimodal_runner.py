"""The authors' side of ``tests/test_original_multimodal.py``, in a process of its own:

    python -m tests.multimodal_runner WORK_DIR --original-dir DIR

Runs IVLP and MaPLe as their authors wrote them (github muzairkhattak/multimodal-prompt-learning,
commit 69bce21: ``trainers/independentVL.py``, ``trainers/maple.py`` and its forked ``clip``
package, imported from DIR under the names ``clip`` and ``trainers``, which is why this is a
separate process: clip-anytorch and our ``trainers`` have those names too).

WORK_DIR/cases.pt lists the cases (trainer, its ``TRAINER.*`` keys, class names, the file of a
CLIP state dict, images, labels, seed). For each, the authors' ``CustomCLIP`` is built as their
trainer's ``build_model`` builds it in float32 (their ``load_clip_to_cpu``, ``.float()``, which
parameters train), one forward and backward pass in training mode and one forward pass in
eval mode are recorded, and WORK_DIR/original.pt holds, per case: the initial value of every
trainable parameter and of the prompt buffers, the training logits and loss, the gradients
and the eval logits. What is changed, from outside:

- ``load_clip_to_cpu`` reads the local CLIP file instead of downloading (``load_clip``);

- the whole model is made float32 after it is built (MaPLe's ``proj.half()`` fails in float32
  otherwise), and the inline ``Tensor.half()`` casts of their forward passes are identities
  while the model runs (under PREC fp32 they would round every prompt to float16);
- MaPLe's block couplings, which start as copies of one layer, get different random values,
  so that a coupling used at the wrong block shows.
"""

import argparse
import contextlib
import importlib
import os

import torch
from yacs.config import CfgNode as CN

from tests.trajectory_runner import install_package

TRAINER_MODULES = {"IVLP": "trainers.independentVL", "MaPLe": "trainers.maple"}
CFG_NODES = {"IVLP": "IVLP", "MaPLe": "MAPLE"}
LOCAL_CLIP = "local-clip"


@contextlib.contextmanager
def half_is_identity():
    half = torch.Tensor.half
    torch.Tensor.half = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.half = half


class RecordedCrossEntropy:
    """``torch.nn.functional`` whose ``cross_entropy`` records the logits it is given."""

    def __init__(self):
        self.logits = None

    def __getattr__(self, name):
        return getattr(torch.nn.functional, name)

    def cross_entropy(self, logits, *args, **kwargs):
        self.logits = logits.detach().clone()
        return torch.nn.functional.cross_entropy(logits, *args, **kwargs)


def config(case):
    cfg = CN()
    cfg.MODEL = CN({"BACKBONE": CN({"NAME": LOCAL_CLIP})})
    cfg.INPUT = CN({"SIZE": (case["image_size"], case["image_size"])})
    cfg.TRAINER = CN({CFG_NODES[case["trainer"]]: CN(case["trainer_cfg"])})
    return cfg


def load_clip(module, cfg, path):
    """Their trainer's ``load_clip_to_cpu`` on a local state-dict file: the name resolves to
    the file instead of a download; ``torch.jit.load`` fails on it, so their code falls back
    to ``torch.load`` and their own ``clip.build_model`` with their ``design_details``."""
    clip = module.clip
    download = clip._download
    clip._MODELS[LOCAL_CLIP] = path
    clip._download = lambda url: url
    try:
        return module.load_clip_to_cpu(cfg)
    finally:
        clip._download = download
        del clip._MODELS[LOCAL_CLIP]


def build(module, case):
    """The authors' ``CustomCLIP`` in float32, with their trainer's choice of what trains."""
    cfg = config(case)
    torch.manual_seed(case["seed"])
    clip_model = load_clip(module, cfg, case["clip_path"]).float()
    model = module.CustomCLIP(cfg, case["classnames"], clip_model).float()
    for name, param in model.named_parameters():  # as their build_model
        param.requires_grad_("prompt_learner" in name or "VPT" in name)
    if case["trainer"] == "MaPLe":
        generator = torch.Generator().manual_seed(case["seed"] + 1)
        with torch.no_grad():
            for param in model.prompt_learner.compound_prompt_projections.parameters():
                param.copy_(0.05 * torch.randn(param.shape, generator=generator))
    return model


def run_case(module, case):
    model = build(module, case)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    state = model.state_dict()
    buffers = [k for k in state if k.startswith("prompt_learner.token_")]
    initial = {name: state[name].clone() for name in trainable + buffers}
    images, labels = case["images"], case["labels"]
    recorder = RecordedCrossEntropy()
    module.F = recorder
    with half_is_identity():
        model.train()
        loss = model(images, labels)
        loss.backward()
        model.eval()
        with torch.no_grad():
            eval_logits = model(images)
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return {
        "trainable": trainable,
        "initial": initial,
        "logits": recorder.logits,
        "loss": loss.detach(),
        "grads": grads,
        "eval_logits": eval_logits,
    }


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir")
    parser.add_argument("--original-dir", required=True)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    install_package("clip", os.path.join(args.original_dir, "clip"))
    install_package("trainers", os.path.join(args.original_dir, "trainers"))
    cases = torch.load(os.path.join(args.work_dir, "cases.pt"), weights_only=False)
    results = {}
    for name, case in cases.items():
        module = importlib.import_module(TRAINER_MODULES[case["trainer"]])
        results[name] = run_case(module, case)
    torch.save(results, os.path.join(args.work_dir, "original.pt"))


if __name__ == "__main__":
    main()
