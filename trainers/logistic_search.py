"""The linear probe's classifier: L2-regularised logistic regression on frozen image features,
its inverse regularisation strength C chosen on the validation features as the lpclip protocol
of CoOp and the original DPT code does (``lpclip/linear_probe.py``, after CLIP's paper,
appendix A.3):

1. fit with every C of a coarse grid (by default 1e6, 1e4, ..., 1e-6) and keep the one with
   the best validation accuracy (the first of equals);
2. then ``steps`` rounds on an interval around it, [C/10, 10 C] at first: fit at both ends,
   keep the better end (the lower one on a tie) as the classifier, and halve the interval in
   log10 towards that end.

The classifier of the last round is the result (the grid's best when ``steps`` is 0).
scikit-learn's ``LogisticRegression`` with lbfgs is deterministic: the same features give the
same C and the same weights.
"""

import math
import warnings
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Trial:
    c: float
    val_accuracy: float  # percent
    converged: bool  # lbfgs stopped before max_iter


@dataclass
class SearchResult:
    c: float  # the chosen C
    weight: np.ndarray  # [C, E] (one row per class, also for two classes)
    bias: np.ndarray  # [C]
    val_accuracy: float  # percent, of the chosen classifier
    trials: list = field(default_factory=list)  # every fit, in order (each C once)


def fit_logistic(features, labels, c, max_iter):
    """lpclip's classifier (L2 is scikit-learn's default penalty); lbfgs that stops at
    ``max_iter`` is recorded in the trial, not warned about once per fit."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression  # heavy: imported when fitting

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(solver="lbfgs", max_iter=max_iter, C=c).fit(features, labels)


def accuracy(classifier, features, labels):
    return 100.0 * float(np.mean(classifier.predict(features) == labels))


def search(train, val, grid, steps, max_iter):
    """``train`` and ``val`` are ``(features [N, E], labels [N])``; returns a
    ``SearchResult``. Labels are 0..C-1 and every class has training features."""
    trials, fitted = [], {}

    def evaluate(c):
        """The classifier at ``c`` and its val accuracy; a C met again (the interval keeps
        one end) is not fitted again: the fit is deterministic."""
        if c not in fitted:
            classifier = fit_logistic(*train, c, max_iter)
            score = accuracy(classifier, *val)
            trials.append(Trial(float(c), score, bool(np.max(classifier.n_iter_) < max_iter)))
            fitted[c] = classifier, score
        return fitted[c]

    coarse = [evaluate(c) for c in grid]
    best = int(np.argmax([score for _, score in coarse]))
    chosen_c, (classifier, score) = grid[best], coarse[best]
    low, high = chosen_c / 10, chosen_c * 10
    for _ in range(steps):
        low_fit, high_fit = evaluate(low), evaluate(high)
        mid = 10 ** ((math.log10(low) + math.log10(high)) / 2)
        if low_fit[1] < high_fit[1]:
            chosen_c, (classifier, score) = high, high_fit
            low = mid
        else:
            chosen_c, (classifier, score) = low, low_fit
            high = mid
    weight, bias = classifier_rows(classifier, int(np.max(train[1])) + 1)
    return SearchResult(float(chosen_c), weight, bias, score, trials)


def classifier_rows(classifier, n_classes):
    """One weight row and bias per class, whose argmax is the classifier's prediction.
    scikit-learn keeps one row for two classes (the second class's score against 0)."""
    weight, bias = classifier.coef_, classifier.intercept_
    if n_classes == 2 and weight.shape[0] == 1:
        weight = np.concatenate([np.zeros_like(weight), weight])
        bias = np.concatenate([np.zeros_like(bias), bias])
    return weight, bias
