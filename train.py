"""Train and evaluate prompt-tuning methods on CLIP; the command line of CoOp's train.py."""

import argparse
import contextlib
import sys
import time

import torch
import torch.distributed as dist

import dassl_engine
import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers and their config keys)
from engine import distributed
from engine.cli import BAD_INPUT, exit_status
from engine.config import check_run_values
from engine.log import run_log
from engine.run_inputs import save_run_inputs
from engine.run_lock import RunLock
from engine.rundir import check_output_dir, prepare_output_dir
from engine.utils import set_random_seed
from trainers import builtin


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=str, default="", help="path to dataset")
    parser.add_argument("--output-dir", type=str, default="", help="output directory")
    parser.add_argument(
        "--resume",
        type=str,
        default="",
        help="checkpoint directory (from which the training resumes)",
    )
    parser.add_argument(
        "--seed", type=int, default=-1, help="only positive value enables a fixed seed"
    )
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument(
        "--dataset-config-file", type=str, default="", help="path to config file for dataset setup"
    )
    parser.add_argument("--trainer", type=str, default="", help="name of trainer")
    parser.add_argument("--backbone", type=str, default="", help="name of CNN backbone")
    parser.add_argument("--head", type=str, default="", help="name of head")
    parser.add_argument("--eval-only", action="store_true", help="evaluation only")
    parser.add_argument(
        "--model-dir",
        type=str,
        default="",
        help="load model from this directory for eval-only mode",
    )
    parser.add_argument(
        "--load-epoch", type=int, help="load model weights at this epoch for evaluation"
    )
    parser.add_argument("--no-train", action="store_true", help="do not call trainer.train()")
    parser.add_argument(
        "--engine",
        choices=("builtin", "dassl"),
        default="builtin",
        help="the training loop: builtin (this project's Dassl-compatible core, the default) "
        "or dassl (a Dassl install: its trainer loop, data manager, few-shot sampler, "
        "optimisers and evaluator, and its own datasets such as PACS or OfficeHome)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="run even if --output-dir holds a finished run (its results are moved aside)",
    )
    parser.add_argument(
        "opts",
        default=None,
        nargs=argparse.REMAINDER,
        help="modify config options using the command-line",
    )
    return parser


def load_engine(name):
    """The module that runs the training loop: ``trainers.builtin`` or ``dassl_engine``
    (which imports Dassl, or says how to install it)."""
    return builtin if name == "builtin" else dassl_engine.load()


def check_args(engine, cfg):
    """Fail before any work on what can be checked from the config alone."""
    engine.check_config(cfg)
    check_run_values(cfg)
    check_output_dir(cfg.OUTPUT_DIR)


def describe_parallelism(cfg):
    if distributed.is_distributed():
        print(
            f"Distributed data parallel: {distributed.world_size()} processes "
            f"({dist.get_backend()}); DATALOADER batch sizes are global, split over them"
        )
        return
    n_gpus = torch.cuda.device_count() if cfg.USE_CUDA else 0
    if n_gpus > 1:
        print(
            f"Note: {n_gpus} GPUs are visible and this run uses one (there is no "
            f"DataParallel); to use all: torchrun --nproc_per_node {n_gpus} train.py ..."
        )


def main(argv=None):
    args = build_parser().parse_args(argv)
    engine = load_engine(args.engine)
    cfg = engine.setup_cfg(args)
    check_args(engine, cfg)
    joined = distributed.init_from_env(cfg.USE_CUDA)
    try:
        return run(args, cfg, engine)
    finally:
        if joined:
            dist.destroy_process_group()


def run(args, cfg, engine):
    """Rank 0 holds the run directory's lock for the whole run (eval-only runs too)."""
    main_process = distributed.is_main_process()
    with RunLock(cfg.OUTPUT_DIR) if main_process else contextlib.nullcontext() as lock:
        if main_process:
            prepare_output_dir(cfg.OUTPUT_DIR, overwrite=args.overwrite)
        distributed.barrier()
        with run_log(cfg.OUTPUT_DIR):
            notes = [lock.note] if main_process and lock.note else []
            return run_logged(args, cfg, engine, notes + engine.unused_settings(cfg))


def run_logged(args, cfg, engine, notes):
    """Everything after the run directory is claimed; printed lines go to its log.txt."""
    print(f"** Run started {time.strftime('%Y-%m-%d %H:%M:%S')} **")
    for note in notes:
        print(note)
    print("** Arguments **")
    for key, value in sorted(vars(args).items()):
        print(f"{key}: {value}")
    print("** Config **")
    print(cfg)
    print(f"PyTorch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    describe_parallelism(cfg)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True

    trainer = engine.build_trainer(cfg)
    if distributed.is_main_process():  # what predict.py and the tools rebuild it from
        save_run_inputs(cfg.OUTPUT_DIR, cfg, trainer.classnames, trainer.template)
    if args.eval_only:
        trainer.load_model(args.model_dir, epoch=args.load_epoch)
        return engine.evaluate(trainer)
    if not args.no_train:
        return engine.train(trainer)
    return None


def cli(argv=None):
    """``main`` with bad input reported as ``error: <what to do>`` on stderr: exit status 2."""
    return exit_status(lambda: main(argv), BAD_INPUT + (dassl_engine.DasslUnavailable,))


if __name__ == "__main__":
    sys.exit(cli())
