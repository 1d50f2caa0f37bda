"""The authors' side of ``tests/test_original_knowledge.py``, in a process of its own:

    python -m tests.knowledge_runner WORK_DIR --method kgcoop|prograd|promptsrc \
        --original-dir DIR [--dassl-dir DIR]

Runs KgCoOp (github htyao89/KgCoOp, c43ccc3, ``KgCoOp/trainers/kgcoop.py``), ProGrad (github
BeierZhu/Prompt-align, 1b76203, ``ProGrad.public/trainers/prograd.py`` and the
``prograd_backward_and_update`` of its ``Dassl.ProGrad.pytorch``) or PromptSRC (github
muzairkhattak/PromptSRC, bb95c77, ``trainers/promptsrc.py``) as their authors wrote them, their
``clip`` and ``trainers`` (and ProGrad's ``dassl``) imported from DIR under those names (which
is why this is a separate process). WORK_DIR/cases.pt lists the cases; WORK_DIR/original.pt
receives, per case, what the authors' code computed. Changed from outside, as in
``tests/multimodal_runner.py``: their ``load_clip_to_cpu`` reads a local CLIP file, every CLIP
they build is float32 (KgCoOp's anchor CLIP and PromptSRC's zero-shot image encoder stay
float16 otherwise), ``.cuda()`` is a no-op, inline ``.half()`` casts are identities while the
model runs, and Dassl's schedulers accept its ``verbose`` argument.

- kgcoop: one forward/backward of ``CustomCLIP``: logits, KgCoOp's score, loss = CE + W
  score (as its ``forward_backward``), the gradient of the context, eval logits.
- prograd: ``CustomCLIP`` and the zero-shot ``CLIP``; ``ProGradLoss``; the gradients of each
  loss; then their ``prograd_backward_and_update`` with an optimiser that does not move (lr 0),
  so that the projected gradients are what it leaves.
- promptsrc: their ``PromptSRC`` trainer (its ``build_model``, optimiser and scheduler) runs
  ``forward_backward`` once per epoch on the case's batch for the whole schedule, with its
  Gaussian prompt aggregation: the loss terms and gradients of the first step, each step's
  loss, the trainable parameters at the end (the aggregated ones) and the eval logits.
"""

import argparse
import contextlib
import importlib
import os
from collections import OrderedDict
from types import SimpleNamespace

import torch
from yacs.config import CfgNode as CN

from tests.multimodal_runner import half_is_identity
from tests.trajectory_runner import install_package

LOCAL_CLIP = "local-clip"
MODULES = {"kgcoop": "trainers.kgcoop", "prograd": "trainers.prograd",
           "promptsrc": "trainers.promptsrc"}  # fmt: skip


@contextlib.contextmanager
def patched(module, clip_path):
    """Their CLIP from the local file, float32."""
    clip = module.clip
    saved = (clip._download, clip.build_model)
    build_model = clip.build_model
    clip._MODELS[LOCAL_CLIP] = clip_path
    clip._download = lambda url: url
    clip.build_model = lambda *args, **kwargs: build_model(*args, **kwargs).float()
    try:
        yield
    finally:
        clip._download, clip.build_model = saved
        del clip._MODELS[LOCAL_CLIP]


def cuda_is_a_no_op():
    """Their code calls ``.cuda()`` whatever the device (this process has no GPU)."""
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.Tensor.cuda = lambda self, *args, **kwargs: self


def scheduler_accepts_verbose():
    """Dassl passes ``verbose`` to torch's ``LRScheduler``, which no longer takes it."""
    init = torch.optim.lr_scheduler.LRScheduler.__init__

    def accepting(self, optimizer, last_epoch=-1, verbose=False):
        init(self, optimizer, last_epoch)

    torch.optim.lr_scheduler.LRScheduler.__init__ = accepting


def config(case, base=None):
    cfg = base if base is not None else CN()
    cfg.MODEL = cfg.get("MODEL", CN())
    cfg.MODEL.BACKBONE = cfg.MODEL.get("BACKBONE", CN())
    cfg.MODEL.BACKBONE.NAME = LOCAL_CLIP
    cfg.INPUT = cfg.get("INPUT", CN())
    cfg.INPUT.SIZE = (case["image_size"], case["image_size"])
    cfg.DATASET = cfg.get("DATASET", CN())
    cfg.DATASET.NAME = case["dataset_name"]
    cfg.TRAINER = cfg.get("TRAINER", CN())
    cfg.TRAINER.COCOOP = CN({"PREC": "fp32"})
    for key, value in case["keys"].items():
        node = cfg
        *path, last = key.split(".")
        for part in path:
            if part not in node:
                node[part] = CN()
            node = node[part]
        node[last] = value
    return cfg


def params_of(model, names):
    return {name: p.detach().clone() for name, p in model.named_parameters() if name in names}


def run_kgcoop(module, case):
    cfg = config(case)
    torch.manual_seed(case["seed"])
    with patched(module, case["clip_path"]):
        clip_model = module.load_clip_to_cpu(cfg).float()
        model = module.CustomCLIP(cfg, case["classnames"], clip_model).float()
    for name, param in model.named_parameters():  # as their build_model
        param.requires_grad_("ctx" in name)
    state = model.prompt_learner.state_dict()
    model.train()
    logits, score = model(case["images"])
    ce = torch.nn.functional.cross_entropy(logits, case["labels"])
    loss = ce + cfg.TRAINER.COOP.W * score
    loss.backward()
    model.eval()
    with torch.no_grad():
        eval_logits = model(case["images"])[0]
    return {
        "initial": {f"prompt_learner.{k}": v.clone() for k, v in state.items()},
        "anchor": model.prompt_learner.text_features.clone(),
        "logits": logits.detach(),
        "terms": {"ce": ce.detach(), "score": score.detach(), "loss": loss.detach()},
        "grads": {"prompt_learner.ctx": model.prompt_learner.ctx.grad.clone()},
        "eval_logits": eval_logits,
    }


def run_prograd(module, case):
    cfg = config(case)
    torch.manual_seed(case["seed"])
    with patched(module, case["clip_path"]):
        clip_model = module.load_clip_to_cpu(cfg).float()
        zs_clip = module.CLIP(cfg, case["classnames"])
        model = module.CustomCLIP(cfg, case["classnames"], clip_model)
    for name, param in model.named_parameters():
        param.requires_grad_("prompt_learner" in name)
    zs_clip.requires_grad_(False)
    state = model.prompt_learner.state_dict()
    ctx = model.prompt_learner.ctx
    model.train()
    output = model(case["images"])
    with torch.no_grad():
        zs_output = zs_clip(case["images"])
    xe_loss, kl_loss = module.ProGradLoss(T=cfg.LOSS.T)(output, zs_output.detach(), case["labels"])
    (xe_grad,) = torch.autograd.grad(xe_loss, [ctx], retain_graph=True)
    (kl_grad,) = torch.autograd.grad(kl_loss, [ctx], retain_graph=True)
    trainer = object.__new__(module.ProGrad)  # the Dassl trainer, only its registries
    trainer._models = OrderedDict(prompt_learner=model.prompt_learner)
    trainer._optims = OrderedDict(prompt_learner=torch.optim.SGD([ctx], lr=0.0))
    trainer.prograd_backward_and_update(xe_loss, kl_loss, cfg.LOSS.LAMBDA)
    return {
        "initial": {f"prompt_learner.{k}": v.clone() for k, v in state.items()},
        "logits": output.detach(),
        "zs_logits": zs_output,
        "terms": {"xe_loss": xe_loss.detach(), "kl_loss": kl_loss.detach()},
        "term_grads": {"xe_loss": xe_grad, "kl_loss": kl_grad},
        "grads": {"prompt_learner.ctx": ctx.grad.clone()},
    }


class Recorder:
    """``torch.nn.functional`` that records what its loss functions return."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        function = getattr(torch.nn.functional, name)
        if name not in ("cross_entropy", "l1_loss", "kl_div"):
            return function

        def recorded(*args, **kwargs):
            value = function(*args, **kwargs)
            self.calls.append((name, value.detach().clone()))
            return value

        return recorded


def run_promptsrc(module, case):
    from dassl.config import get_cfg_default

    cfg = config(case, get_cfg_default())
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = len(case["labels"])
    torch.manual_seed(case["seed"])
    trainer = object.__new__(module.PromptSRC)
    trainer._models, trainer._optims, trainer._scheds = OrderedDict(), OrderedDict(), OrderedDict()
    trainer._writer = None
    trainer.cfg = cfg
    trainer.device = torch.device("cpu")
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=case["classnames"]))
    with patched(module, case["clip_path"]):
        trainer.build_model()
    model = trainer.model.float()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    initial = params_of(model, trainable)
    state = model.state_dict()
    initial.update({k: state[k].clone() for k in state if k.startswith("prompt_learner.token_")})
    grads = {}

    def first_grads(optimizer, args, kwargs):
        if not grads:
            grads.update({n: p.grad.clone() for n, p in model.named_parameters() if n in trainable})

    trainer.optim.register_step_pre_hook(first_grads)
    recorder = Recorder()
    module.F = recorder
    batch = {"img": case["images"], "label": case["labels"]}
    losses, lrs = [], []
    with half_is_identity():
        for _ in range(cfg.OPTIM.MAX_EPOCH):
            trainer.batch_idx, trainer.num_batches = 0, 1
            lrs.append(trainer.optim.param_groups[0]["lr"])
            model.train()
            losses.append(trainer.forward_backward(batch)["loss"])
            if len(losses) == 1:
                first_terms = list(recorder.calls)
        model.eval()
        with torch.no_grad():
            eval_logits = model(case["images"])
    optim = {key: cfg.OPTIM[key] for key in cfg.OPTIM}
    return {
        "trainable": trainable,
        "initial": initial,
        "optim": optim,
        "terms": first_terms,
        "grads": grads,
        "lrs": lrs,
        "losses": losses,
        "gauss": torch.tensor(trainer.gauss),
        "final": params_of(model, trainable),
        "eval_logits": eval_logits,
    }


RUNS = {"kgcoop": run_kgcoop, "prograd": run_prograd, "promptsrc": run_promptsrc}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("work_dir")
    parser.add_argument("--method", choices=sorted(RUNS), required=True)
    parser.add_argument("--original-dir", required=True)
    parser.add_argument("--dassl-dir", help="a Dassl package to import as dassl (ProGrad's)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    scheduler_accepts_verbose()
    cuda_is_a_no_op()
    if args.dassl_dir:
        install_package("dassl", args.dassl_dir)
    install_package("clip", os.path.join(args.original_dir, "clip"))
    install_package("trainers", os.path.join(args.original_dir, "trainers"))
    module = importlib.import_module(MODULES[args.method])
    cases = torch.load(os.path.join(args.work_dir, "cases.pt"), weights_only=False)
    results = {name: RUNS[args.method](module, case) for name, case in cases.items()}
    torch.save(results, os.path.join(args.work_dir, "original.pt"))


if __name__ == "__main__":
    main()
