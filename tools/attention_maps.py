"""CAVPT attention maps of a DPT run: one PNG per image.

    python -m tools.attention_maps --model-dir RUN IMAGE... --out DIR [--load-epoch N]

Each PNG shows the image as the model saw it, zero-shot CLIP's top K classes (those whose
text features query the image in CAVPT) and, for each CAVPT block, each query's attention
over the patch grid laid over the image, titled with the class, the model's probability for
it and the share of the query's attention on the patches (the rest is on the CLS token and
the block's learnable tokens). IMAGE may also be a folder or a .txt list, as for predict.py.
A PNG is named after the image's path below the images' common folder.
"""

import argparse
import os
import sys

from engine.checkpoint import saving
from engine.cli import exit_status
from inference.attention import cavpt_attention, plot_attention_map, require_cavpt
from inference.classifier import orientation_note
from inference.cli import (
    add_model_arguments,
    classifier_from_args,
    expand_paths,
)


def output_names(files):
    """A distinct PNG name per image: its path below the images' common folder, with the
    folder separators turned into "__"."""
    files = [os.path.abspath(f) for f in files]
    common = os.path.commonpath([os.path.dirname(f) for f in files])
    names = {}
    for f in files:
        stem = os.path.splitext(os.path.relpath(f, common))[0].replace(os.sep, "__")
        names[f] = stem + ".png"
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image, folder or .txt list")
    parser.add_argument("--out", required=True, help="folder for the PNG files")
    parser.add_argument("--batch-size", type=int, help="images per forward pass")
    add_model_arguments(parser)
    args = parser.parse_args(argv)
    files = expand_paths(args.images)
    clf = classifier_from_args(args)
    require_cavpt(clf)
    os.makedirs(args.out, exist_ok=True)
    names = output_names(files)
    unreadable, ignored = [], []
    for paths, images, failed, tagged in clf.batches_of_files(files, args.batch_size):
        unreadable += failed
        ignored += tagged
        if images is None:
            continue
        attention = cavpt_attention(clf, images)
        for i, path in enumerate(paths):
            out = os.path.join(args.out, names[os.path.abspath(path)])
            with saving(f"the attention map '{out}'"):
                plot_attention_map(clf.cfg, images[i], attention, i, clf.classnames, out, path)
            print(out)
    if ignored:
        print(f"Note: {orientation_note(ignored)}", file=sys.stderr)
    for path, why in unreadable:
        print(f"skipped unreadable image {path} ({why})", file=sys.stderr)
    return 1 if unreadable else 0


if __name__ == "__main__":
    sys.exit(exit_status(main))
