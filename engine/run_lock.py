"""One writer per run directory: ``<run_dir>/.run.lock``, held while a process writes there.

A POSIX record lock (``lockf``) on the file decides: the kernel releases it when the process
ends, however it ends, SIGKILL included, and, unlike ``flock``, no child process holds it: a
loader worker forked from the run (and perhaps stuck after the run was killed) never keeps
the run directory locked. The file names its holder (PID, host, start time), so that a
refused start can say who holds it, and the next holder can say whose lock it took over. On
file systems without record locks the recorded PID decides: a holder on this host that no
longer runs is taken over; one on another host cannot be checked and is refused.
"""

import contextlib
import errno
import fcntl
import json
import os
import socket
import time

LOCK_FILE = ".run.lock"
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
_HELD = set()  # run directories locked by this process (record locks do not see those)


class RunDirInUse(RuntimeError):
    """Another process writes the run directory."""


def try_lock(fd):
    """True: locked; False: another process holds it; None: the file system has no locks."""
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno in (errno.EAGAIN, errno.EACCES):
            return False
        if err.errno in _NO_LOCKS:
            return None
        raise


def is_locked(path):
    """Whether another process holds the lock file ``path`` (a run's ``.run.lock`` or a
    sweep's ``.sweep.lock``)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        return try_lock(fd) is False  # a lock taken here is released when fd closes
    finally:
        os.close(fd)


def _read_holder(fd):
    """The holder record in the lock file: {"pid", "host", "started"}, or None when empty."""
    text = os.pread(fd, 4096, 0).decode(errors="replace").strip()
    if not text:
        return None
    try:
        holder = json.loads(text)
        return holder if isinstance(holder, dict) and "pid" in holder else None
    except ValueError:
        return None


def _is_running(holder):
    """Whether the recorded holder may still run (on another host it cannot be checked)."""
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


def _describe(holder):
    return (
        f"PID {holder.get('pid')} on host {holder.get('host')}, "
        f"started {holder.get('started', 'at an unknown time')}"
    )


class RunLock:
    """Context manager holding ``<run_dir>/.run.lock`` (the folder is created if needed).

    Entering raises ``RunDirInUse`` when another process holds it. ``note`` is set when the
    lock of a process that is gone was taken over. Leaving removes the file."""

    def __init__(self, run_dir):
        self.run_dir = run_dir
        self.path = os.path.join(run_dir, LOCK_FILE)
        self.note = ""
        self._fd = None

    def __enter__(self):
        os.makedirs(self.run_dir, exist_ok=True)
        if os.path.realpath(self.run_dir) in _HELD:
            raise RunDirInUse(f"'{self.run_dir}' is in use by this process (PID {os.getpid()})")
        while self._fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                self._fd = self._acquire(fd)
            except BaseException:
                os.close(fd)
                raise
        return self

    def _acquire(self, fd):
        """``fd`` once it holds the lock, or None when the file was replaced meanwhile."""
        locked = try_lock(fd)
        holder = _read_holder(fd)
        if locked is False or (locked is None and holder and _is_running(holder)):
            who = f"another process ({_describe(holder)})" if holder else "another process"
            stop = f", stop it (kill {holder['pid']})" if holder else ""
            hint = "" if locked is False else f" (if it is gone, delete '{self.path}')"
            raise RunDirInUse(
                f"'{self.run_dir}' is in use: {who} is writing this run{hint}. Wait for it to "
                f"finish{stop}, or choose another --output-dir."
            )
        if locked and not _same_file(fd, self.path):  # its holder removed it as we opened it
            os.close(fd)
            return None
        if holder:
            self.note = (
                f"Note: took over '{self.path}' from a process that is no longer running "
                f"({_describe(holder)})."
            )
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        os.fsync(fd)
        _HELD.add(os.path.realpath(self.run_dir))
        return fd

    def __exit__(self, *exc):
        # Removed before it is unlocked; a process that opened it meanwhile sees the
        # replacement (``_same_file``) and opens the path again.
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)
        os.close(self._fd)
        self._fd = None
        _HELD.discard(os.path.realpath(self.run_dir))
        return False


def _same_file(fd, path):
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
