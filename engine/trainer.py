"""The epoch loop: build, train, evaluate, checkpoint, resume.

A trainer subclass implements ``build()`` (data and model; it registers each learnable module
with ``register_module``), ``forward_backward(batch)`` (one step, with the optimisers of
``self._optims`` and ``self.mixed_precision``) and ``model_inference(images)``. The base
class owns everything else: optimisers and schedules per module, mixed precision, the log lines,
Dassl's run-directory layout, exact resumption and the final results.
"""

import math
import os
import sys
import time
from collections import OrderedDict

import torch
from tqdm import tqdm

from engine import distributed
from engine.checkpoint import (
    SavedModule,
    atomic_write_json,
    epoch_name,
    load_checkpoint,
    read_run_states,
    remove_temp_files,
    resumable_epoch,
    save_epoch,
    saving,
)
from engine.config import (
    cfg_to_dict,
    describe_differences,
    result_differences,
)
from engine.confusion import plot_confusion_matrix
from engine.evaluator import ClassificationEvaluator
from engine.optim import build_lr_scheduler, build_optimizer
from engine.precision import MixedPrecision, resolve_precision
from engine.randomness import is_keyed, untouched_global_rng
from engine.rundir import RESULTS_FILE, results_record
from engine.tensorboard import ScalarLog
from engine.utils import AverageMeter, format_eta, pick_device, rng_state, set_rng_state

CONFUSION_FILE = "confusion_matrix.png"  # with TEST.PER_CLASS_RESULT
START_AGAIN = (
    "pass --overwrite to start the run again (its checkpoints move to previous-<timestamp>/)"
)


def evaluation_header(split, what=""):
    """The line before an evaluation's results; ``what`` names a baseline (log parsers tell
    it from the model's own evaluation by it)."""
    return f"Evaluate {what + ' ' if what else ''}on the *{split}* set"


def check_final_model(cfg, has_val):
    """TEST.FINAL_MODEL best_val picks the deployed epoch on the val split; without one it
    would deploy the last epoch silently (Dassl's loop: pick it on the test split)."""
    if cfg.TEST.FINAL_MODEL == "best_val" and not has_val:
        raise ValueError(
            f"TEST.FINAL_MODEL best_val chooses the epoch to deploy by its val accuracy, and "
            f"this run's data ({cfg.DATASET.NAME}) has no val split: set TEST.FINAL_MODEL "
            "last_step, or use a dataset with a val split."
        )


class Trainer:
    def __init__(self, cfg):
        self.cfg = cfg
        self.device = pick_device(cfg.USE_CUDA)
        self.output_dir = cfg.OUTPUT_DIR
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.start_epoch = self.epoch = 0
        self.best_val = -math.inf
        self._kept = True  # whether the last saved checkpoint stays when the next is written
        self.extra_results = OrderedDict()  # added to results.json (e.g. a baseline's accuracy)
        self.scalars = ScalarLog()  # TensorBoard, while training (engine/tensorboard.py)
        self._modules = OrderedDict()
        self._optims = OrderedDict()
        self._scheds = OrderedDict()
        self.precision = resolve_precision(self.get_precision(), self.device)
        self.mixed_precision = MixedPrecision(self.precision, self.device)
        self.scaler = self.mixed_precision.scaler
        self.build()
        self.evaluator = ClassificationEvaluator(
            self.dm.lab2cname, cfg.TEST.PER_CLASS_RESULT, cfg.TEST.COMPUTE_CMAT
        )

    # ---- to implement by trainers -------------------------------------------------------
    def build(self):
        """Set ``self.dm`` (a DataManager) and register the learnable modules."""
        raise NotImplementedError

    def forward_backward(self, batch):
        """One training step; returns a dict of floats for the log (must include ``loss``)."""
        raise NotImplementedError

    def model_inference(self, images):
        raise NotImplementedError

    def get_precision(self):
        """A mode of ``engine.precision.PRECISIONS`` (``auto`` is resolved per device)."""
        return "fp32"

    # ---- modules, optimisers, precision ------------------------------------------------
    def register_module(self, name, module, optim_cfg=None):
        """Track ``module`` for checkpoints; give it an optimiser and schedule when it learns."""
        self._modules[name] = module
        if optim_cfg is not None and any(p.requires_grad for p in module.parameters()):
            self._optims[name] = build_optimizer(module, optim_cfg)
            self._scheds[name] = build_lr_scheduler(self._optims[name], optim_cfg)

    @property
    def learns(self):
        return bool(self._optims)

    def autocast(self):
        """Autocast for ``amp`` (float16) and ``amp_bf16``; nothing for the other modes."""
        return self.mixed_precision.autocast()

    def set_mode(self, mode):
        for module in self._modules.values():
            module.train(mode == "train")

    def current_lr(self):
        optim = next(iter(self._optims.values()), None)
        return optim.param_groups[0]["lr"] if optim else 0.0

    # ---- the loop ------------------------------------------------------------------------
    def train(self):
        if not self.learns:
            raise RuntimeError(
                f"Trainer {type(self).__name__} has nothing to train; run it with --eval-only."
            )
        if distributed.is_main_process() and os.path.isdir(self.output_dir):
            for path in remove_temp_files(self.output_dir, self._modules):
                print(f"Removed '{path}', left by an interrupted write")
        self.start_epoch = self.resume_if_possible()
        if distributed.is_main_process():
            self.scalars.open(self.output_dir, self.start_epoch * len(self.dm.train_loader_x))
        self._time_start = time.time()
        try:
            for epoch in range(self.start_epoch, self.max_epoch):
                self.epoch = epoch
                self.run_epoch()
                self.after_epoch()
            return self.after_train()
        finally:
            self.scalars.close()

    def run_epoch(self):
        self.set_mode("train")
        loader = self.dm.train_loader_x
        if hasattr(loader.sampler, "set_epoch"):  # keyed, or a distributed run's sampler
            loader.sampler.set_epoch(self.epoch)
        if not is_keyed(self.cfg):
            distributed.seed_for_epoch(self.cfg.SEED, self.epoch)
        num_batches = len(loader)
        meters, batch_time, data_time = OrderedDict(), AverageMeter(), AverageMeter()
        print_freq = self.cfg.TRAIN.PRINT_FREQ
        end = time.time()
        bar = tqdm(
            loader,
            total=num_batches,
            desc=f"epoch {self.epoch + 1}/{self.max_epoch}",
            leave=False,
            file=sys.stderr,
            disable=None if distributed.is_main_process() else True,
            dynamic_ncols=True,
        )
        for self.batch_idx, batch in enumerate(bar):
            data_time.update(time.time() - end)
            summary = distributed.mean_over_ranks(self.forward_backward(batch))
            batch_time.update(time.time() - end)
            for key, value in summary.items():
                meters.setdefault(key, AverageMeter()).update(value)
            bar.set_postfix(loss=f"{meters['loss'].avg:.4f}")
            means = {key: meter.avg for key, meter in meters.items()}
            self.scalars.train_step(self.epoch * num_batches + self.batch_idx, means, self._optims)
            if (self.batch_idx + 1) % print_freq == 0 or num_batches < print_freq:
                left = num_batches - self.batch_idx - 1
                left += (self.max_epoch - self.epoch - 1) * num_batches
                parts = [
                    f"epoch [{self.epoch + 1}/{self.max_epoch}]",
                    f"batch [{self.batch_idx + 1}/{num_batches}]",
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f})",
                    f"data {data_time.val:.3f} ({data_time.avg:.3f})",
                ]
                parts += [f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in meters.items()]
                parts += [f"lr {self.current_lr():.4e}", f"eta {format_eta(batch_time.avg * left)}"]
                tqdm.write(" ".join(parts), file=sys.stdout)
            end = time.time()
        bar.close()
        for sched in self._scheds.values():
            sched.step()

    def after_epoch(self):
        last = self.epoch + 1 == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        keep = last or (freq > 0 and (self.epoch + 1) % freq == 0)
        val_result, is_best = None, False
        if self.cfg.TEST.FINAL_MODEL == "best_val":
            val_result = self.test(split="val", write_results=False)["accuracy"]
            is_best = val_result > self.best_val
            if is_best:
                self.best_val = val_result
                print(f"New best validation accuracy: {val_result:.1f}%")
        self.scalars.flush()  # a run resumed from this epoch's checkpoint lacks none of its curves
        # Every epoch is saved so that a crash can be resumed; only kept epochs stay on disk.
        self.save_model(self.epoch, self.output_dir, is_best, val_result, keep=keep)

    def after_train(self):
        print("Finish training")
        results = None
        if not self.cfg.TEST.NO_TEST:
            if self.cfg.TEST.FINAL_MODEL == "best_val":
                print("Deploy the model with the best val performance")
                self.load_model(self.output_dir, best=True)
            else:
                print("Deploy the last-epoch model")
            results = self.test()
        print(f"Elapsed: {format_eta(time.time() - self._time_start)}")
        return results

    # ---- evaluation --------------------------------------------------------------------
    @torch.no_grad()
    def test(self, split=None, write_results=True, inference=None, what=""):
        """Evaluate on ``split``; ``inference`` replaces ``model_inference`` (e.g. a baseline).
        It draws nothing from the global generators that training draws from."""
        with untouched_global_rng():
            return self._evaluate(split, write_results, inference, what)

    def _evaluate(self, split, write_results, inference, what):
        split = split or self.cfg.TEST.SPLIT
        loader = self.dm.val_loader if split == "val" else self.dm.test_loader
        if loader is None:
            raise ValueError(f"Dataset {self.cfg.DATASET.NAME} has no '{split}' split")
        self.set_mode("eval")
        self.evaluator.reset()
        self.before_evaluation()
        print(evaluation_header(split, what))
        for batch in tqdm(
            loader,
            desc=f"eval {split}",
            leave=False,
            file=sys.stderr,
            disable=None if distributed.is_main_process() else True,
            dynamic_ncols=True,
        ):
            images = batch["img"].to(self.device, non_blocking=True)
            labels = batch["label"].to(self.device, non_blocking=True)
            with self.autocast():
                logits = (inference or self.model_inference)(images)
            self.evaluator.process(logits.float(), labels, batch["index"])
        results = self.evaluator.evaluate()
        self.after_evaluation()
        self.scalars.evaluation(split, results, self.epoch)
        if write_results:
            self.write_results(split, results)
        return results

    def before_evaluation(self):
        """Hook: e.g. compute features that stay fixed during evaluation."""

    def after_evaluation(self):
        """Hook: release what ``before_evaluation`` cached."""

    def write_results(self, split, results):
        if not distributed.is_main_process():
            return
        cfg = self.cfg
        record = results_record(cfg, split, self.epoch + 1, results, self.extra_results)
        if cfg.TEST.PER_CLASS_RESULT:  # before results.json, which marks the run finished
            path = os.path.join(self.output_dir, CONFUSION_FILE)
            title = f"{cfg.TRAINER.NAME} on {cfg.DATASET.NAME} ({split} split)"
            with saving(f"{CONFUSION_FILE} in '{self.output_dir}'", self.output_dir):
                plot_confusion_matrix(self.evaluator.confusion, self.dm.classnames, path, title)
            print(f"Confusion matrix and per-class accuracies: {path}")
        with saving(f"{RESULTS_FILE} in '{self.output_dir}'", self.output_dir):
            atomic_write_json(os.path.join(self.output_dir, RESULTS_FILE), record)

    # ---- checkpoints ---------------------------------------------------------------------
    def save_model(self, epoch, directory, is_best=False, val_result=None, keep=True):
        """Save every module; the previous epoch's file goes unless it was one to keep.
        In a distributed run rank 0 writes and the others wait for it."""
        if distributed.is_main_process():
            self._write_checkpoints(epoch, directory, is_best, val_result)
        self._kept = keep
        distributed.barrier()

    def _write_checkpoints(self, epoch, directory, is_best, val_result):
        extra = {
            "rng_state": rng_state(),
            "config": cfg_to_dict(self.cfg),
            "best_val": self.best_val,
        }
        if self.scaler is not None:
            extra["scaler"] = self.scaler.state_dict()
        training_state = self.training_state()
        if training_state is not None:
            extra["training_state"] = training_state
        states = {
            name: {
                "state_dict": module.state_dict(),
                "epoch": epoch + 1,
                "optimizer": self._optims[name].state_dict() if name in self._optims else None,
                "scheduler": self._scheds[name].state_dict() if name in self._scheds else None,
                "val_result": val_result,
                **extra,
            }
            for name, module in self._modules.items()
        }
        save_epoch(directory, states, is_best, keep_previous=self._kept)

    def resume_if_possible(self):
        """Continue from the newest epoch saved in every module of RESUME (or OUTPUT_DIR);
        return that epoch (0: nothing to resume)."""
        directory = self.cfg.RESUME or self.output_dir
        epoch = resumable_epoch(directory, self._modules)
        if epoch is None:
            if self.cfg.RESUME:
                raise FileNotFoundError(
                    f"--resume {directory}: no checkpoint for module(s) {list(self._modules)} "
                    "(expected <dir>/<module>/model.pth.tar-N files)"
                )
            return 0
        for name in self._modules:
            path = os.path.join(directory, name, epoch_name(epoch))
            ckpt = load_checkpoint(path, advice=f"Restore it, or {START_AGAIN}.")
            self._check_same_config(path, ckpt)
            saved = SavedModule(ckpt["state_dict"], ckpt.get("epoch"), ckpt.get("config"), path)
            self.load_module_state(name, saved)
            if name in self._optims and ckpt.get("optimizer"):
                self._optims[name].load_state_dict(ckpt["optimizer"])
            if name in self._scheds and ckpt.get("scheduler"):
                self._scheds[name].load_state_dict(ckpt["scheduler"])
        if self.scaler is not None and "scaler" in ckpt:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.load_training_state(ckpt.get("training_state"), path)
        self.best_val = ckpt.get("best_val", -math.inf)
        self._kept = True  # never delete the checkpoint this run resumed from
        self.epoch = epoch - 1  # the last epoch done (a run that ends at once reports it)
        set_rng_state(ckpt["rng_state"])
        print(f"Resumed from {directory} at epoch {epoch} (continuing with epoch {epoch + 1})")
        return epoch

    def training_state(self):
        """Hook: what a subclass accumulates over the epochs (e.g. a running average), saved
        with each checkpoint; None: nothing."""
        return None

    def load_training_state(self, state, path):
        """Hook: the ``training_state`` of the checkpoint ``path`` that a run resumes from
        (None if it holds none)."""

    def _check_same_config(self, path, ckpt):
        """Resuming with settings that change results would mix two runs: refuse, naming
        what changed (loader workers, threads and the like may change)."""
        saved = ckpt.get("config")  # absent in checkpoints written before it was saved
        if saved is None:
            return
        diffs = result_differences(saved, self.cfg)
        if diffs:
            raise ValueError(
                f"The checkpoint '{path}' was written with a different configuration "
                f"({describe_differences(diffs, 'there', 'now')}). Run the same command as "
                f"before to resume it, use another --output-dir, or {START_AGAIN}."
            )

    def load_model(self, directory, epoch=None, best=False):
        """Load every registered module from a run directory (``--model-dir``); which
        checkpoint: see ``engine.checkpoint.read_run_states``."""
        self.load_states(read_run_states(directory, self._modules, epoch, best))

    def load_states(self, saved):
        """Load ``{module name: SavedModule}``; the run continues after their epoch."""
        for name, module in saved.items():
            self.load_module_state(name, module)
        epoch = next(iter(saved.values())).epoch if saved else None
        if epoch:
            self.epoch = epoch - 1

    def load_module_state(self, name, saved):
        """Load a ``SavedModule`` into the registered module ``name``."""
        self._modules[name].load_state_dict(saved.state_dict)
