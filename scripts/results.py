"""Runs -> result rows: mean ± std over seeds, averages over datasets, base/new/H.

An experiment is a trainer, config, setting and shot count on one dataset; its runs differ
only in the seed. Runs whose results.json record different experiment digests (settings that
can change a result, other than the seed) are never averaged together: they become rows of
their own, their setting marked with the digest, and a warning names the keys that differ.
The std is NumPy's default (population), as in CoOp's parser. Within a
protocol every experiment is expected on every dataset and seed seen there: what is absent
is listed as missing, and an average over datasets is only given when no run of it is
missing or unfinished (never an average over whatever happened to finish).
"""

import os
from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np
import yaml

from engine.config import describe_differences, result_differences
from engine.rundir import CONFIG_FILE
from scripts.naming import BASE2NEW, CROSS, DG, FEWSHOT, OTHER, RunId
from scripts.runs import Run
from scripts.spec import is_closed_set

AVERAGE = "Average"
PROTOCOL_ORDER = {FEWSHOT: 0, BASE2NEW: 1, CROSS: 2, DG: 3, OTHER: 4}


def method_of(run_id):
    """The row an experiment belongs to (all but dataset, measure and seed)."""
    return (run_id.protocol, run_id.trainer, run_id.config, run_id.setting, run_id.shots)


def _sort_key(method):
    protocol, trainer, config, setting, shots = method
    # shots before config: per-shot configs (ep50/ep100/ep200) then list in shot order
    return (PROTOCOL_ORDER[protocol], trainer, setting, -1 if shots is None else shots, config)


def harmonic_mean(base, new):
    return 2 * base * new / (base + new) if base + new > 0 else 0.0


@dataclass
class Summary:
    rows: list[dict]
    incomplete: list[Run]  # unfinished runs and runs expected but absent
    runs: list[Run] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _expected_missing(runs):
    """Runs absent from a protocol's grid of (method, dataset, measure, seed)."""
    grids = defaultdict(lambda: (set(), set(), set(), set()))
    present = set()
    for run in runs:
        methods, datasets, measures, seeds = grids[run.id.protocol]
        methods.add(method_of(run.id))
        datasets.add(run.id.dataset)
        measures.add(run.id.measure)
        seeds.add(run.id.seed)
        present.add(run.id)
    missing = []
    for protocol, (methods, datasets, measures, seeds) in grids.items():
        if protocol == OTHER:  # no layout: nothing to infer
            continue
        for method in methods:
            _, trainer, config, setting, shots = method
            for dataset in sorted(datasets):
                for measure in sorted(measures - _not_measured(protocol, trainer)):
                    for seed in sorted(seeds, key=lambda s: -1 if s is None else s):
                        run_id = RunId(protocol, dataset, trainer, config, shots, setting,
                                       seed, measure)  # fmt: skip
                        if run_id not in present:
                            missing.append(Run("", run_id, False, why="missing"))
    return missing


def _not_measured(protocol, trainer):
    """Measures a trainer has no runs of: a closed-set one (a linear probe) on new classes."""
    return {"new"} if protocol == BASE2NEW and is_closed_set(trainer) else set()


def _stats(values):
    """mean, std (population) and count of a {seed: value} dict."""
    array = np.array(list(values.values()), dtype=float)
    return float(array.mean()), float(array.std()), len(array)


def _average_over_datasets(per_dataset):
    """{seed: mean over datasets} from {dataset: {seed: value}} with the same seeds in all."""
    seeds = set.intersection(*(set(values) for values in per_dataset.values()))
    return {s: float(np.mean([values[s] for values in per_dataset.values()])) for s in seeds}


def _accuracy_row(values):
    mean, std, n = _stats(values)
    return {"accuracy": mean, "accuracy_std": std, "n_seeds": n, "seeds": sorted(values)}


def _base2new_row(base, new, base_only=False):
    """Base, new and H over the seeds that have both; ``base_only`` (a closed-set trainer):
    base alone, new and H left empty."""
    seeds = sorted(set(base) if base_only else set(base) & set(new))
    if not seeds:
        return {"n_seeds": 0, "seeds": []}
    b_mean, b_std, n = _stats({s: base[s] for s in seeds})
    if base_only:
        return {"base": b_mean, "base_std": b_std, "n_seeds": n, "seeds": seeds}
    new = {s: new[s] for s in seeds}
    n_mean, n_std, _ = _stats(new)
    return {"base": b_mean, "base_std": b_std, "new": n_mean, "new_std": n_std,
            "H": harmonic_mean(b_mean, n_mean), "n_seeds": n, "seeds": seeds}  # fmt: skip


def _saved_config(run):
    """The run's config.yaml as a dict, or None."""
    try:
        with open(os.path.join(run.path, CONFIG_FILE)) as f:
            return yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None


def split_variants(runs):
    """``runs`` with the runs of experiments that mix experiment digests moved to rows of
    their own (setting ``<setting> [<digest>]``), and a warning per such experiment."""
    digests = defaultdict(dict)  # experiment -> digest -> a run that has it
    for run in runs:
        if run.finished:
            digests[_experiment(run)].setdefault(run.digest, run)
    warnings, split = [], []
    for experiment, variants in digests.items():
        if len(variants) < 2:
            continue
        split.append(experiment)
        first, *others = variants.values()
        import trainers  # noqa: F401  (the methods declare their result-neutral keys)

        keys = []
        for other in others:
            a, b = _saved_config(first), _saved_config(other)
            diffs = result_differences(a, b, with_seed=False) if a and b else []
            keys.append(describe_differences(diffs, f"in {_label(first)}", f"in {_label(other)}")
                        or f"{_label(other)} records no config to compare")  # fmt: skip
        i = first.id
        warnings.append(
            f"Warning: {i.trainer} {i.config} {i.setting} {i.shots} shots on {i.dataset}: "
            f"runs of {len(variants)} different settings, shown as separate rows, never "
            f"averaged: {'; '.join(keys)}"
        )
    if not split:
        return runs, warnings
    return [
        replace(run, id=replace(run.id, setting=f"{run.id.setting} [{_label(run)}]"))
        if _experiment(run) in split else run
        for run in runs
    ], warnings  # fmt: skip


ZEROSHOT = "ZeroshotCLIP"
BASELINE_SETTING = "baseline of the runs"


def zeroshot_baselines(runs):
    """Zero-shot CLIP as the trained runs measured it (results.json's zeroshot_accuracy, on
    the same split and classes), as runs of their own: trainer ZeroshotCLIP, config the
    backbone, setting ``baseline of the runs``; one per protocol, dataset, backbone, shots,
    seed and measure. Left out where ZeroshotCLIP runs of the dataset are there already. A
    warning names baselines that disagree (runs of other data or templates in one table)."""
    evaluated = {(r.id.protocol, r.id.dataset) for r in runs if r.id.trainer == ZEROSHOT}
    baselines, values = {}, defaultdict(set)
    for run in runs:
        if not run.finished or run.zeroshot is None or run.id.trainer == ZEROSHOT:
            continue
        if (run.id.protocol, run.id.dataset) in evaluated:
            continue
        backbone = _backbone_name(run.backbone)
        run_id = replace(run.id, trainer=ZEROSHOT, config=backbone, setting=BASELINE_SETTING)
        baselines.setdefault(run_id, Run(run.path, run_id, True, run.zeroshot))
        values[run_id].add(round(run.zeroshot, 6))
    measures = defaultdict(set)  # base-to-new: a baseline needs base and new (evaluations
    for i in baselines:  # of a trained run record none, so new is often absent)
        measures[replace(i, measure="")].add(i.measure)
    baselines = {
        i: run
        for i, run in baselines.items()
        if i.protocol != BASE2NEW or measures[replace(i, measure="")] >= {"base", "new"}
    }
    warnings = [
        f"Warning: zero-shot CLIP ({i.config}) on {i.dataset}, {i.shots} shots, seed {i.seed}: "
        f"the runs measured {', '.join(f'{v:.2f}' for v in sorted(found))}; the table shows "
        "the first"
        for i, found in values.items()
        if len(found) > 1
    ]
    return list(baselines.values()), warnings


def _backbone_name(backbone):
    """``ViT-B/16`` as it is; a checkpoint file by its name."""
    if not backbone:
        return "?"
    return os.path.basename(backbone) if os.path.splitext(backbone)[1] else backbone


def _experiment(run):
    """The runs that share a config: a method on one dataset (base-to-new: base and new)."""
    return method_of(run.id), run.id.dataset


def _label(run):
    return f"cfg {run.digest[:7]}" if run.digest else "cfg unrecorded"


def summarize(runs):
    """Rows (one per experiment, plus an ``Average`` per method) and the incomplete runs."""
    runs, warnings = split_variants(runs)
    incomplete = [run for run in runs if not run.finished] + _expected_missing(runs)
    baselines, disagreeing = zeroshot_baselines(runs)
    warnings += disagreeing
    values = defaultdict(lambda: defaultdict(dict))  # method -> (dataset, measure) -> seeds
    datasets = defaultdict(set)
    first = {}  # the run counted for each experiment and seed
    for run in runs + baselines:
        datasets[run.id.protocol].add(run.id.dataset)
        if not run.finished:
            continue
        if run.id in first:  # e.g. the same layout below two of the folders parsed
            why = f"duplicate of {first[run.id].path}: left out"
            incomplete.append(Run(run.path, run.id, False, run.accuracy, why))
            continue
        first[run.id] = run
        values[method_of(run.id)][(run.id.dataset, run.id.measure)][run.id.seed] = run.accuracy
    incomplete_methods = {method_of(run.id) for run in incomplete}
    rows = []
    for method in sorted(values, key=_sort_key):
        protocol = method[0]
        by_dataset = defaultdict(dict)  # dataset -> measure -> {seed: value}
        for (dataset, measure), seeds in values[method].items():
            by_dataset[dataset][measure] = seeds
        names = sorted(datasets[protocol])
        if len(names) > 1 and protocol != OTHER:
            complete = method not in incomplete_methods and set(by_dataset) == set(names)
            by_dataset[AVERAGE] = {
                measure: _average_over_datasets({d: by_dataset[d][measure] for d in names})
                for measure in by_dataset[names[0]]
            } if complete else {}  # fmt: skip
            names.append(AVERAGE)
        for dataset in names:
            if dataset not in by_dataset:
                continue
            measures = by_dataset[dataset]
            row = dict(zip(("protocol", "trainer", "config", "setting", "shots"), method))
            row["dataset"] = dataset
            if protocol == BASE2NEW:
                base_only = bool(_not_measured(protocol, method[1]))
                row.update(_base2new_row(measures.get("base", {}), measures.get("new", {}),
                                         base_only))  # fmt: skip
            elif measures:
                row.update(_accuracy_row(measures["accuracy"]))
            else:
                row.update(n_seeds=0, seeds=[])  # an average left out: runs are missing
            rows.append(row)
    return Summary(rows, incomplete, runs, warnings)
