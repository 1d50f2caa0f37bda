"""Classification metrics, printed in Dassl's format so existing log parsers keep working."""

from collections import OrderedDict

import numpy as np
import torch

from engine import distributed
from engine.confusion import confusion_matrix


class ClassificationEvaluator:
    def __init__(self, lab2cname, per_class=False, compute_cmat=False):
        self.lab2cname = lab2cname
        self.per_class = per_class
        self.compute_cmat = compute_cmat
        self.reset()

    def reset(self):
        self._pred, self._true, self._index = [], [], []
        self.confusion = None  # counts [C, C] of the last evaluation, with per_class or cmat

    def process(self, logits, labels, index=None):
        """``index``: the samples' dataset indices, needed to merge the ranks of a
        distributed evaluation (whose sampler repeats a few samples to even the shards)."""
        self.process_predictions(logits.argmax(1), labels, index)

    def process_predictions(self, pred, labels, index=None):
        """Like ``process``, with the predicted labels instead of the logits."""
        self._pred.append(torch.as_tensor(pred).cpu())
        self._true.append(torch.as_tensor(labels).cpu())
        if index is not None:
            self._index.append(index.cpu())

    def predictions(self):
        """The predicted and true labels processed so far (of all ranks), as lists."""
        pred, true = self._collect()
        return pred.tolist(), true.tolist()

    def _collect(self):
        """Predictions and labels of this process, or of all ranks with each sample once."""
        pred, true = (
            torch.cat(x) if x else torch.zeros(0, dtype=torch.long)
            for x in (self._pred, self._true)
        )
        if not distributed.is_distributed():
            return pred.numpy(), true.numpy()
        if len(self._index) != len(self._pred):
            raise ValueError("a distributed evaluation needs the samples' indices")
        index = torch.cat(self._index) if self._index else torch.zeros(0, dtype=torch.long)
        parts = distributed.gather_objects((index, pred, true))
        index, pred, true = (torch.cat(x) for x in zip(*parts, strict=True))
        _, keep = np.unique(index.numpy(), return_index=True)  # each sample once, in order
        return pred.numpy()[keep], true.numpy()[keep]

    def evaluate(self):
        """Print Dassl's result block and return the metrics as a dict (percentages)."""
        pred, true = self._collect()
        total = int(true.size)
        correct = int((pred == true).sum())
        acc = 100.0 * correct / max(total, 1)
        results = OrderedDict(
            accuracy=acc,
            error=100.0 - acc,
            macro_f1=100.0 * macro_f1(true, pred),
            total=total,
            correct=correct,
        )
        print("=> result")
        print(f"* total: {total:,}")
        print(f"* correct: {correct:,}")
        print(f"* accuracy: {acc:.1f}%")
        print(f"* error: {100.0 - acc:.1f}%")
        print(f"* macro_f1: {results['macro_f1']:.1f}%")
        if self.per_class:
            results["per_class"] = self._per_class(true, pred)
            accs = [row["accuracy"] for row in results["per_class"].values()]
            results["perclass_accuracy"] = float(np.mean(accs)) if accs else 0.0  # Dassl's key
            print(f"* average: {results['perclass_accuracy']:.1f}%")
        if self.per_class or self.compute_cmat:
            self.confusion = confusion_matrix(true, pred, len(self.lab2cname))
        if self.compute_cmat:
            results["confusion_matrix"] = self.confusion.tolist()
        return results

    def _per_class(self, true, pred):
        print("=> per-class result")
        rows = OrderedDict()
        for label in sorted(set(true.tolist())):
            mask = true == label
            n, c = int(mask.sum()), int((pred[mask] == label).sum())
            acc = 100.0 * c / n
            name = self.lab2cname.get(label, str(label))
            rows[name] = {"label": label, "total": n, "correct": c, "accuracy": acc}
            print(f"* class: {label} ({name})\ttotal: {n:,}\tcorrect: {c:,}\tacc: {acc:.1f}%")
        return rows


def macro_f1(true, pred):
    """Macro-averaged F1 over the classes present in ``true`` (as sklearn with labels=unique)."""
    scores = []
    for label in np.unique(true):
        tp = np.sum((pred == label) & (true == label))
        fp = np.sum((pred == label) & (true != label))
        fn = np.sum((pred != label) & (true == label))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores)) if scores else 0.0
