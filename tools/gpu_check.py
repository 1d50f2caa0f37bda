"""The GPU path in one go: precision modes, the original code side by side, torch.compile,
torchrun and the Dassl engine, on one CUDA GPU without internet, in at most 8 minutes.

    python tools/gpu_check.py [--out gpu_check.json] [--budget-s 450] [--work-dir DIR]
    python tools/gpu_check.py --smoke          # the same code paths on the CPU, under a minute

What it does (sizes for the GPU; ``--smoke``: the shipped tiny CLIP, batch 8, a few steps):
- builds ViT-B/16 CLIP with random weights (``clip.model``, nothing downloaded) and saves it
  as OpenAI ships it, for the runs that load it from a file;
- trains DPT with this project's builtin trainer (``ClipTrainer.forward_backward``: pinned
  batches copied without blocking, autocast, the grad scaler stepping the three optimisers)
  for up to 300 steps at batch 32 on generated 224-px images, with 100 and with 1000
  classes, in each precision mode (TRAINER.COOP.PREC fp32, fp16, amp, amp_bf16): every loss
  must be finite, and each 16-bit mode must track fp32 (``TOLERANCES``); per mode the median
  step time, images/s and peak memory;
- times the original DPT code (its checkout, ``tools/original_code.py``) in fp16 on the same
  batches, beside our fp16;
- trains CoOp, VPT and VLP briefly (TRAINER.COOP.PREC auto);
- NCCL (gloo on the CPU) under ``torchrun --nproc_per_node 1`` (``tools/nccl_check.py``):
  collectives and a DistributedDataParallel step; one short ``train.py`` run under ``torchrun
  --nproc_per_node 1`` and one with ``--engine dassl`` (when Dassl is installed), on Toy
  drawn at 224 px;
- DPT with TRAINER.SPEED.COMPILE inductor (``--smoke``: the eager backend, which runs the
  same torch.compile path without inductor's code generation, minutes on a CPU).

Each section runs within what is left of the budget; a failing section is recorded with its
error and the next one runs; the JSON file (``--out``) is rewritten after every section.
Exit status: 0 when no section failed, 1 otherwise, 2 for bad arguments (before any work).
"""

import argparse
import contextlib
import dataclasses
import gc
import importlib.util
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import trainers  # noqa: E402, F401 (registers the methods and their config keys)
from engine.config import setup_cfg  # noqa: E402
from engine.precision import resolve_precision  # noqa: E402
from inference.classifier import SavedClasses  # noqa: E402
from models.clip_loader import load_clip  # noqa: E402
from tools.benchmark import (  # noqa: E402
    ARCHITECTURES,
    TEMPLATE,
    OriginalRunner,
    class_names,
    peak_memory,
    synchronize,
)
from tools.check_report import CheckFailed, CheckReport, SectionSkipped  # noqa: E402
from tools.original_code import default_original_dir, original_unavailable  # noqa: E402
from trainers.builtin import ClipTrainer  # noqa: E402
from trainers.method import method_for  # noqa: E402

TINY_CLIP = ROOT / "assets" / "tiny_clip" / "tiny_clip_vit.pt"
PRECISIONS = ("fp32", "fp16", "amp", "amp_bf16")  # fp32 first: the reference of the others


@dataclasses.dataclass(frozen=True)
class Size:
    device: str
    batch: int
    steps: int  # DPT steps per precision mode and class count
    warmup_steps: int  # left out of the step time
    classes: tuple
    brief_steps: int  # the original code, CoOp, VPT, VLP
    compile_backend: str
    toy_image_size: int
    mode_cap_s: float  # at most this long per precision mode (build included)
    run_cap_s: float  # at most this long per train.py run


SIZES = {
    "gpu": Size("cuda", 32, 300, 10, (100, 1000), 60, "inductor", 224, 25, 90),
    "smoke": Size("cpu", 8, 20, 2, (10, 100), 3, "eager", 32, 20, 60),
}


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """How far a 16-bit mode may be from fp32, on the same initial prompts and batches.

    first: relative difference of the first step's losses (the same weights: only rounding
        differs).
    end: difference of the mean losses over the last quarter of the steps, relative to
        fp32's first loss (trajectories drift apart; a mode that learns nothing ends about as
        far from fp32 as fp32 went).
    moved: each learnable module's parameters must move (end minus start, L2 norm) between
        1/moved and moved times as far as in fp32 (a module whose optimiser never steps, or
        whose gradients underflow to zero, does not move).
    """

    first: float
    end: float = 0.1
    moved: float = 2.0


# first: four unit roundoffs of the 16-bit format (fp16 2^-11, bfloat16 2^-8). Measured on
# the CPU (tiny CLIP; random ViT-B/16 at 224 px, 100 classes) the first-step difference was
# at most 1.3 unit roundoffs in fp16 and amp, 0.35 in amp_bf16.
# end: in the smoke, fp16 and amp_bf16 end within 0.1% of the first loss from fp32, amp up to
# 5.5% (12 steps) and 2% (48 steps): its grad scaler skips the steps of the optimisers whose
# gradients overflowed while its scale settles (65536 -> 16384 over the first two steps), and
# the trajectory that starts apart stays apart; fp32 itself went 65-90% of the first loss down.
TOLERANCES = {
    "fp16": Tolerance(first=2e-3),
    "amp": Tolerance(first=2e-3),
    "amp_bf16": Tolerance(first=1.5e-2),
}


# ---- inputs ---------------------------------------------------------------------------------
def clip_checkpoint(size, work_dir):
    """The CLIP file the runs load: ViT-B/16 with random weights (float16, OpenAI's layout)
    for the GPU, the shipped tiny CLIP for ``--smoke``."""
    if size.device == "cpu":
        return TINY_CLIP
    from clip.model import CLIP, convert_weights

    torch.manual_seed(0)
    model = CLIP(**ARCHITECTURES["ViT-B/16"])
    convert_weights(model)
    path = Path(work_dir) / "vit_b16_random.pt"
    torch.save(model.state_dict(), path)
    return path


def generated_batches(n_classes, batch, n_batches, resolution, pin, seed=0):
    """Batches of images that a class can be told from: per class a colour and a striped
    pattern of its own (orientation and frequency), plus noise; pinned for non-blocking
    copies when ``pin``."""
    generator = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, resolution)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    batches = []
    for _ in range(n_batches):
        labels = torch.randint(n_classes, (batch,), generator=generator)
        angle = labels.float() * 2.399963  # the golden angle: nearby labels look different
        freq = 2.0 + (labels % 7).float()
        colour = torch.stack([(labels * k % 11).float() / 10 for k in (1, 3, 7)], 1) - 0.5
        phase = angle.cos()[:, None, None] * x + angle.sin()[:, None, None] * y
        stripes = torch.sin(math.pi * freq[:, None, None] * phase)
        images = colour[:, :, None, None] * 2 + stripes[:, None]
        images = images + 0.3 * torch.randn(images.shape, generator=generator)
        if pin:
            images, labels = images.pin_memory(), labels.pin_memory()
        batches.append({"img": images, "label": labels})
    return batches


class Inputs:
    """What the sections share: the CLIP file, its loaded model, generated batches."""

    def __init__(self, size, work_dir):
        self.size = size
        self.device = torch.device(size.device)
        self.work_dir = Path(work_dir)
        self.checkpoint = clip_checkpoint(size, work_dir)
        self.clip_model = load_clip(str(self.checkpoint))
        self.resolution = self.clip_model.visual.input_resolution
        self._batches = {}

    def batches(self, n_classes):
        if n_classes not in self._batches:
            pin = self.device.type == "cuda"
            self._batches[n_classes] = generated_batches(
                n_classes, self.size.batch, 8, self.resolution, pin
            )
        return self._batches[n_classes]

    def trainer_config(self, trainer):
        folder = ROOT / "configs" / "trainers" / trainer
        return folder / ("tiny.yaml" if self.size.device == "cpu" else "vit_b16.yaml")


# ---- training steps -------------------------------------------------------------------------
def build_trainer(inputs, trainer, n_classes, precision, compile_backend=""):
    """Our builtin trainer for ``trainer`` on generated classes: LR from the first step (no
    warm-up), seed 1 before the build, so that every precision mode starts from the same
    prompts."""
    opts = ["MODEL.BACKBONE.NAME", str(inputs.checkpoint), "TRAINER.COOP.PREC", precision]
    opts += ["OPTIM.WARMUP_EPOCH", 0, "USE_CUDA", inputs.device.type == "cuda", "SEED", 1]
    opts += ["TRAINER.SPEED.COMPILE", compile_backend]
    if trainer == "DPT":
        opts += ["TRAINER.DPT.TEXT_WARMUP_EPOCH", 0]
    config_file = inputs.trainer_config(trainer)
    cfg = setup_cfg(argparse.Namespace(config_file=str(config_file), trainer=trainer, opts=opts))
    torch.manual_seed(cfg.SEED)
    data = SavedClasses(class_names(n_classes), TEMPLATE)
    with contextlib.redirect_stdout(io.StringIO()):
        return ClipTrainer(cfg, method_for(cfg), data=data)


def run_steps(step, batches, n_steps, deadline, device):
    """``step(batch, index)`` -> loss, for up to ``n_steps`` steps or until ``deadline``;
    the losses and the step times."""
    losses, times = [], []
    for index in range(n_steps):
        if time.monotonic() > deadline:
            break
        synchronize(device)
        start = time.perf_counter()
        loss = step(batches[index % len(batches)], index)
        synchronize(device)
        times.append(time.perf_counter() - start)
        losses.append(loss)
        if not math.isfinite(loss):
            raise FloatingPointError(f"loss {loss} at step {index + 1}")
    if not losses:
        raise SectionSkipped("time budget: no step fitted")
    return losses, times


def trainer_step(trainer):
    """One step of our trainer (in its first epoch: VLP's and DPT's guidance terms on), and
    its learnable modules."""
    trainer.set_mode("train")

    def step(batch, index):
        trainer.batch_idx = index
        return trainer.forward_backward(batch)["loss"]

    return step, trainer._modules


def learnable(modules):
    return {
        name: [p for p in module.parameters() if p.requires_grad]
        for name, module in modules.items()
    }


def measure_training(record, size, device, deadline, build, n_steps, batches):
    """Build (``build()`` -> a step function and the learnable modules by name), train, and
    record the figures: build time, the median step time after the warm-up steps, images/s,
    peak memory (CUDA: the allocator's peak over build and steps, weights included; CPU: the
    tensor storages that one more step creates), the losses, how far each module moved."""
    if device.type == "cuda":
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    started = time.monotonic()
    step, modules = build()
    record["build_s"] = round(time.monotonic() - started, 2)
    start = {name: [p.detach().clone() for p in ps] for name, ps in learnable(modules).items()}
    losses, times = run_steps(step, batches, n_steps, deadline, device)
    record["moved"] = {
        name: math.sqrt(sum((p.detach() - p0).float().square().sum().item()
                            for p, p0 in zip(ps, start[name])))
        for name, ps in learnable(modules).items()
    }  # fmt: skip
    if device.type == "cuda":
        record["peak_memory_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        record["peak_memory_of"] = "CUDA allocator peak over the build and the steps"
    else:
        peak = peak_memory(lambda: step(batches[0], len(losses)), device)
        record["peak_memory_mib"] = round(peak / 2**20, 2)
        record["peak_memory_of"] = "tensor storages created in one step (CPU)"
    timed = times[size.warmup_steps :] or times
    step_s = statistics.median(timed)
    record.update(
        steps=len(losses),
        step_s=round(step_s, 5),
        images_per_s=round(size.batch / step_s, 1),
        first_step_s=round(times[0], 3),
        losses=[round(loss, 6) for loss in losses],
    )


def compare_runs(record, reference, tolerance, name):
    """``record[name]``: how far ``record``'s run is from ``reference``'s (first loss, mean
    loss over the last quarter of their common steps, how far each module moved) and whether
    within ``tolerance``; a CheckFailed when not."""
    ours, theirs = record["losses"], reference["losses"]
    n = min(len(ours), len(theirs))
    first = abs(ours[0] - theirs[0]) / abs(theirs[0])
    window = slice(n - max(n // 4, 1), n)
    end = abs(statistics.fmean(ours[window]) - statistics.fmean(theirs[window])) / abs(theirs[0])
    moved = {}  # comparable only after as many steps
    if len(ours) == len(theirs):
        moved = {
            module: distance / reference["moved"][module]
            for module, distance in record["moved"].items()
        }
    within = {
        "first": first <= tolerance.first,
        "end": end <= tolerance.end,
        "moved": all(1 / tolerance.moved <= ratio <= tolerance.moved for ratio in moved.values()),
    }
    record[name] = {
        "steps_compared": n,
        "first_step_rel_diff": first,
        "end_diff_of_first_loss": end,
        "moved_ratio": moved,
        "tolerance": dataclasses.asdict(tolerance),
        "within": all(within.values()),
    }
    if not all(within.values()):
        beyond = ", ".join(key for key, ok in within.items() if not ok)
        raise CheckFailed(f"{name}: beyond {tolerance} in {beyond}: {record[name]}")


def compile_worker(out_path, size, work_dir, budget_s):
    """In a child process: DPT with TRAINER.SPEED.COMPILE (precision auto) for as many steps
    as the precision modes, stopping ``budget_s`` after its start (less a margin for the
    parent); its record written to ``out_path``."""
    deadline = time.monotonic() + budget_s - 10
    inputs = Inputs(size, work_dir)
    record = {"classes": size.classes[0], "compile_backend": size.compile_backend}
    record["precision"] = resolve_precision("auto", inputs.device)
    try:

        def build():
            backend = size.compile_backend
            return trainer_step(build_trainer(inputs, "DPT", record["classes"], "auto", backend))

        batches = inputs.batches(record["classes"])
        measure_training(record, size, inputs.device, deadline, build, size.steps, batches)
    except Exception as err:  # noqa: BLE001 (reported to the parent through the file)
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
    Path(out_path).write_text(json.dumps(record))


# ---- subprocesses ---------------------------------------------------------------------------
def run_command(command, record, timeout_s, log_path):
    """Run ``command`` from the repository root, its output in ``log_path``; CheckFailed with
    the output's tail when it fails or runs out of time."""
    record["command"] = " ".join(map(str, command))
    started = time.monotonic()
    with open(log_path, "w") as log:
        try:
            done = subprocess.run(
                list(map(str, command)), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                timeout=max(timeout_s, 1),
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            done = None
    record["wall_s"] = round(time.monotonic() - started, 2)
    tail = Path(log_path).read_text(errors="replace")[-3000:]
    if done is None:
        raise CheckFailed(f"no result within {timeout_s:.0f} s; output ends:\n{tail}")
    record["returncode"] = done.returncode
    if done.returncode:
        raise CheckFailed(f"exit status {done.returncode}; output ends:\n{tail}")


def torchrun(*args):
    """``torchrun --standalone --nproc_per_node 1`` (as ``python -m``: no PATH needed)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", 1,
            *args]  # fmt: skip


def python(*args):
    return [sys.executable, *args]


# ---- the check ------------------------------------------------------------------------------
class GpuCheck:
    """The sections, in order, sharing the inputs and the report."""

    def __init__(self, args, size, report):
        self.args = args
        self.size = size
        self.report = report
        self.device = torch.device(size.device)
        self.inputs = None
        self.original_dir = Path(args.original_dir)

    def sections(self):
        """(name, function, least seconds it needs) in the order they run."""
        size = self.size
        plan = [("environment", self.environment, 0), ("inputs", self.prepare_inputs, 0)]
        for n in size.classes:
            for precision in PRECISIONS:
                plan.append((f"dpt_{n}_{precision}", self.dpt_mode(n, precision), 5))
                if precision == "fp16":
                    plan.append((f"original_{n}_fp16", self.original(n), 5))
        for trainer in ("CoOp", "VPT", "VLP"):
            plan.append((f"{trainer.lower()}_{size.classes[0]}", self.brief(trainer), 5))
        plan.append(("nccl", self.nccl, 10))
        plan.append(("torchrun", self.train_py("torchrun", torchrun), 20))
        plan.append(("dassl", self.train_py("dassl", python, "--engine", "dassl"), 20))
        plan.append(("compile", self.compile, 30))
        return plan

    def deadline(self, cap_s):
        return self.report.deadline(cap_s)

    def sibling(self, name):
        """Another section's record when it ended ok, else None."""
        record = self.report.data["sections"].get(name, {})
        return record if record.get("status") == "ok" else None

    def need_inputs(self):
        if self.inputs is None:
            raise SectionSkipped("no inputs: the inputs section failed")
        return self.inputs

    # -- sections --
    def environment(self, record):
        record.update(
            python=platform.python_version(),
            torch=torch.__version__,
            cuda_available=torch.cuda.is_available(),
            cpus=os.cpu_count(),
            dassl_installed=importlib.util.find_spec("dassl") is not None,
            original_code=original_unavailable(self.original_dir) or str(self.original_dir),
        )
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            record.update(
                gpu=props.name,
                gpu_memory_gib=round(props.total_memory / 2**30, 1),
                capability=f"{props.major}.{props.minor}",
                bf16_supported=torch.cuda.is_bf16_supported(),
                cuda=torch.version.cuda,
                cudnn=torch.backends.cudnn.version(),
                nccl=".".join(map(str, torch.cuda.nccl.version())),
                sdpa_flash=torch.backends.cuda.flash_sdp_enabled(),
                sdpa_mem_efficient=torch.backends.cuda.mem_efficient_sdp_enabled(),
            )

    def prepare_inputs(self, record):
        started = time.monotonic()
        self.inputs = Inputs(self.size, self.args.work_dir)
        record.update(
            checkpoint=str(self.inputs.checkpoint),
            resolution=self.inputs.resolution,
            seconds_to_build=round(time.monotonic() - started, 2),
        )

    def dpt_mode(self, n_classes, precision):
        def section(record):
            self.train_ours(record, "DPT", n_classes, precision, self.size.steps)
            reference = self.sibling(f"dpt_{n_classes}_fp32")
            if precision == "fp32":
                return
            if reference is None:
                record["tracks_fp32"] = "not compared: the fp32 run did not finish"
                return
            compare_runs(record, reference, TOLERANCES[precision], "tracks_fp32")

        return section

    def brief(self, trainer):
        def section(record):
            self.train_ours(record, trainer, self.size.classes[0], "auto", self.size.brief_steps)

        return section

    def train_ours(self, record, trainer_name, n_classes, precision, n_steps):
        inputs = self.need_inputs()
        record.update(trainer=trainer_name, classes=n_classes, batch=self.size.batch)
        record["precision"] = resolve_precision(precision, self.device)

        def build():
            return trainer_step(build_trainer(inputs, trainer_name, n_classes, precision))

        deadline = self.deadline(self.size.mode_cap_s)
        batches = inputs.batches(n_classes)
        measure_training(record, self.size, self.device, deadline, build, n_steps, batches)

    def original(self, n_classes):
        """The original DPT code in fp16 on the batches of our runs, timed the same way."""

        def section(record):
            reason = original_unavailable(self.original_dir)
            if reason:
                raise SectionSkipped(reason)
            inputs = self.need_inputs()
            record.update(classes=n_classes, precision="fp16", batch=self.size.batch)

            def build():
                torch.manual_seed(1)
                runner = OriginalRunner(
                    inputs.clip_model, n_classes, "fp16", self.device, self.original_dir,
                    config_file=inputs.trainer_config("DPT"),
                )  # fmt: skip

                def step(batch, index):
                    return runner.train_step(batch["img"], batch["label"])

                return step, runner.trainer._models

            deadline = self.deadline(self.size.mode_cap_s)
            batches = inputs.batches(n_classes)
            steps = self.size.brief_steps
            measure_training(record, self.size, self.device, deadline, build, steps, batches)
            ours = self.sibling(f"dpt_{n_classes}_fp16")
            if ours:
                record["ours_fp16_step_s"] = ours["step_s"]
                record["original_over_ours_fp16"] = round(record["step_s"] / ours["step_s"], 2)

        return section

    def nccl(self, record):
        inputs = self.need_inputs()
        out = inputs.work_dir / "nccl.json"
        cpu = ["--cpu"] if self.device.type == "cpu" else []
        command = torchrun(Path(__file__).with_name("nccl_check.py"), out, *cpu)
        run_command(command, record, min(60, self.report.left_s()), inputs.work_dir / "nccl.log")
        record.update(json.loads(out.read_text()))

    def train_py(self, name, launcher, *engine_args):
        """A short ``train.py`` run (DPT on Toy drawn at the CLIP's resolution, generated on
        first use below the work folder: 2 shots of 30 classes, one epoch)."""

        def section(record):
            if "dassl" in engine_args and importlib.util.find_spec("dassl") is None:
                raise SectionSkipped("Dassl is not installed")
            inputs = self.need_inputs()
            run_dir = inputs.work_dir / "runs" / name
            shutil.rmtree(run_dir, ignore_errors=True)  # a run of an earlier check
            size = inputs.resolution
            command = launcher(
                ROOT / "train.py", *engine_args, "--root", inputs.work_dir / "data",
                "--trainer", "DPT", "--seed", 1, "--output-dir", run_dir,
                "--dataset-config-file", ROOT / "configs" / "datasets" / "toy.yaml",
                "--config-file", inputs.trainer_config("DPT"),
                "MODEL.BACKBONE.NAME", inputs.checkpoint, "INPUT.SIZE", f"({size}, {size})",
                "DATASET.TOY.IMAGE_SIZE", size, "DATASET.TOY.TRAIN_PER_CLASS", 2,
                "DATASET.TOY.VAL_PER_CLASS", 1, "DATASET.TOY.TEST_PER_CLASS", 2,
                "DATASET.NUM_SHOTS", 2, "OPTIM.MAX_EPOCH", 1, "OPTIM.WARMUP_EPOCH", 0,
                "DATALOADER.NUM_WORKERS", 2, "DATALOADER.TEST.BATCH_SIZE", 32,
                "TEST.ZEROSHOT_BASELINE", False, "USE_CUDA", self.device.type == "cuda",
            )  # fmt: skip
            log = inputs.work_dir / f"{name}.log"
            run_command(command, record, min(self.size.run_cap_s, self.report.left_s()), log)
            record["accuracy"] = json.loads((run_dir / "results.json").read_text())["accuracy"]
            lines = (run_dir / "log.txt").read_text(errors="replace").splitlines()
            notes = ("Precision:", "Distributed", "Note:", "Loading CLIP")
            record["log_lines"] = [line for line in lines if line.startswith(notes)][:10]

        return section

    def compile(self, record):
        """DPT with TRAINER.SPEED.COMPILE in a child process (a compilation cannot be stopped
        from inside), against the uncompiled run of the same precision."""
        inputs = self.need_inputs()
        out = inputs.work_dir / "compile.json"
        left = self.report.left_s()
        command = python(*self.this_script("--compile-worker", out, "--budget-s", left))
        run_command(command, record, left, inputs.work_dir / "compile.log")
        record.update(json.loads(out.read_text()))
        if record.pop("status", None) == "failed":
            raise CheckFailed(record["error"])
        reference = self.sibling(f"dpt_{record['classes']}_{record['precision']}")
        if reference is None:
            return
        record["uncompiled_step_s"] = reference["step_s"]
        record["speedup_over_uncompiled"] = round(reference["step_s"] / record["step_s"], 2)
        tolerance = TOLERANCES.get(record["precision"], Tolerance(first=1e-4, end=1e-3))
        compare_runs(record, reference, tolerance, "tracks_uncompiled")

    def this_script(self, *args):
        extra = ["--work-dir", self.args.work_dir] + (["--smoke"] if self.args.smoke else [])
        return [Path(__file__).resolve(), *args, *extra]


# ---- summary and command line ---------------------------------------------------------------
def summary_lines(report):
    """One line per section: its status and main figures, then the failures' errors."""
    lines = [f"{'section':22} {'status':8} {'step s':>8} {'img/s':>8} {'peak MiB':>9}  notes"]
    for name, record in report.data["sections"].items():
        figures = [record.get(key) for key in ("step_s", "images_per_s", "peak_memory_mib")]
        cells = [f"{value:>8.4g}" if value is not None else f"{'':>8}" for value in figures]
        notes = []
        for key in ("tracks_fp32", "tracks_uncompiled"):
            if isinstance(record.get(key), dict):
                notes.append(f"{key} {'ok' if record[key]['within'] else 'NO'}")
        for key in ("original_over_ours_fp16", "speedup_over_uncompiled", "accuracy", "backend"):
            if key in record:
                notes.append(f"{key} {record[key]}")
        if record["status"] != "ok":
            notes.append((record.get("error") or record.get("reason", "")).splitlines()[0][:100])
        lines.append(f"{name:22} {record['status']:8} {cells[0]} {cells[1]} {cells[2]:>9}  "
                     + "; ".join(notes))  # fmt: skip
    counts = report.data["counts"]
    lines.append(
        f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped in "
        f"{report.data['elapsed_s']:.0f} s (budget {report.budget_s:.0f} s)"
    )
    return lines


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", default="gpu_check.json", help="the JSON file of all figures")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (< 1 min)")
    parser.add_argument(
        "--budget-s", type=float, default=0, help="time budget (default: 450 s, --smoke 120 s)"
    )
    parser.add_argument("--work-dir", default="", help="for the CLIP file and runs (default: a "
                        "temporary folder, removed at the end)")  # fmt: skip
    parser.add_argument("--original-dir", default=str(default_original_dir()),
                        help="checkout of the original DPT code (default: DPT_ORIGINAL_DIR or "
                        "../DPT)")  # fmt: skip
    parser.add_argument("--compile-worker", metavar="OUT", help=argparse.SUPPRESS)
    return parser


def check_args(parser, args):
    """Bad arguments: exit status 2 with the reason, before any work."""
    out_dir = Path(args.out).resolve().parent
    if not out_dir.is_dir() or not os.access(out_dir, os.W_OK):
        parser.error(f"--out {args.out}: its folder {out_dir} does not exist or is not writable")
    if args.work_dir and not Path(args.work_dir).is_dir():
        parser.error(f"--work-dir {args.work_dir} is not a folder")
    if args.budget_s < 0:
        parser.error(f"--budget-s must be positive, got {args.budget_s}")
    if not args.smoke and not torch.cuda.is_available():
        parser.error(
            "no CUDA GPU is visible: run on a machine with one, or with --smoke on the CPU"
        )


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    size = SIZES["smoke" if args.smoke else "gpu"]
    if args.compile_worker:
        return compile_worker(args.compile_worker, size, args.work_dir, args.budget_s)
    check_args(parser, args)
    budget = args.budget_s or (120 if args.smoke else 450)
    temporary = not args.work_dir
    args.work_dir = args.work_dir or tempfile.mkdtemp(prefix="gpu_check.")
    header = {
        "tool": "tools/gpu_check.py",
        "size": "smoke" if args.smoke else "gpu",
        "settings": dataclasses.asdict(size),
        "tolerances": {mode: dataclasses.asdict(t) for mode, t in TOLERANCES.items()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    report = CheckReport(args.out, budget, header)
    check = GpuCheck(args, size, report)
    try:
        for name, section, needs_s in check.sections():
            report.section(name, section, needs_s=needs_s)
    finally:
        if temporary:
            shutil.rmtree(args.work_dir, ignore_errors=True)
    print("\n".join(["", *summary_lines(report), f"Figures: {args.out}"]))
    return 1 if report.failed() else 0


if __name__ == "__main__":
    sys.exit(main())
