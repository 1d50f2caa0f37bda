"""Collect every run below a folder into result tables (mean ± std over seeds).

    python -m scripts.parse_results ROOT [ROOT ...] [--out DIR]

Reads our run directories (``results.json``) and Dassl-style ones (``log.txt`` with
``* accuracy: X%`` lines), so CoOp's and CoCoOp's old output folders parse too. Prints one
table per protocol (few-shot, base-to-new, cross-dataset, domain generalisation) and the
missing or unfinished runs. With ``--out``: ``summary.csv``, ``summary.json`` and the plots
(PNG and PDF).
"""

import argparse
import csv
import io
import json
import os
import sys

from tabulate import tabulate

from engine.checkpoint import RunWriteError, atomic_write, saving
from scripts.naming import BASE2NEW, CROSS, DG, FEWSHOT, OTHER, shown
from scripts.results import AVERAGE, summarize
from scripts.runs import RESULTS, find_run_dirs, read_run

TITLES = {
    FEWSHOT: "Few-shot accuracy (%)",
    BASE2NEW: "Base-to-new accuracy (%): trained on the base classes",
    CROSS: "Cross-dataset accuracy (%): trained on the source, evaluated on each dataset",
    DG: "Domain generalisation accuracy (%): trained on ImageNet, evaluated on its variants",
    OTHER: "Other runs (folders not named by a known layout)",
}
METHOD_HEADERS = ["Trainer", "Config", "Setting", "Shots"]
CSV_FIELDS = ["protocol", "trainer", "config", "setting", "shots", "dataset", "n_seeds", "seeds",
              "accuracy", "accuracy_std", "base", "base_std", "new", "new_std", "H"]  # fmt: skip


def collect(roots):
    """Every run below the ``roots``."""
    for root in roots:
        if not os.path.isdir(root):
            raise FileNotFoundError(f"'{root}' is not a folder")
    return [read_run(path) for root in roots for path in find_run_dirs(root)]


def mean_std(row, key):
    """``mean ± std`` over the seeds; a single seed has no spread to show."""
    if row.get(key) is None:
        return "—"
    if row.get("n_seeds") == 1:
        return f"{row[key]:.2f}"
    return f"{row[key]:.2f} ± {row[key + '_std']:.2f}"


def _method(row):
    setting = row["setting"]
    if row["protocol"] == OTHER:
        setting = shown(setting)
    return (row["trainer"], row["config"], setting, "" if row["shots"] is None else row["shots"])


def pivot_table(rows):
    """One line per method, one column per dataset: ``mean ± std (seeds)``."""
    datasets = sorted({row["dataset"] for row in rows if row["dataset"] != AVERAGE})
    if any(row["dataset"] == AVERAGE for row in rows):
        datasets.append(AVERAGE)
    lines = {}
    for row in rows:
        cells = lines.setdefault(_method(row), dict.fromkeys(datasets, "—"))
        if row.get("accuracy") is not None:
            cells[row["dataset"]] = f"{mean_std(row, 'accuracy')} ({row['n_seeds']})"
    table = [[*method, *cells.values()] for method, cells in lines.items()]
    return tabulate(
        table, headers=METHOD_HEADERS + datasets, tablefmt="github", disable_numparse=True
    )


def base2new_table(rows):
    table = [
        [*_method(row), row["dataset"], mean_std(row, "base"), mean_std(row, "new"),
         "—" if row.get("H") is None else f"{row['H']:.2f}", row["n_seeds"]]
        for row in rows
    ]  # fmt: skip
    headers = METHOD_HEADERS + ["Dataset", "Base", "New", "H", "Seeds"]
    return tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)


def format_report(summary):
    parts = []
    for protocol, title in TITLES.items():
        rows = [row for row in summary.rows if row["protocol"] == protocol]
        if rows:
            table = base2new_table(rows) if protocol == BASE2NEW else pivot_table(rows)
            parts.append(f"{title}\n\n{table}\n")
    if summary.warnings:
        parts.append("\n".join(summary.warnings) + "\n")
    if summary.incomplete:
        lines = [
            f"Missing or unfinished runs ({len(summary.incomplete)}), left out of the numbers:"
        ]
        for run in summary.incomplete:
            if run.path:  # the folder names the run
                lines.append(f"  {shown(run.path)}: {run.why}")
                continue
            i = run.id
            what = f"{i.trainer} {i.config} {i.setting} {i.shots} shots, {i.dataset}"
            what += f" ({i.measure})" if i.measure != "accuracy" else ""
            lines.append(f"  {what}, seed {i.seed}: {run.why}")
        parts.append("\n".join(lines) + "\n")
    if not summary.runs:
        parts.append("No runs found.\n")
    return "\n".join(parts)


def write_csv(rows, path):
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "seeds": " ".join(str(s) for s in row["seeds"])})
    atomic_write(path, lambda f: f.write(text.getvalue()), mode="w")


def write_json(summary, path):
    data = {
        "rows": summary.rows,
        "warnings": summary.warnings,
        "incomplete": [run.as_dict() for run in summary.incomplete],
        "runs": [run.as_dict() for run in summary.runs],
    }
    atomic_write(path, lambda f: json.dump(data, f, indent=1), mode="w")


def export(summary, out_dir):
    """CSV, JSON and plots into ``out_dir``; returns the paths written. A write that fails
    (a full disk) is a ``RunWriteError`` naming the file."""
    from scripts.plots import plot_all  # matplotlib only when plots are asked for

    # not results.json: a run's file; --out may lie below the folders parsed
    paths = [os.path.join(out_dir, "summary.csv"), os.path.join(out_dir, "summary.json")]
    with saving(f"the summary in '{out_dir}'"):
        os.makedirs(out_dir, exist_ok=True)
        write_csv(summary.rows, paths[0])
        write_json(summary, paths[1])
        return paths + plot_all(summary.rows, out_dir)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("roots", nargs="+", help="folders holding run directories")
    parser.add_argument("--out", help="write summary.csv, summary.json and plots here")
    args = parser.parse_args(argv)
    summary = summarize(collect(args.roots))
    print(format_report(summary))
    if args.out:
        for path in export(summary, args.out):
            print(f"Wrote {path}")
    return summary


def unreadable_error(summary):
    """The error line for runs whose results.json could not be read, or ""."""
    paths = [os.path.join(run.path, RESULTS) for run in summary.incomplete if run.unreadable]
    if not paths:
        return ""
    return (
        f"error: could not read {', '.join(paths)} (the reason is listed above); the tables "
        "leave those runs out"
    )


def cli(argv=None):
    """``main``, with errors on stderr: exit status 2 for a bad folder or an unreadable
    results.json (the tables of the other runs are printed first)."""
    try:
        error = unreadable_error(main(argv))
    except (FileNotFoundError, ValueError, RunWriteError) as err:
        error = f"error: {err}"
    if error:
        print(error, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(cli())
