"""Plots of result rows (PNG and PDF): accuracy against shots, base/new/H bars.

Figures are drawn with matplotlib's object interface and rendered by Agg, without pyplot, so
nothing needs a display and no global figure state is kept.
"""

import math
import os
import zlib
from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from engine.checkpoint import atomic_write
from scripts.naming import BASE2NEW, FEWSHOT
from scripts.results import AVERAGE

# A legend entry's width: its marker and gaps, and each character of its label, at the default
# font size (10 pt), so that long labels (a method's variants) take fewer columns, never cut.
LEGEND_MARKER_IN, LEGEND_CHAR_IN = 0.6, 0.075
LEGEND_ROW_IN = 0.25  # the height a legend row adds below the panels, which keep theirs
BAR_GROUP_IN = 0.25  # per method, the width a base-new panel needs for its three bars
# One colour per method in every figure (matplotlib's tab10); other trainers get one of the
# rest, chosen from their name, so they too keep it from figure to figure.
METHOD_COLORS = {"ZeroshotCLIP": "tab:gray", "CoOp": "tab:blue", "CoCoOp": "tab:cyan",
                 "VPT": "tab:green", "VLP": "tab:orange", "DPT": "tab:red", "IVLP": "tab:purple",
                 "MaPLe": "tab:brown", "KgCoOp": "goldenrod", "ProGrad": "teal",
                 "PromptSRC": "black"}  # fmt: skip
OTHER_COLORS = ("tab:pink", "tab:olive")
LINE_STYLES = ("-", "--", ":", "-.")  # variants (settings, configs) of one method
HATCHES = ("", "//", "..", "xx", "--", "++", "oo")


def method_color(trainer):
    """The colour of ``trainer`` in every plot."""
    if trainer in METHOD_COLORS:
        return METHOD_COLORS[trainer]
    return OTHER_COLORS[zlib.crc32(trainer.encode()) % len(OTHER_COLORS)]


def variant_index(rows, labels):
    """Per label, its rank among the labels of the same trainer (0 for the first variant):
    variants share the method's colour and differ in line style or hatch."""
    seen = defaultdict(list)
    for row, label in zip(rows, labels):
        if label not in seen[row["trainer"]]:
            seen[row["trainer"]].append(label)
    return {label: names.index(label) for names in seen.values() for label in names}


def line_labels(rows):
    """A legend label per row: the trainer, with the setting when a trainer has several, and
    the config when one (trainer, setting, shots) has several (per-shot configs otherwise
    join into one line, as DPT's ep50/ep100/ep200 do)."""
    settings = defaultdict(set)
    configs = defaultdict(set)
    for row in rows:
        settings[row["trainer"]].add(row["setting"])
        configs[(row["trainer"], row["setting"], row["shots"], row["dataset"])].add(row["config"])
    split_config = {key[:2] for key, names in configs.items() if len(names) > 1}
    labels = []
    for row in rows:
        label = row["trainer"]
        if len(settings[row["trainer"]]) > 1:
            label += f" {row['setting']}"
        if (row["trainer"], row["setting"]) in split_config:
            label += f" {row['config']}"
        labels.append(label)
    return labels


def _panels(names, width=3.6, height=3.0):
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(width * cols, height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    return fig, dict(zip(names, axes))


def _dataset_names(rows):
    names = sorted({row["dataset"] for row in rows if row["dataset"] != AVERAGE})
    return names + ([AVERAGE] if any(row["dataset"] == AVERAGE for row in rows) else [])


def _legend(fig, axes):
    """One legend below the panels with every method once, in as many columns as fit."""
    entries = {}
    for ax in axes.values():
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    entry_width = LEGEND_MARKER_IN + LEGEND_CHAR_IN * max(map(len, entries))
    ncols = min(len(entries), max(1, int(fig.get_figwidth() / entry_width)))
    fig.set_figheight(fig.get_figheight() + LEGEND_ROW_IN * math.ceil(len(entries) / ncols))
    fig.legend(entries.values(), entries.keys(), loc="outside lower center", ncols=ncols)


def _save(fig, prefix):
    paths = [f"{prefix}.png", f"{prefix}.pdf"]
    for path, kind in zip(paths, ("png", "pdf")):
        atomic_write(path, lambda f, kind=kind: fig.savefig(f, format=kind, dpi=150))
    return paths


def plot_shots(rows, prefix):
    """Accuracy against shots per dataset and averaged; one line per method, ± std bands."""
    fig = shots_figure(rows)
    return [] if fig is None else _save(fig, prefix)


def shots_figure(rows):
    """The figure of ``plot_shots``, or None when no row has an accuracy."""
    rows = [r for r in rows if r.get("accuracy") is not None and (r["shots"] or 0) > 0]
    if not rows:
        return None
    fig, axes = _panels(_dataset_names(rows))
    labels = line_labels(rows)
    variants = variant_index(rows, labels)
    lines = defaultdict(list)  # (dataset, label) -> rows
    for row, label in zip(rows, labels):
        lines[(row["dataset"], label)].append(row)
    for (dataset, label), points in sorted(lines.items()):
        points.sort(key=lambda r: r["shots"])
        shots = [r["shots"] for r in points]
        mean = np.array([r["accuracy"] for r in points])
        std = np.array([r["accuracy_std"] for r in points])
        color = method_color(points[0]["trainer"])
        style = LINE_STYLES[variants[label] % len(LINE_STYLES)]
        ax = axes[dataset]
        ax.plot(shots, mean, marker="o", label=label, color=color, linestyle=style)
        ax.fill_between(shots, mean - std, mean + std, color=color, alpha=0.2)
    all_shots = sorted({row["shots"] for row in rows})
    for dataset, ax in axes.items():
        ax.set_title(dataset)
        ax.set_xscale("log", base=2)
        ax.set_xticks(all_shots, [str(s) for s in all_shots])
        ax.set_xlabel("shots per class")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
    _legend(fig, axes)
    return fig


def plot_base_new(rows, prefix):
    """Bars of base, new and H accuracy per dataset and averaged, one bar per method."""
    fig = base_new_figure(rows)
    return [] if fig is None else _save(fig, prefix)


def base_new_figure(rows):
    """The figure of ``plot_base_new``, or None when no row has an H."""
    rows = [r for r in rows if r.get("H") is not None]
    if not rows:
        return None
    labels = line_labels(rows)
    methods = list(dict.fromkeys(labels))
    variants = variant_index(rows, labels)
    fig, axes = _panels(_dataset_names(rows), width=max(3.6, 0.6 + BAR_GROUP_IN * len(methods)))
    width = 0.8 / len(methods)
    groups = np.arange(3)
    for row, label in zip(rows, labels):
        i = methods.index(label)
        x = groups + (i - (len(methods) - 1) / 2) * width
        ax = axes[row["dataset"]]
        hatch = HATCHES[variants[label] % len(HATCHES)]
        ax.bar(x, [row["base"], row["new"], row["H"]], width, label=label,
               color=method_color(row["trainer"]), hatch=hatch, edgecolor="white")  # fmt: skip
        ax.errorbar(x[:2], [row["base"], row["new"]], yerr=[row["base_std"], row["new_std"]],
                    fmt="none", ecolor="black", capsize=2)  # fmt: skip
    for dataset, ax in axes.items():
        ax.set_title(dataset)
        ax.set_xticks(groups, ["base", "new", "H"])
        ax.set_ylabel("accuracy (%)")
        ax.grid(axis="y", alpha=0.3)
    _legend(fig, axes)
    return fig


def plot_all(rows, out_dir):
    """Every plot the rows allow, into ``out_dir``; returns the paths written."""
    fewshot = [row for row in rows if row["protocol"] == FEWSHOT]
    base2new = [row for row in rows if row["protocol"] == BASE2NEW]
    return plot_shots(fewshot, os.path.join(out_dir, "accuracy_vs_shots")) + plot_base_new(
        base2new, os.path.join(out_dir, "base_new")
    )
