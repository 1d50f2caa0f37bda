"""What both engines do around a ``Method`` (trainers/method.py), written once.

The builtin loop (trainers/builtin.py) and the Dassl trainer (dassl_engine/trainer.py) own
their loops, data, optimisers and checkpoint files; everything that concerns the method goes
through here: the precision line, the model build with its optional zero-shot baseline, one
training step (``run_training_step``: a ``TrainingStep`` handed to ``Method.training_step``),
the engine's loop or the method's own fit (``train_method``), loading a trained run (ours,
Dassl's, or its authors') and the line comparing the baseline with the trained model.
"""

from dataclasses import dataclass

import torch

from engine import distributed
from engine.trainer import START_AGAIN
from models.clip_loader import cast_clip
from trainers.evaluated_run import check_classes
from trainers.method import template_for, zeroshot_baseline


def announce_precision(method, precision, device):
    key, value = method.precision_setting()
    print(f"Precision: {precision} ({key} {value} on {device.type})")
    if device.type == "cpu" and precision == "fp16":
        print("Warning: fp16 on the CPU is slow; bf16 or fp32 is faster there.")


@dataclass
class BuiltModel:
    """A run's model, its classes and template, and the zero-shot baseline (or None)."""

    model: torch.nn.Module
    classnames: list
    template: str
    baseline: torch.nn.Module | None


def build_model(method, clip_model, dataset, weight_dtype, device):
    """The method's model on ``device`` (CLIP cast to ``weight_dtype``); for a model that
    learns, with TEST.ZEROSHOT_BASELINE, also zero-shot CLIP to compare it with."""
    clip_model = cast_clip(clip_model, weight_dtype)
    classnames = dataset.classnames
    template = template_for(dataset, method.cfg)
    print("Building the model")
    model = method.build_model(clip_model, classnames, template).to(device)
    baseline = None
    learns = any(p.requires_grad for p in model.parameters())
    if method.cfg.TEST.ZEROSHOT_BASELINE and learns:
        baseline = zeroshot_baseline(method, clip_model, classnames, template).to(device)
    return BuiltModel(model, classnames, template, baseline)


class TrainingStep:
    """One training step as an engine offers it to ``Method.training_step``.

    ``model`` runs the step (a DistributedDataParallel wrapper in a distributed run),
    ``module`` is the model itself (its ``compute_loss``, its parameters); ``optimisers``
    maps each learnable module's name to its optimiser. ``backward_and_step(loss)`` is the
    usual step; a method that needs its own (e.g. gradients of two losses combined before
    stepping) uses ``check_finite``, ``zero_grad``, ``backward`` and ``step``, which apply the
    precision's grad scaler.
    """

    def __init__(self, model, module, batch, mixed_precision, optimisers, precision_key):
        self.model = model
        self.module = module
        self.images, self.labels = batch.images, batch.labels
        self.epoch, self.batch = batch.epoch, batch.index
        self.mixed_precision = mixed_precision
        self.optimisers = optimisers
        self.precision_key = precision_key

    def autocast(self):
        return self.mixed_precision.autocast()

    def check_finite(self, loss):
        """A loss that is not finite (on any rank) stops the run, saying what to change."""
        if not distributed.all_ranks_true(torch.isfinite(loss)):
            raise FloatingPointError(
                f"Loss became {loss.item()} at epoch {self.epoch + 1}, batch {self.batch + 1} "
                f"(precision {self.mixed_precision.precision}). Training stopped instead of "
                f"continuing on garbage: try {self.precision_key} amp_bf16, amp or bf16, or a "
                f"lower OPTIM.LR, and {START_AGAIN}."
            )

    def zero_grad(self):
        for optim in self.optimisers.values():
            optim.zero_grad(set_to_none=True)

    def backward(self, loss, retain_graph=False):
        self.mixed_precision.backward(loss, retain_graph)

    def step(self):
        self.mixed_precision.step(list(self.optimisers.values()))

    def backward_and_step(self, loss):
        """A finite loss's gradients, then one step of every optimiser."""
        self.check_finite(loss)
        self.zero_grad()
        self.backward(loss)
        self.step()


@dataclass
class Batch:
    """A training batch on the device, with where it falls in the run."""

    images: torch.Tensor
    labels: torch.Tensor
    epoch: int
    index: int


def run_training_step(trainer, images, labels, model=None):
    """One step of ``trainer.method`` (``Method.training_step``) on a batch on the device, as
    both engines take it; returns the step's log entries.

    ``trainer`` is either engine's: its ``method``, ``model``, ``mixed_precision``, ``_optims``
    (module name -> optimiser), ``epoch`` and ``batch_idx``. ``model`` is what runs the step
    when it is not ``trainer.model`` itself (a DistributedDataParallel wrapper)."""
    step = TrainingStep(
        trainer.model if model is None else model,
        trainer.model,
        Batch(images, labels, trainer.epoch, trainer.batch_idx),
        trainer.mixed_precision,
        trainer._optims,
        trainer.method.precision_setting()[0],
    )
    return trainer.method.training_step(step)


def train_method(trainer, loop):
    """Train ``trainer.method``: by its own ``fit(trainer)`` when it fits in one go (e.g. the
    linear probe's closed-form classifier), else by ``loop()``, the engine's loop of epochs.
    Returns what that returns."""
    method = trainer.method
    return method.fit(trainer) if method.fits_in_one_go else loop()


def load_trained_run(method, model, modules, directory, classnames, epoch=None, best=False):
    """``{name: SavedModule}`` for the registered ``modules`` from ``directory`` (a run of
    this project, of Dassl, or of the method's authors' code), after checking that it
    learned for these classes."""
    check_classes(model, directory, classnames)
    return method.read_trained_run(directory, modules, epoch, best)


def train_with_baseline(cfg, evaluate_baseline, train, accuracy_of, extra_results):
    """``train()``, after the zero-shot baseline's accuracy (``evaluate_baseline()``; None
    when there is none) went into ``extra_results`` (``results.json``); then a line compares
    it with the trained model's (``accuracy_of(what train returned)``, None when untested).
    Returns what ``train()`` returns."""
    baseline = evaluate_baseline()
    if baseline is not None:
        extra_results["zeroshot_accuracy"] = baseline
    trained = train()
    accuracy = accuracy_of(trained)
    if baseline is not None and accuracy is not None:
        print(
            f"Zero-shot CLIP: {baseline:.1f}% -> {cfg.TRAINER.NAME}: {accuracy:.1f}% on the "
            f"{cfg.TEST.SPLIT} split"
        )
    return trained
