"""Zero-shot CLIP evaluated once and reused: by every run of a sweep that evaluates the same
thing (TEST.ZEROSHOT_CACHE), and by a resumed run for its own baseline."""

import hashlib
import os

from yacs.config import CfgNode as CN

from engine import distributed
from engine.checkpoint import saving
from engine.config import cfg_digest
from engine.eval_cache import EvaluationCache

ZEROSHOT_CACHE_FOLDER = "zeroshot_cache"  # a trained run's own, in its run directory

# Config keys that a zero-shot CLIP evaluation does not read: where runs go, training, the
# few-shot train set and its loader. Of TRAINER it reads only SPEED and ZSCLIP (the precision,
# TRAINER.COOP.PREC, enters the key as resolved for the device).
NOT_READ_BY_ZEROSHOT = ("OUTPUT_DIR", "RESUME", "SEED", "VERBOSE", "NUM_THREADS", "OPTIM",
                        "TRAIN", "PRETRAIN", "DATASET.NUM_SHOTS", "DATASET.SPLIT_CACHE",
                        "DATALOADER.TRAIN_X", "DATALOADER.TRAIN_U", "DATALOADER.NUM_WORKERS",
                        "DATALOADER.PERSISTENT_WORKERS", "DATALOADER.PIN_MEMORY",
                        "DATALOADER.CACHE_IMAGES_MB", "TEST.ZEROSHOT_BASELINE",
                        "TEST.ZEROSHOT_CACHE", "TEST.FINAL_MODEL", "TEST.NO_TEST",
                        "TEST.PER_CLASS_RESULT", "TEST.COMPUTE_CMAT")  # fmt: skip
TRAINER_KEYS_READ_BY_ZEROSHOT = ("SPEED", "ZSCLIP")


def backbone_identity(name):
    """A CLIP checkpoint file by path, size and modification time; a CLIP name as itself."""
    if os.path.isfile(name):
        stat = os.stat(name)
        return {"path": os.path.abspath(name), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    return name


def items_digest(items):
    """A digest of the images (paths) and labels of a split."""
    text = "\n".join(f"{item.impath}\t{item.label}" for item in items)
    return hashlib.sha256(text.encode()).hexdigest()


def zeroshot_key(trainer, templates, split):
    """What determines a zero-shot CLIP evaluation: the CLIP file, the split's images and
    labels, the class names, the templates, the precision and device, and the digest of every
    config key that the evaluation may read (``NOT_READ_BY_ZEROSHOT`` left out)."""
    cfg = trainer.cfg.clone()
    cfg.defrost()
    for dotted in NOT_READ_BY_ZEROSHOT:
        *parents, name = dotted.split(".")
        node = cfg
        for parent in parents:
            node = node[parent]
        node.pop(name, None)
    cfg.TRAINER = CN({k: cfg.TRAINER[k] for k in TRAINER_KEYS_READ_BY_ZEROSHOT})
    items = trainer.dm.dataset.val if split == "val" else trainer.dm.dataset.test
    return {
        "evaluation": "zero-shot CLIP",
        "backbone": backbone_identity(trainer.cfg.MODEL.BACKBONE.NAME),
        "dataset": trainer.cfg.DATASET.NAME,
        "split": split,
        "images": items_digest(items),
        "classnames": list(trainer.classnames),
        "templates": list(templates),
        "precision": trainer.precision,
        "device": trainer.device.type,
        "config": cfg_digest(cfg),
    }


def zeroshot_cache(trainer):
    """TEST.ZEROSHOT_CACHE; else, for a run that trains, its run directory's own cache; None
    in a distributed run (each process evaluates only its share)."""
    if distributed.is_distributed():
        return None
    folder = trainer.cfg.TEST.ZEROSHOT_CACHE
    if not folder and trainer.learns:
        folder = os.path.join(trainer.output_dir, ZEROSHOT_CACHE_FOLDER)
    return EvaluationCache(folder) if folder else None


def evaluate_once(trainer, templates, header, evaluate, predictions, replay):
    """Zero-shot CLIP on TEST.SPLIT: ``evaluate()``, stored in the cache (``predictions()``
    gives what it processed: predicted and true labels), or, when the cache holds the same
    evaluation, ``header`` and ``replay(pred, label)``, which computes the metrics from the
    stored labels as the engine's evaluator does. Returns what ``evaluate`` or ``replay`` does."""
    cache = zeroshot_cache(trainer)
    if cache is None:
        return evaluate()
    key = zeroshot_key(trainer, templates, trainer.cfg.TEST.SPLIT)
    entry = cache.get(key)
    if entry is None:
        results = evaluate()
        if distributed.is_main_process():
            place = f"the zero-shot evaluation in '{cache.path(key)}'"
            with saving(place, trainer.output_dir if trainer.learns else None):
                cache.put(key, *predictions(), source=trainer.output_dir)
        return results
    print(header)
    print(f"Reusing the evaluation made by the run in {entry['source']} (same CLIP, data, "
          f"templates and settings; stored in {cache.path(key)})")  # fmt: skip
    return replay(entry["pred"], entry["label"])
