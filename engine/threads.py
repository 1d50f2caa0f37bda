"""How torch's CPU operators use threads: how many (the CPUs this process may run on, less
its data-loader workers, unless the user says otherwise) and how long idle ones spin.

Why this matters on a shared machine: torch runs an operator on a team of OpenMP threads that
meet at a barrier when it ends. By OpenMP's (libgomp's) default the threads that arrive first
spin there for about 300,000 rounds; when other jobs occupy the cores, a thread of the team is
often off its core, and its team mates spin, taking CPU time from the other jobs, until it runs
again: the tiny models' many small operators then take many times their idle time. Waiting
threads that sleep at once (``OMP_WAIT_POLICY=PASSIVE``) never collapse under load, but make
each operator wait for a sleeping thread on idle cores; a spin of 3,000 rounds first
(``GOMP_SPINCOUNT``) keeps most of both (measurements: docs/threads.md). So
``train.py`` sets ``OPENMP_WAITS`` before torch loads OpenMP, unless the environment sets
either variable. The thread count is chosen here: from ``os.sched_getaffinity`` (the CPUs this
process may use, which taskset, cgroups and SLURM restrict, not the machine's count), less the
loader workers (each a process of its own, with one thread: torch sets that in every worker).
"""

import os

# OpenMP's waits: spin 3,000 rounds, then sleep (GOMP_SPINCOUNT is libgomp's, the OpenMP of
# torch's Linux wheels, and overrides the policy's spin; the policy is for other runtimes).
OPENMP_WAITS = {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": "3000"}


def available_cpus():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_threads(requested):
    if requested < 0:
        raise ValueError(
            f"NUM_THREADS (--threads) is {requested}: give a number of threads, or 0 to take "
            "them from the CPUs available to this process"
        )


def default_threads(num_workers):
    return max(1, available_cpus() - max(0, num_workers))


def set_threads(requested, num_workers):
    """Set torch's intra-op threads: ``requested`` when > 0 (NUM_THREADS, ``--threads``); else
    the ``OMP_NUM_THREADS`` of the environment when set; else ``default_threads``. Returns a
    line for the log that says how many and why."""
    import torch

    if requested > 0:
        threads, why = requested, "NUM_THREADS"
    elif os.environ.get("OMP_NUM_THREADS"):
        threads, why = torch.get_num_threads(), "OMP_NUM_THREADS in the environment"
    else:
        threads = default_threads(num_workers)
        why = f"{available_cpus()} CPUs available to this process, {num_workers} loader workers"
    torch.set_num_threads(threads)
    waits = ", ".join(f"{key} {os.environ.get(key, 'unset')}" for key in OPENMP_WAITS)
    return f"CPU threads: {threads} ({why}; --threads to change); OpenMP waits: {waits}"
