"""What all CLIP prompt-tuning trainers share: CLIP loading, precision, the training step."""

from torch.nn.parallel import DistributedDataParallel
from yacs.config import CfgNode as CN

from engine import distributed
from engine.config import extend_cfg
from engine.data import DataManager
from engine.trainer import Trainer
from models.clip_loader import cast_clip, input_resolution, load_clip
from models.speed import Speed, apply_speed
from models.templates import dataset_template
from models.zeroshot import ZeroShotClassifier
from trainers.original_checkpoints import is_original_layout, read_original_run


@extend_cfg
def clip_trainer_cfg(cfg):
    # Also evaluate zero-shot CLIP (the dataset's template) before training, and report both.
    cfg.TEST.ZEROSHOT_BASELINE = False
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


def check_input_size(cfg, clip_model):
    size = input_resolution(clip_model)
    if tuple(cfg.INPUT.SIZE) != (size, size):
        raise ValueError(
            f"INPUT.SIZE is {tuple(cfg.INPUT.SIZE)} but the backbone "
            f"'{cfg.MODEL.BACKBONE.NAME}' takes {size}x{size} images. "
            f"Set INPUT.SIZE ({size}, {size}) in the dataset or trainer config, or on the "
            f"command line: INPUT.SIZE '({size}, {size})'."
        )


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

    def train(self):
        if self.zeroshot_baseline is None:
            return super().train()
        baseline = self.test(
            write_results=False,
            inference=lambda images: self.zeroshot_baseline(images).logits,
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
