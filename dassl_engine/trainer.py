"""This project's methods as Dassl trainers: one ``TrainerX`` subclass per method, registered
in Dassl's ``TRAINER_REGISTRY`` under the method's name.

Dassl runs the loop, builds the data, the optimisers and schedules (from the method's OPTIM
node for each learnable module), saves checkpoints, evaluates and logs. The adapter adds what
a CLIP method needs around that: CLIP loaded before the data, the precision mode, the schedule
stepped after an epoch's last batch (as CoOp's trainers do), loading that ignores derived
buffers, and ``results.json`` as the builtin engine writes it.
"""

import contextlib
import os

import torch
from dassl.engine import TRAINER_REGISTRY as DASSL_TRAINERS
from dassl.engine import TrainerX
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import set_random_seed

import trainers  # noqa: F401  (registers this project's methods)
from dassl_engine.compat import checkpoints_with, resumed_checkpoint
from dassl_engine.loaders import build_data_manager
from engine.checkpoint import RunWriteError, atomic_write_json, load_checkpoint, saving
from engine.precision import MixedPrecision, resolve_precision
from engine.randomness import is_keyed, run_seed, stream_seed, untouched_global_rng
from engine.registry import TRAINER_REGISTRY
from engine.rundir import RESULTS_FILE, UNTRAINED, results_record
from engine.tensorboard import module_lrs, open_writer
from engine.trainer import START_AGAIN
from trainers.adapter import (
    announce_precision,
    build_model,
    load_trained_run,
    run_training_step,
    train_method,
    train_with_baseline,
)
from trainers.method import build_clip, load_module_state
from trainers.zeroshot_cache import evaluate_once


class RecordingEvaluator:
    """Dassl's evaluator, keeping the results dict that its ``evaluate`` returns (Dassl's
    ``test`` passes on only the first value), with the counts it printed."""

    def __init__(self, evaluator):
        self._evaluator = evaluator
        self.results = {}

    def __getattr__(self, name):
        return getattr(self._evaluator, name)

    def evaluate(self):
        results = self._evaluator.evaluate()
        counts = {"total": getattr(self._evaluator, "_total", None),
                  "correct": getattr(self._evaluator, "_correct", None)}  # fmt: skip
        self.results = {**{k: v for k, v in counts.items() if v is not None}, **results}
        return results


class MethodTrainer(TrainerX):
    """Dassl's ``TrainerX`` driving one method (``method_type``, set per registered class)."""

    method_type = None

    def check_cfg(self, cfg):
        """The method's settings and CLIP, before Dassl builds the data: bad settings or a
        missing backbone fail first."""
        self.method = self.method_type(cfg)
        device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
        self.mixed_precision = MixedPrecision(
            resolve_precision(self.method.precision(device), device), device
        )
        self._clip = build_clip(cfg)
        self._inference = None  # a model other than the trained one to evaluate (baseline)
        self.extra_results = {}
        self.final_accuracy = None

    def build_data_loader(self):
        """Dassl's data manager, with the dataset wrapper of ``dassl_engine.loaders``."""
        self.dm = build_data_manager(self.cfg)
        self.train_loader_x = self.dm.train_loader_x
        self.train_loader_u = self.dm.train_loader_u
        self.val_loader = self.dm.val_loader
        self.test_loader = self.dm.test_loader
        self.num_classes = self.dm.num_classes
        self.num_source_domains = self.dm.num_source_domains
        self.lab2cname = self.dm.lab2cname

    def before_epoch(self):
        """With RANDOMNESS keyed: the epoch's draws start from its own stream."""
        if is_keyed(self.cfg):
            set_random_seed(stream_seed(run_seed(self.cfg), "epoch", self.epoch) % 2**32)
            self.train_loader_x.dataset.epoch = self.epoch

    def init_writer(self, log_dir):
        """Dassl's writer; a resumed session hides the steps that the interrupted one wrote
        after its last checkpoint."""
        self._writer = open_writer(log_dir, self.start_epoch * len(self.train_loader_x))

    def write_scalar(self, tag, scalar_value, global_step=None):
        """Dassl's scalars; beside its ``train/lr`` (the first module's), each module's."""
        super().write_scalar(tag, scalar_value, global_step)
        if tag == "train/lr":
            for module_tag, lr in module_lrs(self._optims).items():
                super().write_scalar(module_tag, lr, global_step)

    def save_model(self, epoch, directory, is_best=False, val_result=None, model_name=""):
        """Dassl's, after the curves so far went to disk (a run resumed from this checkpoint
        lacks none of them), with what the method accumulates over the epochs (e.g. the
        Gaussian prompt aggregation's running sum) in each checkpoint. A write that fails (a
        full disk) stops the run with a message, not torch's RuntimeError."""
        if self._writer is not None:
            self._writer.flush()
        state = self.method.training_state()
        extra = {} if state is None else {"training_state": state}
        with dassl_checkpoint_errors(epoch + 1, directory), checkpoints_with(extra):
            super().save_model(epoch, directory, is_best, val_result, model_name)

    def build_model(self):
        announce_precision(self.method, self.mixed_precision.precision, self.device)
        dtype = self.mixed_precision.weight_dtype
        built = build_model(self.method, self._clip, self.dm.dataset, dtype, self.device)
        del self._clip
        self.model, self.classnames, self.template = built.model, built.classnames, built.template
        for name, module in self.model.learnable_modules().items():
            optim_cfg = self.method.optim_cfg(name)
            optim = build_optimizer(module, optim_cfg)
            self.register_model(name, module, optim, build_lr_scheduler(optim, optim_cfg))
        self.zeroshot_baseline = built.baseline

    def set_model_mode(self, mode="train", names=None):
        """The model's wrappers follow the mode too (frozen CLIP stays in eval mode)."""
        super().set_model_mode(mode, names)
        self.model.train(mode == "train")

    def forward_backward(self, batch):
        images, labels = self.parse_batch_train(batch)[:2]
        summary = run_training_step(self, images, labels)
        if self.batch_idx + 1 == self.num_batches:  # the epoch's end, as CoOp's trainers
            self.update_lr()
            self.method.after_epoch(self.model, self.epoch)
        return summary

    def resume_model_if_exist(self, directory):
        """Dassl's resume, and the method goes on with what it accumulated."""
        start_epoch = super().resume_model_if_exist(directory)
        if start_epoch:
            path = resumed_checkpoint(directory, self.get_model_names()[0])
            ckpt = load_checkpoint(path, advice=f"Restore it, or {START_AGAIN}.")
            self.method.load_training_state(ckpt.get("training_state"), path)
        return start_epoch

    def model_inference(self, images):
        with self.mixed_precision.autocast():
            return (self._inference or self.model)(images).logits.float()

    def load_model(self, directory, epoch=None):
        """Run directories of this project (either engine), of Dassl or of the method's
        authors' code; derived buffers and other classes' CAVPT heads are not loaded."""
        if not directory:
            print("Note: no --model-dir given; evaluating the untrained initialisation")
            self.extra_results[UNTRAINED] = True
            return
        saved = load_trained_run(self.method, self.model, self._models, directory,
                                 self.classnames, epoch)  # fmt: skip
        for name, module in saved.items():
            load_module_state(self.method, name, self._models[name], module)
        saved_epoch = next(iter(saved.values())).epoch if saved else None
        if saved_epoch:
            self.epoch = saved_epoch - 1

    @property
    def precision(self):
        return self.mixed_precision.precision

    @property
    def learns(self):
        return bool(self._models)

    def evaluate_zeroshot(self, templates, evaluate):
        """Zero-shot CLIP's accuracy on TEST.SPLIT: ``evaluate()``, or the stored evaluation
        with the same key replayed through Dassl's evaluator, as the builtin engine does
        (trainers/zeroshot_cache.py)."""

        def replay(pred, label):
            # Dassl's evaluator takes scores: a one-hot row per image gives it the stored label.
            self.evaluator.reset()
            scores = torch.nn.functional.one_hot(torch.as_tensor(pred), self.num_classes)
            self.evaluator.process(scores.float(), torch.as_tensor(label))
            return self.evaluator.evaluate()["accuracy"]

        return evaluate_once(
            self,
            templates,
            f"Evaluate on the *{self.cfg.TEST.SPLIT}* set",
            evaluate,
            predictions=lambda: (self.evaluator._y_pred, self.evaluator._y_true),
            replay=replay,
        )

    def evaluate_zeroshot_baseline(self):
        def evaluate():
            self._inference = self.zeroshot_baseline
            try:
                return self.test(write_results=False)
            finally:
                self._inference = None

        return self.evaluate_zeroshot([self.template], evaluate)

    def train(self):
        def evaluate_baseline():
            if self.zeroshot_baseline is None:
                return None
            print("Zero-shot CLIP:")
            return self.evaluate_zeroshot_baseline()

        train_with_baseline(
            self.cfg,
            evaluate_baseline,
            self.run_training,
            lambda _: self.final_accuracy,
            self.extra_results,
        )

    def run_training(self):
        """Dassl's loop of epochs, or the method's own fit."""
        return train_method(self, super().train)

    @torch.no_grad()
    def test(self, split=None, write_results=True):
        """Dassl's evaluation; on the test split (TEST.SPLIT) it also writes ``results.json``
        as the builtin engine does, which marks the run finished. It draws nothing from the
        global generators that training draws from."""
        with untouched_global_rng():
            return self._evaluate(split, write_results)

    def _evaluate(self, split, write_results):
        split = split or self.cfg.TEST.SPLIT
        if not isinstance(self.evaluator, RecordingEvaluator):
            self.evaluator = RecordingEvaluator(self.evaluator)
        templates = self.method.zeroshot_templates(self.template)
        if templates is not None and split == self.cfg.TEST.SPLIT:  # a zero-shot CLIP run
            accuracy = self.evaluate_zeroshot(
                templates, lambda: super(MethodTrainer, self).test(split)
            )
        else:
            accuracy = super().test(split)
        if write_results and split == self.cfg.TEST.SPLIT:
            self.final_accuracy = accuracy
            extra = {"engine": "dassl", **self.extra_results}
            record = results_record(self.cfg, split, self.epoch + 1, self.evaluator.results, extra)
            with saving(f"{RESULTS_FILE} in '{self.output_dir}'"):
                atomic_write_json(os.path.join(self.output_dir, RESULTS_FILE), record)
        return accuracy


# What torch.save raises when the file it writes to by name cannot take the data.
TORCH_WRITE_FAILED = ("[enforce fail at inline_container", "PytorchStreamWriter failed")


@contextlib.contextmanager
def dassl_checkpoint_errors(epoch, directory):
    """A checkpoint that Dassl's ``save_model`` cannot write (a full disk, a folder made
    read-only) as a ``RunWriteError``. Dassl saves the modules one after the other and
    resumes each from its own pointer, so the run is trained again, not resumed."""
    try:
        yield
    except (OSError, RuntimeError) as err:
        cause = err
        if isinstance(err, RuntimeError):
            if not str(err).startswith(TORCH_WRITE_FAILED):
                raise
            cause = f"torch.save: {err}: the disk is full or the folder cannot be written"
        raise RunWriteError(
            f"Could not save epoch {epoch} in '{directory}' with Dassl's save_model ({cause}). "
            "Dassl writes the modules' checkpoints one by one, so this run's may mix epochs: "
            "fix the cause (free space, permissions), then run the same command with "
            "--overwrite, which trains it again (its files move to previous-<timestamp>/)."
        ) from err


def dassl_trainer(method_type):
    """A ``MethodTrainer`` subclass named after ``method_type``, for Dassl's registry."""
    return type(method_type.__name__, (MethodTrainer,), {"method_type": method_type})


def register_methods():
    """Register every method of ours in Dassl's trainer registry (a name taken by another
    trainer, e.g. CoOp's own when its trainers were imported, is an error at build time)."""
    for name in TRAINER_REGISTRY.names():
        if name not in DASSL_TRAINERS.registered_names():
            DASSL_TRAINERS.register(dassl_trainer(TRAINER_REGISTRY.get(name)))


def build_trainer(cfg):
    """Dassl's ``build_trainer``, after checking that the name is ours."""
    from dassl.engine import build_trainer as dassl_build_trainer

    registered = DASSL_TRAINERS.get(cfg.TRAINER.NAME)
    if not (isinstance(registered, type) and issubclass(registered, MethodTrainer)):
        raise ValueError(
            f"Dassl's trainer '{cfg.TRAINER.NAME}' is {registered.__module__}."
            f"{registered.__qualname__}, not this project's: another package registered that "
            "name first (e.g. CoOp's trainers imported in this process)."
        )
    return dassl_build_trainer(cfg)
