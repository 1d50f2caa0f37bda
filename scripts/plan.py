"""A spec -> jobs of train.py steps, each step with its run directory.

A job is what one worker runs in order: few-shot, one training; base-to-new, the training on
the base classes, then ``--eval-only`` on the new ones; cross, the training on the source
dataset, then ``--eval-only`` on every target. Each step is skipped when its directory holds
``results.json`` of a run with the planned settings, so a job that stopped half way continues
where it stopped; a directory holding a run of other settings is ``stale``: it is neither
counted as done nor trained over.
"""

import os
import shlex
import sys
from dataclasses import dataclass, field

from engine.config import describe_differences, result_differences
from engine.rundir import is_finished
from scripts import naming
from scripts.spec import REPO, config_name, dataset_config, method_type

TRAIN = os.path.join(REPO, "train.py")
ZEROSHOT_CACHE = ".zeroshot_cache"  # below the sweep's output (hidden from the parser)


@dataclass
class Step:
    out_dir: str
    argv: list  # train.py arguments
    cfg: object = field(default=None, repr=False)  # the config train.py builds from argv

    @property
    def differences(self):
        """``[(key, value there, value planned)]`` of the settings that can change a result
        in which the run saved in ``out_dir`` differs from the planned one (``[]`` when the
        folder holds no saved config)."""
        from engine.run_inputs import read_saved_config  # torch: imported when needed

        saved = read_saved_config(self.out_dir)
        return result_differences(saved, self.cfg) if saved is not None else []

    @property
    def stale(self):
        return bool(self.differences)

    def why_stale(self):
        return describe_differences(self.differences, "there", "planned")

    @property
    def finished(self):
        return is_finished(self.out_dir) and not self.stale

    def state(self):
        """finished (results.json), stale (a run of other settings), resume (started, not
        finished) or new."""
        if self.stale:
            return "stale"
        if self.finished:
            return "finished"
        return "resume" if os.path.exists(self.out_dir) else "new"

    def overwrite(self):
        """Run again over what the folder holds (train.py moves it aside)."""
        if "--overwrite" not in self.argv:
            self.argv.insert(self.argv.index("--output-dir") + 2, "--overwrite")

    def command(self):
        """The shell command, with paths below the current directory written relative."""
        here = os.getcwd() + os.sep
        shown = [a[len(here) :] if a.startswith(here) else a for a in [TRAIN, *self.argv]]
        return shlex.join([os.path.basename(sys.executable), *shown])


@dataclass
class Job:
    steps: list

    @property
    def name(self):
        return self.steps[0].out_dir

    @property
    def finished(self):
        return all(step.finished for step in self.steps)

    def state(self):
        """finished when every step is; stale when one is; new when none started; else
        resume."""
        states = {step.state() for step in self.steps}
        if "stale" in states:
            return "stale"
        return states.pop() if len(states) == 1 else "resume"


def run_config(argv):
    """The config train.py builds from ``argv`` (checks trainer and dataset names too)."""
    import train  # registers trainers, datasets and their config keys

    args = train.build_parser().parse_args(argv)
    engine = train.load_engine(args.engine)
    cfg = engine.setup_cfg(args)
    engine.check_config(cfg)
    return cfg


class Planner:
    """Builds the steps of one spec; ``argv`` keeps the order of CoOp's scripts (flags, the
    spec's overrides, then the run's own)."""

    def __init__(self, spec):
        self.spec = spec

    def argv(self, trainer, dataset, config, seed, out_dir, flags=(), opts=()):
        """The runs share one zero-shot cache, so that zero-shot CLIP (a ZeroshotCLIP run or
        a TEST.ZEROSHOT_BASELINE) is evaluated once per dataset, not once per run."""
        spec = self.spec
        cache = os.path.join(spec.output, ZEROSHOT_CACHE)
        root = ["--root", spec.root] if spec.root else []
        return [*root, "--seed", str(seed), "--trainer", trainer,
                "--dataset-config-file", dataset_config(dataset), "--config-file", config,
                "--output-dir", out_dir, *flags, "TEST.ZEROSHOT_CACHE", cache, *spec.opts,
                *opts]  # fmt: skip

    @staticmethod
    def step(out_dir, argv):
        cfg = run_config(argv)
        if not cfg.DATASET.ROOT:
            raise ValueError(
                f"No folder holds {cfg.DATASET.NAME}: give the sweep --root (the wrappers: "
                "DATA=<folder holding the datasets> bash scripts/...), or set DATASET.ROOT in "
                f"{argv[argv.index('--dataset-config-file') + 1]}"
            )
        return Step(out_dir, argv, cfg)

    def setting(self, trainer, dataset, config, seed, opts):
        cfg = run_config(self.argv(trainer, dataset, config, seed, "", opts=opts))
        name = naming.setting(cfg)
        return f"{name}_{self.spec.tag}" if self.spec.tag else name

    @staticmethod
    def flags(trainer, model_dir=None):
        """Training, or with ``model_dir`` the evaluation of that run's weights; trainers
        that learn nothing always just evaluate."""
        if not method_type(trainer).trains:
            return ["--eval-only"]
        return ["--eval-only", "--model-dir", model_dir] if model_dir else []

    def fewshot_step(self, trainer, dataset, config, shots, seed):
        opts = ("DATASET.NUM_SHOTS", str(shots))
        setting = self.setting(trainer, dataset, config, seed, opts)
        out = naming.fewshot_dir(self.spec.output, dataset, trainer, config_name(config), shots,
                                 setting, seed)  # fmt: skip
        argv = self.argv(trainer, dataset, config, seed, out, self.flags(trainer), opts)
        return self.step(out, argv), setting

    def fewshot(self, trainer, dataset, config, shots, seed):
        return Job([self.fewshot_step(trainer, dataset, config, shots, seed)[0]])

    def base2new(self, trainer, dataset, config, shots, seed):
        def opts(classes):
            return ("DATASET.NUM_SHOTS", str(shots), "DATASET.SUBSAMPLE_CLASSES", classes)

        setting = self.setting(trainer, dataset, config, seed, opts("base"))

        def out(stage):
            return naming.base2new_dir(self.spec.output, stage, dataset, trainer,
                                       config_name(config), shots, setting, seed)  # fmt: skip

        train_dir, test_dir = out("train_base"), out("test_new")
        flags = self.flags(trainer)
        steps = [self.step(train_dir, self.argv(trainer, dataset, config, seed, train_dir, flags,
                                                opts("base")))]  # fmt: skip
        if not method_type(trainer).closed_set:
            flags = self.flags(trainer, train_dir)
            argv = self.argv(trainer, dataset, config, seed, test_dir, flags, opts("new"))
            steps.append(self.step(test_dir, argv))
        return Job(steps)

    def cross(self, trainer, config, shots, seed):
        train_step, setting = self.fewshot_step(trainer, self.spec.source, config, shots, seed)
        steps = [train_step]
        for target in self.spec.datasets:
            if method_type(trainer).closed_set and target not in naming.DG_TARGETS:
                continue
            out = naming.cross_dir(self.spec.output, target, trainer, config_name(config), shots,
                                   setting, seed)  # fmt: skip
            flags = self.flags(trainer, train_step.out_dir)
            steps.append(self.step(out, self.argv(trainer, target, config, seed, out, flags)))
        return Job(steps)


def plan(spec):
    """Every job of the spec, in the order trainer, dataset, shots, config, seed."""
    import train  # noqa: F401  (registers the trainers)
    from engine.registry import TRAINER_REGISTRY

    for trainer in spec.trainers:
        TRAINER_REGISTRY.get(trainer)  # an unknown name fails here, with the closest one
    planner = Planner(spec)
    jobs = []
    for trainer in spec.trainers:
        for dataset in [None] if spec.protocol == "cross" else spec.datasets:
            for shots in spec.shots:
                for config in spec.configs_for(trainer, shots):
                    for seed in spec.seeds:
                        if spec.protocol == "cross":
                            jobs.append(planner.cross(trainer, config, shots, seed))
                        else:
                            build = getattr(planner, spec.protocol)
                            jobs.append(build(trainer, dataset, config, shots, seed))
    check_distinct_dirs(jobs)
    return jobs


def check_distinct_dirs(jobs):
    """Two planned runs in one directory would share (and skip) one run: an error naming
    both, before any run starts."""
    planned = {}
    for job in jobs:
        for step in job.steps:
            other = planned.setdefault(step.out_dir, step)
            if other is step:
                continue
            diffs = result_differences(other.cfg, step.cfg)
            what = describe_differences(diffs, "in one", "in the other") or "the same settings"
            raise ValueError(
                f"Two planned runs map to one run directory, {naming.shown(step.out_dir)} "
                f"({what}): one would be skipped as the other's. Give them different config "
                f"file names, or run them in separate sweeps with --tag or --output.\n"
                f"  {other.command()}\n  {step.command()}"
            )
