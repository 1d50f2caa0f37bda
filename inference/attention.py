"""CAVPT attention maps of a run that learns class-aware visual prompts (DPT's): where each
selected class's query looks in the image.

The weights are those that the CAVPT blocks compute in the model's forward pass
(``CAVPT.recording_attention``), in the pass that also gives the predictions.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from engine.checkpoint import atomic_write


@dataclass
class CavptAttention:
    """CAVPT's attention in one forward pass over B images, for its J blocks.

    patches: [J, B, K, g, g] attention weight of each selected class's query on each patch of
    the g x g grid; per query, the weights on the patches, the CLS token and the block's
    learnable tokens sum to 1, so ``patches.sum((-2, -1))`` is the share on the patches.
    classes: [B, K] the selected classes (zero-shot CLIP's top K, best first).
    probs: [B, C] the model's class probabilities; zeroshot_probs: [B, C] zero-shot CLIP's.
    blocks: the ViT block (1-based) of each CAVPT block.
    """

    patches: torch.Tensor
    classes: torch.Tensor
    probs: torch.Tensor
    zeroshot_probs: torch.Tensor
    blocks: list[int]


def require_cavpt(clf):
    """The CAVPT module of a ``Classifier``'s run: the one its method names
    (``Method.cavpt_module``); a ValueError naming the trainer where it names none."""
    return clf.trainer.method.learned_part(
        clf.model, "cavpt_module", "class-aware visual prompts (CAVPT, as DPT)", "Attention maps"
    )


@torch.no_grad()
def cavpt_attention(clf, images):
    """``CavptAttention`` for a batch of transformed images [B, 3, H, W] (``clf.transform``)
    of a ``Classifier`` holding a run that learns CAVPT (DPT)."""
    cavpt = require_cavpt(clf)
    model = clf.model
    images = images.to(clf.device)
    with clf.trainer.autocast(), cavpt.recording_attention() as log:
        out = model(images)
        zeroshot = model.zeroshot
        zeroshot_logits = (
            model.logit_scale()
            * zeroshot.image_features(images).float()
            @ (zeroshot.text_features.float().t())
        )
    n_blocks = len(cavpt.blocks)
    if len(log) != n_blocks:
        raise RuntimeError(f"expected one attention record per CAVPT block, got {len(log)}")
    patches = torch.stack([_patch_grid(attn, block) for attn, block in zip(log, cavpt.blocks)])
    first = cavpt.first_block
    return CavptAttention(
        patches=patches.cpu(),
        classes=out.top_k_classes.cpu(),
        probs=out.logits.float().softmax(1).cpu(),
        zeroshot_probs=zeroshot_logits.softmax(1).cpu(),
        blocks=list(range(first, first + n_blocks)),
    )


def _patch_grid(attn, block):
    """[B, K, N + n_kv] attention over (CLS, patches, learnable tokens) -> [B, K, g, g]."""
    n_tokens = attn.shape[-1] - block.kv_tokens.shape[0]
    grid = math.isqrt(n_tokens - 1)
    if grid * grid != n_tokens - 1:
        raise ValueError(f"{n_tokens - 1} patch tokens do not form a square grid")
    return attn[..., 1:n_tokens].reshape(*attn.shape[:2], grid, grid)


def shape_attention_share(patch_attention, coverage):
    """How much of a query's patch attention falls on an object, against the object's share
    of the image: the attention [..., g, g] renormalised over the patches, weighted by the
    fraction of each patch that the object covers; and that coverage's mean over the patches.
    ``coverage`` is a per-pixel mask [..., H, W] (H and W multiples of g)."""
    grid = patch_attention.shape[-1]
    per_patch = F.adaptive_avg_pool2d(coverage.float(), grid)
    weights = patch_attention / patch_attention.sum((-2, -1), keepdim=True)
    return (weights * per_patch).sum((-2, -1)), per_patch.mean((-2, -1))


def displayable(cfg, image):
    """A transformed image [3, H, W] back in [0, 1] RGB, [H, W, 3], for drawing."""
    if "normalize" in cfg.INPUT.TRANSFORMS:
        mean = torch.tensor(cfg.INPUT.PIXEL_MEAN)[:, None, None]
        std = torch.tensor(cfg.INPUT.PIXEL_STD)[:, None, None]
        image = image * std + mean
    return image.clamp(0, 1).permute(1, 2, 0).numpy()


PANEL_IN = 1.9  # side of one panel, inches
PANELS_PER_ROW = 5


def plot_attention_map(cfg, image, attention, index, classnames, path, title=""):
    """Write one image's attention maps as a PNG: the image as the model saw it, zero-shot
    CLIP's top K (the classes CAVPT queries), and per CAVPT block each query's attention
    over the patches, upsampled and laid over the image, titled with the class name, the
    model's probability for it and the share of the query's attention on the patches."""
    from matplotlib.figure import Figure

    picture = displayable(cfg, image)
    height, width = picture.shape[:2]
    classes = attention.classes[index].tolist()
    probs = attention.probs[index]
    n_blocks, k = attention.patches.shape[0], len(classes)
    per_row = min(k, PANELS_PER_ROW)
    rows_per_block = math.ceil(k / per_row)
    n_rows = max(2, n_blocks * rows_per_block)
    fig = Figure(
        figsize=(PANEL_IN * (per_row + 1.3), PANEL_IN * n_rows + 0.5), layout="constrained"
    )
    grid = fig.add_gridspec(n_rows, per_row + 1, width_ratios=[1.3] + [1] * per_row)
    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    best = int(probs.argmax())
    ax.set_title(f"prediction:\n{classnames[best]} {100 * probs[best]:.0f}%", fontsize=9)
    ax = fig.add_subplot(grid[1:, 0])
    ax.set_axis_off()
    lines = [f"{r + 1}. {classnames[c]} {100 * attention.zeroshot_probs[index, c]:.0f}%"
             for r, c in enumerate(classes)]  # fmt: skip
    ax.text(0, 1, "zero-shot top-K:\n" + "\n".join(lines), va="top", fontsize=8,
            transform=ax.transAxes)  # fmt: skip
    for j in range(n_blocks):
        for r, c in enumerate(classes):
            row, col = j * rows_per_block + r // per_row, 1 + r % per_row
            ax = fig.add_subplot(grid[row, col])
            heat = attention.patches[j, index, r]
            share = float(heat.sum())
            heat = F.interpolate(heat[None, None], size=(height, width), mode="bilinear")[0, 0]
            ax.imshow(picture, interpolation="nearest")
            ax.imshow(heat.numpy(), cmap="jet", alpha=0.5, vmin=0, vmax=float(heat.max()))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{classnames[c]} {100 * probs[c]:.0f}%\npatches {100 * share:.0f}%",
                         fontsize=8)  # fmt: skip
            if col == 1 and r < per_row:
                ax.set_ylabel(f"block {attention.blocks[j]}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    return path
