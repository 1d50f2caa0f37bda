"""How long a dataset takes to start on an ImageNet-size folder of small files.

    nice -n 10 python tools/bench_dataset_startup.py [--files 100000] [--classes 400]

Writes ``--files`` tiny JPEGs as ``<root>/food-101/images/<class>/<n>.jpg`` (a class-folder
benchmark, as SUN397 or Food-101 are laid out), then times each start-up step on it, and
whole constructions of Food101 (first run: list, split, sample, save; later runs: read the
split and the few-shot cache) and of ImageNet over the same files (train and val both link
to them, so it lists twice as many). Also times the per-file ``stat`` calls that listing and
split reading used before, for comparison. The file system's cache is warm after the files
are written; a cold start (or a network file system) is slower, most of all per-file calls.
"""

import argparse
import io
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import redirect_stdout

import numpy as np
from PIL import Image
from tabulate import tabulate

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import datasets  # noqa: E402, F401  (registers the datasets)
from engine.config import get_cfg_default  # noqa: E402
from engine.data import (  # noqa: E402
    build_dataset,
    generate_fewshot_dataset,
    list_class_dirs,
    list_images,
    read_and_split_data,
    read_items,
    read_split,
    save_split,
    write_items,
)


def tiny_jpeg():
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def write_files(image_dir, n_files, n_classes):
    data = tiny_jpeg()
    for i in range(n_files):
        folder = os.path.join(image_dir, f"c{i % n_classes:04d}")
        if i < n_classes:
            os.makedirs(folder)
        with open(os.path.join(folder, f"{i:07d}.jpg"), "wb") as f:
            f.write(data)


def imagenet_over(root, image_dir, n_classes):
    """ImageNet's layout whose train and val folders both link to ``image_dir``."""
    folder = os.path.join(root, "imagenet")
    os.makedirs(os.path.join(folder, "images"))
    for part in ("train", "val"):
        os.symlink(image_dir, os.path.join(folder, "images", part))
    with open(os.path.join(folder, "classnames.txt"), "w") as f:
        f.writelines(f"c{c:04d} class {c}\n" for c in range(n_classes))


def timed(fn, repeat):
    """(median seconds, last result) over ``repeat`` calls; printing is silenced."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        with redirect_stdout(io.StringIO()):
            result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def listing_with_stat(image_dir):
    """Listing as before: one ``isfile`` per entry."""
    count = 0
    for folder in sorted(os.listdir(image_dir)):
        class_dir = os.path.join(image_dir, folder)
        count += sum(os.path.isfile(os.path.join(class_dir, n)) for n in os.listdir(class_dir))
    return count


def run_dataset(root, name, shots, seed=1):
    cfg = get_cfg_default()
    cfg.DATASET.ROOT, cfg.DATASET.NAME, cfg.DATASET.NUM_SHOTS, cfg.SEED = root, name, shots, seed
    random.seed(seed)
    return build_dataset(cfg)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=400)
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--root", help="where to write the files (default: a temporary folder)")
    args = parser.parse_args()

    root = args.root or tempfile.mkdtemp(prefix="bench_startup_")
    image_dir = os.path.join(root, "food-101", "images")
    try:
        start = time.perf_counter()
        write_files(image_dir, args.files, args.classes)
        imagenet_over(root, image_dir, args.classes)
        print(f"Wrote {args.files:,} files in {args.classes} class folders under {root} "
              f"({time.perf_counter() - start:.1f} s)\n")  # fmt: skip
        rows = []

        def row(step, fn):
            seconds, result = timed(fn, args.repeat)
            rows.append([step, f"{seconds:.3f}"])
            return result

        def listing():
            classes = list_class_dirs(image_dir)
            return sum(len(list_images(os.path.join(image_dir, c))) for c in classes)

        def sample():
            random.seed(1)
            return (
                generate_fewshot_dataset(train, num_shots=args.shots),
                generate_fewshot_dataset(val, num_shots=min(args.shots, 4)),
            )

        def first_run(name, made):
            os.remove(made) if os.path.exists(made) else None
            shutil.rmtree(os.path.join(os.path.dirname(made), "split_fewshot"), True)
            return run_dataset(root, name, args.shots)

        split_path = os.path.join(root, "split.json")
        cache = os.path.join(root, "fewshot.json")
        food_split = os.path.join(root, "food-101", "split_zhou_Food101.json")
        imagenet_lists = os.path.join(root, "imagenet", "preprocessed.json")

        row("list folders and images (scandir, this code)", listing)
        row(
            "list folders and images (isfile per file, before)",
            lambda: listing_with_stat(image_dir),
        )
        split = row(
            "generate split (list + shuffle per class)",
            lambda: read_and_split_data(image_dir, seed=1),
        )
        train, val, test = split
        row("save split file", lambda: save_split(*split, split_path, image_dir))
        row(
            "read split file (parse, check images exist)", lambda: read_split(split_path, image_dir)
        )
        paths = [d.impath for part in split for d in part]
        row(
            "  check images exist, stat per file (before)",
            lambda: [p for p in paths if not os.path.exists(p)],
        )
        subsets = dict(
            zip(("train", "val"), row(f"few-shot sampling ({args.shots} shots)", sample))
        )
        row("-- write few-shot cache", lambda: write_items(cache, image_dir, subsets))
        row("-- read few-shot cache", lambda: read_items(cache, image_dir, ("train", "val")))
        row(
            "Food101, first run (list, split, sample, save)",
            lambda: first_run("Food101", food_split),
        )
        row(
            "Food101, later runs (read split, few-shot cache)",
            lambda: run_dataset(root, "Food101", args.shots),
        )
        row(
            f"ImageNet, 2 x {args.files:,} files, first run",
            lambda: first_run("ImageNet", imagenet_lists),
        )
        row(
            "ImageNet, later runs (read lists, few-shot cache)",
            lambda: run_dataset(root, "ImageNet", args.shots),
        )

        print(tabulate(rows, headers=["step", f"seconds (median of {args.repeat})"]))
    finally:
        if not args.root:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
