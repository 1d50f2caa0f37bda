"""Name -> class registries for trainers and datasets.

A module registers its class with a decorator at import time; ``trainers/`` and
``datasets/`` import all their modules on package import, so adding a file is enough
to make a new trainer or dataset available to ``train.py``.
"""

import difflib


class Registry:
    """A case-sensitive mapping from names to classes, with helpful lookup errors."""

    def __init__(self, kind):
        self.kind = kind
        self._entries = {}

    def register(self, obj=None, name=None):
        """Register ``obj`` under ``name`` (default: its ``__name__``); usable as a decorator."""

        def add(cls):
            key = name or cls.__name__
            if key in self._entries and self._entries[key] is not cls:
                raise KeyError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = cls
            return cls

        return add if obj is None else add(obj)

    def get(self, name):
        if name not in self._entries:
            close = difflib.get_close_matches(name, self._entries, n=1)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise KeyError(
                f"Unknown {self.kind} '{name}'.{hint} "
                f"Registered: {', '.join(sorted(self._entries))}"
            )
        return self._entries[name]

    def names(self):
        return sorted(self._entries)

    def __contains__(self, name):
        return name in self._entries


TRAINER_REGISTRY = Registry("trainer")
DATASET_REGISTRY = Registry("dataset")
