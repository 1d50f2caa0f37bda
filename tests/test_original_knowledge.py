"""The knowledge-preserving regularisers against the code they come from, each imported from
its own checkout (``KNOWLEDGE_ORIGINALS_DIR``, by default the folder holding this repository):
KgCoOp (``KgCoOp/KgCoOp``, github htyao89/KgCoOp c43ccc3), ProGrad (``Prompt-align/
ProGrad.public`` and its ``Dassl.ProGrad.pytorch``, github BeierZhu/Prompt-align 1b76203) and
PromptSRC (``PromptSRC``, github muzairkhattak/PromptSRC bb95c77).

Their side runs in a process of its own (``tests/knowledge_runner.py``, which lists what it
changes from outside); ours is the registered method (``--trainer KgCoOp``, ``ProGrad``,
``PromptSRC``: its base model with the regularisers as options), started from their initial
prompt values. Compared: logits, each loss term, gradients (ProGrad:
of each loss, and the projected ones its ``prograd_backward_and_update`` leaves), and for
PromptSRC a whole schedule of its trainer (one batch per epoch) with the Gaussian prompt
aggregation: learning rates, losses, the aggregated prompts and the eval logits after it. The
cases cover what the reference files in ``../shared/golden`` do not: KgCoOp's random
class-specific context on another dataset's template, ProGrad's context from a template with
more tokens than words, a projection that acts and one that does not, PromptSRC with random
init, unequal depths and its base-to-new and few-shot aggregation settings.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clip.model import CLIP
from yacs.config import CfgNode

from engine.optim import build_optimizer, lr_at_epoch
from models.knowledge import GaussianAggregation, projected_backward
from models.name_map import NameEntry, NameMap
from tests.test_parity import parity

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ORIGINALS = Path(os.environ.get("KNOWLEDGE_ORIGINALS_DIR", REPO.parent))
CHECKOUTS = {  # method -> (its code, the Dassl it needs instead of the installed one)
    "kgcoop": ("KgCoOp/KgCoOp", None),
    "prograd": ("Prompt-align/ProGrad.public", "Prompt-align/Dassl.ProGrad.pytorch/dassl"),
    "promptsrc": ("PromptSRC", None),
}
RUNNER_TIMEOUT_S = 900
TOLERANCE = 1e-5  # relative to the reference's largest magnitude
CTX = NameMap([NameEntry("prompt_learner.ctx", "prompt_learner.ctx")])


def coop_keys(n_ctx, csc, ctx_init, **extra):
    keys = {"TRAINER.COOP.N_CTX": n_ctx, "TRAINER.COOP.CSC": csc,
            "TRAINER.COOP.CTX_INIT": ctx_init, "TRAINER.COOP.PREC": "fp32",
            "TRAINER.COOP.CLASS_TOKEN_POSITION": "end"}  # fmt: skip
    return keys | extra


def promptsrc_keys(n_text, n_vision, ctx_init, depth_text, depth_vision, gpa, max_epoch):
    p = "TRAINER.PROMPTSRC."
    return {f"{p}N_CTX_TEXT": n_text, f"{p}N_CTX_VISION": n_vision, f"{p}CTX_INIT": ctx_init,
            f"{p}PREC": "fp32", f"{p}PROMPT_DEPTH_TEXT": depth_text,
            f"{p}PROMPT_DEPTH_VISION": depth_vision, f"{p}TEXT_LOSS_WEIGHT": 25,
            f"{p}IMAGE_LOSS_WEIGHT": 10, f"{p}GPA_MEAN": gpa[0], f"{p}GPA_STD": gpa[1],
            "OPTIM.MAX_EPOCH": max_epoch, "OPTIM.LR": 0.0025}  # fmt: skip


W4 = {"TRAINER.COOP.W": 4.0}
PROGRAD_T1 = {"LOSS.NAME": "prograd", "LOSS.T": 1.0, "LOSS.LAMBDA": 1.0}
PROGRAD_T2 = {"LOSS.NAME": "prograd", "LOSS.T": 2.0, "LOSS.LAMBDA": 0.5}
AGREEING = [0, 3, 1, 4]  # labels whose CE gradient agrees with the distillation's here
CASES = {  # method -> case -> (dataset, keys, labels)
    "kgcoop": {
        "kgcoop-random-csc-dtd": ("DescribableTextures", coop_keys(3, True, False, **W4),
                                  AGREEING),
    },
    "prograd": {
        # "a type of flower, a photo of a": 8 words, 9 tokens; labels against zero-shot CLIP's
        # predictions, so that the projection acts
        "prograd-flowers-init": ("OxfordFlowers", coop_keys(12, False, True, **PROGRAD_T1),
                                 [4, 2, 2, 2]),
        "prograd-random-t2": ("Caltech101", coop_keys(4, False, False, **PROGRAD_T2),
                              AGREEING),
    },
    "promptsrc": {
        # base-to-new settings (GPA 15/1 over 20 epochs) and few-shot ones (30/30 over 50)
        "promptsrc-b2n": ("Caltech101",
                          promptsrc_keys(4, 3, "a photo of a", 2, 3, (15, 1), 20), AGREEING),
        "promptsrc-fewshot-random": ("Caltech101",
                                     promptsrc_keys(5, 2, "", 3, 2, (30, 30), 50), AGREEING),
    },
}  # fmt: skip
CLASSNAMES = ["face", "water_lilly", "yin_yang", "soccer ball", "sea_anemone"]


def checkout_or_skip(method):
    code, dassl = CHECKOUTS[method]
    code_dir = ORIGINALS / code
    if not (code_dir / "trainers" / f"{method}.py").is_file():
        pytest.skip(
            f"the authors' {method} code is not at {code_dir}: clone it there (see this "
            "module's docstring) or set KNOWLEDGE_ORIGINALS_DIR to the folder holding it"
        )
    return code_dir, (ORIGINALS / dassl if dassl else None)


def save_clip(path):
    torch.manual_seed(3)
    model = CLIP(64, 32, 3, 128, 8, 77, 49408, 128, 2, 3)
    torch.save(model.state_dict(), path)


def run_original(method, tmp_path_factory):
    code_dir, dassl_dir = checkout_or_skip(method)
    work_dir = tmp_path_factory.mktemp(method)
    save_clip(work_dir / "clip.pt")
    generator = torch.Generator().manual_seed(5)
    cases = {
        name: {
            "dataset_name": dataset,
            "keys": keys,
            "classnames": CLASSNAMES,
            "clip_path": str(work_dir / "clip.pt"),
            "image_size": 32,
            "images": torch.randn(4, 3, 32, 32, generator=generator),
            "labels": torch.tensor(labels),
            "seed": 7,
        }
        for name, (dataset, keys, labels) in CASES[method].items()
    }
    torch.save(cases, work_dir / "cases.pt")
    command = [sys.executable, "-m", "tests.knowledge_runner", str(work_dir), "--method", method]
    command += ["--original-dir", str(code_dir)]
    if dassl_dir:
        command += ["--dassl-dir", str(dassl_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUNNER_TIMEOUT_S
    )
    if done.returncode:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    originals = torch.load(work_dir / "original.pt", weights_only=False)
    clip_state = torch.load(work_dir / "clip.pt", weights_only=True)
    return {name: (cases[name], originals[name], clip_state) for name in cases}


@pytest.fixture(scope="module", params=sorted(CHECKOUTS))
def records(request, tmp_path_factory):
    return request.param, run_original(request.param, tmp_path_factory)


def relative_difference(ours, theirs):
    ours, theirs = torch.as_tensor(ours).detach().float(), torch.as_tensor(theirs).float()
    assert ours.shape == theirs.shape
    return ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12)).item()


def assert_close(differences, label):
    print(label, f"max relative difference {max(differences.values()):.2e}")
    assert all(value <= TOLERANCE for value in differences.values()), differences


def golden_config(case):
    return {"trainer_cfg": case["keys"], "classnames": case["classnames"],
            "dataset_name": case["dataset_name"]}  # fmt: skip


def compare_kgcoop(name, case, original, clip_model):
    model = parity.build_by_method("KgCoOp", golden_config(case), clip_model)
    CTX.load_into(model, original["initial"])
    model.train()
    out = model(case["images"])
    loss, parts = model.compute_loss(out, case["labels"])
    loss.backward()
    model.eval()
    with torch.no_grad():
        eval_logits = model(case["images"]).logits
    theirs = original["terms"]
    assert_close({
        "anchor": relative_difference(model.regularizer.text_features, original["anchor"]),
        "logits": relative_difference(out.logits, original["logits"]),
        "ce": relative_difference(parts["ce_main"], theirs["ce"]),
        "score": relative_difference(parts["text_consistency"], theirs["score"]),
        "loss": relative_difference(loss, theirs["loss"]),
        "grad ctx": relative_difference(
            model.text.prompt_learner.ctx.grad, original["grads"]["prompt_learner.ctx"]
        ),
        "eval logits": relative_difference(eval_logits, original["eval_logits"]),
    }, name)  # fmt: skip


def compare_prograd(name, case, original, clip_model):
    model = parity.build_by_method("ProGrad", golden_config(case), clip_model)
    CTX.load_into(model, original["initial"])
    ctx = model.text.prompt_learner.ctx
    model.train()
    out = model(case["images"])
    loss, parts = model.compute_loss(out, case["labels"])
    guide = model.regularizer.distillation_loss(out)
    (guide_grad,) = torch.autograd.grad(guide, [ctx], retain_graph=True)
    (loss_grad,) = torch.autograd.grad(loss, [ctx], retain_graph=True)
    projected_backward([ctx], loss, guide, model.regularizer.settings.projection)
    theirs = original["terms"]
    assert_close({
        "initial buffers": relative_difference(
            model.text.prompt_learner.upstream_buffers(clip_model.token_embedding)["token_suffix"],
            original["initial"]["prompt_learner.token_suffix"],
        ),
        "logits": relative_difference(out.logits, original["logits"]),
        "zero-shot logits": relative_difference(out.reference.logits, original["zs_logits"]),
        "xe_loss": relative_difference(loss, theirs["xe_loss"]),
        "kl_loss": relative_difference(parts["zeroshot_distillation"], theirs["kl_loss"]),
        "grad xe_loss": relative_difference(loss_grad, original["term_grads"]["xe_loss"]),
        "grad kl_loss": relative_difference(guide_grad, original["term_grads"]["kl_loss"]),
        "projected grad": relative_difference(ctx.grad, original["grads"]["prompt_learner.ctx"]),
    }, name)  # fmt: skip
    cosine = torch.nn.functional.cosine_similarity(
        original["term_grads"]["xe_loss"].flatten(), original["term_grads"]["kl_loss"].flatten(), 0
    )
    return bool(cosine < 0)


def compare_promptsrc(name, case, original, clip_model):
    model = parity.build_by_method("PromptSRC", golden_config(case), clip_model)
    names = model.upstream_names()
    assert sorted(names.theirs) == sorted(original["trainable"])
    names.load_into(model, original["initial"])
    optim = CfgNode(original["optim"])
    params = parity.learnable_parameters(model)
    optimizer = build_optimizer(list(params.values()), optim)
    settings = model.regularizer.settings
    aggregation = GaussianAggregation(optim.MAX_EPOCH, settings.gpa_mean, settings.gpa_std)
    differences = {"gauss": relative_difference(aggregation.weights, original["gauss"])}
    terms = dict(zip(("ce", "l1_text", "l1_image", "kl_sum"), (v for _, v in original["terms"])))
    for epoch in range(optim.MAX_EPOCH):
        lr = lr_at_epoch(optim, optim.LR, epoch)
        differences[f"lr {epoch}"] = relative_difference(lr, original["lrs"][epoch])
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        optimizer.zero_grad(set_to_none=True)
        out = model(case["images"])
        loss, parts = model.compute_loss(out, case["labels"], epoch)
        loss.backward()
        if epoch == 0:
            ours = {"ce": parts["ce_main"], "l1_text": parts["text_agreement"],
                    "l1_image": parts["image_agreement"],
                    "kl_sum": parts["logits_agreement"] * out.logits.numel()}  # fmt: skip
            differences |= {f"term {k}": relative_difference(v, terms[k]) for k, v in ours.items()}
            grads = parity.gradients_by_upstream_name(model, names.to_theirs)
            differences |= {
                f"grad {k}": relative_difference(grads[k], v) for k, v in original["grads"].items()
            }
        optimizer.step()
        differences[f"loss {epoch}"] = relative_difference(loss, original["losses"][epoch])
        aggregation.after_epoch(epoch, model.learnable_state_dict())
    final = names.to_theirs(model.learnable_state_dict())
    differences |= {
        f"aggregated {k}": relative_difference(final[k], v) for k, v in original["final"].items()
    }
    model.eval()
    with torch.no_grad():
        eval_logits = model(case["images"]).logits
    differences["eval logits after"] = relative_difference(eval_logits, original["eval_logits"])
    assert_close(differences, name)


def test_regularizers_equal_the_authors_code(records):
    method, cases = records
    projected = []
    for name, (case, original, clip_state) in cases.items():
        clip_model = parity.build_clip(clip_state)
        if method == "kgcoop":
            compare_kgcoop(name, case, original, clip_model)
        elif method == "prograd":
            projected.append(compare_prograd(name, case, original, clip_model))
        else:
            compare_promptsrc(name, case, original, clip_model)
    if method == "prograd":  # the cases cover a projection that acts and one that does not
        assert sorted(projected) == [False, True], projected
