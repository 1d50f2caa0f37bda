"""The Dassl engine (``train.py --engine dassl``): this project's methods and datasets inside a
real Dassl install (github KaiyangZhou/Dassl.pytorch).

Dassl's config defaults, trainer registry and ``build_trainer``, ``TrainerX`` loop, optimiser
and scheduler builders, ``save_model``, data manager, few-shot sampler and evaluator do the
work; the methods (``trainers/``) and dataset classes (``datasets/``) are the ones the builtin
engine runs. ``load()`` imports Dassl (or says how to install it) and registers them there;
nothing else in the project imports Dassl.
"""

import importlib

TESTED_COMMIT = "c61a1b5 (Dassl.pytorch, 2022-10-06, version 0.6.3)"
INSTALL = (
    "git clone https://github.com/KaiyangZhou/Dassl.pytorch && cd Dassl.pytorch && "
    "pip install -r requirements.txt && pip install --no-build-isolation -e ."
)
# What this engine uses from Dassl: module -> names.
REQUIRED = {
    "dassl.config": ("get_cfg_default",),
    "dassl.engine": ("TRAINER_REGISTRY", "TrainerX", "build_trainer"),
    "dassl.data.datasets": ("DATASET_REGISTRY", "DatasetBase", "Datum"),
    "dassl.optim": ("build_optimizer", "build_lr_scheduler"),
    "dassl.optim.lr_scheduler": ("_BaseWarmupScheduler",),
}


class DasslUnavailable(RuntimeError):
    """``--engine dassl`` without a usable Dassl install."""


def check_dassl():
    """Import what we use from Dassl, or say how to get it (before any work)."""
    try:
        import dassl  # noqa: F401
    except ImportError as err:
        raise DasslUnavailable(
            f"--engine dassl needs Dassl, which is not installed ({err}). Install it from "
            f"source (it is not on PyPI): {INSTALL} (tested with commit {TESTED_COMMIT}). "
            "Or run without --engine dassl: the builtin engine needs nothing more."
        ) from None
    missing = []
    for module_name, names in REQUIRED.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            missing.append(f"{module_name} ({err})")
            continue
        missing += [f"{module_name}.{name}" for name in names if not hasattr(module, name)]
    if missing:
        raise DasslUnavailable(
            f"The installed Dassl ({dassl.__file__}) lacks {', '.join(missing)}, which "
            f"--engine dassl uses; install the tested commit {TESTED_COMMIT}: {INSTALL}"
        )


def load():
    """The Dassl engine module (``dassl_engine.engine``): Dassl checked and imported, this
    project's methods and datasets registered in it."""
    check_dassl()
    return importlib.import_module("dassl_engine.engine")
