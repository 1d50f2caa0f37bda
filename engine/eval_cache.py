"""Evaluations that no training can change (zero-shot CLIP), stored once and reused.

An entry is ``<folder>/<digest>.json``: the key (everything that determines the evaluation),
the run that made it, and the predictions with their labels, from which the metrics are
computed again (so the log and ``results.json`` of a reused evaluation are those of a fresh
one). The digest names the file; the stored key is compared in full when read.
"""

import hashlib
import json
import os

from engine.checkpoint import atomic_write_json


def normalised(key):
    """``key`` as JSON gives it back (tuples become lists), so that keys compare equal."""
    return json.loads(json.dumps(key, sort_keys=True))


def key_digest(key):
    return hashlib.sha256(json.dumps(normalised(key), sort_keys=True).encode()).hexdigest()[:20]


class EvaluationCache:
    def __init__(self, folder):
        self.folder = folder

    def path(self, key):
        return os.path.join(self.folder, f"{key_digest(key)}.json")

    def get(self, key):
        """The stored entry (``key``, ``source``, ``pred``, ``label``) for ``key``, or None;
        an unreadable entry counts as none (it is evaluated and written again)."""
        path = self.path(key)
        try:
            with open(path) as f:
                entry = json.load(f)
        except (OSError, ValueError):
            return None
        return entry if entry.get("key") == normalised(key) else None

    def put(self, key, pred, label, source):
        entry = {"key": normalised(key), "source": source, "pred": pred, "label": label}
        atomic_write_json(self.path(key), entry)
