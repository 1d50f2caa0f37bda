"""Speed and memory of the plain path (what the original DPT code computes) and our fast path.

    python tools/benchmark.py [--backbone ViT-B/32] [--classes 100] [--eval-classes 1000]
        [--batch 8] [--methods CoOp DPT] [--reps 3] [--device cpu|cuda] [--prec auto]

CLIP is built with the real architecture and random weights (nothing is downloaded). For each
method and class count both paths run in the same process, alternating, ``--reps`` times after
``--warmup`` rounds; the table gives medians and ratios:
- train step: forward, loss (DPT: with the guidance terms of the first PRETRAIN.C epochs),
  backward and the optimiser steps, in seconds;
- peak memory of a train step above what was allocated before it (CUDA: the allocator's
  peak; CPU: the tensor storages created during the step), from one more, untimed step;
- evaluation: images/s over ``--eval-batches`` batches, text features included (cached ones
  are dropped before every evaluation, so each pays for them once).
Speed ratios are the medians of the rounds' ratios (each round's pair runs close in time).
Plain path: the 77-token text encoder in every step and every test batch,
``nn.MultiheadAttention``, the original's precision (fp16 on CUDA, fp32 on the CPU). Fast path:
this project's defaults (``TRAINER.SPEED``, ``TRAINER.COOP.PREC auto``), changed by ``--prec``,
``--compile`` and ``--checkpoint-text``.
"""

import argparse
import copy
import dataclasses
import statistics
import sys
import time
import warnings
import weakref
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_flatten  # noqa: E402

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
    from clip.model import CLIP  # noqa: E402

from engine.precision import MixedPrecision, resolve_precision  # noqa: E402
from models import CoOpModel, DPTModel  # noqa: E402
from models.clip_loader import cast_clip  # noqa: E402
from models.speed import PLAIN, Speed, apply_speed  # noqa: E402


def clip_architecture(patch, layers=12, width=768, embed_dim=512, text_width=512):
    """``clip.model.CLIP`` arguments of OpenAI's ViT models (224 pixels, 12 text layers)."""
    return dict(
        embed_dim=embed_dim,
        image_resolution=224,
        vision_layers=layers,
        vision_width=width,
        vision_patch_size=patch,
        context_length=77,
        vocab_size=49408,
        transformer_width=text_width,
        transformer_heads=text_width // 64,
        transformer_layers=12,
    )


ARCHITECTURES = {
    "ViT-B/32": clip_architecture(32),
    "ViT-B/16": clip_architecture(16),
    "ViT-L/14": clip_architecture(14, layers=24, width=1024, embed_dim=768, text_width=768),
}
# Class names of one to four common words (one BPE token each), as in real datasets.
WORDS = "red small garden house wild sea black mountain river golden tree bird dog cat fish"
TEMPLATE = "a photo of a {}."


@dataclasses.dataclass
class BenchPath:
    name: str
    speed: Speed
    precision: str  # resolved


def class_names(n):
    words = WORDS.split()
    return [
        "_".join(words[(7 * i + 3 * k) % len(words)] for k in range(1 + i % 4)) for i in range(n)
    ]


def build_model(method, clip_model, n_classes, path, device):
    clip_model = cast_clip(
        copy.deepcopy(clip_model), MixedPrecision(path.precision, device).weight_dtype
    ).to(device)
    names = class_names(n_classes)
    # The settings' defaults are the original launch script's: 16 text tokens, 10 visual
    # tokens, CAVPT from block 12 with K = 10.
    if method == "CoOp":
        model = CoOpModel(clip_model, names)
    else:
        model = DPTModel(clip_model, names, TEMPLATE)
    return apply_speed(model.to(device), path.speed)


class StoragePeak(TorchDispatchMode):
    """Peak bytes of the tensor storages created while active (frees tracked by weakref)."""

    def __init__(self):
        super().__init__()
        self.current = self.peak = 0
        self._live = set()

    def _track(self, tensor):
        storage = tensor.untyped_storage()
        key, nbytes = storage.data_ptr(), storage.nbytes()
        if nbytes == 0 or key in self._live:
            return
        self._live.add(key)
        self.current += nbytes
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._free, key, nbytes)

    def _free(self, key, nbytes):
        if key in self._live:
            self._live.discard(key)
            self.current -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        # views and in-place results share an input's storage: no new memory
        inputs = {t.untyped_storage().data_ptr() for t in _tensors((args, kwargs))}
        for tensor in _tensors(out):
            if tensor.untyped_storage().data_ptr() not in inputs:
                self._track(tensor)
        return out


def _tensors(tree):
    return [
        v for v in tree_flatten(tree)[0] if isinstance(v, torch.Tensor) and v.device.type == "cpu"
    ]


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def peak_memory(fn, device):
    """Peak bytes allocated by ``fn`` beyond what was allocated before it."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    with StoragePeak() as tracker:
        fn()
    return tracker.peak


class Runner:
    """One method at one class count on one path: a train step and an evaluation."""

    def __init__(self, method, clip_model, n_classes, path, device, lr=1e-3):
        self.model = build_model(method, clip_model, n_classes, path, device)
        self.mixed_precision = MixedPrecision(path.precision, device)
        self.optims = [
            torch.optim.SGD(
                [p for p in module.parameters() if p.requires_grad],
                lr=lr,
                momentum=0.9,
                weight_decay=5e-4,
            )
            for module in self.model.learnable_modules().values()
        ]

    def train_step(self, images, labels):
        self.model.train()
        with self.mixed_precision.autocast():
            out = self.model(images)
            loss, _ = self.model.compute_loss(out, labels, epoch=0)
        self.mixed_precision.backward_and_step(loss, self.optims)

    @torch.no_grad()
    def evaluate(self, batches):
        self.model.eval()
        self.model.text.clear_cache()
        for images in batches:
            with self.mixed_precision.autocast():
                self.model(images).logits.float().argmax(1)


def alternate(paths, n_rounds, warmup, measure):
    """``measure(path)`` for each path per round, alternating the order; the values of the
    rounds after ``warmup``, by path name."""
    results = {path.name: [] for path in paths}
    for round_ in range(warmup + n_rounds):
        for path in paths if round_ % 2 == 0 else paths[::-1]:
            value = measure(path)
            if round_ >= warmup:
                results[path.name].append(value)
    return results


def time_row(measure, plain, fast):
    """Medians of both paths' times and the median of the rounds' speed-ups: each round's
    pair runs close in time, which keeps the ratio steady when other load comes and goes."""
    speedups = [p / f for p, f in zip(plain, fast, strict=True)]
    return (
        measure,
        statistics.median(plain),
        statistics.median(fast),
        f"{statistics.median(speedups):.2f}x faster",
    )


def bench_one(args, method, clip_model, n_classes, train, paths, device):
    """Table rows (measure, plain, fast, ratio) for one method and class count."""
    resolution = clip_model.visual.input_resolution
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, resolution, resolution, generator=generator).to(device)
    labels = torch.randint(n_classes, (args.batch,), generator=generator).to(device)
    eval_batch = args.eval_batch or args.batch
    eval_batches = [
        torch.randn(eval_batch, 3, resolution, resolution, generator=generator).to(device)
        for _ in range(args.eval_batches)
    ]
    n_eval = eval_batch * args.eval_batches
    runners = {path.name: Runner(method, clip_model, n_classes, path, device) for path in paths}
    rows = []
    if train:

        def step(path):
            return timed(lambda: runners[path.name].train_step(images, labels), device)

        times = alternate(paths, args.reps, args.warmup, step)
        rows.append(time_row("train step (s)", times["plain"], times["fast"]))
        memory = [
            peak_memory(lambda p=path: runners[p.name].train_step(images, labels), device) / 2**20
            for path in paths
        ]
        rows.append(("train step peak memory (MiB)", *memory, f"{memory[1] / memory[0]:.2f}x"))

    def evaluation(path):
        return timed(lambda: runners[path.name].evaluate(eval_batches), device)

    times = alternate(paths, args.reps, args.warmup, evaluation)
    plain, fast, ratio = time_row("", times["plain"], times["fast"])[1:]
    rows.append((f"eval of {n_eval} images (images/s)", n_eval / plain, n_eval / fast, ratio))
    return rows


def describe(path, n_ctx=16):
    speed = path.speed
    text = "text up to the last EOS" if speed.truncate_text else "77-token text"
    if speed.shared_text_prefix:
        text += ", shared prefix once"
    parts = [
        path.precision,
        text,
        "SDPA" if speed.sdpa else "nn.MultiheadAttention",
        "text once per evaluation" if speed.cache_text else "text per test batch",
    ]
    if speed.checkpoint_text:
        parts.append("text checkpointing")
    if speed.compile:
        parts.append(f"torch.compile({speed.compile})")
    return ", ".join(parts)


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="ViT-B/32", choices=sorted(ARCHITECTURES))
    parser.add_argument("--methods", nargs="+", default=["CoOp", "DPT"], choices=["CoOp", "DPT"])
    parser.add_argument(
        "--classes",
        type=int,
        nargs="*",
        default=[100],
        help="class counts for train steps and evaluation",
    )
    parser.add_argument(
        "--eval-classes",
        type=int,
        nargs="*",
        default=[1000],
        help="class counts for evaluation only",
    )
    parser.add_argument("--batch", type=int, default=8, help="train batch size")
    parser.add_argument("--eval-batch", type=int, default=0, help="test batch (0: --batch)")
    parser.add_argument("--eval-batches", type=int, default=4, help="test batches per eval")
    parser.add_argument("--reps", type=int, default=3, help="timed rounds (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--prec", default="auto", help="fast path's precision (TRAINER.COOP.PREC)")
    parser.add_argument(
        "--plain-prec",
        default="",
        help="plain path's precision (default: the original's, fp16 on CUDA, fp32 on the CPU)",
    )
    parser.add_argument("--compile", default="", help="torch.compile backend for the fast path")
    parser.add_argument(
        "--checkpoint-text",
        action="store_true",
        help="fast path with text-tower activation checkpointing",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    plain_prec = args.plain_prec or ("fp16" if device.type == "cuda" else "fp32")
    fast_speed = Speed(checkpoint_text=args.checkpoint_text, compile=args.compile)
    paths = [
        BenchPath("plain", PLAIN, resolve_precision(plain_prec, device)),
        BenchPath("fast", fast_speed, resolve_precision(args.prec, device)),
    ]
    torch.manual_seed(0)
    clip_model = CLIP(**ARCHITECTURES[args.backbone]).float().eval().requires_grad_(False)
    hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(
        f"# {args.backbone} (random weights), {hardware}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; train batch {args.batch}, median of {args.reps} "
        f"(after {args.warmup} warm-up), alternating"
    )
    for path in paths:
        print(f"# {path.name}: {describe(path)}")
    print("\n| method | classes | measure | plain | fast | fast vs plain (median) |")
    print("| --- | --- | --- | --- | --- | --- |")
    jobs = [(n, True) for n in args.classes] + [(n, False) for n in args.eval_classes]
    for method in args.methods:
        for n_classes, train in jobs:
            for measure, plain, fast, ratio in bench_one(
                args, method, clip_model, n_classes, train, paths, device
            ):
                row = f"| {method} | {n_classes} | {measure} | {plain:.3g} | {fast:.3g} | {ratio} |"
                print(row, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
