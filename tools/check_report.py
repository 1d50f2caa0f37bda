"""A one-shot check as a list of sections under one time budget, recorded in one JSON file.

Made for a machine that is lent for a few minutes: each section runs within what is left of
the budget (a section that would start with too little left is skipped, with the reason), a
section that fails is recorded with its error and traceback and the next one runs, and the
JSON file is rewritten after every section, so that whatever happens later, what was measured
is on disk.
"""

import json
import math
import os
import tempfile
import time
import traceback


class SectionSkipped(Exception):
    """Raised by a section that cannot run here; the message says why."""


class CheckFailed(Exception):
    """Raised by a section whose figures break a check (after recording them)."""


def json_safe(value):
    """``value`` with non-finite floats as strings ("nan", "inf"), which JSON cannot hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


class CheckReport:
    """The sections' records (``{"status": "ok" | "failed" | "skipped", "seconds", ...}``)
    and the deadline they share, written to ``path`` after each section."""

    def __init__(self, path, budget_s, header):
        self.path = path
        self.start = time.monotonic()
        self.budget_s = budget_s
        self.data = {**header, "budget_s": budget_s, "sections": {}}

    def left_s(self):
        return self.budget_s - (time.monotonic() - self.start)

    def deadline(self, cap_s):
        """The monotonic time by which a section given at most ``cap_s`` seconds stops."""
        return time.monotonic() + min(cap_s, max(self.left_s(), 0.0))

    def section(self, name, fn, *, needs_s=0.0):
        """Run ``fn(record)``: it fills the dict ``record`` with its figures. Returns the
        record, its status set from how ``fn`` ended."""
        record = {}
        left = self.left_s()
        if left < needs_s:
            record.update(
                status="skipped", reason=f"time budget: {left:.0f} s left, needs {needs_s:.0f} s"
            )
            return self._store(name, record, 0.0)
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            fn(record)
            record["status"] = "ok"
        except SectionSkipped as why:
            record.update(status="skipped", reason=str(why))
        except Exception as err:  # noqa: BLE001 (every failure is recorded and the check goes on)
            record.update(
                status="failed",
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(limit=12),
            )
        return self._store(name, record, time.monotonic() - started)

    def _store(self, name, record, seconds):
        record["seconds"] = round(seconds, 2)
        self.data["sections"][name] = record
        note = record.get("error") or record.get("reason") or ""
        print(f"   {record['status']} ({seconds:.1f} s) {note}".rstrip(), flush=True)
        self.write()
        return record

    def write(self):
        self.data["elapsed_s"] = round(time.monotonic() - self.start, 2)
        statuses = [r["status"] for r in self.data["sections"].values()]
        self.data["counts"] = {s: statuses.count(s) for s in ("ok", "failed", "skipped")}
        folder = os.path.dirname(os.path.abspath(self.path))
        fd, temp = tempfile.mkstemp(dir=folder, prefix=".gpu_check.", suffix=".json")
        with os.fdopen(fd, "w") as file:
            json.dump(json_safe(self.data), file, indent=1)
        os.replace(temp, self.path)

    def failed(self):
        return [name for name, r in self.data["sections"].items() if r["status"] == "failed"]
