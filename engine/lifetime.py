"""Child processes that end with their parent.

A loader worker whose parent was killed can otherwise live on for minutes (blocked on a
queue nobody reads), and a ``train.py`` started by a sweep goes on after the sweep is killed.
On Linux the kernel sends a chosen signal to a process when its parent ends
(``PR_SET_PDEATHSIG``); elsewhere nothing changes.
"""

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
# Set by a sweep for the train.py processes it starts: the PID they end with.
END_WITH_PID = "DPT_END_WITH_PID"


def exit_with_parent(parent_pid, signum=signal.SIGKILL):
    """Have this process receive ``signum`` when its parent (``parent_pid``) ends, and at
    once if it has ended already. Returns whether the system supports it."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        supported = libc.prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):  # not Linux
        return False
    if supported and os.getppid() != parent_pid:
        os.kill(os.getpid(), signum)
    return supported


def end_with_launcher():
    """In a process started by a sweep (``END_WITH_PID`` set): end with SIGTERM when the
    sweep ends, so that a killed sweep leaves no run behind."""
    pid = os.environ.pop(END_WITH_PID, None)
    if pid:
        exit_with_parent(int(pid), signal.SIGTERM)


class EndsWithThisProcess:
    """A DataLoader ``worker_init_fn``: each worker is killed when the process that made
    the loader (its parent) ends, however it ends."""

    def __init__(self):
        self.parent_pid = os.getpid()

    def __call__(self, worker_id):
        exit_with_parent(self.parent_pid)
