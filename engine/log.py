"""Tee everything printed to stdout into ``<output_dir>/log.txt`` (Dassl's log file)."""

import contextlib
import os
import sys
import time
import traceback

from engine import distributed


class _Tee:
    def __init__(self, stream, path):
        self.stream = stream
        self.file = open(path, "a", buffering=1)  # noqa: SIM115 (closed by RunLog)

    def write(self, text):
        self.stream.write(text)
        self.file.write(text)

    def flush(self):
        self.stream.flush()
        self.file.flush()

    def isatty(self):
        return self.stream.isatty()

    def close(self):
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
        self._tee = _Tee(sys.stdout, self.path)
        sys.stdout = self._tee
        if not fresh:
            print(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')}: new session in this run ====")
        return self

    def __exit__(self, exc_type, exc, tb):
        sys.stdout.flush()
        sys.stdout = self._tee.stream
        if exc is not None:
            self._tee.file.write("".join(traceback.format_exception(exc_type, exc, tb)))
        self._tee.close()
        return False


def run_log(output_dir):
    """``RunLog`` in the main process; the other ranks of a distributed run print nothing
    (their errors still go to stderr)."""
    return RunLog(output_dir) if distributed.is_main_process() else _quiet()


@contextlib.contextmanager
def _quiet():
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        yield
