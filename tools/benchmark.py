"""Speed and memory of our fast path beside the original DPT code, a plain path that computes
what it computes, and the least a DPT step can cost.

    python tools/benchmark.py [--backbone ViT-B/32] [--classes 100] [--eval-classes 1000]
        [--batch 8] [--methods CoOp DPT] [--reps 3] [--device cpu|cuda] [--prec auto]
        [--original-dir ../DPT]

CLIP is built with the real architecture and random weights (nothing is downloaded). For each
method and class count all paths run in the same process, alternating, ``--reps`` times after
``--warmup`` rounds; the table gives medians and ratios:
- train step: forward, loss (DPT: with the guidance terms of the first PRETRAIN.C epochs),
  backward and the optimiser steps, in seconds;
- peak memory of a train step above what was allocated before it (CUDA: the allocator's
  peak; CPU: the tensor storages created during the step), from one more, untimed step;
- evaluation: images/s over ``--eval-batches`` batches, text features included (cached ones
  are dropped before every evaluation, so each pays for them once).
Speed ratios are the medians of the rounds' ratios (each round's pair runs close in time).
Paths:
- original (DPT): the authors' code from its checkout (``tools/original_code.py``; skipped
  with the reason when it or Dassl is missing): its model, its ``forward_backward`` (with
  Dassl's optimiser steps) and ``model_inference``, in its precision (fp16 on CUDA; on the
  CPU fp32, with CAVPT cast back to float32 as the trajectory test does);
- plain: our models computing what the original computes: the 77-token text encoder in every
  step and every test batch, ``nn.MultiheadAttention``, the original's precision;
- fast: this project's defaults (``TRAINER.SPEED``, ``TRAINER.COOP.PREC auto``), changed by
  ``--prec``, ``--compile`` and ``--checkpoint-text``;
- least (DPT): the two image-encoder passes that DPT needs and nothing else (no text tower,
  CAVPT or loss terms), with the fast path's encoder and precision: a frozen forward, and a
  forward with as many prompt tokens per block as DPT appends (learnable, shared by the batch)
  plus its backward and an SGD step; in evaluation both forwards. The fast path's multiple of
  it is what DPT's text prompt, CAVPT and losses cost above the image work.
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

import trainers  # noqa: E402, F401 (the trainers' config keys, for the original's config)
from engine.config import setup_cfg  # noqa: E402
from engine.precision import MixedPrecision, resolve_precision  # noqa: E402
from models import CoOpModel, DPTModel  # noqa: E402
from models.clip_loader import cast_clip  # noqa: E402
from models.speed import PLAIN, Speed, apply_speed  # noqa: E402
from tools.original_code import (  # noqa: E402
    default_original_dir,
    original_dpt_trainer,
    original_unavailable,
)


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
# The original's launch setting (its values are our models' defaults); a dataset whose
# template in the original is TEMPLATE.
ORIGINAL_CONFIG = ROOT / "configs" / "trainers" / "DPT" / "vit_b32.yaml"
ORIGINAL_DATASET = "Caltech101"
ORIGINAL_PRECISIONS = ("fp16", "fp32")  # its amp steps one optimiser of three


@dataclasses.dataclass
class BenchPath:
    name: str  # original | plain | fast | least
    precision: str  # resolved
    speed: Speed = PLAIN
    methods: tuple = ("CoOp", "DPT")  # the methods this path runs


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


def sgd(parameters, lr=1e-3):
    return torch.optim.SGD(
        [p for p in parameters if p.requires_grad], lr=lr, momentum=0.9, weight_decay=5e-4
    )


class Runner:
    """One method at one class count on one of our paths: a train step and an evaluation."""

    def __init__(self, method, clip_model, n_classes, path, device):
        self.model = build_model(method, clip_model, n_classes, path, device)
        self.mixed_precision = MixedPrecision(path.precision, device)
        self.optims = [
            sgd(module.parameters()) for module in self.model.learnable_modules().values()
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


class LeastRunner:
    """DPT's two image-encoder passes alone, with the encoders of a fast-path ``DPTModel``:
    the frozen one, and the prompted one with as many learnable tokens per block as DPT
    appends (its deep visual prompt's, then K per CAVPT block)."""

    def __init__(self, model, precision, device):
        self.frozen = model.zeroshot.encoder
        self.prompted = model.image_encoder
        n_vpt, n_tokens, width = model.visual_prompt.tokens.shape
        counts = [n_tokens] * n_vpt + [model.top_k] * (self.prompted.n_layers - n_vpt)
        self.prompts = torch.nn.ParameterList(
            torch.nn.Parameter(torch.zeros(n, width, device=device)) for n in counts
        )
        self.mixed_precision = MixedPrecision(precision, device)
        self.optims = [sgd(self.prompts.parameters())]

    def _block_prompts(self, block, sequence):
        return self.prompts[block][:, None].expand(-1, sequence.shape[1], -1)

    def train_step(self, images, labels):
        with self.mixed_precision.autocast():
            with torch.no_grad():
                self.frozen(images)
            loss = self.prompted(images, self._block_prompts).float().square().mean()
        self.mixed_precision.backward_and_step(loss, self.optims)

    @torch.no_grad()
    def evaluate(self, batches):
        for images in batches:
            with self.mixed_precision.autocast():
                self.frozen(images)
                self.prompted(images, self._block_prompts).float().argmax(1)


class OriginalRunner:
    """The original DPT code's trainer: its train step and its inference per test batch.
    ``config_file`` holds its settings (default: its launch script's)."""

    def __init__(self, clip_model, n_classes, precision, device, original_dir,
                 config_file=ORIGINAL_CONFIG):  # fmt: skip
        size = clip_model.visual.input_resolution
        opts = ["DATASET.NAME", ORIGINAL_DATASET, "TRAINER.COOP.PREC", precision]
        opts += ["INPUT.SIZE", (size, size)]
        cfg = setup_cfg(argparse.Namespace(config_file=str(config_file), opts=opts))
        state_dict = clip_model.state_dict()
        names = class_names(n_classes)
        self.trainer = original_dpt_trainer(original_dir, cfg, names, state_dict, device)

    def train_step(self, images, labels):
        """One step of its training loop; its loss."""
        self.trainer.set_model_mode("train")
        return self.trainer.forward_backward({"img": images, "label": labels})["loss"]

    @torch.no_grad()
    def evaluate(self, batches):
        self.trainer.set_model_mode("eval")
        for images in batches:
            self.trainer.model_inference(images).float().argmax(1)


def build_runners(method, clip_model, n_classes, paths, device, original_dir):
    """``{path name: runner}`` for the paths that run ``method`` (least after fast)."""
    runners = {}
    for path in paths:
        if method not in path.methods:
            continue
        if path.name == "original":
            runners[path.name] = OriginalRunner(
                clip_model, n_classes, path.precision, device, original_dir
            )
        elif path.name == "least":
            runners[path.name] = LeastRunner(runners["fast"].model, path.precision, device)
        else:
            runners[path.name] = Runner(method, clip_model, n_classes, path, device)
    return runners


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


def round_ratio(times, numerator, denominator):
    """The median over the rounds of one path's time over another's: each round's paths run
    close in time, which keeps the ratio steady when other load comes and goes."""
    if numerator not in times or denominator not in times:
        return None
    pairs = zip(times[numerator], times[denominator], strict=True)
    return statistics.median(n / d for n, d in pairs)


def ratios(times):
    """The fast path against the others: (vs original, vs plain) as speed-ups, and its
    multiple of the least; None where a path did not run."""
    return (
        round_ratio(times, "original", "fast"),
        round_ratio(times, "plain", "fast"),
        round_ratio(times, "fast", "least"),
    )


def memory_ratios(memory):
    def ratio(other):
        return memory["fast"] / memory[other] if other in memory else None

    return ratio("original"), ratio("plain"), ratio("least")


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
    runners = build_runners(method, clip_model, n_classes, paths, device, args.original_dir)
    paths = [path for path in paths if path.name in runners]
    rows = []
    if train:

        def step(path):
            return timed(lambda: runners[path.name].train_step(images, labels), device)

        times = alternate(paths, args.reps, args.warmup, step)
        medians = {name: statistics.median(values) for name, values in times.items()}
        rows.append(("train step (s)", medians, ratios(times)))
        memory = {
            path.name: peak_memory(
                lambda p=path: runners[p.name].train_step(images, labels), device
            )
            / 2**20
            for path in paths
        }
        rows.append(("train step peak memory (MiB)", memory, memory_ratios(memory)))

    def evaluation(path):
        return timed(lambda: runners[path.name].evaluate(eval_batches), device)

    times = alternate(paths, args.reps, args.warmup, evaluation)
    speed = {name: n_eval / statistics.median(values) for name, values in times.items()}
    rows.append((f"eval of {n_eval} images (images/s)", speed, ratios(times)))
    return rows


PATH_NAMES = ("original", "plain", "fast", "least")


def table_row(method, n_classes, measure, values, path_ratios):
    """A markdown row: each path's value, then the fast path's ratios (speed-ups against
    the original and the plain path, multiple of the least; for memory all three are
    fast / other)."""
    cells = [f"{values[name]:.3g}" if name in values else "—" for name in PATH_NAMES]
    memory = "memory" in measure
    ratio_cells = []
    for kind, ratio in zip(("vs", "vs", "of"), path_ratios):
        if ratio is None:
            ratio_cells.append("—")
        elif memory or kind == "of":
            ratio_cells.append(f"{ratio:.2f}x")
        else:
            ratio_cells.append(f"{ratio:.2f}x faster")
    return f"| {method} | {n_classes} | {measure} | " + " | ".join(cells + ratio_cells) + " |"


def describe(path):
    if path.name == "original":
        return f"{path.precision}, the authors' code (github fanrena/DPT) from its checkout"
    if path.name == "least":
        return f"{path.precision}, DPT's two image-encoder passes alone (no text work)"
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
    parser.add_argument(
        "--original-dir",
        default=str(default_original_dir()),
        help="checkout of the original DPT code (default: DPT_ORIGINAL_DIR or ../DPT)",
    )
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    plain_prec = resolve_precision(
        args.plain_prec or ("fp16" if device.type == "cuda" else "fp32"), device
    )
    fast_prec = resolve_precision(args.prec, device)
    fast_speed = Speed(checkpoint_text=args.checkpoint_text, compile=args.compile)
    paths = [
        BenchPath("plain", plain_prec),
        BenchPath("fast", fast_prec, fast_speed),
        BenchPath("least", fast_prec, fast_speed, methods=("DPT",)),
    ]
    no_original = original_unavailable(args.original_dir)
    if plain_prec not in ORIGINAL_PRECISIONS:
        no_original = f"the original code runs {' or '.join(ORIGINAL_PRECISIONS)} only"
    if not no_original:
        paths.insert(0, BenchPath("original", plain_prec, methods=("DPT",)))
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
    if no_original:
        print(f"# original: not run ({no_original})")
    header = [*PATH_NAMES, "fast vs original", "fast vs plain", "fast / least"]
    print("\n| method | classes | measure | " + " | ".join(header) + " |")
    print("| --- " * (3 + len(header)) + "|")
    jobs = [(n, True) for n in args.classes] + [(n, False) for n in args.eval_classes]
    for method in args.methods:
        for n_classes, train in jobs:
            for measure, values, path_ratios in bench_one(
                args, method, clip_model, n_classes, train, paths, device
            ):
                print(table_row(method, n_classes, measure, values, path_ratios), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
