"""Train and evaluate prompt-tuning methods on CLIP; the command line of CoOp's train.py."""

import argparse
import contextlib
import glob
import os
import sys
import textwrap
import time

from engine.threads import OPENMP_WAITS

# OpenMP threads waiting for work spin briefly, then sleep, so that a run on cores that other
# jobs share does not slow down many times over (engine/threads.py). OpenMP reads this when
# torch loads it, hence before the import; a wait setting in the environment is kept.
if not OPENMP_WAITS.keys() & os.environ.keys():
    os.environ.update(OPENMP_WAITS)

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

import dassl_engine  # noqa: E402
import datasets  # noqa: E402, F401  (registers the datasets)
import trainers  # noqa: E402, F401  (registers the trainers and their config keys)
from engine import distributed  # noqa: E402
from engine.checkpoint import stopped_by_full_disk  # noqa: E402
from engine.cli import BAD_INPUT, exit_status  # noqa: E402
from engine.config import check_run_values, get_cfg_default  # noqa: E402
from engine.lifetime import end_with_launcher  # noqa: E402
from engine.log import run_log  # noqa: E402
from engine.registry import DATASET_REGISTRY, TRAINER_REGISTRY  # noqa: E402
from engine.run_inputs import save_run_inputs  # noqa: E402
from engine.run_lock import RunLock  # noqa: E402
from engine.rundir import (  # noqa: E402
    check_not_in_evaluated_run,
    check_output_dir,
    prepare_output_dir,
)
from engine.threads import check_threads, set_threads  # noqa: E402
from engine.utils import set_random_seed  # noqa: E402
from scripts import naming  # noqa: E402
from scripts.spec import REPO  # noqa: E402
from trainers import builtin  # noqa: E402
from trainers.evaluated_run import check_same_model  # noqa: E402
from trainers.method import method_for  # noqa: E402


def known_names():
    """The trainers, datasets and dataset config files, for the end of ``--help``."""
    configs = glob.glob(os.path.join(REPO, "configs", "datasets", "*.yaml"))
    stems = sorted(os.path.splitext(os.path.basename(path))[0] for path in configs)
    sections = [
        ("trainers (--trainer):", ", ".join(TRAINER_REGISTRY.names())),
        ("datasets (DATASET.NAME, set by the dataset config file):",
         ", ".join(DATASET_REGISTRY.names())),
        (f"dataset config files (--dataset-config-file configs/datasets/<name>.yaml, in "
         f"{REPO}):", " ".join(stems)),
    ]  # fmt: skip
    return "\n".join(
        f"{title}\n{textwrap.fill(body, 78, initial_indent='  ', subsequent_indent='  ')}"
        for title, body in sections
    )


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__,
        epilog=known_names(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
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
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads of torch's operators (config key NUM_THREADS; default: the CPUs "
        "available to this process less the loader workers)",
    )
    parser.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    parser.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    parser.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    parser.add_argument("--config-file", type=str, default="", help="path to config file")
    parser.add_argument(
        "--dataset-config-file",
        type=str,
        default="",
        help="path to config file for dataset setup (listed below)",
    )
    parser.add_argument("--trainer", type=str, default="", help="name of trainer (listed below)")
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


def check_args(engine, cfg, args):
    """Fail before any work on what can be checked from the config and flags alone."""
    engine.check_config(cfg)
    check_run_values(cfg)
    check_threads(cfg.NUM_THREADS)
    for flag, folder in (("--model-dir", args.model_dir), ("--resume", cfg.RESUME)):
        if folder and not os.path.isdir(folder):
            raise FileNotFoundError(
                f"{flag} '{folder}' does not exist (or is not a folder): give the run "
                "directory of a trained run (it holds a folder per learned module, e.g. "
                "prompt_learner/). Nothing was written."
            )


def output_dir_given(args):
    """Whether the command line names the output directory (flag or ``OUTPUT_DIR`` override)."""
    return bool(args.output_dir) or "OUTPUT_DIR" in (args.opts or [])[0::2]


def choose_output_dir(args, cfg):
    """The run's ``OUTPUT_DIR``, the first of: the one the command line gives; for
    ``--eval-only --model-dir RUN``, ``RUN/eval/<dataset>_<split>`` (a config file's
    OUTPUT_DIR names the training run, not its evaluations); a config file's; the folder a
    sweep would give this run (dataset, trainer, config, shots, setting, seed), so that runs
    of different settings never meet in Dassl's default ``./output``. An evaluation's output
    may not be (or hold) the run it evaluates."""
    evaluation = args.eval_only and args.model_dir
    if evaluation:
        eval_dir = naming.eval_dir(args.model_dir, cfg, args.dataset_config_file, args.load_epoch)
    if output_dir_given(args):
        chosen = cfg.OUTPUT_DIR
    elif evaluation:
        chosen = eval_dir
    elif os.path.normpath(cfg.OUTPUT_DIR) != os.path.normpath(get_cfg_default().OUTPUT_DIR):
        chosen = cfg.OUTPUT_DIR
    else:
        chosen = naming.default_run_dir(cfg, args.dataset_config_file, args.config_file)
    if evaluation:
        check_not_in_evaluated_run(chosen, args.model_dir, eval_dir)
    cfg = cfg.clone()
    cfg.defrost()
    cfg.OUTPUT_DIR = chosen
    cfg.freeze()
    return cfg


def evaluates_again(args):
    """An evaluation in its default folder (``RUN/eval/...``) replaces the one before it,
    which moves to ``previous-<timestamp>/`` there: evaluating a run again (e.g. with
    TEST.PER_CLASS_RESULT True) needs no --overwrite and loses nothing."""
    return bool(args.eval_only and args.model_dir and not output_dir_given(args))


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
    check_args(engine, cfg, args)
    if args.eval_only and args.model_dir:
        check_same_model(cfg, args.model_dir)
    cfg = choose_output_dir(args, cfg)
    check_output_dir(cfg.OUTPUT_DIR)
    joined = distributed.init_from_env(cfg.USE_CUDA)
    try:
        with stopped_by_full_disk(cfg.OUTPUT_DIR):
            return run(args, cfg, engine)
    finally:
        if joined:
            dist.destroy_process_group()


def run(args, cfg, engine):
    """Rank 0 holds the run directory's lock for the whole run (eval-only runs too)."""
    main_process = distributed.is_main_process()
    with RunLock(cfg.OUTPUT_DIR) if main_process else contextlib.nullcontext() as lock:
        if main_process:
            prepare_output_dir(cfg.OUTPUT_DIR, overwrite=args.overwrite or evaluates_again(args))
        distributed.barrier()
        with run_log(cfg.OUTPUT_DIR):
            notes = [lock.note] if main_process and lock.note else []
            notes += engine.unused_settings(cfg) + method_for(cfg).notes()
            return run_logged(args, cfg, engine, notes)


def run_logged(args, cfg, engine, notes):
    """Everything after the run directory is claimed; printed lines go to its log.txt."""
    print(f"** Run started {time.strftime('%Y-%m-%d %H:%M:%S')} **")
    print(f"Output directory: {cfg.OUTPUT_DIR}")
    for note in notes:
        print(note)
    print("** Arguments **")
    for key, value in sorted(vars(args).items()):
        print(f"{key}: {value}")
    print("** Config **")
    print(cfg)
    print(f"PyTorch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    describe_parallelism(cfg)
    print(set_threads(cfg.NUM_THREADS, cfg.DATALOADER.NUM_WORKERS))
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
    end_with_launcher()
    return exit_status(lambda: main(argv), BAD_INPUT + (dassl_engine.DasslUnavailable,))


if __name__ == "__main__":
    sys.exit(cli())
