"""Classify images with a trained run: the top-k classes and their probabilities per image.

    python predict.py --model-dir RUN [--load-epoch N] PATH... [--topk 5]
                      [--out FILE.csv|FILE.json] [--classnames FILE]

PATH: an image, a folder (searched recursively for image files) or a .txt file listing image
paths, one a line (relative paths are taken from the current directory). Unreadable images
are reported on stderr and skipped; the exit code is then 1 (0 when all were read, 2 for bad
arguments).
"""

import argparse
import csv
import io
import sys
import warnings

from engine.checkpoint import atomic_write, atomic_write_json, saving
from engine.cli import exit_status
from inference.classifier import IgnoredOrientation, orientation_note
from inference.cli import (
    add_model_arguments,
    classifier_from_args,
    expand_paths,
)

OUTPUT_FORMATS = (".csv", ".json")


def build_parser():
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image, folder or .txt list")
    add_model_arguments(parser)
    parser.add_argument("--topk", type=int, default=5, help="classes shown per image")
    parser.add_argument("--out", help="also write the predictions to FILE.csv or FILE.json")
    parser.add_argument(
        "--classnames", help="predict over these classes instead (a text file, one a line)"
    )
    parser.add_argument(
        "--batch-size", type=int, help="images per batch (default: DATALOADER.TEST.BATCH_SIZE)"
    )
    return parser


def check_args(args):
    """Errors that the arguments alone show, before the model is built."""
    if args.topk < 1:
        raise ValueError(f"--topk must be >= 1, got {args.topk}")
    if args.batch_size is not None and args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out and not args.out.lower().endswith(OUTPUT_FORMATS):
        raise ValueError(f"--out '{args.out}' must end in .csv or .json")


def write_predictions(path, predictions, unreadable, k):
    """CSV: path, class_1, prob_1, ..., class_k, prob_k per image. JSON: the class names,
    each image's top-k and the unreadable files with the reason."""
    top = predictions.top(k)
    if path.lower().endswith(".json"):
        atomic_write_json(path, {
            "classnames": predictions.classnames,
            "predictions": [
                {"path": p, "top": [{"class": c, "probability": q} for c, q in row]}
                for p, row in zip(predictions.paths, top)
            ],
            "unreadable": [{"path": p, "reason": why} for p, why in unreadable],
        })  # fmt: skip
        return
    text = io.StringIO()
    writer = csv.writer(text)
    k = len(top[0]) if top else k
    writer.writerow(["path"] + [f"{c}_{i}" for i in range(1, k + 1) for c in ("class", "prob")])
    for p, row in zip(predictions.paths, top):
        writer.writerow([p] + [v for c, q in row for v in (c, f"{q:.6f}")])
    atomic_write(path, lambda f: f.write(text.getvalue()), mode="w")


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_args(args)
    files = expand_paths(args.paths)
    clf = classifier_from_args(args, args.classnames)
    batch_size = args.batch_size or clf.cfg.DATALOADER.TEST.BATCH_SIZE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IgnoredOrientation)  # said below, without a location
        predictions, unreadable = clf.predict_files(
            files, batch_size, progress=len(files) > batch_size
        )
    for path, row in zip(predictions.paths, predictions.top(args.topk)):
        print(f"{path}  " + " | ".join(f"{name} {100 * p:.1f}%" for name, p in row))
    if args.out:
        with saving(f"the predictions '{args.out}'"):
            write_predictions(args.out, predictions, unreadable, args.topk)
        print(f"Predictions written to {args.out}", file=sys.stderr)
    if predictions.ignored_orientation:
        print(f"Note: {orientation_note(predictions.ignored_orientation)}", file=sys.stderr)
    for path, why in unreadable:
        print(f"skipped unreadable image {path} ({why})", file=sys.stderr)
    if unreadable:
        print(f"{len(unreadable)} of {len(files)} images could not be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
