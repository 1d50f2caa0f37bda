"""Check our models against reference outputs of their authors' code (a golden file).

    python tools/parity.py PATH.pt

Builds our model of the golden's type and configuration on its CLIP (float32), loads its
parameters under the original code's names, runs its inputs and compares every quantity.
Two formats (``../shared/golden/README.md``): ``dpt-golden-v1`` from the original DPT code
(outputs, losses before and after PRETRAIN.C, CAVPT terms, gradients, eval logits) and
``prompt-golden-v1`` from the code of IVLP, MaPLe, PromptSRC and KgCoOp (logits, features,
loss terms, gradients, eval logits, and a few optimiser steps: learning rates, losses,
parameters, eval logits after them). One line per quantity with the largest absolute
difference and the largest difference relative to the reference's largest magnitude; exit
status 0 only when every relative difference is within the tolerance. The last line is
``parity: OK max_rel=...`` or ``parity: FAIL ...``.

The golden's ``clip_state_dict`` is the float32 CLIP the original ran (matrices already
rounded as CLIP's ``convert_weights`` does), so the comparison needs nothing but the file.
"""

import argparse
import sys
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from yacs.config import CfgNode  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    from clip.model import build_model  # noqa: E402

import trainers  # noqa: E402, F401  (registers the methods)
from engine.config import get_cfg_default  # noqa: E402
from engine.optim import build_optimizer, lr_at_epoch  # noqa: E402
from models import (  # noqa: E402
    CAVPTCfg,
    CoOpModel,
    DPTModel,
    GuidanceCfg,
    TextPromptCfg,
    VisualPromptCfg,
    VLPModel,
    VPTModel,
)
from models.knowledge import GaussianAggregation  # noqa: E402
from models.name_map import NameEntry, NameMap  # noqa: E402
from models.settings import IVLPCfg  # noqa: E402
from models.upstream import load_upstream_state_dict, ours_to_upstream  # noqa: E402
from trainers.method import method_for  # noqa: E402

FORMAT = "dpt-golden-v1"
PROMPT_FORMAT = "prompt-golden-v1"
TOLERANCE = 1e-4  # relative to the reference's largest magnitude
PRETRAIN_C = 1  # epoch 0 is before PRETRAIN.C (guidance terms on), epoch 1 after
CAVPT = "image_encoder.transformer.extractor"
# the golden's (the original code's) output names -> ours
GUIDANCE_OUTPUTS = {"logits1": "frozen_image_logits", "logits2": "frozen_text_logits"}


@dataclass
class Comparison:
    name: str
    max_abs: float
    max_rel: float
    ok: bool
    note: str = ""

    def line(self):
        status = "ok" if self.ok else "FAIL"
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.name:<62} max_abs={self.max_abs:.3e} max_rel={self.max_rel:.3e} {status}{note}"
        )


def compare_tensors(name, ours, reference):
    if ours is None:
        return Comparison(name, float("inf"), float("inf"), False, "missing in our output")
    ours = torch.as_tensor(ours).detach().float().cpu()
    reference = torch.as_tensor(reference).detach().float().cpu()
    if ours.shape != reference.shape:
        note = f"shape {tuple(ours.shape)} vs reference {tuple(reference.shape)}"
        return Comparison(name, float("inf"), float("inf"), False, note)
    if ours.numel() == 0:
        return Comparison(name, 0.0, 0.0, True)
    max_abs = (ours - reference).abs().max().item()
    scale = reference.abs().max().item()
    max_rel = max_abs / scale if scale > 0 else max_abs
    return Comparison(name, max_abs, max_rel, max_rel <= TOLERANCE)


def compare_exact(name, ours, reference):
    """Integers (indices, counts): any difference fails."""
    if ours is None:
        return Comparison(name, float("inf"), float("inf"), False, "missing in our output")
    ours, reference = torch.as_tensor(ours).cpu(), torch.as_tensor(reference).cpu()
    if ours.shape != reference.shape:
        note = f"shape {tuple(ours.shape)} vs reference {tuple(reference.shape)}"
        return Comparison(name, float("inf"), float("inf"), False, note)
    n_diff = int((ours != reference).sum())
    if n_diff == 0:
        return Comparison(name, 0.0, 0.0, True)
    return Comparison(name, float(n_diff), float("inf"), False, f"{n_diff} entries differ")


def build_clip(state_dict):
    clip_model = build_model({key: value.clone() for key, value in state_dict.items()})
    return clip_model.float().eval()


def build_our_model(kind, config, clip_model, upstream_state_dict):
    """Our model of the golden's type; CAVPT sizes are read off the saved parameters."""
    text_cfg = TextPromptCfg(
        n_ctx=config["text_n_ctx"],
        ctx_init=config.get("text_ctx_init") or "",
        csc=bool(config["text_csc"]),
        class_token_position=config["class_token_position"],
    )
    classnames, template = config["classnames"], config["template"]
    if kind == "coop":
        return CoOpModel(clip_model, classnames, text_cfg=text_cfg)
    vpt_cfg = VisualPromptCfg(n_ctx=config["vpt_n_ctx"])
    if kind == "vpt":
        return VPTModel(clip_model, classnames, template, vpt_cfg=vpt_cfg)
    dual = dict(text_cfg=text_cfg, vpt_cfg=vpt_cfg, guidance_cfg=GuidanceCfg(epochs=PRETRAIN_C))
    if kind == "vlp":
        return VLPModel(clip_model, classnames, template, **dual)
    if kind == "dpt":
        cavpt_cfg = CAVPTCfg(
            first_block=config["bottomlimit"],
            top_k=config["cpn"],
            loss_weight=config["alpha"],
            n_kv=upstream_state_dict[f"{CAVPT}.ctx"].shape[1],
            attn_dim=upstream_state_dict[f"{CAVPT}.attns.0.qmlp.weight"].shape[0],
        )
        return DPTModel(clip_model, classnames, template, **dual, cavpt_cfg=cavpt_cfg)
    raise ValueError(f"unknown model type {kind!r} (expected dpt, vlp, vpt or coop)")


def learnable_parameters(model):
    """``{our name: parameter}`` of the learnable modules."""
    return {
        f"{module_name}.{key}": param
        for module_name, module in model.learnable_modules().items()
        for key, param in module.named_parameters()
    }


def gradients_by_upstream_name(model, to_theirs=ours_to_upstream):
    grads = {
        name: (param.grad if param.grad is not None else torch.zeros_like(param))
        for name, param in learnable_parameters(model).items()
    }
    return to_theirs(grads)


def compare_trainable(model, reference_names, to_theirs=ours_to_upstream):
    """Only the learnable modules' parameters train, and they are the reference's."""
    learnable = learnable_parameters(model)
    learnable_ids = {id(param) for param in learnable.values()}
    stray = [
        name
        for name, p in model.named_parameters()
        if p.requires_grad and id(p) not in learnable_ids
    ]
    frozen = [name for name, param in learnable.items() if not param.requires_grad]
    ours = set(to_theirs({name: param.detach() for name, param in learnable.items()}))
    notes = []
    if stray:
        notes.append(f"trainable outside the learnable modules: {stray}")
    if frozen:
        notes.append(f"learnable but frozen: {frozen}")
    if ours != set(reference_names):
        notes.append(
            f"ours only {sorted(ours - set(reference_names))}, reference only "
            f"{sorted(set(reference_names) - ours)}"
        )
    ok = not notes
    return Comparison(
        "trainable", 0.0 if ok else float("inf"), 0.0 if ok else float("inf"), ok, "; ".join(notes)
    )


def compare_outputs(out, reference):
    rows = [compare_tensors("outputs.logits", out.logits, reference["logits"])]
    for name, ours in GUIDANCE_OUTPUTS.items():
        if reference.get(name) is not None:
            rows.append(compare_tensors(f"outputs.{name}", getattr(out, ours), reference[name]))
    ref_layers = reference.get("layer_logits") or []
    ours_layers = getattr(out, "cavpt_logits", None) or []
    if len(ours_layers) != len(ref_layers):
        note = f"{len(ours_layers)} CAVPT blocks vs reference {len(ref_layers)}"
        rows.append(Comparison("outputs.layer_logits", float("inf"), float("inf"), False, note))
    for j, (ours, ref) in enumerate(zip(ours_layers, ref_layers)):
        rows.append(compare_tensors(f"outputs.layer_logits[{j}]", ours, ref))
    if reference.get("indices") is not None:
        rows.append(compare_exact("outputs.indices", out.top_k_classes, reference["indices"]))
    return rows


def compare_gradients(phase, grads, reference_grads):
    """A parameter without a reference gradient (the original leaves unused ones at None)
    must get none, i.e. zeros, here too."""
    rows = []
    for name in sorted(set(grads) | set(reference_grads)):
        row_name = f"grads.{phase}.{name}"
        if name not in grads:
            note = "the reference trains it, we do not"
            rows.append(Comparison(row_name, float("inf"), float("inf"), False, note))
            continue
        reference = reference_grads.get(name)
        if reference is None:
            reference = torch.zeros_like(grads[name])
        rows.append(compare_tensors(row_name, grads[name], reference))
    return rows


def compare_cavpt_terms(parts, reference_loss):
    rows = []
    if reference_loss.get("layer_loss") is not None:
        rows.append(
            compare_tensors(
                "loss.layer_loss", parts.get("cavpt_loss"), reference_loss["layer_loss"]
            )
        )
    n_selected = reference_loss.get("n_selected", 0)
    rows.append(compare_exact("loss.n_selected", parts.get("cavpt_triples", 0), n_selected))
    return rows


def compare_golden(golden, clip_model):
    """All comparisons of our model on ``clip_model`` with the golden, as ``Comparison``s."""
    torch.manual_seed(0)
    upstream_state_dict = golden["upstream_state_dict"]
    model = build_our_model(golden["model"], golden["config"], clip_model, upstream_state_dict)
    load_upstream_state_dict(model, upstream_state_dict)
    images, labels = golden["inputs"]["images"], golden["inputs"]["labels"]

    rows = []
    model.train()
    for phase, epoch in (("before_c", 0), ("after_c", PRETRAIN_C)):
        model.zero_grad(set_to_none=True)
        out = model(images)
        loss, parts = model.compute_loss(out, labels, epoch)
        loss.backward()
        if phase == "before_c":
            rows += compare_outputs(out, golden["outputs"])
            rows += compare_cavpt_terms(parts, golden["loss"])
        rows.append(compare_tensors(f"loss.{phase}", loss, golden["loss"][phase]))
        rows += compare_gradients(phase, gradients_by_upstream_name(model), golden["grads"][phase])
    rows.append(compare_trainable(model, golden["trainable"]))

    model.eval()
    with torch.no_grad():
        eval_logits = model(images).logits
    rows.append(compare_tensors("eval.logits", eval_logits, golden["outputs"]["eval_logits"]))
    return rows


# ---- prompt-golden-v1: IVLP, MaPLe, PromptSRC, KgCoOp ------------------------------------


@dataclass(frozen=True)
class PromptGoldenMethod:
    """How our model of one prompt-golden-v1 method is built and read.

    build(config, clip_model): our model, from the golden's ``config`` (its authors'
        ``TRAINER.*`` keys and values in ``trainer_cfg``, ``classnames``, ``dataset_name``).
    names(model): the ``NameMap`` of our learnable tensors to the authors' names.
    loss_terms: golden ``loss`` key -> the name of that term in our ``compute_loss`` parts,
        or a function of (model, parts, output) giving it.
    train_outputs: golden ``outputs`` key -> a function of (model, training-mode output,
        images) giving it.
    outputs: golden ``outputs`` key -> a function of our model giving that quantity (eval
        mode, no autograd), for what the model exposes beyond its logits and features.
    buffers: golden ``upstream_state_dict`` key -> a function of our model giving it.
    aggregation(trainer_cfg, n_epochs): the epoch-end hook of the golden's ``train_steps``
        (an object with ``after_epoch(epoch, params)``, ``weights``), or None.
    """

    build: Callable
    names: Callable = lambda model: model.upstream_names()  # noqa: E731
    loss_terms: dict = field(default_factory=lambda: {"total": "loss", "ce": "ce_main"})
    train_outputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    buffers: dict = field(default_factory=dict)
    aggregation: Callable = lambda trainer_cfg, n_epochs: None  # noqa: E731


def trainer_keys(config):
    """The golden's ``TRAINER.<X>.*`` keys by their last part."""
    return {key.split(".")[-1]: value for key, value in config["trainer_cfg"].items()}


def ivlp_settings(c):
    return IVLPCfg(
        n_ctx_text=c["N_CTX_TEXT"],
        n_ctx_vision=c["N_CTX_VISION"],
        ctx_init=c["CTX_INIT"],
        depth_text=c["PROMPT_DEPTH_TEXT"],
        depth_vision=c["PROMPT_DEPTH_VISION"],
    )


def build_by_method(trainer, config, clip_model):
    """Our model of the registered method ``trainer`` as it builds it (regularisers on) for
    the golden's ``config``: its ``TRAINER.*`` keys (the method's own keys: its authors'),
    dataset and template."""
    cfg = get_cfg_default()
    for key, value in config["trainer_cfg"].items():
        *parents, name = key.split(".")
        node = cfg
        for parent in parents:
            node = node[parent]
        node[name] = value
    cfg.TRAINER.NAME = trainer
    cfg.DATASET.NAME = config.get("dataset_name", "")
    template = config.get("template") or ""
    return method_for(cfg).build_model(clip_model, config["classnames"], template)


def by_method(trainer):
    """``build`` for a method registered as ``trainer``."""
    return lambda config, clip_model: build_by_method(trainer, config, clip_model)


def weighted(term, setting):
    """A golden loss term that is our unweighted ``term`` times its weight ``setting``."""
    return lambda model, parts, out: parts[term] * getattr(model.regularizer.settings, setting)


def gaussian_aggregation(trainer_cfg, n_epochs):
    c = {key.split(".")[-1]: value for key, value in trainer_cfg.items()}
    return GaussianAggregation(n_epochs, c["GPA_MEAN"], c["GPA_STD"])


PROMPT_METHODS = {
    "ivlp": PromptGoldenMethod(by_method("IVLP")),
    "maple": PromptGoldenMethod(
        by_method("MaPLe"),
        outputs={
            "shared_ctx": lambda model: model.image_prompt_tokens()[0],
            "visual_deep_prompts": lambda model: model.image_prompt_tokens()[1],
        },
    ),
    "promptsrc": PromptGoldenMethod(
        by_method("PromptSRC"),
        loss_terms={
            "total": "loss",
            "ce": "ce_main",
            "l1_text": "text_agreement",
            "l1_image": "image_agreement",
            "scl_logits": "logits_agreement",
            "kl_sum": lambda model, parts, out: parts["logits_agreement"] * out.logits.numel(),
            "scl_text": weighted("text_agreement", "text_agreement"),
            "scl_image": weighted("image_agreement", "image_agreement"),
            "scl": lambda model, parts, out: parts["loss"] - parts["ce_main"],
        },
        train_outputs={
            "text_features_norm": lambda model, out, images: out.text_features,
            "image_features_norm": lambda model, out, images: out.image_features,
            "zs_image_features": lambda model, out, images: model.regularizer.encoder(images),
            "zs_image_features_norm": lambda model, out, images: out.reference.image_features,
            "zero_shot_logits": lambda model, out, images: out.reference.logits,
            "fixed_embeddings_norm": lambda model, out, images: model.regularizer.text_features,
        },
        aggregation=gaussian_aggregation,
    ),
    "kgcoop": PromptGoldenMethod(
        by_method("KgCoOp"),
        names=lambda model: NameMap([NameEntry("prompt_learner.ctx", "prompt_learner.ctx")]),
        loss_terms={
            "total": "loss",
            "ce": "ce_main",
            "score": "text_consistency",
            "kg": weighted("text_consistency", "text_consistency"),
        },
        train_outputs={
            "score": lambda model, out, images: model.regularizer.terms(out)["text_consistency"]
        },
        buffers={"prompt_learner.text_features": lambda model: model.regularizer.text_features},
    ),
}


def compare_any(name, ours, reference):
    """A tensor, or a list of tensors compared one by one."""
    if not isinstance(reference, (list, tuple)):
        return [compare_tensors(name, ours, reference)]
    if ours is None or len(ours) != len(reference):
        count = "none" if ours is None else len(ours)
        note = f"{count} tensors vs reference {len(reference)}"
        return [Comparison(name, float("inf"), float("inf"), False, note)]
    return [compare_tensors(f"{name}[{i}]", o, r) for i, (o, r) in enumerate(zip(ours, reference))]


def compare_prompt_buffers(model, reference_state):
    """The prompts' token ids and frozen embeddings (the authors' ``token_prefix`` and
    ``token_suffix``): the same prompt text, context slots and CTX_INIT rule."""
    learner = model.text.prompt_learner
    rows = []
    key = "prompt_learner.tokenized_prompts"
    if key in reference_state:
        rows.append(
            compare_exact(f"buffers.{key}", learner.tokenized_prompts, reference_state[key])
        )
    for name, value in learner.upstream_buffers(model.clip.token_embedding).items():
        key = f"prompt_learner.{name}"
        if key in reference_state:
            rows.append(compare_tensors(f"buffers.{key}", value, reference_state[key]))
    return rows


def optim_node(optim_cfg, opts):
    """The golden's ``OPTIM.*`` values with the ``OPTIM.*`` overrides of ``opts``."""
    node = CfgNode({key.split(".", 1)[1]: value for key, value in optim_cfg.items()})
    for key, value in zip(opts[::2], opts[1::2]):
        if key.startswith("OPTIM."):
            node[key.split(".", 1)[1]] = value
    return node


def probes(weight, vectors):
    weight = weight.detach().double()
    return {"right": weight @ vectors["right"], "left": vectors["left"] @ weight}


def trainer_node(trainer_cfg, opts):
    """The golden's ``TRAINER.*`` values with the ``TRAINER.*`` overrides of ``opts``."""
    keys = dict(trainer_cfg)
    keys.update((k, v) for k, v in zip(opts[::2], opts[1::2]) if k.startswith("TRAINER."))
    return keys


def compare_train_steps(model, method, names, golden, images, labels):
    """The golden's optimiser steps (one batch per epoch), from its initial weights: the
    learning rate and loss of each step, the parameters after it and after the epoch's end
    (large matrices through their products with probe vectors), the eval logits after the
    last."""
    steps = golden["train_steps"]
    optim = optim_node(golden["config"]["optim_cfg"], steps["opts"])
    params = learnable_parameters(model)
    optimizer = build_optimizer(list(params.values()), optim)
    omitted = set(steps.get("omitted_from_snapshots", ()))
    n_steps = len(steps["lr"])
    trainer_cfg = trainer_node(golden["config"]["trainer_cfg"], steps["opts"])
    aggregation = method.aggregation(trainer_cfg, n_steps)
    rows = []
    if aggregation is not None:
        rows.append(compare_tensors("train_steps.gauss", aggregation.weights, steps["gauss"]))
    for epoch, reference_lr in enumerate(steps["lr"]):
        lr = lr_at_epoch(optim, optim.LR, epoch)
        rows.append(compare_tensors(f"train_steps[{epoch}].lr", lr, reference_lr))
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss, _ = model.compute_loss(model(images), labels, epoch)
        loss.backward()
        optimizer.step()
        rows.append(compare_tensors(f"train_steps[{epoch}].loss", loss, steps["loss"][epoch]))
        for snapshot in ("params_after_update", "params_after"):
            if snapshot == "params_after" and aggregation is not None:
                aggregation.after_epoch(epoch, model.learnable_state_dict())
            theirs = names.to_theirs({name: param.detach() for name, param in params.items()})
            for name, reference in steps[snapshot][epoch].items():
                row = f"train_steps[{epoch}].{snapshot}.{name}"
                rows.append(compare_tensors(row, theirs.get(name), reference))
        for name, reference in (steps.get("probes_after") or [{}] * len(steps["lr"]))[
            epoch
        ].items():
            ours = probes(theirs[name], steps["probe_vectors"]) if name in omitted else {}
            for side, value in reference.items():
                row = f"train_steps[{epoch}].probes_after.{name}.{side}"
                rows.append(compare_tensors(row, ours.get(side), value))
    lr_after = lr_at_epoch(optim, optim.LR, n_steps)
    rows.append(compare_tensors("train_steps.lr_after", lr_after, steps["lr_after"]))
    model.eval()
    with torch.no_grad():
        eval_logits = model(images).logits
    rows.append(
        compare_tensors("train_steps.eval_logits_after", eval_logits, steps["eval_logits_after"])
    )
    return rows


def compare_prompt_golden(golden, clip_model):
    """All comparisons of our model on ``clip_model`` with a prompt-golden-v1 file."""
    kind = golden["model"]
    if kind not in PROMPT_METHODS:
        raise ValueError(f"unknown model type {kind!r} (expected one of {sorted(PROMPT_METHODS)})")
    method = PROMPT_METHODS[kind]
    config = golden["config"]
    torch.manual_seed(0)
    model = method.build(config, clip_model)
    names = method.names(model)
    names.load_into(model, golden["upstream_state_dict"])
    images, labels = golden["inputs"]["images"], golden["inputs"]["labels"]

    rows = compare_prompt_buffers(model, golden["upstream_state_dict"])
    for key, buffer in method.buffers.items():
        rows.append(
            compare_tensors(f"buffers.{key}", buffer(model), golden["upstream_state_dict"][key])
        )
    rows.append(compare_trainable(model, golden["trainable"], names.to_theirs))
    model.train()
    model.zero_grad(set_to_none=True)
    out = model(images)
    loss, parts = model.compute_loss(out, labels, epoch=0)
    loss.backward()
    rows.append(compare_tensors("outputs.logits", out.logits, golden["outputs"]["logits"]))
    for theirs, ours in method.loss_terms.items():
        value = parts.get(ours) if isinstance(ours, str) else ours(model, parts, out)
        rows.append(compare_tensors(f"loss.{theirs}", value, golden["loss"][theirs]))
    for name, output in method.train_outputs.items():
        rows += compare_any(f"outputs.{name}", output(model, out, images), golden["outputs"][name])
    rows += compare_gradients(
        "total", gradients_by_upstream_name(model, names.to_theirs), golden["grads"]
    )

    model.eval()
    with torch.no_grad():
        rows.append(
            compare_tensors("eval.logits", model(images).logits, golden["outputs"]["eval_logits"])
        )
        image_features, text_features = model.encode(images)
        for name, ours in (("image_features", image_features), ("text_features", text_features)):
            rows.append(compare_tensors(f"eval.{name}", ours, golden["outputs"][name]))
        for name, output in method.outputs.items():
            rows += compare_any(f"outputs.{name}", output(model), golden["outputs"][name])
    if golden.get("train_steps"):
        rows += compare_train_steps(model, method, names, golden, images, labels)
    return rows


def run_parity(path):
    """Comparisons of our model with one golden file."""
    golden = torch.load(path, map_location="cpu", weights_only=False)
    if golden.get("format") not in (FORMAT, PROMPT_FORMAT):
        raise ValueError(
            f"{path}: format {golden.get('format')!r}, expected {FORMAT!r} or {PROMPT_FORMAT!r}"
        )
    half = [k for k, v in golden["clip_state_dict"].items() if v.dtype == torch.float16]
    if half:
        raise ValueError(
            f"{path}: clip_state_dict holds float16 tensors ({half[0]}, ...): an older golden "
            "that rounded the CLIP the original ran; regenerate it with the float32 weights"
        )
    clip_model = build_clip(golden["clip_state_dict"])
    if golden["format"] == PROMPT_FORMAT:
        return compare_prompt_golden(golden, clip_model)
    return compare_golden(golden, clip_model)


def max_row(rows):
    return max(rows, key=lambda row: row.max_rel)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="golden .pt file (dpt-golden-v1 or prompt-golden-v1)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads (default 1: fastest for the tiny reference models, and reproducible)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        rows = run_parity(args.path)
    except Exception as err:  # report any failure on the last line, as promised
        traceback.print_exc()
        print(f"parity: FAIL error: {type(err).__name__}: {err}")
        return 1
    for row in rows:
        print(row.line())
    max_rel = max_row(rows).max_rel
    failed = [row.name for row in rows if not row.ok]
    if failed:
        names = ", ".join(failed)
        print(f"parity: FAIL {len(failed)} of {len(rows)} differ ({names}) max_rel={max_rel:.3e}")
        return 1
    print(f"parity: OK max_rel={max_rel:.3e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
