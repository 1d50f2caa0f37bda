"""What all CLIP prompt-tuning trainers share: CLIP loading, precision, the training step."""

import hashlib
import os

from torch.nn.parallel import DistributedDataParallel
from yacs.config import CfgNode as CN

from engine import distributed
from engine.config import cfg_digest, extend_cfg
from engine.data import DataManager
from engine.eval_cache import EvaluationCache
from engine.trainer import Trainer, evaluation_header
from models.clip_loader import cast_clip, input_resolution, load_clip
from models.speed import Speed, apply_speed
from models.templates import dataset_template
from models.zeroshot import ZeroShotClassifier
from trainers.original_checkpoints import is_original_layout, read_original_run

ZEROSHOT_CACHE_FOLDER = "zeroshot_cache"  # a trained run's own, in its run directory


@extend_cfg
def clip_trainer_cfg(cfg):
    # Also evaluate zero-shot CLIP (the dataset's template) before training, and report both.
    cfg.TEST.ZEROSHOT_BASELINE = False
    # A folder where zero-shot CLIP evaluations are kept and reused by every run that would
    # evaluate the same thing (a sweep sets <output>/.zeroshot_cache); "" keeps a trained
    # run's baseline in its own run directory, for its resume.
    cfg.TEST.ZEROSHOT_CACHE = ""
    # Exact speed-ups (see models/speed.py); all off computes what the original code computes.
    cfg.TRAINER.SPEED = CN()
    cfg.TRAINER.SPEED.SDPA = True  # attention through F.scaled_dot_product_attention
    cfg.TRAINER.SPEED.TRUNCATE_TEXT = True  # text encoder on the tokens up to the last EOS
    cfg.TRAINER.SPEED.SHARED_TEXT_PREFIX = True  # prompt tokens shared by all classes once
    cfg.TRAINER.SPEED.CACHE_TEXT = True  # learned text features once per evaluation
    cfg.TRAINER.SPEED.CHECKPOINT_TEXT = False  # recompute text activations in backward
    cfg.TRAINER.SPEED.COMPILE = ""  # torch.compile backend for the blocks, e.g. "inductor"


def speed_from_cfg(cfg):
    s = cfg.TRAINER.SPEED
    if s.SHARED_TEXT_PREFIX and not s.SDPA:
        raise ValueError(
            "TRAINER.SPEED.SHARED_TEXT_PREFIX True needs TRAINER.SPEED.SDPA True; "
            "set TRAINER.SPEED.SHARED_TEXT_PREFIX False to run nn.MultiheadAttention"
        )
    return Speed(
        sdpa=s.SDPA,
        truncate_text=s.TRUNCATE_TEXT,
        shared_text_prefix=s.SHARED_TEXT_PREFIX,
        cache_text=s.CACHE_TEXT,
        checkpoint_text=s.CHECKPOINT_TEXT,
        compile=s.COMPILE,
    )


# Config keys that a zero-shot CLIP evaluation does not read: where runs go, training, the
# few-shot train set and its loader. Of TRAINER it reads only SPEED and ZSCLIP (the precision,
# TRAINER.COOP.PREC, enters the key as resolved for the device).
NOT_READ_BY_ZEROSHOT = ("OUTPUT_DIR", "RESUME", "SEED", "VERBOSE", "NUM_THREADS", "OPTIM",
                        "TRAIN", "PRETRAIN", "DATASET.NUM_SHOTS", "DATALOADER.TRAIN_X",
                        "DATALOADER.TRAIN_U", "DATALOADER.NUM_WORKERS",
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


def check_input_size(cfg, clip_model):
    size = input_resolution(clip_model)
    if tuple(cfg.INPUT.SIZE) != (size, size):
        raise ValueError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the backbone "
            f"'{cfg.MODEL.BACKBONE.NAME}' takes {size}x{size} images. "
            f"Set INPUT.SIZE ({size}, {size}) in the dataset or trainer config, or on the "
            f"command line: INPUT.SIZE '({size}, {size})'."
        )


def check_at_least(cfg, key, minimum, what):
    """A config value below ``minimum`` is an error naming the key (before anything loads)."""
    value = cfg
    for part in key.split("."):
        value = value[part]
    if value < minimum:
        raise ValueError(f"{key} ({what}) must be >= {minimum}, got {value}")


class ClipTrainer(Trainer):
    """Builds CLIP before the data, so that a wrong backbone or size fails before any I/O.

    Subclasses implement ``create_model(clip_model, classnames)`` returning a model with
    ``learnable_modules()``, ``forward(images) -> ModelOutput`` and ``compute_loss``.
    """

    def get_precision(self):
        return self.cfg.TRAINER.COOP.PREC

    def check_cfg(self, cfg):
        """Hook: validate trainer-specific keys before anything is loaded."""

    def build(self):
        cfg = self.cfg
        self.check_cfg(cfg)
        speed = speed_from_cfg(cfg)
        prec = cfg.TRAINER.COOP.PREC
        print(f"Precision: {self.precision} (TRAINER.COOP.PREC {prec} on {self.device.type})")
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
        clip_model = load_clip(cfg.MODEL.BACKBONE.NAME)
        check_input_size(cfg, clip_model)
        if self.device.type == "cpu" and self.precision == "fp16":
            print("Warning: fp16 on the CPU is slow; bf16 or fp32 is faster there.")
        clip_model = cast_clip(clip_model, self.mixed_precision.weight_dtype)
        self.dm = DataManager(cfg)
        print("Building the model")
        self.model = self.create_model(clip_model, self.dm.classnames).to(self.device)
        apply_speed(self.model, speed)
        for name, module in self.model.learnable_modules().items():
            self.register_module(name, module, self.optim_cfg_for(name))
        self.train_model = self.model  # what training steps run: the DDP wrapper if distributed
        if distributed.is_distributed() and self.learns:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            # Buffers derive from CLIP and the class names: the same on every rank. A zero-size
            # parameter (DPT's deep visual prompt at BOTTOMLIMIT 1) never enters the graph,
            # which DDP reports as an error unless it looks for unused parameters.
            empty = any(p.requires_grad and p.numel() == 0 for p in self.model.parameters())
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=device_ids,
                broadcast_buffers=False,
                find_unused_parameters=empty,
            )
        self.zeroshot_baseline = None
        if cfg.TEST.ZEROSHOT_BASELINE and self.learns:
            self.zeroshot_baseline = ZeroShotClassifier(
                clip_model, self.dm.classnames, [self.template()]
            ).to(self.device)
            apply_speed(self.zeroshot_baseline, speed)
        n_learn = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        print(f"Learnable parameters: {n_learn:,} in {list(self._modules)}")

    def create_model(self, clip_model, classnames):
        raise NotImplementedError

    def set_mode(self, mode):
        """The model's wrappers follow the mode too (frozen CLIP stays in eval mode)."""
        super().set_mode(mode)
        self.model.train(mode == "train")

    def optim_cfg_for(self, module_name):
        """The OPTIM node for one learnable module (trainers may give modules their own)."""
        return self.cfg.OPTIM

    def template(self):
        """The dataset's hand-crafted prompt: its own ``template`` if it has one."""
        return getattr(self.dm.dataset, "template", None) or dataset_template(self.cfg.DATASET.NAME)

    def zeroshot_key(self, templates, split):
        """What determines a zero-shot CLIP evaluation: the CLIP file, the split's images and
        labels, the class names, the templates, the precision and device, and the digest of
        every config key that the evaluation may read (``NOT_READ_BY_ZEROSHOT`` left out)."""
        cfg = self.cfg.clone()
        cfg.defrost()
        for dotted in NOT_READ_BY_ZEROSHOT:
            *parents, name = dotted.split(".")
            node = cfg
            for parent in parents:
                node = node[parent]
            node.pop(name, None)
        cfg.TRAINER = CN({k: cfg.TRAINER[k] for k in TRAINER_KEYS_READ_BY_ZEROSHOT})
        items = self.dm.dataset.val if split == "val" else self.dm.dataset.test
        return {
            "evaluation": "zero-shot CLIP",
            "backbone": backbone_identity(self.cfg.MODEL.BACKBONE.NAME),
            "dataset": self.cfg.DATASET.NAME,
            "split": split,
            "images": items_digest(items),
            "classnames": list(self.dm.classnames),
            "templates": list(templates),
            "precision": self.precision,
            "device": self.device.type,
            "config": cfg_digest(cfg),
        }

    def zeroshot_cache(self):
        """TEST.ZEROSHOT_CACHE; else, for a run that trains, its run directory's own cache;
        None in a distributed run (each process evaluates only its share)."""
        if distributed.is_distributed():
            return None
        folder = self.cfg.TEST.ZEROSHOT_CACHE
        if not folder and self.learns:
            folder = os.path.join(self.output_dir, ZEROSHOT_CACHE_FOLDER)
        return EvaluationCache(folder) if folder else None

    def evaluate_zeroshot(self, inference, templates, what="", write_results=False):
        """Evaluate zero-shot CLIP (``inference``) on TEST.SPLIT, or reuse the stored
        evaluation with the same ``zeroshot_key``: a sweep evaluates it once for all its runs,
        and a resumed run does not evaluate its baseline again."""
        split = self.cfg.TEST.SPLIT
        cache = self.zeroshot_cache()
        if cache is None:
            return Trainer.test(self, split, write_results, inference, what)
        key = self.zeroshot_key(templates, split)
        entry = cache.get(key)
        if entry is None:
            results = Trainer.test(self, split, write_results, inference, what)
            if distributed.is_main_process():
                cache.put(key, *self.evaluator.predictions(), source=self.output_dir)
            return results
        print(evaluation_header(split, what))
        print(f"Reusing the evaluation made by the run in {entry['source']} (same CLIP, data, "
              f"templates and settings; stored in {cache.path(key)})")  # fmt: skip
        self.evaluator.reset()
        self.evaluator.process_predictions(entry["pred"], entry["label"])
        results = self.evaluator.evaluate()
        if write_results:
            self.write_results(split, results)
        return results

    def train(self):
        if self.zeroshot_baseline is None:
            return super().train()
        baseline = self.evaluate_zeroshot(
            lambda images: self.zeroshot_baseline(images).logits,
            [self.template()],
            what="zero-shot CLIP",
        )
        self.extra_results["zeroshot_accuracy"] = baseline["accuracy"]
        results = super().train()
        if results is not None:
            print(
                f"Zero-shot CLIP: {baseline['accuracy']:.1f}% -> {self.cfg.TRAINER.NAME}: "
                f"{results['accuracy']:.1f}% on the {self.cfg.TEST.SPLIT} split"
            )
        return results

    def load_model(self, directory, epoch=None, best=False):
        """Also reads run directories of the original DPT code (detected by their folders)."""
        if not is_original_layout(directory):
            return super().load_model(directory, epoch, best)
        modules, found_epoch = read_original_run(directory, epoch)
        print(f"Loading weights from the original code's run directory {directory} "
              f"(epoch = {found_epoch})")  # fmt: skip
        missing = [name for name in self._modules if name not in modules]
        if missing:
            raise FileNotFoundError(
                f"{directory} has no checkpoint for {missing} (found {sorted(modules)})"
            )
        for name in self._modules:
            self._load_state(name, modules[name])
        if found_epoch:
            self.epoch = found_epoch - 1

    def forward_backward(self, batch):
        images = batch["img"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        with self.autocast():
            output = self.train_model(images)
            loss, parts = self.model.compute_loss(output, labels, self.epoch)
        self.backward_and_step(loss)
        acc = (output.logits.argmax(1) == labels).float().mean().item() * 100.0
        return {"loss": loss.item(), "acc": acc, **parts}

    def model_inference(self, images):
        return self.model(images).logits
