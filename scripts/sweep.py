"""Run a sweep: one protocol over trainers x datasets x shots x configs x seeds.

    python -m scripts.sweep --spec sweep.yaml [--dry-run] [--gpus 0 1 | --jobs N]
    python -m scripts.sweep --root DATA --trainers CoOp DPT --datasets caltech101 \\
        --configs vit_b16 --shots 1 2 4 8 16 --seeds 1 2 3 [--opts KEY VALUE ...]

Runs that finished (``results.json``) are skipped; unfinished ones run again and resume from
their last checkpoint, so an interrupted sweep is finished by running the same command
again. A folder that holds a run of other settings (its saved config differs in a key that
can change results) is stale: the sweep lists it and stops before any run, unless
``--overwrite``. A failed run is reported with its log and does not stop the others. At the
end: a summary and the results table of the sweep's runs. See ``scripts/spec.py`` for the spec and
``scripts/naming.py`` for the run directories.
"""

import argparse
import os
import signal
import sys
import threading
import time
from dataclasses import fields

import yaml

from scripts import launch, watch
from scripts.naming import shown
from scripts.parse_results import format_report
from scripts.plan import plan
from scripts.results import summarize
from scripts.runs import read_run
from scripts.spec import PROTOCOLS, Spec, load_spec

LAUNCHERS = ("local", "slurm", "submitit-local")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    what = parser.add_argument_group("what to run (override the spec's fields)")
    what.add_argument("--spec", help="YAML file with the fields below")
    what.add_argument("--protocol", choices=PROTOCOLS)
    what.add_argument("--root", help="folder holding the datasets (train.py --root)")
    what.add_argument("--output", help="folder below which the run directories go")
    what.add_argument("--trainers", nargs="+")
    what.add_argument("--datasets", nargs="+", help="dataset config names or paths")
    what.add_argument("--source", help="cross protocol: the dataset trained on")
    what.add_argument("--shots", nargs="+", type=int)
    what.add_argument("--seeds", nargs="+", type=int)
    what.add_argument("--configs", nargs="+", help="trainer config names or paths")
    what.add_argument("--tag", help="appended to the setting folder of every run")
    what.add_argument("--epoch-scale", type=float,
                      help="a quick look: every run's epochs, warm-ups and PRETRAIN.C times "
                      "this (OPTIM.EPOCH_SCALE; the run folders say _epochs<S>x)")  # fmt: skip
    what.add_argument("--opts", nargs="+", action="extend",
                      help="KEY VALUE overrides (after the spec's; all when repeated)")  # fmt: skip
    how = parser.add_argument_group("how to run")
    how.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    how.add_argument("--overwrite", action="store_true",
                     help="train stale runs again (folders holding runs of other settings; "
                     "the old run moves to previous-<timestamp>/ in its folder)")  # fmt: skip
    how.add_argument("--launcher", choices=LAUNCHERS, default="local",
                     help="local: here; slurm: an array job through submitit; submitit-local: "
                     "submitit's local executor (tries the SLURM path on one machine)")  # fmt: skip
    how.add_argument("--gpus", nargs="+", type=int,
                     help="local: GPUs to use, one run on each at a time (default: all); "
                     "list one twice for two runs on it")  # fmt: skip
    how.add_argument("--jobs", type=int, default=1,
                     help="local without GPUs: runs at once, sharing the CPU cores")  # fmt: skip
    how.add_argument("--progress", type=float, metavar="SECONDS",
                     help="while runs run, print each one's epoch and ETA every SECONDS "
                     "(default: 10 on a terminal, 60 otherwise, e.g. in a SLURM or CI log; "
                     "0: never)")  # fmt: skip
    how.add_argument("--submitit", nargs="+", default=[], metavar="KEY=VALUE",
                     help="submitit parameters, e.g. slurm_partition=gpu timeout_min=600 "
                     "slurm_array_parallelism=32")  # fmt: skip
    return parser


def print_plan(jobs):
    for job in jobs:
        for step in job.steps:
            print(f"{step.state():<9} {shown(step.out_dir)}\n    {step.command()}")


def submitit_params(pairs, cluster):
    import torch

    gpus = 1 if cluster == "slurm" or torch.cuda.is_available() else 0
    params = {"timeout_min": 24 * 60, "gpus_per_node": gpus, "tasks_per_node": 1, "nodes": 1,
              "name": "sweep"}  # fmt: skip
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--submitit takes KEY=VALUE, got '{pair}'")
        params[key] = yaml.safe_load(value)
    return params


def launch_jobs(args, spec, jobs, report):
    if args.launcher == "local":
        gpus = args.gpus
        if gpus is None:
            import torch

            gpus = list(range(torch.cuda.device_count()))
        launch.run_local(jobs, launch.local_slots(gpus, args.jobs), report)
        return
    cluster = "slurm" if args.launcher == "slurm" else "local"
    folder = os.path.join(spec.output, ".submitit", time.strftime("%Y%m%d-%H%M%S"))
    launch.run_submitit(jobs, folder, cluster, submitit_params(args.submitit, cluster), report)


_output = threading.Lock()  # the watcher prints from a thread of its own


def say(lines):
    with _output:
        print("\n".join(lines), flush=True)


class Progress:
    """Prints a line per job as it ends (and tells the watcher that its runs ended); keeps the
    results for the summary."""

    def __init__(self, total, watcher):
        self.total = total
        self.results = []
        self.watcher = watcher

    def __call__(self, result):
        self.results.append(result)
        self.watcher.ended(step.out_dir for step in result.steps)
        seconds = sum(step.seconds for step in result.steps)
        lines = [f"[{len(self.results)}/{self.total}] {result.status:<11} {seconds:7.1f}s  "
                 f"{shown(result.name)}"]  # fmt: skip
        for step in result.steps:
            if step.status == "failed":
                lines.append(f"      {step.error}\n      see {shown(step.stderr_path)} "
                             f"and {shown(os.path.join(step.out_dir, 'log.txt'))}")  # fmt: skip
        say(lines)

    def summary(self, skipped):
        counts = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        parts = [f"{n} {status}" for status, n in sorted(counts.items())]
        lines = [f"Sweep: {len(self.results) + skipped} runs: {skipped} finished before"
                 + "".join(f", {part}" for part in parts)]  # fmt: skip
        for result in self.results:
            for step in result.steps:
                if step.status in ("failed", "busy"):
                    why = step.error or "another sweep or train.py process is running it"
                    lines.append(f"  {step.status}: {shown(step.out_dir)}: {why}")
        return "\n".join(lines)

    @property
    def ok(self):
        return all(result.status in ("done", "skipped") for result in self.results)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def stale_report(jobs):
    """The stale steps and how to go on, or "" when there are none."""
    stale = [step for job in jobs for step in job.steps if step.stale]
    if not stale:
        return ""
    lines = [f"  stale: {shown(step.out_dir)}: {step.why_stale()}" for step in stale]
    return "\n".join([
        f"error: {len(stale)} run folder(s) hold runs of other settings, which this sweep "
        "neither counts as done nor trains over:", *lines,
        "To keep them: add --tag NAME (the new runs get folders of their own) or choose "
        "another --output. To replace them: --overwrite (each old run moves to "
        "previous-<timestamp>/ in its folder).",
    ])  # fmt: skip


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.epoch_scale is not None:
        args.opts = [*(args.opts or []), "OPTIM.EPOCH_SCALE", str(args.epoch_scale)]
    spec = load_spec(args.spec, **{f.name: getattr(args, f.name) for f in fields(Spec)})
    jobs = plan(spec)
    todo = [job for job in jobs if not job.finished]
    states = [job.state() for job in jobs]
    stale = f", {states.count('stale')} stale" if "stale" in states else ""
    steps = sum(len(job.steps) for job in jobs)
    commands = f" ({steps} train.py commands)" if steps != len(jobs) else ""
    print(f"Sweep ({spec.protocol}): {len(jobs)} runs{commands}: "
          f"{states.count('finished')} finished{stale}, {states.count('resume')} to resume, "
          f"{states.count('new')} new", flush=True)  # fmt: skip
    if args.overwrite:
        for step in (step for job in todo for step in job.steps if step.stale):
            step.overwrite()
    if args.dry_run:
        print_plan(jobs)
    report = "" if args.overwrite else stale_report(jobs)
    if report:
        print(report, file=sys.stderr)
        return 2
    if args.dry_run:
        return 0
    every = args.progress if args.progress is not None else 10 if sys.stdout.isatty() else 60
    watcher = watch.Watcher([step.out_dir for job in todo for step in job.steps], every, say)
    progress = Progress(len(todo), watcher)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if todo:
            with watcher:
                launch_jobs(args, spec, todo, progress)
    except KeyboardInterrupt:
        done = len(progress.results)
        print(f"\nInterrupted after {done} of {len(todo)} runs. Run the same command again to "
              "finish the others (unfinished runs resume).", flush=True)  # fmt: skip
        return 130
    print("\n" + progress.summary(len(jobs) - len(todo)) + "\n")
    runs = [read_run(step.out_dir) for job in jobs for step in job.steps]
    print(format_report(summarize(runs)))
    return 0 if progress.ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (FileNotFoundError, KeyError, ValueError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
