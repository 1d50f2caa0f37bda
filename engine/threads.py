"""How many CPU threads torch's operators use: as many as the CPUs this process may run on,
less its data-loader workers, unless the user says otherwise.

Why this matters on a shared machine: torch runs an operator on a team of OpenMP threads that
meet at a barrier when it ends. With OpenMP's default wait policy the threads that arrive
first spin there (for about 3 ms); when other jobs occupy the cores, a thread of the team is
often off its core, and its team mates spin, taking CPU time from the other jobs (which spin
too when they are torch runs) until it runs again. With the tiny models' many small operators
a 4-epoch DPT run on Toy took 250-780 s instead of 12 s on two busy cores, at 4-7 times its
CPU time. So ``train.py`` sets ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once; it
must be set before torch loads OpenMP, and one already in the environment wins): the same run
then takes 40-120 s there (README, "Threads on shared CPUs"). The thread count is chosen here:
from ``os.sched_getaffinity`` (the CPUs this process may use, which taskset, cgroups and SLURM
restrict, not the machine's count), less the loader workers (each a process of its own, with
one thread: torch sets that in every worker).
"""

import os


def available_cpus():
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


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
    policy = os.environ.get("OMP_WAIT_POLICY", "OpenMP's default")
    return f"CPU threads: {threads} ({why}; --threads to change); OpenMP wait policy: {policy}"
