"""Linear-probe CLIP (``--trainer LinearProbe``): the lpclip protocol of CoOp and the original
DPT code on this project's runs.

Training is one fit instead of the engine's loop of steps: CLIP's image features (frozen, the
test transform, in the run's precision) of the few-shot train split and of the val split
(``min(shots, 4)`` per class, the sizes lpclip samples), logistic regression with C chosen on
val (``trainers/logistic_search.py``), the classifier saved as the module ``linear_head`` and
evaluated on TEST.SPLIT by the engine as any run is (``results.json``). Features and search
are deterministic: the same config and seed give the same numbers. The head classifies the
classes it was fitted on: an evaluation on a subset of them (e.g. ImageNet -> ImageNet-A)
uses their rows, one on other classes (base-to-new's new classes, most cross-dataset
targets) is an error.
"""

import time
from dataclasses import dataclass

import torch

from engine import distributed
from engine.config import extend_cfg
from engine.data.manager import build_data_loader
from engine.data.transforms import build_transform
from engine.registry import TRAINER_REGISTRY
from models.linear_probe import LinearProbeModel
from models.settings import SettingError
from trainers.evaluated_run import closed_set_advice
from trainers.logistic_search import search
from trainers.method import Method
from trainers.settings import ConfigKeys

LPCLIP_GRID = (1e6, 1e4, 1e2, 1.0, 1e-2, 1e-4, 1e-6)


@dataclass(frozen=True, kw_only=True)
class LinearProbeCfg:
    """c_grid: the coarse grid of C (inverse L2 strength) tried first; search_steps: rounds
    of the interval search around its best; max_iter: lbfgs iterations per fit."""

    c_grid: tuple = LPCLIP_GRID
    search_steps: int = 8
    max_iter: int = 1000

    def __post_init__(self):
        grid = self.c_grid
        if not grid or not all(isinstance(c, (int, float)) and c > 0 for c in grid):
            raise SettingError(
                type(self), "c_grid", f"must be a non-empty list of positive numbers, got {grid}"
            )
        for name, minimum in (("search_steps", 0), ("max_iter", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise SettingError(
                    type(self), name, f"must be an integer >= {minimum}, got {value!r}"
                )


LINEAR_PROBE_KEYS = ConfigKeys(
    LinearProbeCfg,
    c_grid="TRAINER.LINEAR_PROBE.C_GRID",
    search_steps="TRAINER.LINEAR_PROBE.SEARCH_STEPS",
    max_iter="TRAINER.LINEAR_PROBE.MAX_ITER",
)


@extend_cfg
def linear_probe_cfg(cfg):
    LINEAR_PROBE_KEYS.declare(cfg)


def image_features(trainer, items, split):
    """``(features [N, E] float64, labels [N])`` of ``items`` through the model's frozen
    encoder, in order, with the test transform."""
    cfg = trainer.cfg
    tfm = build_transform(cfg, is_train=False)
    batch_size = cfg.DATALOADER.TEST.BATCH_SIZE
    loader = build_data_loader(cfg, items, batch_size, tfm, False, "SequentialSampler")
    trainer.model.eval()
    features, labels = [], []
    with torch.no_grad():
        for batch in loader:
            with trainer.mixed_precision.autocast():
                f = trainer.model.image_features(batch["img"].to(trainer.device))
            features.append(f.float().cpu())
            labels.append(batch["label"])
    print(f"Image features of the {split} split: {len(items)} images")
    return torch.cat(features).double().numpy(), torch.cat(labels).numpy()


def check_labels(labels, classnames, split):
    """Every class needs training features: lpclip's classifier has a row per class seen."""
    absent = sorted(set(range(len(classnames))) - set(labels.tolist()))
    if absent:
        names = ", ".join(classnames[i] for i in absent[:5])
        raise ValueError(
            f"LinearProbe: the {split} split has no image of {len(absent)} class(es) ({names}); "
            "every class needs at least one (DATASET.NUM_SHOTS >= 1, or all images with -1)"
        )


@TRAINER_REGISTRY.register()
class LinearProbe(Method):
    config_keys = (LINEAR_PROBE_KEYS,)
    epoch_keys = ()  # no schedule: one fit
    fits_in_one_go = True
    closed_set = True  # a row per class fitted

    @classmethod
    def run_setting(cls, cfg):
        return f"lpclip_steps{cfg.TRAINER.LINEAR_PROBE.SEARCH_STEPS}"

    def read_settings(self, cfg):
        self.settings = LINEAR_PROBE_KEYS.read(cfg)

    def create_model(self, clip_model, classnames, template):
        return LinearProbeModel(clip_model, classnames)

    def fit(self, trainer):
        """Fit the head, save it, evaluate on TEST.SPLIT; what the engine's ``train``
        returns (None with TEST.NO_TEST)."""
        if distributed.is_distributed():
            raise ValueError(
                "LinearProbe is fitted in one process (its fit is not data-parallel): run "
                "train.py without torchrun"
            )
        start = time.time()
        dataset = trainer.dm.dataset
        if not dataset.val:
            raise ValueError(
                f"LinearProbe chooses its regularisation on the val split, and dataset "
                f"{trainer.cfg.DATASET.NAME} has none"
            )
        classnames = trainer.classnames
        train = image_features(trainer, dataset.train_x, "train")
        check_labels(train[1], classnames, "train")
        val = image_features(trainer, dataset.val, "val")
        s = self.settings
        result = search(train, val, list(s.c_grid), s.search_steps, s.max_iter)
        for trial in result.trials:
            note = "" if trial.converged else f" (lbfgs stopped at max_iter {s.max_iter})"
            print(f"C {trial.c:.6g}: val accuracy {trial.val_accuracy:.2f}%{note}")
        print(f"Chosen C {result.c:.6g}: val accuracy {result.val_accuracy:.2f}%")
        trainer.model.head.set_rows(result.weight, result.bias)
        trainer.extra_results["linear_probe_c"] = result.c
        trainer.extra_results["linear_probe_val_accuracy"] = result.val_accuracy
        trainer.save_model(0, trainer.output_dir)
        print(f"Fitted in {time.time() - start:.1f} s")
        return None if trainer.cfg.TEST.NO_TEST else trainer.test()

    def adapt_loaded_state(self, name, module, state_dict):
        """A saved head's rows for this run's classes (all of them, or a subset it was
        fitted on); other classes are an error."""
        saved = state_dict.get("class_keys")
        own = module.class_keys.cpu()
        if saved is None or torch.equal(saved.cpu(), own):
            return state_dict
        row = {key: i for i, key in enumerate(saved.cpu().tolist())}
        unknown = [n for n, key in zip(module.classnames, own.tolist()) if key not in row]
        if unknown:
            raise ValueError(
                f"The linear probe was fitted on {len(row)} other classes: {len(unknown)} of "
                f"this run's {len(own)} classes have no weights in it (e.g. "
                f"{', '.join(unknown[:3])}). {closed_set_advice(self.name)}"
            )
        rows = torch.tensor([row[key] for key in own.tolist()])
        return {**state_dict, "weight": state_dict["weight"][rows],
                "bias": state_dict["bias"][rows]}  # fmt: skip
