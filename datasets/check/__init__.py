"""``python -m datasets.check --root DATA [--name NAME ...]``: is each benchmark laid out as
this code expects, what is missing, and what to do about it.

For each dataset it looks for the folder under DATA, then for the files and folders of its
layout, then reads everything the way a run would (split file, annotation files, class
folders, that every listed image exists) without writing anything; with ``--decode`` it also
decodes every image and lists the unreadable ones. Exit status 1 when a dataset named with
--name, or any dataset whose folder exists, is not usable.
"""

import argparse
import contextlib
import io
import os
from concurrent.futures import ThreadPoolExecutor

from tabulate import tabulate

import datasets  # noqa: F401  (registers the datasets)
from datasets.benchmark import BenchmarkDataset
from engine.config import get_cfg_default
from engine.data.images import BadImageError, read_image
from engine.registry import DATASET_REGISTRY

OK, ABSENT, INCOMPLETE, BROKEN = "ok", "not installed", "incomplete", "error"
# CoOp's order: ImageNet, the ten other few-shot benchmarks, then ImageNet's shifts.
COOP_ORDER = (
    "ImageNet",
    "Caltech101",
    "OxfordPets",
    "StanfordCars",
    "OxfordFlowers",
    "Food101",
    "FGVCAircraft",
    "SUN397",
    "DescribableTextures",
    "EuroSAT",
    "UCF101",
    "ImageNetV2",
    "ImageNetSketch",
    "ImageNetA",
    "ImageNetR",
)


def benchmarks():
    """The registered benchmark classes by name, in CoOp's order (others after them)."""
    registered = DATASET_REGISTRY.names()
    names = [n for n in COOP_ORDER if n in registered]
    names += [n for n in registered if n not in COOP_ORDER]
    classes = {name: DATASET_REGISTRY.get(name) for name in names}
    return {name: cls for name, cls in classes.items() if issubclass(cls, BenchmarkDataset)}


def _normalise(name):
    return name.lower().replace("-", "").replace("_", "")


def resolve(names, known):
    """Registry names for ``names``, which may also be folder names or config file stems
    (``caltech-101``, ``imagenet_sketch``), in any case."""
    aliases = {}
    for name, cls in known.items():
        aliases[_normalise(name)] = name
        aliases[_normalise(cls.dataset_dir)] = name
    resolved = []
    for name in names:
        if _normalise(name) not in aliases:
            raise SystemExit(
                f"Unknown dataset '{name}'; known: {', '.join(known)} (ImageFolder is not "
                "checked here: point DATASET.ROOT at its class folders and run)"
            )
        resolved.append(aliases[_normalise(name)])
    return resolved


class Report:
    """The outcome for one dataset: status, counts and advice lines."""

    def __init__(self, name, cls, status, advice=(), counts=None):
        self.name = name
        self.cls = cls
        self.status = status
        self.advice = list(advice)
        self.counts = counts

    def row(self):
        counts = self.counts or {}
        cells = [counts.get(key) for key in ("classes", "train", "val", "test")]
        return [self.name, self.cls.dataset_dir + "/", self.status] + [
            "" if value is None else f"{value:,}" for value in cells
        ]


def _decode_error(path):
    try:
        read_image(path)
    except BadImageError as err:
        cause = err.__cause__ or err
        return f"{type(cause).__name__}: {cause}"
    return None


def unreadable_images(dataset):
    """``[(path, reason)]`` for the images of every split that cannot be decoded."""
    splits = (dataset.train_x, dataset.val or [], dataset.test)
    paths = list(dict.fromkeys(item.impath for split in splits for item in split))
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        reasons = pool.map(_decode_error, paths)
    return [(path, reason) for path, reason in zip(paths, reasons) if reason]


def check_dataset(name, cls, root, decode=False):
    dataset_dir = os.path.join(root, cls.dataset_dir)
    if not os.path.isdir(dataset_dir):
        return Report(
            name,
            cls,
            ABSENT,
            [f"To use it, create {dataset_dir} with this layout:", cls.layout_text()],
        )
    problems = cls.layout_problems(dataset_dir)
    if problems:
        return Report(
            name,
            cls,
            INCOMPLETE,
            [*problems, "Expected layout:", cls.layout_text(), f"See {name} in DATASETS.md."],
        )
    cfg = get_cfg_default()
    cfg.DATASET.ROOT = root
    cfg.DATASET.NAME = name
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            dataset = cls(cfg, dry_run=True)
    except Exception as err:  # every failure is reported, with its own message
        return Report(name, cls, BROKEN, [f"{type(err).__name__}: {err}"])
    counts = {
        "classes": dataset.num_classes,
        "train": len(dataset.train_x),
        "val": None if dataset.val is None else len(dataset.val),
        "test": len(dataset.test),
    }
    advice = []
    if decode:
        bad = unreadable_images(dataset)
        if bad:
            summary = (
                f"{len(bad)} unreadable image(s): fix or remove them, or train with "
                "DATASET.ON_BAD_IMAGE skip"
            )
            return Report(name, cls, BROKEN, [summary] + [f"{p}: {w}" for p, w in bad], counts)
    if cls.split_file and not os.path.isfile(os.path.join(dataset_dir, cls.split_file)):
        advice.append(f"{cls.split_file} is missing: {cls.split_file_advice}.")
    if cls.standard_num_classes and dataset.num_classes != cls.standard_num_classes:
        advice.append(
            f"{dataset.num_classes} classes, but the full dataset has "
            f"{cls.standard_num_classes}: is the download complete?"
        )
    return Report(name, cls, OK, advice, counts)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m datasets.check",
        description="Check the benchmark datasets under a data root (CoOp's layout).",
    )
    parser.add_argument("--root", required=True, help="the folder holding the datasets")
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        help="a dataset to check (repeatable; e.g. Caltech101, oxford_pets); default: all",
    )
    parser.add_argument(
        "--decode",
        action="store_true",
        help="also decode every image of every split (slow on large datasets)",
    )
    args = parser.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    if not os.path.isdir(root):
        print(f"--root '{root}' is not a folder")
        return 1
    known = benchmarks()
    names = resolve(args.name, known) if args.name else list(known)

    reports = [check_dataset(name, known[name], root, args.decode) for name in names]
    print(f"Datasets under {root}\n")
    headers = ["Dataset", "Folder", "Status", "Classes", "Train", "Val", "Test"]
    print(tabulate([r.row() for r in reports], headers=headers, disable_numparse=True))
    for report in reports:
        if report.advice and (report.status != ABSENT or args.name):
            print(f"\n{report.name} ({report.status}):")
            for line in report.advice:
                print("  " + line.replace("\n", "\n  "))
    absent = [r.name for r in reports if r.status == ABSENT]
    if absent and not args.name:
        print(f"\nNot installed: {', '.join(absent)} (use --name X to see the expected layout).")
    failed = [r for r in reports if r.status != OK and (r.status != ABSENT or bool(args.name))]
    return 1 if failed else 0
