"""The Dassl engine as train.py drives it (the same functions as ``trainers.builtin``).

Importing this module registers this project's methods and datasets in Dassl's registries.
"""

import difflib

from dassl.config import get_cfg_default as dassl_cfg_default
from dassl.data.datasets import DATASET_REGISTRY as DASSL_DATASETS
from dassl.engine import TRAINER_REGISTRY as DASSL_TRAINERS

from dassl_engine.compat import allow_current_torch_schedulers, save_warmup_successors_as_states
from dassl_engine.datasets import register_datasets
from dassl_engine.trainer import build_trainer, register_methods  # noqa: F401 (engine API)
from engine import config as engine_config
from engine.trainer import check_final_model
from trainers.method import context_notes, method_for

# This project's keys that Dassl's loop and data manager do not read.
UNUSED_KEYS = (
    "INPUT.EXIF_TRANSPOSE",
    "DATASET.ON_BAD_IMAGE",
    "DATALOADER.PERSISTENT_WORKERS",
    "DATALOADER.PIN_MEMORY",
    "DATALOADER.CACHE_IMAGES_MB",
)

allow_current_torch_schedulers()
save_warmup_successors_as_states()
register_datasets()
register_methods()


def setup_cfg(args):
    """Dassl's defaults plus this project's keys and trainer blocks, then the same files,
    flags and overrides as the builtin engine."""
    return engine_config.setup_cfg(args, dassl_defaults=dassl_cfg_default)


def _check_registered(kind, name, registry, flag):
    names = registry.registered_names()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise KeyError(
        f"Unknown {kind} '{name or f'<none given: use {flag}>'}' in Dassl's registry.{hint} "
        f"Registered: {', '.join(sorted(names))}"
    )


def check_config(cfg):
    """Before any work: names in Dassl's registries, and the method's settings."""
    register_methods()  # also those registered since this module was imported
    _check_registered("trainer", cfg.TRAINER.NAME, DASSL_TRAINERS, "--trainer")
    _check_registered("dataset", cfg.DATASET.NAME, DASSL_DATASETS, "--dataset-config-file")
    dataset = DASSL_DATASETS.get(cfg.DATASET.NAME)
    if hasattr(dataset, "check_config"):  # ours (Dassl's own datasets have no such check)
        dataset.check_config(cfg)
    method_for(cfg)


def unused_settings(cfg):
    """Notes on the keys set in ``cfg`` that nothing reads in this engine."""
    why = "Dassl's data manager and loop do not read it (it is the builtin engine's)"
    return (
        engine_config.inert_key_notes(cfg)
        + engine_config.unread_settings(cfg, UNUSED_KEYS, why)
        + context_notes(cfg)
    )


def train(trainer):
    """Dassl's training loop; the final test's results (None with TEST.NO_TEST)."""
    check_final_model(trainer.cfg, trainer.val_loader is not None)
    trainer.train()
    return dict(trainer.evaluator.results) if trainer.final_accuracy is not None else None


def evaluate(trainer):
    trainer.test()
    return dict(trainer.evaluator.results)
