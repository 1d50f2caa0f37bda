"""Our learnable tensors under another codebase's parameter names, and back.

Methods keep per-layer prompt tokens stacked in one tensor (``DeepPrompt.tokens``) where their
authors' code often holds one parameter per layer: an entry maps a whole tensor or one row of
a stacked one. A method's model lists its entries (``upstream_names``), so that its authors'
checkpoints load and reference gradients compare.
"""

from collections import defaultdict
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NameEntry:
    """``ours`` (a ``learnable_state_dict`` name), or its row ``row``, is ``theirs``."""

    ours: str
    theirs: str
    row: int | None = None


class NameMap:
    def __init__(self, entries):
        self.entries = list(entries)
        self._rows = defaultdict(list)
        for entry in self.entries:
            if entry.row is not None:
                self._rows[entry.ours].append(entry)

    @property
    def theirs(self):
        """Their names, in the order of the entries."""
        return [entry.theirs for entry in self.entries]

    def to_theirs(self, state):
        """``{our name: tensor}`` (parameters or their gradients) -> ``{their name: tensor}``."""
        return {
            entry.theirs: state[entry.ours] if entry.row is None else state[entry.ours][entry.row]
            for entry in self.entries
        }

    def to_ours(self, state):
        """``{their name: tensor}`` -> (``{our name: tensor}``, their names not mapped).

        Raises ``KeyError`` naming what is missing when a name of ours is not covered.
        """
        missing = [entry.theirs for entry in self.entries if entry.theirs not in state]
        if missing:
            raise KeyError(f"missing {missing}")
        ours = {}
        for entry in self.entries:
            if entry.row is None:
                ours[entry.ours] = state[entry.theirs]
        for name, rows in self._rows.items():
            ordered = sorted(rows, key=lambda entry: entry.row)
            ours[name] = torch.stack([state[entry.theirs] for entry in ordered])
        mapped = set(self.theirs)
        return ours, [name for name in state if name not in mapped]

    def load_into(self, model, state):
        """Copy their tensors (``state``, their names) into ``model``'s learnable parameters
        (a ``PromptTuningModel``); returns their names that are not mapped (e.g. frozen CLIP
        weights or derived buffers in a whole-model checkpoint).

        Raises ``KeyError`` when a learnable tensor is not in ``state`` or not mapped, and
        ``ValueError`` on a shape mismatch.
        """
        ours, unmapped = self.to_ours(state)
        params = model.learnable_state_dict()
        unmatched = sorted(set(params) ^ set(ours))
        if unmatched:
            raise KeyError(f"learnable tensors and mapped names differ: {unmatched}")
        wrong = [
            f"{name}: {tuple(value.shape)} there, {tuple(params[name].shape)} here"
            for name, value in ours.items()
            if value.shape != params[name].shape
        ]
        if wrong:
            raise ValueError("shape mismatch: " + "; ".join(wrong))
        with torch.no_grad():
            for name, value in ours.items():
                params[name].copy_(value)
        return unmapped
