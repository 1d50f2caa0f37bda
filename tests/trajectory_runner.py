"""The two sides of the training-trajectory comparison with the original DPT code
(``tests/test_original_trajectory.py``), each in a process of its own:

    python -m tests.trajectory_runner original WORK_DIR --original-dir DIR
    python -m tests.trajectory_runner ours WORK_DIR

WORK_DIR holds one folder per run (e.g. ``DPT/``, ``VLP/``) with the full config of each side,
``original.yaml`` and ``ours.yaml`` (the same but for OUTPUT_DIR). Each side builds its trainer
with Dassl's ``build_trainer``, seeding with Dassl's ``set_random_seed(cfg.SEED)`` before that
and again right before ``trainer.train()`` (so that the random sampler draws the same batches),
records every training step and saves its record (``torch.save``) as ``original.pt`` or
``ours.pt`` beside the configs: the training items, the steps, and the learnable weights
before (original only) and after training. ``ours`` starts from the original's initial weights.

Separate processes, because both register "DPT" and "VLP" in Dassl's trainer registry, and
the original's ``trainers`` and ``clip`` packages have the names of ours and of clip-anytorch.
The original code is imported from its own folder and run unchanged, except for what
``adapt_original`` patches from outside so that it runs on the tiny CLIP in float32.
"""

import argparse
import importlib
import os

import torch
from yacs.config import CfgNode as CN

from tools.original_code import adapt_original, install_package


def learnable_state(trainer):
    """Every registered module's state dict, keyed ``<module name>.<key>``."""
    return {
        f"{name}.{key}": value.detach().clone()
        for name, module in trainer._models.items()
        for key, value in module.state_dict().items()
    }


def train_recorded(trainer, seed):
    """Train after re-seeding; per step: epoch, batch, data indices, each module's learning
    rate for that step and the loss."""
    from dassl.utils import set_random_seed

    steps = []
    forward_backward = trainer.forward_backward

    def recorded(batch):
        lrs = {name: optim.param_groups[0]["lr"] for name, optim in trainer._optims.items()}
        summary = forward_backward(batch)
        steps.append(
            {
                "epoch": trainer.epoch,
                "batch": trainer.batch_idx,
                "indices": batch["index"].tolist(),
                "lr": lrs,
                "loss": summary["loss"],
            }
        )
        return summary

    trainer.forward_backward = recorded
    set_random_seed(seed)
    trainer.train()
    return steps


def train_items(trainer):
    return [(item.impath, item.label) for item in trainer.dm.dataset.train_x]


def run_original(work_dir, original_dir):
    clip_package = install_package("clip", os.path.join(original_dir, "clip"))
    install_package("trainers", os.path.join(original_dir, "trainers"))
    from dassl.data.datasets import DATASET_REGISTRY
    from dassl.engine import build_trainer
    from dassl.utils import set_random_seed

    from dassl_engine.compat import allow_current_torch_schedulers
    from dassl_engine.datasets import register_datasets

    allow_current_torch_schedulers()
    register_datasets()
    for run_dir in run_dirs(work_dir):
        with open(os.path.join(run_dir, "original.yaml")) as file:
            cfg = CN.load_cfg(file)
        cfg.freeze()
        module = importlib.import_module(f"trainers.{cfg.TRAINER.NAME}")
        template = DATASET_REGISTRY.get(cfg.DATASET.NAME).template
        adapt_original(module, clip_package, (cfg.DATASET.NAME, template))
        set_random_seed(cfg.SEED)
        trainer = build_trainer(cfg)
        init = learnable_state(trainer)
        init["text_features"] = trainer.model.text_features.detach().clone()
        steps = train_recorded(trainer, cfg.SEED)
        record = {"train_items": train_items(trainer), "init": init, "steps": steps}
        record["final"] = learnable_state(trainer)
        torch.save(record, os.path.join(run_dir, "original.pt"))


def run_ours(work_dir):
    from dassl.utils import set_random_seed

    import dassl_engine
    from models.upstream import load_upstream_state_dict

    engine = dassl_engine.load()
    for run_dir in run_dirs(work_dir):
        cfg = engine.setup_cfg(argparse.Namespace(config_file=os.path.join(run_dir, "ours.yaml")))
        engine.check_config(cfg)
        set_random_seed(cfg.SEED)
        trainer = engine.build_trainer(cfg)
        init = torch.load(os.path.join(run_dir, "original.pt"))["init"]
        load_upstream_state_dict(trainer.model, init, strict=True)
        steps = train_recorded(trainer, cfg.SEED)
        record = {"train_items": train_items(trainer), "steps": steps}
        record["final"] = learnable_state(trainer)
        torch.save(record, os.path.join(run_dir, "ours.pt"))


def run_dirs(work_dir):
    return sorted(entry.path for entry in os.scandir(work_dir) if entry.is_dir())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("side", choices=("original", "ours"))
    parser.add_argument("work_dir", help="one folder per method, as the module docstring says")
    parser.add_argument("--original-dir", help="checkout of the original DPT code (original)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.side == "original":
        if not args.original_dir:
            parser.error("original needs --original-dir")
        run_original(args.work_dir, os.path.abspath(args.original_dir))
    else:
        run_ours(args.work_dir)


if __name__ == "__main__":
    main()
