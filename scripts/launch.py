"""Run jobs: here (one run per GPU, or N at once on the CPU) or on SLURM through submitit.

Every step is a ``python train.py ...`` process started in the current directory, so that
relative paths in overrides mean what they mean to train.py run from here. Its stdout is in
the run's ``log.txt`` (train.py writes it), its stderr (warnings, tracebacks) in
``stderr.txt`` beside it. A step holds a lock on ``<run dir>/.sweep.lock`` while it runs, so
that a second sweep over the same folders reports the run as busy instead of training it
twice; so does a run whose train.py holds its ``.run.lock``. A train.py process ends with
the sweep that started it (``engine.lifetime``): a killed sweep leaves no run behind, and the
same command resumes them.
"""

import os
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from queue import Queue

from engine.lifetime import END_WITH_PID
from engine.run_lock import LOCK_FILE as RUN_LOCK
from engine.run_lock import is_locked, try_lock
from engine.threads import available_cpus
from scripts.plan import TRAIN
from scripts.spec import REPO

STDERR, LOCK = "stderr.txt", ".sweep.lock"
_running = set()  # train.py processes of this launcher, ended on an interrupt
_running_lock = threading.Lock()
_stopping = threading.Event()  # set on an interrupt: no new step starts


@dataclass
class StepResult:
    out_dir: str
    # done | skipped (finished before) | failed | busy (another sweep runs it) | interrupted
    status: str
    seconds: float = 0.0
    error: str = ""  # a failed step's exit code and the error line of its stderr.txt

    @property
    def stderr_path(self):
        return os.path.join(self.out_dir, STDERR)


@dataclass
class JobResult:
    name: str
    steps: list = field(default_factory=list)

    @property
    def status(self):
        """The first of failed, busy, interrupted, done that a step has; else skipped."""
        statuses = [step.status for step in self.steps]
        for status in ("failed", "busy", "interrupted", "done"):
            if status in statuses:
                return status
        return "skipped"


_ERROR = re.compile(r"^(error: |[\w.]+(Error|Exception|Interrupt)\b)")


def error_line(path):
    """The line of a stderr file that names the error: train.py's ``error: ...`` or a
    traceback's last exception line, else its last line."""
    try:
        with open(path, errors="replace") as f:
            lines = [line.strip() for line in f if line.strip()]
    except OSError:
        return ""
    errors = [line for line in lines if _ERROR.match(line)]
    return (errors or lines or [""])[-1]


def _start(step, env):
    """The train.py process of ``step``, or None after an interrupt."""
    env = dict(os.environ if env is None else env, **{END_WITH_PID: str(os.getpid())})
    with open(os.path.join(step.out_dir, STDERR), "a") as stderr, _running_lock:
        if _stopping.is_set():
            return None
        process = subprocess.Popen(
            [sys.executable, TRAIN, *step.argv], env=env,
            stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
        _running.add(process)
        return process


def run_step(step, env=None):
    """Run one train.py step unless it is finished, or run by another sweep or process."""
    if step.finished:
        return StepResult(step.out_dir, "skipped")
    os.makedirs(step.out_dir, exist_ok=True)
    start = time.time()
    fd = os.open(os.path.join(step.out_dir, LOCK), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        if try_lock(fd) is False or is_locked(os.path.join(step.out_dir, RUN_LOCK)):
            return StepResult(step.out_dir, "busy")
        process = _start(step, env)
        if process is None:
            return StepResult(step.out_dir, "interrupted")
        try:
            returncode = process.wait()
        finally:
            with _running_lock:
                _running.discard(process)
    finally:
        os.close(fd)
    seconds = time.time() - start
    if returncode == 0 and step.finished:
        return StepResult(step.out_dir, "done", seconds)
    result = StepResult(step.out_dir, "failed", seconds)
    result.error = f"exit code {returncode}: {error_line(result.stderr_path)}"
    return result


def run_job(job, env=None):
    """The job's steps in order; the rest are not started after one that did not finish."""
    result = JobResult(job.name)
    for step in job.steps:
        result.steps.append(run_step(step, env))
        if result.steps[-1].status not in ("done", "skipped"):
            break
    return result


def stop_running():
    """End the train.py processes started here and start no more (an interrupted sweep)."""
    with _running_lock:
        _stopping.set()
        for process in _running:
            process.terminate()


def local_slots(gpus, jobs):
    """Environments of the parallel workers: one per entry of ``gpus`` (a GPU may be listed
    twice for two runs on it), else ``jobs`` CPU workers sharing the cores."""
    if gpus:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        physical = visible.split(",") if visible else None
        return [dict(os.environ, CUDA_VISIBLE_DEVICES=physical[g] if physical else str(g))
                for g in gpus]  # fmt: skip
    threads = os.environ.get("OMP_NUM_THREADS") or str(max(1, available_cpus() // jobs))
    return [dict(os.environ, CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS=threads)] * jobs


def run_local(jobs, slots, report):
    """Run ``jobs`` on the worker ``slots``; ``report(JobResult)`` as each one ends."""
    free = Queue()
    for env in slots:
        free.put(env)

    def work(job):
        env = free.get()
        try:
            return run_job(job, env)
        finally:
            free.put(env)

    pool = ThreadPoolExecutor(max_workers=len(slots))
    try:
        for future in as_completed([pool.submit(work, job) for job in jobs]):
            report(future.result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        stop_running()
        raise
    pool.shutdown()


class SubmititJob:
    """``run_job`` as a submitit callable; a job that times out or is pre-empted is
    requeued (submitit's checkpointing) and its run resumes from its last epoch."""

    def __call__(self, job):
        return run_job(job)

    def checkpoint(self, job):
        import submitit

        return submitit.helpers.DelayedSubmission(SubmititJob(), job)


def run_submitit(jobs, folder, cluster, params, report):
    """One array job over ``jobs`` (one run per task); waits and reports as they end."""
    import submitit

    # The tasks unpickle this module: make the repository importable wherever they start.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    executor.update_parameters(**params)
    submitted = executor.map_array(SubmititJob(), jobs)
    array_id = submitted[0].job_id.split("_")[0]
    print(f"Submitted {len(submitted)} tasks (job {array_id}); submitit logs in {folder}",
          flush=True)  # fmt: skip
    by_id = {task.job_id: job for task, job in zip(submitted, jobs)}
    try:
        for task in submitit.helpers.as_completed(submitted):
            try:
                report(task.result())
            except Exception as err:  # the task itself failed (killed, out of time, node lost)
                job = by_id[task.job_id]
                why = f"{type(err).__name__}: see {task.paths.stderr}"
                report(JobResult(job.name, [StepResult(job.name, "failed", error=why)]))
    except KeyboardInterrupt:
        print(f"The submitted tasks go on running (scancel {array_id} stops them); a sweep "
              "started meanwhile leaves their runs alone.", flush=True)  # fmt: skip
        raise
