"""Pretrain a tiny CLIP on generated image-caption pairs and save it in OpenAI's layout.

CLIP's weights cannot be downloaded everywhere; this model makes offline accuracies mean
something. It is a real ``clip.model.CLIP`` (ViT image tower, the 49408-token BPE vocabulary,
77-token context) trained with the symmetric contrastive loss on ``datasets.toy_render``
pairs, never seeing the held-out colour-object pairs. The result is an fp16 state dict that
``clip.model.build_model`` and ``clip.load(path, jit=False)`` read like OpenAI's files.

    nice -n 10 python tools/make_tiny_clip.py --steps 2400 --seed 0 \
        --out assets/tiny_clip/tiny_clip_vit.pt

The same seed, steps and thread count give the same weights on the same machine;
``--minutes`` only stops early (the result then depends on the machine's speed).
"""

import argparse
import math
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

from datasets import toy_render  # noqa: E402
from engine.config import CLIP_PIXEL_MEAN, CLIP_PIXEL_STD  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    import clip
    from clip.model import CLIP, build_model

ZERO_SHOT_TEMPLATE = "a photo of a {}."
# Attribute vocabularies in a fixed order, to compare image attributes with caption mentions.
_VOCAB = {
    "obj": toy_render.OBJECTS,
    "colour": tuple(toy_render.COLOURS),
    "pattern": toy_render.PATTERNS,
    "size": toy_render.SIZES,
    "position": toy_render.POSITIONS,
    "background": toy_render.BACKGROUNDS,
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="where to write the fp16 state dict")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=2400, help="optimiser steps (sets the schedule)")
    p.add_argument("--minutes", type=float, default=0, help="stop early after this long (0: off)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--pool", type=int, default=30000, help="pre-rendered training images")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--warmup", type=float, default=0.05, help="fraction of steps")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--vision-width", type=int, default=128)
    p.add_argument("--vision-layers", type=int, default=4)
    p.add_argument("--text-width", type=int, default=64)
    p.add_argument("--text-layers", type=int, default=3)
    p.add_argument("--embed-dim", type=int, default=64)
    p.add_argument("--eval-per-class", type=int, default=20, help="zero-shot images per class")
    return p.parse_args(argv)


def build_tiny_clip(args):
    """A randomly initialised CLIP; heads are width // 64, as ``build_model`` infers them."""
    return CLIP(
        embed_dim=args.embed_dim,
        image_resolution=args.image_size,
        vision_layers=args.vision_layers,
        vision_width=args.vision_width,
        vision_patch_size=args.patch,
        context_length=77,
        vocab_size=49408,
        transformer_width=args.text_width,
        transformer_heads=max(1, args.text_width // 64),
        transformer_layers=args.text_layers,
    )


def to_tensor(images):
    """PIL images -> uint8 [N, 3, H, W]."""
    return torch.from_numpy(np.stack([np.asarray(im) for im in images])).permute(0, 3, 1, 2)


def normalise(pixels):
    """uint8 [N, 3, H, W] -> float input for CLIP (its mean and std)."""
    mean = torch.tensor(CLIP_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_PIXEL_STD).view(1, 3, 1, 1)
    return (pixels.float() / 255.0 - mean) / std


def render_pool(n, size, rng):
    """``n`` pretraining images (held-out pairs excluded) and their attribute indices."""
    attrs = [toy_render.sample_attrs(rng) for _ in range(n)]
    images = [toy_render.render(a, size, rng) for a in tqdm(attrs, desc="render", leave=False)]
    codes = [[_VOCAB[k].index(getattr(a, k)) for k in _VOCAB] for a in attrs]
    return to_tensor(images), attrs, torch.tensor(codes)


def captions_for(attrs, rng):
    """Captions and their mention codes ([N, 6], -1 where an attribute is not stated)."""
    texts, codes = [], []
    for a in attrs:
        text, said = toy_render.caption_with_mentions(a, rng)
        texts.append(text)
        codes.append([_VOCAB[k].index(said[k]) if k in said else -1 for k in _VOCAB])
    return texts, torch.tensor(codes)


def encode_texts(model, token_ids):
    """``model.encode_text`` run only up to the batch's last EOS: the same features (the text
    transformer is causal) for a fraction of the work. Kept here, in CLIP's own layout, so
    the shipped weights do not depend on how the project's encoder is tuned for speed."""
    eos = token_ids.argmax(dim=-1)  # EOS has the highest id in CLIP's vocabulary
    n = int(eos.max()) + 1
    x = model.token_embedding(token_ids[:, :n]) + model.positional_embedding[:n]
    x = x.permute(1, 0, 2)  # NLD -> LND
    causal = torch.full((n, n), float("-inf")).triu_(1).to(x.dtype)
    for block in model.transformer.resblocks:
        h = block.ln_1(x)
        x = x + block.attn(h, h, h, need_weights=False, attn_mask=causal)[0]
        x = x + block.mlp(block.ln_2(x))
    return model.ln_final(x[eos, torch.arange(x.shape[1])]) @ model.text_projection


def contrastive_loss(image_features, text_features, logit_scale, positives):
    """CLIP's symmetric cross-entropy with every true caption of an image as a target.

    ``positives[i, j]`` says caption j is true of image i (captions omit attributes, so
    several captions in a batch can describe the same image).
    """
    image_features = F.normalize(image_features, dim=-1)
    text_features = F.normalize(text_features, dim=-1)
    logits = logit_scale.exp() * image_features @ text_features.t()
    targets = positives.float()
    loss_i = -(targets / targets.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    loss_t = -(targets / targets.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (loss_i + loss_t) / 2


def make_optimizer(model, args):
    """AdamW with weight decay on matrices only (not on gains, biases, embeddings)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        matrix = p.ndim >= 2 and "embedding" not in name
        (decay if matrix else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.98), eps=1e-6)


def lr_factor(step, total, warmup):
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train(model, pixels, attrs, codes, args, rng):
    optimizer = make_optimizer(model, args)
    warmup = max(1, int(args.warmup * args.steps))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, args.steps, warmup)
    )
    deadline = time.monotonic() + 60 * args.minutes if args.minutes > 0 else math.inf
    model.train()
    bar = tqdm(range(args.steps), desc="train")
    for step in bar:
        if time.monotonic() > deadline:
            print(f"stopped by --minutes after {step} of {args.steps} steps (not reproducible)")
            break
        idx = torch.from_numpy(rng.choice(len(attrs), args.batch_size, replace=False))
        texts, mentions = captions_for([attrs[i] for i in idx], rng)
        truth = codes[idx]
        positives = ((mentions[None] == -1) | (mentions[None] == truth[:, None])).all(-1)
        image_features = model.encode_image(normalise(pixels[idx]))
        text_features = encode_texts(model, clip.tokenize(texts))
        loss = contrastive_loss(image_features, text_features, model.logit_scale, positives)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{model.logit_scale.exp():.1f}")
    model.eval()


def render_eval_set(pairs, per_class, size, seed, shift=None):
    """``per_class`` fresh images of each (colour, object) pair, with random other attributes."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label, (colour, obj) in enumerate(pairs):
        for _ in range(per_class):
            base = toy_render.sample_attrs(rng, objects=(obj,), colours=(colour,), exclude=())
            images.append(toy_render.render(base, size, rng, shift))
            labels.append(label)
    return to_tensor(images), torch.tensor(labels)


@torch.no_grad()
def zero_shot_accuracy(model, pairs, pixels, labels, template=ZERO_SHOT_TEMPLATE):
    """Top-1 accuracy (%) of classifying ``pixels`` among ``pairs`` by prompt similarity."""
    prompts = [template.format(toy_render.class_name(c, o)) for c, o in pairs]
    text = F.normalize(encode_texts(model, clip.tokenize(prompts)).float(), dim=-1)
    image = F.normalize(model.encode_image(normalise(pixels).to(model.dtype)).float(), dim=-1)
    return 100.0 * ((image @ text.t()).argmax(1) == labels).float().mean().item()


def fp16_state_dict(model):
    """The state dict as OpenAI ships it: float tensors in fp16, plus its three size entries."""
    state = {k: v.detach().half() for k, v in model.state_dict().items()}
    state["input_resolution"] = torch.tensor(model.visual.input_resolution)
    state["context_length"] = torch.tensor(model.context_length)
    state["vocab_size"] = torch.tensor(model.vocab_size)
    return state


def report(model, args):
    """Zero-shot accuracies on held-out pairs and on the candidate benchmark grid."""
    held_out = sorted(toy_render.HELD_OUT)
    grid = toy_render.benchmark_classes()
    n, size, seed = args.eval_per_class, args.image_size, args.seed + 1000
    rows = [("held-out pairs, clean", held_out, None)]
    rows += [("benchmark grid, clean", grid, None)]
    rows += [(f"benchmark grid, {k}", grid, s) for k, s in toy_render.SHIFT_PRESETS.items()]
    for what, pairs, shift in rows:
        pixels, labels = render_eval_set(pairs, n, size, seed, shift)
        acc = zero_shot_accuracy(model, pairs, pixels, labels)
        print(
            f"zero-shot {what}: {acc:.1f}% ({len(pairs)} classes, chance {100 / len(pairs):.1f}%)"
        )


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = build_tiny_clip(args)
    start = time.monotonic()
    pixels, attrs, codes = render_pool(args.pool, args.image_size, rng)
    train(model, pixels, attrs, codes, args, rng)
    print(f"trained in {(time.monotonic() - start) / 60:.1f} min")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(fp16_state_dict(model), out)
    print(f"saved {out} ({out.stat().st_size / 1e6:.1f} MB)")
    report(build_model(torch.load(out, weights_only=True)).float(), args)


if __name__ == "__main__":
    main()
