"""train.py in a child process forked from the test (no new interpreter to start, so a small
run takes about a second), with hooks on the files it puts into its run directory.

Every file of a run directory (checkpoints, ``last_epoch.json``, Dassl's pointers,
``results.json``) is written to a temporary file that ``os.replace`` renames into place. In the
child, ``os.replace`` counts those renames and, at a chosen one (its 1-based index, the
file's path relative to the run directory, or ``<path>#<n>`` for that file's n-th rename), can
kill the process with SIGKILL: ``before`` the rename, after cutting the temporary file to half
its size (a kill while the file is being written), or just ``after`` it (a kill between two
writes); or pause it until the test lets it go on (e.g. to start a second process meanwhile).

A full disk is simulated the same way (``full_disk``): the files the child opens for writing
below the run directory (or at an absolute path) are wrapped, and from the moment a chosen
file has been given a chosen number of bytes, every write to any of them fails with ENOSPC,
as on a disk that has filled up; the next start has the space again.
"""

import builtins
import errno
import fnmatch
import os
import re
import select
import signal
import sys
import time
from pathlib import Path

import train
from engine.checkpoint import TEMP_PREFIX

HANG_AFTER_S = 300  # a small run takes seconds; no child of a test may block the suite


class ForkedRun:
    """``train.py ARGV`` in a forked child; its stdout and stderr go to ``<out>.console.txt``."""

    def __init__(
        self,
        argv,
        out,
        kill_at=None,
        when="before",
        pause_at=None,
        renames_file=None,
        full_disk=None,
    ):
        self.out = str(out)
        self.console = Path(f"{out}.console.txt")
        paused_r, paused_w = os.pipe()
        resume_r, resume_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child never returns into the test
            code = 99
            try:
                hooks = (kill_at, when, pause_at, renames_file, paused_w, resume_r)
                if full_disk:
                    fill_disk_at(self.out, *full_disk)
                code = self._child(argv, *hooks)
            finally:
                os._exit(code)
        os.close(paused_w)
        os.close(resume_r)
        self._paused, self._resume = paused_r, resume_w

    def _child(self, argv, kill_at, when, pause_at, renames_file, paused_w, resume_r):
        sys.stdout = sys.stderr = open(self.console, "a", buffering=1)  # noqa: SIM115
        replace, count, per_file = os.replace, [0], {}

        def hooked_replace(src, dst, *args, **kwargs):
            renamed = os.path.relpath(dst, self.out)
            if renamed.startswith("..") or not os.path.basename(src).startswith(TEMP_PREFIX):
                return replace(src, dst, *args, **kwargs)  # not a file of the run directory
            count[0] += 1
            if renames_file:
                with open(renames_file, "a") as f:
                    f.write(renamed + "\n")
            per_file[renamed] = per_file.get(renamed, 0) + 1
            chosen = (count[0], renamed, f"{renamed}#{per_file[renamed]}")
            if pause_at in chosen:
                os.write(paused_w, b"p")
                os.read(resume_r, 1)
            if kill_at in chosen and when == "before":
                with open(src, "r+b") as f:
                    f.truncate(os.path.getsize(src) // 2)
                os.kill(os.getpid(), signal.SIGKILL)
            replace(src, dst, *args, **kwargs)
            if kill_at in chosen:
                os.kill(os.getpid(), signal.SIGKILL)

        os.replace = hooked_replace
        return train.cli(argv)

    def wait_paused(self, timeout=120):
        """Block until the child reaches ``pause_at``."""
        ready, _, _ = select.select([self._paused], [], [], timeout)
        assert ready and os.read(self._paused, 1) == b"p", self.console.read_text()[-3000:]

    def resume(self):
        os.write(self._resume, b"r")

    def wait(self, kill_after_s=None, status=0):
        """True when the child was killed (by its hook, or from here after ``kill_after_s``
        seconds), False when it exited with ``status`` (anything else fails the test). A child
        still running after ``HANG_AFTER_S`` is killed and fails the test."""
        start = time.monotonic()
        while True:
            done, result = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            elapsed = time.monotonic() - start
            if kill_after_s is not None and elapsed >= kill_after_s or elapsed >= HANG_AFTER_S:
                os.kill(self.pid, signal.SIGKILL)
                _, result = os.waitpid(self.pid, 0)
                assert elapsed < HANG_AFTER_S, (
                    f"train.py hung for {HANG_AFTER_S} s:\n" + self.console.read_text()[-3000:]
                )
                break
            time.sleep(0.005)
        os.close(self._paused)
        os.close(self._resume)
        if os.WIFSIGNALED(result):
            assert os.WTERMSIG(result) == signal.SIGKILL
            return True
        assert os.WEXITSTATUS(result) == status, self.console.read_text()[-3000:]
        return False


_TEMP_NAME = re.compile(re.escape(TEMP_PREFIX) + r"(?P<name>.+)\w{8}$")  # atomic_write's


def _written_name(path, out):
    """The file that ``path`` (maybe a temporary file of an atomic write) becomes: relative to
    the run directory ``out`` when below it, else absolute."""
    folder, base = os.path.split(os.path.abspath(path))
    match = _TEMP_NAME.match(base)
    target = os.path.join(folder, match["name"] if match else base)
    relative = os.path.relpath(target, out)
    return target if relative.startswith("..") else relative


class _FullDiskFile:
    """A file opened for writing in a child whose disk fills up (``fill_disk_at``)."""

    def __init__(self, file, disk, room):
        self._file, self._disk, self._room = file, disk, room

    def write(self, data):
        if self._room is not None:
            if len(data) > self._room:
                self._disk["full"] = True
            self._room -= len(data)
        if self._disk["full"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self._file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    def __getattr__(self, name):
        return getattr(self._file, name)


def fill_disk_at(out, name, occurrence=1, room=0):
    """In this (child) process: once the ``occurrence``-th file opened as ``name`` (a
    pattern, relative to the run directory ``out`` or absolute; a temporary file counts as
    the file it becomes) has been given ``room`` bytes, every write to the files opened for
    writing below ``out`` or as ``name`` fails with ENOSPC."""
    disk, opened = {"full": False}, [0]
    real_open, real_fdopen = builtins.open, os.fdopen

    def wrap(file, path, mode):
        if not set(str(mode)) & set("wax+"):
            return file
        written = _written_name(path, out)
        chosen = fnmatch.fnmatch(written, name)
        if written.startswith("/") and not chosen:
            return file
        room_left = None
        if chosen:
            opened[0] += 1
            room_left = room if opened[0] == occurrence else None
        return _FullDiskFile(file, disk, room_left)

    def hooked_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return handle if isinstance(file, int) else wrap(handle, os.fspath(file), mode)

    def hooked_fdopen(fd, mode="r", *args, **kwargs):
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return wrap(handle, os.readlink(f"/proc/self/fd/{fd}"), mode)

    builtins.open = hooked_open
    os.fdopen = hooked_fdopen


def launch(argv, out, kill_after_s=None, **hooks):
    """Run train.py to its end (or its kill); True when it was killed."""
    return ForkedRun(argv, out, **hooks).wait(kill_after_s)
