"""Run-directory names: written by the sweep, read back by the results parser.

The layouts are those of CoOp's and CoCoOp's launch scripts, so that their old output folders
parse too (their ``<setting>`` part may be empty):

    few-shot      <out>/<dataset>/<trainer>/<cfg>_<shots>shots/<setting>/seed<seed>
    base-to-new   <out>/base2new/{train_base,test_new}/<dataset>/shots_<shots>/<trainer>/<cfg>/
                  <setting>/seed<seed>
    cross         <out>/evaluation/<trainer>/<cfg>_<shots>shots/<setting>/<target>/seed<seed>
                  (the model is the few-shot run on the source dataset; targets that are
                  ImageNet's variants are read as domain generalisation, ``dg``)

``<setting>`` names the method's prompt sizes (see ``setting``).
"""

import os
import re
from dataclasses import dataclass

from scripts.spec import config_name, method_type

FEWSHOT, BASE2NEW, CROSS, DG, OTHER = "fewshot", "base2new", "cross", "dg", "other"
DG_TARGETS = {"imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"}
B2N_STAGES = {"train_base": "base", "test_new": "new"}  # folder -> which classes it tests
CROSS_FOLDER = "evaluation"

_SHOTS = re.compile(r"^(?P<cfg>.+)_(?P<shots>-?\d+)shots$")
_B2N_SHOTS = re.compile(r"^shots_(?P<shots>-?\d+)$")
_SEED = re.compile(r"^seed(?P<seed>-?\d+)$")


def shown(path):
    """``path`` relative to the current directory when it is below it, else absolute."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def context_length(n_ctx, ctx_init):
    """The text context vectors a prompt learns: one per word of ``ctx_init`` when it is set
    (underscores read as spaces, as CoOp counts them), else ``n_ctx`` (also for the boolean
    CTX_INIT of KgCoOp and ProGrad, whose names say it)."""
    if isinstance(ctx_init, str) and ctx_init:
        return len(ctx_init.replace("_", " ").split())
    return n_ctx


def setting(cfg):
    """The ``<setting>`` folder of a run: what its method names it after (``run_setting`` of
    the registered method, e.g. CoOp's ``nctx<N>_csc<CSC>_ctp<POSITION>``), with
    ``_epochs<S>x`` added for a schedule scaled by OPTIM.EPOCH_SCALE S."""
    name = method_type(cfg.TRAINER.NAME).run_setting(cfg)
    scale = cfg.OPTIM.EPOCH_SCALE
    return name if scale == 1 else f"{name}_epochs{scale:g}x"


def fewshot_dir(out, dataset, trainer, cfg_name, shots, setting_name, seed):
    return os.path.join(
        out, dataset, trainer, f"{cfg_name}_{shots}shots", setting_name, f"seed{seed}"
    )


def base2new_dir(out, stage, dataset, trainer, cfg_name, shots, setting_name, seed):
    """``stage`` is ``train_base`` (trained and tested on the base classes) or ``test_new``."""
    return os.path.join(
        out, "base2new", stage, dataset, f"shots_{shots}", trainer, cfg_name, setting_name,
        f"seed{seed}",
    )  # fmt: skip


def cross_dir(out, target, trainer, cfg_name, shots, setting_name, seed):
    return os.path.join(
        out, CROSS_FOLDER, trainer, f"{cfg_name}_{shots}shots", setting_name, target, f"seed{seed}"
    )


def dataset_name(cfg, dataset_config_file):
    """How run directories name a dataset: its config file's stem (as the sweep's specs
    name it), else ``DATASET.NAME`` in lower case."""
    if dataset_config_file:
        return config_name(dataset_config_file)
    return cfg.DATASET.NAME.lower()


def default_run_dir(cfg, dataset_config_file, config_file, out="output"):
    """The run directory that a sweep below ``out`` gives this run: few-shot, or base-to-new
    when ``DATASET.SUBSAMPLE_CLASSES`` is base or new (``default`` stands for a missing
    trainer config file)."""
    dataset = dataset_name(cfg, dataset_config_file)
    cfg_name = config_name(config_file) if config_file else "default"
    shots, seed = cfg.DATASET.NUM_SHOTS, cfg.SEED
    classes = cfg.DATASET.SUBSAMPLE_CLASSES
    trainer, name = cfg.TRAINER.NAME, setting(cfg)
    if classes in ("base", "new"):
        stage = "train_base" if classes == "base" else "test_new"
        return base2new_dir(out, stage, dataset, trainer, cfg_name, shots, name, seed)
    return fewshot_dir(out, dataset, trainer, cfg_name, shots, name, seed)


EVAL_FOLDER = "eval"  # evaluations of a run, below its run directory


def eval_dir(model_dir, cfg, dataset_config_file, load_epoch=None):
    """``<model_dir>/eval/<dataset>[_<classes>]_<split>[_epoch<N>]``: where an evaluation of
    the run in ``model_dir`` goes by default (never the run directory itself)."""
    name = dataset_name(cfg, dataset_config_file)
    if cfg.DATASET.SUBSAMPLE_CLASSES != "all":
        name += f"_{cfg.DATASET.SUBSAMPLE_CLASSES}"
    name += f"_{cfg.TEST.SPLIT}"
    if load_epoch is not None:
        name += f"_epoch{load_epoch}"
    return os.path.join(model_dir, EVAL_FOLDER, name)


@dataclass(frozen=True)
class RunId:
    """What a run directory's path says about it. ``measure`` is what its test accuracy
    measures: ``accuracy``, or ``base`` / ``new`` in base-to-new."""

    protocol: str
    dataset: str
    trainer: str
    config: str
    shots: int | None
    setting: str
    seed: int | None
    measure: str = "accuracy"

    def experiment(self):
        """Everything but the seed: the runs that are averaged together."""
        return (self.protocol, self.trainer, self.config, self.setting, self.shots,
                self.dataset, self.measure)  # fmt: skip


def seed_of_dir(path):
    """The seed of a ``seed<N>`` folder, else ``None``."""
    match = _SEED.match(os.path.basename(os.path.normpath(path)))
    return int(match["seed"]) if match else None


def parse_run_dir(path):
    """The ``RunId`` of a run directory named by one of the layouts above, else ``None``."""
    parts = os.path.normpath(os.path.abspath(path)).split(os.sep)
    seed = seed_of_dir(path)
    body = parts[:-1] if seed is not None else parts
    for i, part in enumerate(body):
        if part in B2N_STAGES and i + 4 < len(body) and _B2N_SHOTS.match(body[i + 2]):
            return RunId(
                BASE2NEW,
                dataset=body[i + 1],
                trainer=body[i + 3],
                config=body[i + 4],
                shots=int(_B2N_SHOTS.match(body[i + 2])["shots"]),
                setting="/".join(body[i + 5 :]),
                seed=seed,
                measure=B2N_STAGES[part],
            )
    for i in range(len(body) - 1, 1, -1):
        match = _SHOTS.match(body[i])
        if not match:
            continue
        common = dict(
            trainer=body[i - 1], config=match["cfg"], shots=int(match["shots"]), seed=seed
        )
        if body[i - 2] == CROSS_FOLDER:
            if i + 1 >= len(body):
                return None
            protocol = DG if body[-1] in DG_TARGETS else CROSS
            return RunId(protocol, dataset=body[-1], setting="/".join(body[i + 1 : -1]), **common)
        return RunId(FEWSHOT, dataset=body[i - 2], setting="/".join(body[i + 1 :]), **common)
    return None
