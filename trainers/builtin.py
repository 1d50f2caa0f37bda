"""The builtin engine's trainer: drives a ``Method`` (trainers/method.py) in engine/trainer.py's
loop, with CLIP built before the data, so that a wrong backbone or size fails before any I/O."""

from torch.nn.parallel import DistributedDataParallel

from engine import config as engine_config
from engine import distributed
from engine.data import DataManager
from engine.registry import DATASET_REGISTRY, TRAINER_REGISTRY
from engine.rundir import UNTRAINED
from engine.trainer import Trainer, check_final_model, evaluation_header
from trainers.adapter import (
    announce_precision,
    build_model,
    load_trained_run,
    run_training_step,
    train_method,
    train_with_baseline,
)
from trainers.method import build_clip, context_notes, load_module_state, method_for
from trainers.zeroshot_cache import evaluate_once


# ---- the engine, as train.py drives it (dassl_engine has the same functions) -----------------
def setup_cfg(args):
    return engine_config.setup_cfg(args)


def check_config(cfg):
    """Before any work: an unknown trainer or dataset is an error listing the registered
    ones; the method's settings are read (a bad value names its key)."""
    TRAINER_REGISTRY.get(cfg.TRAINER.NAME or "<none given: use --trainer>")
    dataset = DATASET_REGISTRY.get(cfg.DATASET.NAME or "<none given: use --dataset-config-file>")
    dataset.check_config(cfg)
    method_for(cfg)


def unused_settings(cfg):
    """Notes on the keys set in ``cfg`` that nothing reads in this engine."""
    why = (
        "the builtin engine does not read it (Dassl's key is accepted so that its config "
        "files load)"
    )
    return (
        engine_config.inert_key_notes(cfg)
        + engine_config.unread_settings(cfg, engine_config.UNREAD_DASSL_KEYS, why)
        + context_notes(cfg)
    )


def build_trainer(cfg):
    """The builtin trainer for the method named by TRAINER.NAME."""
    return ClipTrainer(cfg, method_for(cfg))


def train(trainer):
    check_final_model(trainer.cfg, trainer.dm.val_loader is not None)
    return trainer.train()


def evaluate(trainer):
    return trainer.test()


class ClipTrainer(Trainer):
    """The builtin loop around one ``Method``: CLIP, data, model, optimisers, DDP."""

    def __init__(self, cfg, method, data=None):
        """``data`` replaces ``DataManager(cfg)``: e.g. ``inference.SavedClasses``, the class
        names and template of a run, for a model that predicts without its dataset."""
        self.method = method
        self._given_data = data
        super().__init__(cfg)

    def get_precision(self):
        return self.method.precision(self.device)

    def build(self):
        cfg = self.cfg
        announce_precision(self.method, self.precision, self.device)
        clip_model = build_clip(cfg)
        self.dm = DataManager(cfg) if self._given_data is None else self._given_data
        dtype = self.mixed_precision.weight_dtype
        built = build_model(self.method, clip_model, self.dm.dataset, dtype, self.device)
        self.model, self.classnames, self.template = built.model, built.classnames, built.template
        for name, module in self.model.learnable_modules().items():
            self.register_module(name, module, self.method.optim_cfg(name))
        self.zeroshot_baseline = built.baseline
        self.train_model = self.model  # what training steps run: the DDP wrapper if distributed
        if distributed.is_distributed() and self.learns:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # Buffers derive from CLIP and the class names: the same on every rank. A zero-size
            # parameter (DPT's deep visual prompt at BOTTOMLIMIT 1) never enters the graph,
            # which DDP reports as an error unless it looks for unused parameters.
            empty = any(p.requires_grad and p.numel() == 0 for p in self.model.parameters())
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=device_ids,
                broadcast_buffers=False,
                find_unused_parameters=empty,
            )
        n_learn = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        print(f"Learnable parameters: {n_learn:,} in {list(self._modules)}")

    def set_mode(self, mode):
        """The model's wrappers follow the mode too (frozen CLIP stays in eval mode)."""
        super().set_mode(mode)
        self.model.train(mode == "train")

    def evaluate_zeroshot(self, inference, templates, what="", write_results=False):
        """Evaluate zero-shot CLIP (``inference``) on TEST.SPLIT, or reuse the stored
        evaluation with the same key (trainers/zeroshot_cache.py): a sweep evaluates it once
        for all its runs, and a resumed run does not evaluate its baseline again."""
        split = self.cfg.TEST.SPLIT

        def replay(pred, label):
            self.evaluator.reset()
            self.evaluator.process_predictions(pred, label)
            results = self.evaluator.evaluate()
            if write_results:
                self.write_results(split, results)
            return results

        return evaluate_once(
            self,
            templates,
            evaluation_header(split, what),
            evaluate=lambda: Trainer.test(self, split, write_results, inference, what),
            predictions=lambda: self.evaluator.predictions(),
            replay=replay,
        )

    def test(self, split=None, write_results=True, inference=None, what=""):
        """A zero-shot CLIP method's evaluation is reused from TEST.ZEROSHOT_CACHE when it
        holds the same one."""
        templates = self.method.zeroshot_templates(self.template)
        if templates is None or split not in (None, self.cfg.TEST.SPLIT) or inference is not None:
            return super().test(split, write_results, inference, what)
        return self.evaluate_zeroshot(self.model_inference, templates, what, write_results)

    def train(self):
        baseline = self.zeroshot_baseline

        def evaluate_baseline():
            if baseline is None:
                return None
            results = self.evaluate_zeroshot(
                lambda images: baseline(images).logits, [self.template], what="zero-shot CLIP"
            )
            return results["accuracy"]

        return train_with_baseline(
            self.cfg,
            evaluate_baseline,
            self.run_training,
            lambda results: None if results is None else results["accuracy"],
            self.extra_results,
        )

    def run_epoch(self):
        super().run_epoch()
        self.method.after_epoch(self.model, self.epoch)

    def training_state(self):
        return self.method.training_state()

    def load_training_state(self, state, path):
        self.method.load_training_state(state, path)

    def run_training(self):
        """The loop of steps, or the method's own fit."""
        return train_method(self, super().train)

    def load_model(self, directory, epoch=None, best=False):
        """Also reads run directories of the method's authors' code."""
        if not directory:
            if self.learns:
                print("Note: no --model-dir given; evaluating the untrained initialisation")
                self.extra_results[UNTRAINED] = True
            return
        self.load_states(load_trained_run(self.method, self.model, self._modules, directory,
                                          self.classnames, epoch, best))  # fmt: skip

    def forward_backward(self, batch):
        images = batch["img"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        return run_training_step(self, images, labels, self.train_model)

    def model_inference(self, images):
        return self.model(images).logits

    def load_module_state(self, name, saved):
        load_module_state(self.method, name, self._modules[name], saved)
