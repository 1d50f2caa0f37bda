"""Few-shot subsets and base/new class subsets, drawn exactly as CoOp's code draws them."""

import math
import random

from engine.data.datum import Datum

SUBSAMPLE_CHOICES = ("all", "base", "new")


def split_dataset_by_label(data_source):
    """Items grouped by label; the groups keep the order of each label's first appearance."""
    groups = {}
    for item in data_source:
        groups.setdefault(item.label, []).append(item)
    return groups


def generate_fewshot_dataset(*data_sources, num_shots=-1):
    """Per class, ``random.sample(items, num_shots)`` from each source (all items when fewer).

    Draws from the GLOBAL ``random`` module on purpose: the run seeds it at start-up, and this
    is what makes the subsets equal to CoOp's for the same seed. Like Dassl, returns one list
    for one source and a list of lists otherwise; ``num_shots < 1`` returns the sources as given.
    """
    if num_shots < 1:
        return data_sources[0] if len(data_sources) == 1 else data_sources
    output = []
    for source in data_sources:
        subset = []
        for label, items in split_dataset_by_label(source).items():
            if len(items) >= num_shots:
                subset.extend(random.sample(items, num_shots))
            else:
                print(
                    f"Warning: class '{items[0].classname}' (label {label}) has only "
                    f"{len(items)} items for {num_shots} shots; using all {len(items)}"
                )
                subset.extend(items)
        output.append(subset)
    return output[0] if len(output) == 1 else output


def subsample_classes(*sources, subsample="all"):
    """CoCoOp's base/new split: the labels of the first source, sorted; base = the first
    ceil(n/2), new = the rest, relabelled from 0 (class names kept). Returns a tuple with one
    entry per source; ``None`` sources stay ``None``."""
    if subsample not in SUBSAMPLE_CHOICES:
        raise ValueError(
            f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLE_CHOICES)}; "
            f"got '{subsample}'"
        )
    if subsample == "all":
        return sources
    labels = sorted({item.label for item in sources[0]})
    half = math.ceil(len(labels) / 2)
    selected = labels[:half] if subsample == "base" else labels[half:]
    relabel = {old: new for new, old in enumerate(selected)}
    return tuple(
        None
        if source is None
        else [
            Datum(item.impath, relabel[item.label], item.domain, item.classname)
            for item in source
            if item.label in relabel
        ]
        for source in sources
    )
