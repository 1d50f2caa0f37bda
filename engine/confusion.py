"""Confusion matrices: the counts, and a PNG that stays legible for hundreds of classes.

The figure is drawn with matplotlib's object interface and rendered by Agg (no display, no
pyplot state), as ``scripts/plots.py`` does.
"""

import math

import numpy as np

from engine.checkpoint import atomic_write

CELL_IN = 0.14  # side of one class's cell, inches: about an 8 pt line of text
MAX_MATRIX_IN = 55.0  # the matrix never grows beyond this (5,500 px at DPI)
LABEL_MARGIN_IN = 3.0  # room for the class names on the left and at the bottom
MIN_FONT_PT = 5.0  # smaller names are unreadable: then only every k-th class is named
DPI = 100


def confusion_matrix(true, pred, n_classes):
    """Counts [n_classes, n_classes]: row = true class, column = predicted class."""
    cmat = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cmat, (np.asarray(true), np.asarray(pred)), 1)
    return cmat


def label_layout(n_classes):
    """Cell side (inches), font size (points) and step between named classes for a matrix of
    ``n_classes``: cells shrink past ``MAX_MATRIX_IN``; names never go below
    ``MIN_FONT_PT``, so on huge matrices only every k-th class is named."""
    cell = min(CELL_IN, MAX_MATRIX_IN / n_classes)
    font = cell * 72 * 0.8
    step = max(1, math.ceil(MIN_FONT_PT / font))
    return cell, min(8.0, font * step), step


def plot_confusion_matrix(cmat, classnames, path, title="Confusion matrix"):
    """Write the row-normalised matrix as a PNG: each row is a true class, its cells the
    fraction predicted as each class, on a square-root colour scale so that rare confusions
    still show. Rows are labelled with the class name and its accuracy."""
    from matplotlib.colors import PowerNorm
    from matplotlib.figure import Figure

    cmat = np.asarray(cmat)
    n = len(classnames)
    if cmat.shape != (n, n):
        raise ValueError(f"confusion matrix of shape {cmat.shape} for {n} class names")
    totals = cmat.sum(axis=1)
    fractions = cmat / np.maximum(totals, 1)[:, None]
    accuracy = [f"{100 * fractions[i, i]:.0f}%" if totals[i] else "n/a" for i in range(n)]
    overall = 100 * np.trace(cmat) / max(cmat.sum(), 1)
    mean_per_class = 100 * np.mean([fractions[i, i] for i in range(n) if totals[i]] or [0.0])

    cell, font, step = label_layout(n)
    side = n * cell + LABEL_MARGIN_IN
    fig = Figure(figsize=(side + 1.2, side + 0.6), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(fractions, cmap="Blues", norm=PowerNorm(0.5, vmin=0, vmax=1))
    ticks = np.arange(0, n, step)
    names = [str(classnames[i])[:40] for i in ticks]
    ax.set_xticks(ticks, names, rotation=90, fontsize=font)
    ax.set_yticks(ticks, [f"{name} ({accuracy[i]})" for name, i in zip(names, ticks)],
                  fontsize=font)  # fmt: skip
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (accuracy)")
    ax.set_title(
        f"{title}\n{n} classes, {int(cmat.sum()):,} images: accuracy {overall:.1f}%, "
        f"mean per-class accuracy {mean_per_class:.1f}%"
    )
    fig.colorbar(image, ax=ax, shrink=0.5, label="fraction of the true class")
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    return path
