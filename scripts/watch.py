"""What a sweep's runs are doing while they run, read from the lines that their train.py adds
to ``log.txt``: the last ``epoch [e/E] batch [b/B] ... eta h:mm:ss`` line (both engines print
it every TRAIN.PRINT_FREQ batches), or an ``Evaluate ... on the *<split>* set`` line after it.

It reads files only, so it follows the runs of any launcher whose run directories this process
can read: local workers, and SLURM tasks on a shared file system (their queued tasks show
nothing until they start).
"""

import os
import re
import threading

from engine.rundir import is_finished
from scripts.naming import shown

LOG = "log.txt"
EPOCH = re.compile(r"epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\].* eta (\S+)")
EVALUATE = re.compile(r"^Evaluate (?:.+ )?on the \*(\w+)\* set")


def state_of(line):
    """What a log line says a run is doing, or None."""
    match = EPOCH.search(line)
    if match:
        epoch, epochs, batch, batches, eta = match.groups()
        return f"epoch {epoch}/{epochs} batch {batch}/{batches} eta {eta}"
    match = EVALUATE.match(line)
    return f"evaluating ({match.group(1)})" if match else None


class LogTail:
    """The lines added to a run's ``log.txt`` since this was made (earlier sessions' lines are
    not this one's)."""

    def __init__(self, run_dir):
        self.path = os.path.join(run_dir, LOG)
        self.offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0
        self.started = False  # the run wrote since
        self.state = None  # the last state its lines told
        self._partial = b""  # a line still being written

    def poll(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return
        self.offset += len(data)
        self.started = self.started or bool(data)
        *lines, self._partial = (self._partial + data).split(b"\n")
        for line in reversed(lines):
            state = state_of(line.decode(errors="replace"))
            if state:
                self.state = state
                return


class Watcher:
    """While in its block, every ``every`` seconds ``write(lines)``: a line per run that started
    writing its log and has not ended (finished, or reported by ``ended``)."""

    def __init__(self, run_dirs, every, write):
        self._tails = {run_dir: LogTail(run_dir) for run_dir in run_dirs}
        self._every, self._write = every, write
        self._ended = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sweep-watcher", daemon=True)

    def ended(self, run_dirs):
        self._ended.update(run_dirs)

    def lines(self):
        lines = []
        for run_dir, tail in self._tails.items():
            if run_dir in self._ended or is_finished(run_dir):
                continue
            tail.poll()
            if tail.started:
                lines.append(f"      running     {tail.state or 'starting'}  {shown(run_dir)}")
        return lines

    def _loop(self):
        while not self._stop.wait(self._every):
            lines = self.lines()
            if lines:
                self._write(lines)

    def __enter__(self):
        if self._every > 0:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return False
