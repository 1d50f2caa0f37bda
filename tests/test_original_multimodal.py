"""IVLP and MaPLe against their authors' code (github muzairkhattak/multimodal-prompt-learning,
commit 69bce21, imported from its own checkout: ``MULTIMODAL_ORIGINAL_DIR``, by default
``../multimodal-prompt-learning`` beside this repository).

Their side runs in a process of its own (``tests/multimodal_runner.py``, which lists what it
changes from outside). Both sides build their model on the same CLIP weights, ours from their
initial prompt weights; logits (training and eval), loss and every gradient are compared.
The cases cover what the reference files in ``../shared/golden`` do not: random context
initialisation, a text depth other than the vision depth, language-only IVLP, deep MaPLe whose
block couplings differ from each other, shallow MaPLe with an init phrase longer than n_ctx.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clip.model import CLIP

from tests.test_parity import parity

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_DIR = Path(
    os.environ.get("MULTIMODAL_ORIGINAL_DIR", REPO.parent / "multimodal-prompt-learning")
)
RUNNER_TIMEOUT_S = 600
TOLERANCE = 1e-5  # relative to the reference's largest magnitude; measured: about 2e-6
CLASSNAMES = ["face", "water_lilly", "yin_yang", "soccer ball", "sea_anemone"]
ARCHITECTURES = {
    # widths are multiples of 64 (heads = width // 64 in both codebases)
    "small": dict(vision_width=128, transformer_width=128, embed_dim=64),
    # MaPLe's code hard-codes a 512-wide text and a 768-wide image tower
    "maple": dict(vision_width=768, transformer_width=512, embed_dim=64),
}


def ivlp_keys(n_ctx_vision, n_ctx_text, ctx_init, depth_vision, depth_text):
    return {
        "N_CTX_VISION": n_ctx_vision,
        "N_CTX_TEXT": n_ctx_text,
        "CTX_INIT": ctx_init,
        "PREC": "fp32",
        "PROMPT_DEPTH_VISION": depth_vision,
        "PROMPT_DEPTH_TEXT": depth_text,
    }


def maple_keys(n_ctx, ctx_init, depth):
    return {"N_CTX": n_ctx, "CTX_INIT": ctx_init, "PREC": "fp32", "PROMPT_DEPTH": depth}


CASES = {
    "ivlp-random-init": ("IVLP", "small", ivlp_keys(4, 3, "", 3, 2)),
    "ivlp-language-only": ("IVLP", "small", ivlp_keys(0, 4, "a photo of a", 0, 3)),
    "maple-deep": ("MaPLe", "maple", maple_keys(3, "a_photo_of", 3)),
    "maple-shallow-long-init": ("MaPLe", "maple", maple_keys(2, "a photo of a", 1)),
}


def original_dir_or_skip():
    if not (ORIGINAL_DIR / "trainers" / "maple.py").is_file():
        pytest.skip(
            f"the authors' IVLP and MaPLe code (github muzairkhattak/multimodal-prompt-learning, "
            f"commit 69bce21) is not at {ORIGINAL_DIR}: clone it there or set "
            "MULTIMODAL_ORIGINAL_DIR to its checkout"
        )
    return ORIGINAL_DIR


def save_clip(path, seed, vision_width, transformer_width, embed_dim):
    torch.manual_seed(seed)
    model = CLIP(embed_dim, 32, 3, vision_width, 8, 77, 49408, transformer_width,
                 transformer_width // 64, 3)  # fmt: skip
    torch.save(model.state_dict(), path)


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """``{case: (the cases' inputs, the authors' record)}``."""
    original_dir = original_dir_or_skip()
    work_dir = tmp_path_factory.mktemp("multimodal")
    for kind, sizes in ARCHITECTURES.items():
        save_clip(work_dir / f"clip_{kind}.pt", seed=3, **sizes)
    generator = torch.Generator().manual_seed(5)
    cases = {
        name: {
            "trainer": trainer,
            "trainer_cfg": keys,
            "classnames": CLASSNAMES,
            "clip_path": str(work_dir / f"clip_{arch}.pt"),
            "image_size": 32,
            "images": torch.randn(4, 3, 32, 32, generator=generator),
            "labels": torch.tensor([0, 3, 1, 4]),
            "seed": 7,
        }
        for name, (trainer, arch, keys) in CASES.items()
    }
    torch.save(cases, work_dir / "cases.pt")
    command = [sys.executable, "-m", "tests.multimodal_runner", str(work_dir)]
    command += ["--original-dir", str(original_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=RUNNER_TIMEOUT_S
    )
    if done.returncode:
        pytest.fail(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    originals = torch.load(work_dir / "original.pt", weights_only=False)
    return {name: (cases[name], originals[name]) for name in cases}


def relative_difference(ours, theirs):
    ours, theirs = ours.detach().float(), theirs.detach().float()
    assert ours.shape == theirs.shape
    return ((ours - theirs).abs().max() / theirs.abs().max().clamp_min(1e-12)).item()


@pytest.mark.parametrize("name", CASES)
def test_logits_loss_and_gradients_equal_the_authors_code(records, name):
    case, original = records[name]
    state_dict = torch.load(case["clip_path"], weights_only=True)
    clip_model = parity.build_clip(state_dict)
    block = {"IVLP": "IVLP", "MaPLe": "MAPLE"}[case["trainer"]]  # the authors' config block
    keys = {f"TRAINER.{block}.{key}": value for key, value in case["trainer_cfg"].items()}
    config = {"trainer_cfg": keys, "classnames": case["classnames"]}
    model = parity.build_by_method(case["trainer"], config, clip_model)
    names = model.upstream_names()
    assert sorted(names.theirs) == sorted(original["trainable"])
    names.load_into(model, original["initial"])
    ours_buffers = model.text.prompt_learner.upstream_buffers(clip_model.token_embedding)
    for key, value in ours_buffers.items():  # the same prompts, context slots, init rule
        assert torch.equal(value, original["initial"][f"prompt_learner.{key}"]), key

    model.train()
    out = model(case["images"])
    loss, _ = model.compute_loss(out, case["labels"])
    loss.backward()
    differences = {
        "logits": relative_difference(out.logits, original["logits"]),
        "loss": relative_difference(loss, original["loss"]),
    }
    grads = parity.gradients_by_upstream_name(model, names.to_theirs)
    for key, reference in original["grads"].items():
        differences[f"grad {key}"] = relative_difference(grads[key], reference)
    model.eval()
    with torch.no_grad():
        eval_logits = model(case["images"]).logits
    differences["eval logits"] = relative_difference(eval_logits, original["eval_logits"])
    print(name, max(differences.values()))
    assert all(value <= TOLERANCE for value in differences.values()), differences
    assert all(grad.abs().max() > 0 for grad in original["grads"].values())
