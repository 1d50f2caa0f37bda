"""What the commands that use a trained run share: their model arguments and error exits."""

import os

from engine.config import setup_cfg
from engine.data.images import IMG_EXTENSIONS
from inference.classifier import load_classifier, read_classnames_file

REBUILD_FLAGS = ("trainer", "config_file", "dataset_config_file")


def add_model_arguments(parser, run_positional=False):
    """The run directory (``--model-dir RUN``, or a positional ``RUN``), ``--load-epoch``,
    ``--opts``, and the training flags that rebuild a run saved without its config."""
    if run_positional:
        parser.add_argument("model_dir", metavar="RUN", help="run directory of train.py")
    else:
        parser.add_argument("--model-dir", required=True, help="run directory of train.py")
    parser.add_argument(
        "--load-epoch", type=int, help="that epoch's checkpoint (default: best, else last)"
    )
    parser.add_argument(
        "--opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config overrides on top of the run's config, e.g. USE_CUDA False",
    )
    old = parser.add_argument_group(
        "runs saved without config.yaml and classnames.json (rebuilt as --eval-only does)"
    )
    old.add_argument("--trainer", default="", help="the run's --trainer")
    old.add_argument("--config-file", default="", help="the run's --config-file")
    old.add_argument("--dataset-config-file", default="", help="the run's --dataset-config-file")
    old.add_argument("--root", default="", help="the dataset folder (its class names)")


def classifier_from_args(args, classnames_file=None):
    """``load_classifier`` for parsed ``add_model_arguments`` arguments: from the run's saved
    config, or from the training flags when any of --trainer/--config-file/
    --dataset-config-file is given (then ``--opts`` are the run's overrides)."""
    classnames = read_classnames_file(classnames_file) if classnames_file else None
    if not any(getattr(args, flag) for flag in REBUILD_FLAGS):
        if args.root:
            raise ValueError(
                "--root is read only with --trainer, --config-file and --dataset-config-file, "
                "to rebuild a run saved without config.yaml; leave it out for this run"
            )
        return load_classifier(args.model_dir, args.load_epoch, classnames, args.opts)
    cfg = setup_cfg(args)
    return load_classifier(args.model_dir, args.load_epoch, classnames, rebuild_cfg=cfg)


def expand_paths(paths):
    """The image files that PATH arguments name, in order: a file as given (a .txt file: the
    paths it lists), a folder's image files (by extension, recursively, sorted)."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"No such image, folder or list: {', '.join(missing)}")
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = [
                os.path.join(folder, name)
                for folder, _, names in os.walk(path)
                for name in names
                if name.lower().endswith(IMG_EXTENSIONS)
            ]
            if not found:
                raise FileNotFoundError(f"No image files ({', '.join(IMG_EXTENSIONS)}) in '{path}'")
            files += sorted(found)
        elif path.lower().endswith(".txt"):
            with open(path) as f:
                files += [line.strip() for line in f if line.strip()]
        else:
            files.append(path)
    return files
