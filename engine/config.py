"""Configuration: Dassl's keys and defaults, plus the keys of this project's trainers.

Merge order (as in CoOp's ``train.py``): defaults, dataset file, method file, command-line
flags, trailing ``KEY VALUE`` overrides. Unknown keys are errors that name the closest
valid key, so a typo never silently falls back to a default.
"""

import ast
import difflib
import hashlib
import json
import os

import yaml
from yacs.config import CfgNode as CN

CLIP_PIXEL_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_PIXEL_STD = [0.26862954, 0.26130258, 0.27577711]


def _dassl_defaults():
    _C = CN()
    _C.VERSION = 1
    _C.OUTPUT_DIR = "./output"
    _C.RESUME = ""
    _C.SEED = -1
    _C.USE_CUDA = True
    _C.VERBOSE = True

    _C.INPUT = CN()
    _C.INPUT.SIZE = (224, 224)
    _C.INPUT.INTERPOLATION = "bilinear"
    _C.INPUT.TRANSFORMS = ()
    _C.INPUT.NO_TRANSFORM = False
    _C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]
    _C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
    _C.INPUT.CROP_PADDING = 4
    _C.INPUT.RRCROP_SCALE = (0.08, 1.0)
    _C.INPUT.CUTOUT_N = 1
    _C.INPUT.CUTOUT_LEN = 16
    _C.INPUT.GN_MEAN = 0.0
    _C.INPUT.GN_STD = 0.15
    _C.INPUT.RANDAUGMENT_N = 2
    _C.INPUT.RANDAUGMENT_M = 10
    _C.INPUT.COLORJITTER_B = 0.4
    _C.INPUT.COLORJITTER_C = 0.4
    _C.INPUT.COLORJITTER_S = 0.4
    _C.INPUT.COLORJITTER_H = 0.1
    _C.INPUT.RGS_P = 0.2
    _C.INPUT.GB_P = 0.5
    _C.INPUT.GB_K = 21

    _C.DATASET = CN()
    _C.DATASET.ROOT = ""
    _C.DATASET.SOURCE_DOMAINS = ()
    _C.DATASET.TARGET_DOMAINS = ()
    _C.DATASET.NAME = ""
    _C.DATASET.NUM_LABELED = -1
    _C.DATASET.NUM_SHOTS = -1
    _C.DATASET.VAL_PERCENT = 0.1
    _C.DATASET.STL10_FOLD = -1
    _C.DATASET.CIFAR_C_TYPE = ""
    _C.DATASET.CIFAR_C_LEVEL = 1
    _C.DATASET.ALL_AS_UNLABELED = False

    _C.DATALOADER = CN()
    _C.DATALOADER.NUM_WORKERS = 4
    _C.DATALOADER.K_TRANSFORMS = 1
    _C.DATALOADER.RETURN_IMG0 = False
    _C.DATALOADER.TRAIN_X = CN()
    _C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
    _C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
    _C.DATALOADER.TRAIN_X.N_DOMAIN = 0
    _C.DATALOADER.TRAIN_X.N_INS = 16
    _C.DATALOADER.TRAIN_U = CN()
    _C.DATALOADER.TRAIN_U.SAME_AS_X = True
    _C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
    _C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
    _C.DATALOADER.TRAIN_U.N_DOMAIN = 0
    _C.DATALOADER.TRAIN_U.N_INS = 16
    _C.DATALOADER.TEST = CN()
    _C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
    _C.DATALOADER.TEST.BATCH_SIZE = 32

    _C.MODEL = CN()
    _C.MODEL.INIT_WEIGHTS = ""
    _C.MODEL.BACKBONE = CN()
    _C.MODEL.BACKBONE.NAME = ""
    _C.MODEL.BACKBONE.PRETRAINED = True
    _C.MODEL.HEAD = CN()
    _C.MODEL.HEAD.NAME = ""
    _C.MODEL.HEAD.HIDDEN_LAYERS = ()
    _C.MODEL.HEAD.ACTIVATION = "relu"
    _C.MODEL.HEAD.BN = True
    _C.MODEL.HEAD.DROPOUT = 0.0

    _C.OPTIM = CN()
    _C.OPTIM.NAME = "adam"
    _C.OPTIM.LR = 0.0003
    _C.OPTIM.WEIGHT_DECAY = 5e-4
    _C.OPTIM.MOMENTUM = 0.9
    _C.OPTIM.SGD_DAMPNING = 0
    _C.OPTIM.SGD_NESTEROV = False
    _C.OPTIM.RMSPROP_ALPHA = 0.99
    _C.OPTIM.ADAM_BETA1 = 0.9
    _C.OPTIM.ADAM_BETA2 = 0.999
    _C.OPTIM.STAGED_LR = False
    _C.OPTIM.NEW_LAYERS = ()
    _C.OPTIM.BASE_LR_MULT = 0.1
    _C.OPTIM.LR_SCHEDULER = "single_step"
    _C.OPTIM.STEPSIZE = (-1,)
    _C.OPTIM.GAMMA = 0.1
    _C.OPTIM.MAX_EPOCH = 10
    _C.OPTIM.WARMUP_EPOCH = -1
    _C.OPTIM.WARMUP_TYPE = "linear"
    _C.OPTIM.WARMUP_CONS_LR = 1e-5
    _C.OPTIM.WARMUP_MIN_LR = 1e-5
    _C.OPTIM.WARMUP_RECOUNT = True

    _C.TRAIN = CN()
    _C.TRAIN.CHECKPOINT_FREQ = 0
    _C.TRAIN.PRINT_FREQ = 10
    _C.TRAIN.COUNT_ITER = "train_x"

    _C.TEST = CN()
    _C.TEST.EVALUATOR = "Classification"
    _C.TEST.PER_CLASS_RESULT = False
    _C.TEST.COMPUTE_CMAT = False
    _C.TEST.NO_TEST = False
    _C.TEST.SPLIT = "test"
    _C.TEST.FINAL_MODEL = "last_step"

    _C.TRAINER = CN()
    _C.TRAINER.NAME = ""
    return _C


# Dassl keys this engine accepts, so that Dassl's and CoOp's config files load, but never
# reads (domain-adaptation, semi-supervised and classifier-head settings). Setting one away
# from its default prints a note (``unread_settings``); Dassl's own loop reads them.
UNREAD_DASSL_KEYS = (
    "INPUT.RANDAUGMENT_N",
    "INPUT.RANDAUGMENT_M",
    "DATASET.SOURCE_DOMAINS",
    "DATASET.TARGET_DOMAINS",
    "DATASET.NUM_LABELED",
    "DATASET.VAL_PERCENT",
    "DATASET.STL10_FOLD",
    "DATASET.CIFAR_C_TYPE",
    "DATASET.CIFAR_C_LEVEL",
    "DATASET.ALL_AS_UNLABELED",
    "DATALOADER.K_TRANSFORMS",
    "DATALOADER.RETURN_IMG0",
    "DATALOADER.TRAIN_X.N_DOMAIN",
    "DATALOADER.TRAIN_X.N_INS",
    "DATALOADER.TRAIN_U",
    "MODEL.INIT_WEIGHTS",
    "MODEL.BACKBONE.PRETRAINED",
    "MODEL.HEAD",
    "OPTIM.STAGED_LR",
    "OPTIM.NEW_LAYERS",
    "OPTIM.BASE_LR_MULT",
    "TRAIN.COUNT_ITER",
    "TEST.EVALUATOR",
)


def unread_settings(cfg, prefixes, why):
    """A note for each key under ``prefixes`` that ``cfg`` sets away from its default, saying
    ``why`` nothing reads it."""
    defaults = flat_cfg(get_cfg_default())
    return [
        f"Note: {key} is {value!r} (default {defaults[key]!r}), but {why}."
        for key, value in flat_cfg(cfg).items()
        if key.startswith(prefixes) and key in defaults and value != defaults[key]
    ]


def add_project_keys(cfg):
    """Keys this project adds to Dassl's, on ours or on Dassl's own defaults."""
    # Threads of torch's CPU operators (train.py --threads); 0 chooses them from the CPUs
    # available to the process and the loader workers (engine/threads.py).
    cfg.NUM_THREADS = 0
    # Where a run's random numbers come from (engine/randomness.py). keyed: initialisation,
    # each epoch's data order and each sample's augmentation from streams keyed by SEED, so
    # that loader workers, caches, evaluations and resumes cannot change them; global: one
    # global generator seeded once, as Dassl and CoOp draw (each draw depends on all before).
    cfg.RANDOMNESS = "keyed"
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all | base | new (CoOp/CoCoOp)
    # Turn photos upright by their EXIF orientation tag, in training, evaluation and
    # prediction alike. Off: pixels as stored, as Dassl and CoOp read them (benchmark numbers
    # stay comparable); predict.py and the API then say which images carry a tag.
    cfg.INPUT.EXIF_TRANSPOSE = False
    # Unreadable images: "error" stops with the file name; "skip" drops them with a warning.
    cfg.DATASET.ON_BAD_IMAGE = "error"
    # Where a dataset's generated split and few-shot files go when its folder cannot be
    # written (a read-only shared copy); they are read back from there (engine/data/generated.py).
    cfg.DATASET.SPLIT_CACHE = "~/.cache/dpt/splits"
    # Keep worker processes between epochs and evaluations; page-locked batches for fast
    # host-to-GPU copies (used with CUDA only); decoded train images kept in memory up to this
    # many MiB (0: off), so that few-shot train sets are decoded once, not every epoch.
    cfg.DATALOADER.PERSISTENT_WORKERS = True
    cfg.DATALOADER.PIN_MEMORY = True
    cfg.DATALOADER.CACHE_IMAGES_MB = 2048
    # Shortens (or lengthens) a run for a quick look: MAX_EPOCH and every epoch count of the
    # schedule (warm-ups, DPT's PRETRAIN.C, ...: ``EPOCH_KEYS``) are multiplied by it when
    # the config is built; the run's name says so (scripts/naming.py).
    cfg.OPTIM.EPOCH_SCALE = 1.0


# Epoch counts of a schedule, scaled with OPTIM.EPOCH_SCALE, and what it means for a run when
# one reaches MAX_EPOCH (a note before training). Trainer modules add theirs.
EPOCH_KEYS = {"OPTIM.WARMUP_EPOCH": "the whole run trains at the warm-up learning rate"}


def declare_epoch_key(key, when_it_reaches_max):
    EPOCH_KEYS[key] = when_it_reaches_max


# Keys that take values of other types than their default's (yacs refuses a type mismatch),
# key -> the types accepted. Trainer modules add theirs (``accept_types``).
MIXED_TYPE_KEYS = {}


def accept_types(key, *types):
    """Let ``key`` hold a value of any of ``types`` (e.g. KgCoOp's boolean
    TRAINER.COOP.CTX_INIT where CoOp's is words) in config files, overrides and saved
    configs."""
    MIXED_TYPE_KEYS[key] = types


def get_value(cfg, key):
    """The value of the dotted ``key`` in ``cfg``."""
    for part in key.split("."):
        cfg = cfg[part]
    return cfg


def _set(cfg, key, value):
    *parents, leaf = key.split(".")
    for part in parents:
        cfg = cfg[part]
    cfg[leaf] = value


def apply_epoch_scale(cfg):
    """Multiply MAX_EPOCH and the ``EPOCH_KEYS`` by OPTIM.EPOCH_SCALE (rounded; an epoch
    count of at least 1 stays at least 1; 0 and the -1 of "unset" stay)."""
    scale = cfg.OPTIM.EPOCH_SCALE
    if scale <= 0:
        raise ValueError(f"OPTIM.EPOCH_SCALE must be > 0 (1 keeps the schedule), got {scale}")
    if scale == 1:
        return
    for key in ("OPTIM.MAX_EPOCH", *EPOCH_KEYS):
        value = get_value(cfg, key)
        if value > 0:
            _set(cfg, key, max(1, round(value * scale)))


def schedule_notes(cfg, keys):
    """A note for each of ``keys`` (``EPOCH_KEYS`` a method reads) that reaches MAX_EPOCH."""
    max_epoch = cfg.OPTIM.MAX_EPOCH
    return [
        f"Note: {key} {get_value(cfg, key)} reaches OPTIM.MAX_EPOCH {max_epoch}: {EPOCH_KEYS[key]}."
        for key in keys
        if get_value(cfg, key) >= max_epoch
    ]


CFG_EXTENSIONS = []


def extend_cfg(fn):
    """Register ``fn(cfg)``, which adds a trainer's own block of keys to the defaults.

    Trainer modules decorate their ``extend_cfg`` functions with this; importing the
    ``trainers`` package therefore makes all trainers' keys known.
    """
    CFG_EXTENSIONS.append(fn)
    return fn


def get_cfg_default(dassl_defaults=None):
    """Dassl's keys (``dassl_defaults``, e.g. Dassl's own ``get_cfg_default``, or this
    project's copy of them), this project's keys and every trainer's block."""
    cfg = (dassl_defaults or _dassl_defaults)()
    add_project_keys(cfg)
    for extend in CFG_EXTENSIONS:
        extend(cfg)
    return cfg


def _all_keys(node, prefix=""):
    keys = []
    for k, v in node.items():
        full = f"{prefix}{k}"
        keys.append(full)
        if isinstance(v, CN):
            keys.extend(_all_keys(v, full + "."))
    return keys


def _check_known_keys(cfg, other, source, prefix="", root=None):
    """Raise a KeyError naming the first unknown key in ``other`` and the closest valid one."""
    root = cfg if root is None else root
    for k, v in other.items():
        full = f"{prefix}{k}"
        if k not in cfg:
            close = difflib.get_close_matches(full, _all_keys(root), n=1, cutoff=0.5)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            raise KeyError(f"Unknown config key '{full}' in {source}.{hint}")
        if isinstance(v, dict) and isinstance(cfg[k], CN):
            _check_known_keys(cfg[k], v, source, full + ".", root)


def _yaml_problem(err):
    """What PyYAML found wrong, with 1-based lines: "while parsing X (line 2, column 7):
    expected Y (line 3, column 1)"."""

    def at(mark):
        return f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""

    problem = getattr(err, "problem", None)
    if not problem:
        return str(err)
    context = getattr(err, "context", None)
    text = f"{context}{at(getattr(err, 'context_mark', None))}: " if context else ""
    return text + problem + at(getattr(err, "problem_mark", None))


def _read_yaml_cfg(path):
    """The file's content as a CfgNode; malformed YAML is a ValueError naming file and line."""
    try:
        with open(path) as f:
            other = CN.load_cfg(f)
    except yaml.YAMLError as err:
        raise ValueError(
            f"Config file '{path}' is not valid YAML: {_yaml_problem(err)}. Fix the file (keys "
            "are 'KEY: value', nested keys indented by two spaces)."
        ) from err
    except AssertionError as err:  # yacs: the top level is not a mapping
        raise ValueError(
            f"Config file '{path}' must hold 'KEY: value' lines (a YAML mapping): {err}"
        ) from err
    return other


def merge_cfg(cfg, other):
    """yacs' ``merge_from_other_cfg``, taking an integer for a float and the types a key
    accepts (``accept_types``)."""
    _widen_ints(cfg, other)
    for key, types in MIXED_TYPE_KEYS.items():
        value = _find(other, key)
        if isinstance(value, types):
            _set(cfg, key, value)  # so that yacs sees the type it is given
    cfg.merge_from_other_cfg(other)


def _find(cfg, key):
    for part in key.split("."):
        if not isinstance(cfg, CN) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def merge_from_file(cfg, path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Config file not found: '{path}' (check the path and cwd)")
    other = _read_yaml_cfg(path)
    _check_known_keys(cfg, other, f"config file '{path}'")
    try:
        merge_cfg(cfg, other)
    except ValueError as err:  # yacs: a value of the wrong type, e.g. LR: "fast"
        raise ValueError(f"{err} (in config file '{path}'): give a value of that type") from err


def merge_from_list(cfg, opts):
    flags = [opt for opt in opts if str(opt).startswith("--")]
    if flags:
        raise ValueError(
            f"{flags[0]} comes after the KEY VALUE overrides, where it is read as a key: put "
            "flags (--overwrite, --eval-only, ...) before the overrides"
        )
    if len(opts) % 2:
        raise ValueError(
            f"Config overrides must be KEY VALUE pairs; got an odd number of items: {opts}"
        )
    for key in opts[0::2]:
        node, parts = cfg, key.split(".")
        for part in parts:
            if not isinstance(node, CN) or part not in node:
                close = difflib.get_close_matches(key, _all_keys(cfg), n=1, cutoff=0.5)
                hint = f" Did you mean '{close[0]}'?" if close else ""
                raise KeyError(f"Unknown config key '{key}' on the command line.{hint}")
            node = node[part]
    values = []
    for key, value in zip(opts[0::2], opts[1::2]):
        if isinstance(get_value(cfg, key), float) and type(_literal(value)) is int:
            value = str(float(_literal(value)))  # OPTIM.LR 1 as OPTIM.LR 1.0
        if isinstance(_literal(value), MIXED_TYPE_KEYS.get(key, ())):
            _set(cfg, key, _literal(value))  # so that yacs sees the type it is given
        values += [key, value]
    cfg.merge_from_list(values)


def _literal(value):
    if not isinstance(value, str):
        return value
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def _widen_ints(cfg, other):
    """An integer where the default is a float (``LR: 1``) is that float: yacs would refuse
    it as a type mismatch."""
    for key, value in other.items():
        if key not in cfg:
            continue
        if isinstance(value, CN) and isinstance(cfg[key], CN):
            _widen_ints(cfg[key], value)
        elif isinstance(cfg[key], float) and type(value) is int:
            other[key] = float(value)


def reset_cfg_from_args(cfg, args):
    """Apply CoOp's command-line flags (they sit between the files and the overrides)."""
    if getattr(args, "root", ""):
        cfg.DATASET.ROOT = args.root
    if getattr(args, "output_dir", ""):
        cfg.OUTPUT_DIR = args.output_dir
    if getattr(args, "resume", ""):
        cfg.RESUME = args.resume
    if getattr(args, "seed", None) is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if getattr(args, "threads", None):
        cfg.NUM_THREADS = args.threads
    if getattr(args, "source_domains", None):
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if getattr(args, "target_domains", None):
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if getattr(args, "transforms", None):
        cfg.INPUT.TRANSFORMS = args.transforms
    if getattr(args, "trainer", ""):
        cfg.TRAINER.NAME = args.trainer
    if getattr(args, "backbone", ""):
        cfg.MODEL.BACKBONE.NAME = args.backbone
    if getattr(args, "head", ""):
        cfg.MODEL.HEAD.NAME = args.head


def setup_cfg(args, dassl_defaults=None):
    """Build the frozen run config from parsed ``train.py`` arguments (on Dassl's own
    defaults when ``dassl_defaults`` is its ``get_cfg_default``)."""
    cfg = get_cfg_default(dassl_defaults)
    if getattr(args, "dataset_config_file", ""):
        merge_from_file(cfg, args.dataset_config_file)
    if getattr(args, "config_file", ""):
        merge_from_file(cfg, args.config_file)
    reset_cfg_from_args(cfg, args)
    merge_from_list(cfg, getattr(args, "opts", []) or [])
    apply_epoch_scale(cfg)
    cfg.freeze()
    return cfg


def check_at_least(cfg, key, minimum, what):
    """A config value below ``minimum`` is an error naming the key (before anything loads)."""
    value = get_value(cfg, key)
    if value < minimum:
        raise ValueError(
            f"{key} ({what}) must be >= {minimum}, got {value}: set it in the config file or "
            f"on the command line ({key} VALUE)"
        )


def check_run_values(cfg):
    """Values of Dassl's keys that would otherwise fail deep inside a run (torch's "Invalid
    learning rate", a division by zero epochs), checked before anything is written."""
    check_at_least(cfg, "OPTIM.LR", 0, "the learning rate")
    check_at_least(cfg, "OPTIM.WEIGHT_DECAY", 0, "the weight decay")
    check_at_least(cfg, "OPTIM.MOMENTUM", 0, "the SGD/RMSprop momentum")
    check_at_least(cfg, "OPTIM.MAX_EPOCH", 1, "the number of training epochs")
    check_at_least(cfg, "DATALOADER.TRAIN_X.BATCH_SIZE", 1, "the training batch size")
    check_at_least(cfg, "DATALOADER.TEST.BATCH_SIZE", 1, "the evaluation batch size")
    check_at_least(cfg, "DATALOADER.NUM_WORKERS", 0, "loader worker processes")
    check_at_least(cfg, "TRAIN.PRINT_FREQ", 1, "batches between log lines")
    if cfg.RANDOMNESS not in ("keyed", "global"):
        raise ValueError(
            f"RANDOMNESS must be keyed (streams by purpose, the default) or global (one "
            f"generator, as Dassl and CoOp); got {cfg.RANDOMNESS!r}"
        )


INERT_KEYS = {}  # key -> (default, why it is accepted)


def add_inert_key(cfg, key, default, why):
    """Add ``key`` (default ``default``), accepted for compatibility though nothing reads it;
    ``inert_key_notes`` tells a run that sets it that it has no effect."""
    _set(cfg, key, default)
    INERT_KEYS[key] = (default, why)


def inert_key_notes(cfg):
    """One note per inert key set to something other than its default."""
    values = flat_cfg(cfg)
    return [
        f"Note: {key} {values[key]} has no effect ({why})."
        for key, (default, why) in INERT_KEYS.items()
        if values.get(key, default) != default
    ]


# Keys that cannot change a run's numbers: where it runs and writes, how fast, what it prints.
# Runs that differ only in these share a config (``result_settings``). Trainer modules add
# their own (``declare_result_neutral``).
RESULT_NEUTRAL_KEYS = [
    "OUTPUT_DIR", "RESUME", "VERBOSE", "NUM_THREADS", "DATASET.ROOT", "DATASET.SPLIT_CACHE",
    "DATALOADER.PIN_MEMORY", "DATALOADER.CACHE_IMAGES_MB", "TRAIN.PRINT_FREQ",
    "TRAIN.CHECKPOINT_FREQ", "TEST.PER_CLASS_RESULT", "TEST.COMPUTE_CMAT",
]  # fmt: skip
# With RANDOMNESS keyed, the loader's workers cannot change them either.
KEYED_NEUTRAL_KEYS = ("DATALOADER.NUM_WORKERS", "DATALOADER.PERSISTENT_WORKERS")


def declare_result_neutral(*keys):
    """Declare config keys (or key prefixes ending in ".") that never change a result."""
    RESULT_NEUTRAL_KEYS.extend(k for k in keys if k not in RESULT_NEUTRAL_KEYS)


def _neutral(key, keyed):
    neutral = RESULT_NEUTRAL_KEYS + list(KEYED_NEUTRAL_KEYS if keyed else ())
    return any(key == n or (n.endswith(".") and key.startswith(n)) for n in neutral)


def result_settings(cfg, with_seed=True):
    """``{"OPTIM.LR": 0.002, ...}``: every key of ``cfg`` (a CfgNode or ``cfg_to_dict`` form)
    that can change the run's numbers; without ``with_seed``, SEED and the classes evaluated
    (DATASET.SUBSAMPLE_CLASSES) are left out too: what the runs of one experiment share."""
    flat = flat_cfg(cfg)
    keyed = flat.get("RANDOMNESS", "keyed") == "keyed"
    settings = {k: v for k, v in flat.items() if not _neutral(k, keyed)}
    if not with_seed:
        settings.pop("SEED", None)
        settings.pop("DATASET.SUBSAMPLE_CLASSES", None)
    return settings


def experiment_digest(cfg):
    """A short stable hash of ``result_settings(cfg, with_seed=False)``: equal for the runs
    that a results table may average together (results.json holds it)."""
    text = json.dumps(result_settings(cfg, with_seed=False), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def result_differences(saved, cfg, with_seed=True):
    """``[(key, saved value, value in cfg)]`` of the keys that can change a result."""
    old, new = result_settings(saved, with_seed), result_settings(cfg, with_seed)
    return [(k, old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
            if old.get(k) != new.get(k)]  # fmt: skip


def describe_differences(diffs, there="there", here="here"):
    """``OPTIM.MAX_EPOCH: 40 there, 10 here; ...`` for ``result_differences``."""
    return "; ".join(f"{k}: {old!r} {there}, {new!r} {here}" for k, old, new in diffs)


def cfg_digest(cfg):
    """A short stable hash of the config, recorded with results to tell runs apart."""
    text = json.dumps(_to_plain(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cfg_to_dict(cfg):
    """The config as plain nested dicts and lists (saved with checkpoints)."""
    return _to_plain(cfg)


def flat_cfg(node, prefix=""):
    """``{"OPTIM.LR": 0.002, ...}`` from a CfgNode or its ``cfg_to_dict`` form."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flat_cfg(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = _to_plain(value)
    return flat


def config_differences(saved, cfg, prefixes=("",)):
    """``[(key, saved value, value in cfg)]`` for the keys starting with one of ``prefixes``
    whose values differ; ``saved`` is a ``cfg_to_dict`` result."""
    old, new = flat_cfg(saved), flat_cfg(cfg)
    keys = [k for k in sorted(set(old) | set(new)) if k.startswith(tuple(prefixes))]
    return [(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)]


def _to_plain(node):
    if isinstance(node, CN):
        return {k: _to_plain(v) for k, v in node.items()}
    if isinstance(node, tuple):
        return [_to_plain(v) for v in node]
    return node
