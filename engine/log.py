"""Tee everything printed to stdout into ``<output_dir>/log.txt`` (Dassl's log file)."""

import contextlib
import os
import sys
import time
import traceback

from engine import distributed
from engine.checkpoint import RunWriteError, saving, write_failure


class _Tee:
    """Writes to ``stream`` and to the log file ``path`` of the run in ``run_dir``. A failed
    write to the file (a full disk) is a ``RunWriteError`` saying how the run goes on;
    after it, lines go to ``stream`` only."""

    def __init__(self, stream, path, run_dir):
        self.stream = stream
        self.path = path
        self.run_dir = run_dir
        self.failed = False
        with saving(f"the log '{path}'", run_dir):
            self.file = open(path, "a", buffering=1)  # noqa: SIM115 (closed by RunLog)

    def _to_file(self, operation, *args):
        if self.failed:
            return
        try:
            getattr(self.file, operation)(*args)
        except OSError as err:
            self.failed = True
            raise RunWriteError(write_failure(f"the log '{self.path}'", err, self.run_dir)) from err

    def write(self, text):
        self.stream.write(text)
        self._to_file("write", text)

    def flush(self):
        self.stream.flush()
        self._to_file("flush")

    def isatty(self):
        return self.stream.isatty()

    def close(self):
        if not self.failed:
            self._to_file("close")
            return
        with contextlib.suppress(OSError):  # what it could not write is reported already
            self.file.close()


class RunLog:
    """Context manager: while active, stdout also goes to ``log.txt`` in ``output_dir``.

    An existing ``log.txt`` of a finished or interrupted run is kept: new lines are appended
    after a separator, so the history of a resumed run stays in one file. An error that ends
    the run is written to the file too (the terminal gets it on stderr).
    """

    def __init__(self, output_dir, filename="log.txt"):
        self.path = os.path.join(output_dir, filename)
        self._tee = None

    def __enter__(self):
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fresh = not os.path.exists(self.path)
        self._tee = _Tee(sys.stdout, self.path, os.path.dirname(self.path))
        sys.stdout = self._tee
        if not fresh:
            print(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')}: new session in this run ====")
        return self

    def __exit__(self, exc_type, exc, tb):
        tee, sys.stdout = self._tee, self._tee.stream
        try:
            tee.flush()
            if exc is not None:
                tee._to_file("write", "".join(traceback.format_exception(exc_type, exc, tb)))
            tee.close()
        except RunWriteError:
            if exc is None:  # the run's own error comes first
                raise
        return False


def run_log(output_dir):
    """``RunLog`` in the main process; the other ranks of a distributed run print nothing
    (their errors still go to stderr)."""
    return RunLog(output_dir) if distributed.is_main_process() else _quiet()


@contextlib.contextmanager
def _quiet():
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
