"""A prompt-tuning method, independent of the loop that trains it.

A ``Method`` holds what makes CoOp, VPT, VLP or DPT what it is: its settings (read from the
config and checked before anything loads), its model, the optimiser settings of each
learnable module, and how a saved state is fitted to this run. Two engines drive the same
methods through one adapter (trainers/adapter.py): the builtin loop (``trainers/builtin.py``)
and Dassl's (``dassl_engine/trainer.py``).
"""

from yacs.config import CfgNode as CN

from engine.config import (
    config_differences,
    declare_result_neutral,
    extend_cfg,
    get_value,
    schedule_notes,
)
from engine.randomness import initialisation
from engine.registry import TRAINER_REGISTRY
from engine.trainer import START_AGAIN
from models.clip_loader import input_resolution, load_clip
from models.settings import TextPromptCfg
from models.speed import Speed, apply_speed
from models.templates import dataset_template
from models.zeroshot import ZeroShotClassifier
from scripts.naming import context_length
from trainers.knowledge import (
    REGULARIZER_KEYS,
    aggregation,
    anchor_templates,
    projected_step,
)
from trainers.knowledge import attach as attach_regularizer
from trainers.original_checkpoints import read_trained_states
from trainers.settings import ConfigKeys, named_keys

# TRAINER.COOP is not CoOp's alone: the original DPT code reads its text-prompt keys and its
# precision in every trainer, so it is declared here, with what all methods share.
TEXT_PROMPT_KEYS = ConfigKeys(
    TextPromptCfg,
    n_ctx="TRAINER.COOP.N_CTX",
    ctx_init="TRAINER.COOP.CTX_INIT",
    csc="TRAINER.COOP.CSC",
    class_token_position="TRAINER.COOP.CLASS_TOKEN_POSITION",
)


@extend_cfg
def method_cfg(cfg):
    TEXT_PROMPT_KEYS.declare(cfg)
    # fp16 | fp32 | bf16 | amp | amp_bf16 | auto, for every CLIP trainer (engine/precision.py).
    # auto: bfloat16 autocast on GPUs that have it, float16 autocast + grad scaler on other
    # GPUs, float32 on the CPU. fp16 is what CoOp and the original DPT code run.
    cfg.TRAINER.COOP.PREC = "auto"  # SHARED_PRECISION_KEY
    # Exact speed-ups (see models/speed.py); all off computes what the original code computes.
    cfg.TRAINER.SPEED = CN()
    cfg.TRAINER.SPEED.SDPA = True  # attention through F.scaled_dot_product_attention
    cfg.TRAINER.SPEED.TRUNCATE_TEXT = True  # text encoder on the tokens up to the last EOS
    cfg.TRAINER.SPEED.SHARED_TEXT_PREFIX = True  # prompt tokens shared by all classes once
    cfg.TRAINER.SPEED.CACHE_TEXT = True  # learned text features once per evaluation
    cfg.TRAINER.SPEED.CHECKPOINT_TEXT = False  # recompute text activations in backward
    cfg.TRAINER.SPEED.COMPILE = ""  # torch.compile backend for the blocks, e.g. "inductor"
    # Also evaluate zero-shot CLIP (the dataset's template) before training, and report both.
    cfg.TEST.ZEROSHOT_BASELINE = False
    # A folder where zero-shot CLIP evaluations are kept and reused by every run that would
    # evaluate the same thing (a sweep sets <output>/.zeroshot_cache); "" keeps a trained
    # run's baseline in its own run directory, for its resume (trainers/zeroshot_cache.py).
    cfg.TEST.ZEROSHOT_CACHE = ""


SHARED_PRECISION_KEY = "TRAINER.COOP.PREC"

# Exact speed-ups compute what the plain path computes; the baseline and its cache change
# nothing that is trained.
declare_result_neutral("TRAINER.SPEED.", "TEST.ZEROSHOT_BASELINE", "TEST.ZEROSHOT_CACHE")


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


def build_clip(cfg):
    """The run's CLIP (MODEL.BACKBONE.NAME), checked against INPUT.SIZE: loaded before the
    data, so that a missing backbone or a wrong size fails before any work."""
    print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME})")
    clip_model = load_clip(cfg.MODEL.BACKBONE.NAME)
    check_input_size(cfg, clip_model)
    return clip_model


def step_summary(loss, parts, logits, labels):
    """The log entries of one training step: loss, batch accuracy (%) and the loss terms."""
    accuracy = (logits.argmax(1) == labels).float().mean().item() * 100.0
    return {"loss": loss.item(), "acc": accuracy, **parts}


def template_for(dataset, cfg):
    """The dataset's hand-crafted prompt: its own ``template`` if it has one."""
    return getattr(dataset, "template", None) or dataset_template(cfg.DATASET.NAME)


def zeroshot_baseline(method, clip_model, classnames, template):
    """Zero-shot CLIP with the dataset's template, to report beside a tuned model."""
    return apply_speed(ZeroShotClassifier(clip_model, classnames, [template]), method.speed)


class Method:
    """One prompt-tuning method for one run's config: what both engines drive
    (trainers/adapter.py), knowing neither.

    A method owns its settings: ``config_keys`` (the ``ConfigKeys`` it reads in
    ``read_settings``, so that a bad value names its key), its precision key, the keys its run
    directory is named after (``run_setting``), its model (``create_model``, whose
    ``learnable_modules`` name the modules saved in a run directory), its training step
    (``training_step``, ``loss``, ``after_epoch``), how a trained run loads
    (``read_trained_run``, ``adapt_loaded_state``, ``original_dpt_folders``) and the parts that
    tools read (``text_prompt_module``, ``cavpt_module``). Registered by name with
    ``@TRAINER_REGISTRY.register()``; docs/adding_a_method.md walks through one.
    """

    config_keys = ()
    # The schedule's epoch counts (engine.config.EPOCH_KEYS) this method reads.
    epoch_keys = ("OPTIM.WARMUP_EPOCH",)
    # Keys of ``config_keys`` that only the training loss reads (not the model).
    training_only_keys = ()
    # The key of the precision mode (engine/precision.py); a method with a key of its own
    # (its authors', e.g. TRAINER.MAPLE.PREC) lets "" there mean TRAINER.COOP.PREC.
    precision_key = SHARED_PRECISION_KEY
    # The keys of the knowledge-preserving regularisers (trainers/knowledge.py): the shared
    # block, or a paper method's own (its authors' keys).
    regularizer_keys = REGULARIZER_KEYS
    # Whether a run trains (False: every run evaluates, as zero-shot CLIP's).
    trains = True
    # Whether CTX_INIT's words set the number of context vectors, as in CoOp (IVLP and MaPLe
    # learn the first N_CTX tokens of the phrase instead).
    context_from_words = True
    # The folder of its config files below configs/trainers/ (None: the method's name).
    config_folder = None
    # Trained by one ``fit(trainer)`` (e.g. the linear probe's closed-form classifier) instead
    # of the engine's loop of steps.
    fits_in_one_go = False
    # The learnable modules (names in the model's ``learnable_modules``) that tools read, or
    # None where the method learns no such part (``learned_part``): the text prompt, whose
    # ``ctx`` is the learned context (tools/interpret_prompt.py), and the class-aware visual
    # prompts, whose attention is drawn (inference/attention.py).
    text_prompt_module = None
    cavpt_module = None
    # Whether a trained model classifies only the classes it was trained on (a weight row per
    # class, as the linear probe's): a sweep tests it on base-to-new's base classes only, and
    # across datasets on ImageNet's variants only (scripts/plan.py, scripts/results.py); an
    # evaluation on other classes of its dataset stops before any work (trainers/evaluated_run.py).
    closed_set = False
    # The folder in which the original DPT code (which also ships CoOp, VPT and VLP) saves each
    # learnable module of this method, {module: folder} (``models.upstream.ORIGINAL_FOLDERS``):
    # ``read_trained_run`` reads those of such a run directory. Empty: none of them is there.
    original_dpt_folders = {}

    def __init__(self, cfg):
        self.cfg = cfg
        self.speed = speed_from_cfg(cfg)
        with named_keys(self.regularizer_keys, *self.config_keys):
            self.read_settings(cfg)
            self.regularizer_cfg = self.regularizer_keys.read(cfg)
        self.aggregation = None

    @property
    def name(self):
        return type(self).__name__

    def read_settings(self, cfg):
        """Hook: read (and so validate) the method's settings from ``cfg``."""

    @classmethod
    def run_setting(cls, cfg):
        """The ``<setting>`` folder of this method's run directories (scripts/naming.py): the
        values of the settings that tell two of its runs apart. CoOp's
        ``nctx<N>_csc<CSC>_ctp<POSITION>`` (N: the vectors learned, the words of CTX_INIT
        when it is set) unless the method names its own."""
        c = cfg.TRAINER.COOP
        n_ctx = context_length(c.N_CTX, c.CTX_INIT)
        return f"nctx{n_ctx}_csc{c.CSC}_ctp{c.CLASS_TOKEN_POSITION}"

    def model_keys(self):
        """The config keys that define the model (an evaluation must use the run's)."""
        keys = [key for keys in self.config_keys for key in keys.keys.values()]
        return [key for key in keys if key not in self.training_only_keys]

    def notes(self):
        """Notes before training, e.g. a warm-up that lasts the whole run."""
        return schedule_notes(self.cfg, self.epoch_keys)

    def precision_setting(self):
        """(key, value): the precision mode asked for and the key that asked for it."""
        value = get_value(self.cfg, self.precision_key)
        if value == "" and self.precision_key != SHARED_PRECISION_KEY:
            return SHARED_PRECISION_KEY, get_value(self.cfg, SHARED_PRECISION_KEY)
        return self.precision_key, value

    def precision(self, device):
        """The ``engine.precision`` mode to run in on ``device``."""
        return self.precision_setting()[1]

    def build_model(self, clip_model, classnames, template):
        """The model, its random initial values drawn from the run's ``init`` stream
        (engine/randomness.py), the same under both engines, with the regularisers asked for
        (``regularizer_keys``)."""
        with named_keys(*self.config_keys), initialisation(self.cfg):
            model = self.create_model(clip_model, classnames, template)
        templates = self.regularizer_templates(template)
        model = attach_regularizer(model, self.regularizer_cfg, clip_model, classnames, templates)
        self.aggregation = aggregation(self.regularizer_cfg, self.cfg.OPTIM.MAX_EPOCH)
        return apply_speed(model, self.speed)

    def regularizer_templates(self, template):
        """The hand-crafted templates the regularisers compare with, for a dataset whose
        template is ``template``."""
        return anchor_templates(self.cfg, template)

    def create_model(self, clip_model, classnames, template):
        raise NotImplementedError

    def fit(self, trainer):
        """With ``fits_in_one_go``: train ``trainer.model`` (either engine's trainer), save
        it and evaluate it; return what the engine's ``train`` returns."""
        raise NotImplementedError

    def learned_part(self, model, role, what, needed_by):
        """The learnable module of ``model`` that this method names in ``role``
        (``text_prompt_module`` or ``cavpt_module``). Where it names none: a ValueError saying
        that ``needed_by`` needs ``what`` and that this run's trainer learns none."""
        modules = model.learnable_modules()
        name = getattr(self, role)
        if name is None:
            raise ValueError(
                f"{needed_by} need a run that learns {what}; this run was trained with "
                f"{self.name}, which learns none (its learned modules are {list(modules)})"
            )
        return modules[name]

    def zeroshot_templates(self, template):
        """The templates of the zero-shot CLIP this method is, or None (a learned method)."""
        return None

    def optim_cfg(self, module_name):
        """The OPTIM node for one learnable module (methods may give modules their own)."""
        return self.cfg.OPTIM

    # ---- training --------------------------------------------------------------------------
    def training_step(self, step):
        """One training step on ``step`` (``trainers.adapter.TrainingStep``, the same under
        both engines): forward, loss, backward, every optimiser's step. Returns the log
        entries. A method that steps otherwise (e.g. combines the gradients of two losses)
        overrides it with ``step.zero_grad``, ``step.backward``, ``step.step``."""
        with step.autocast():
            output = step.model(step.images)
            loss, parts = self.loss(step.module, output, step.labels, step.epoch)
        if self.regularizer_cfg.projection:
            projected_step(step, output, loss, self.regularizer_cfg.projection)
        else:
            step.backward_and_step(loss)
        return step_summary(loss, parts, output.logits, step.labels)

    def loss(self, model, output, labels, epoch):
        """The training loss (a tensor) and a dict of floats for the log."""
        return model.compute_loss(output, labels, epoch)

    def after_epoch(self, model, epoch):
        """Hook: at the end of each training epoch (0-based ``epoch``), after the schedules
        stepped and before the checkpoint is written (e.g. averaging prompts over epochs):
        PromptSRC's aggregation when it is on."""
        if self.aggregation is not None:
            self.aggregation.after_epoch(epoch, model.learnable_state_dict())

    def training_state(self):
        """What the method accumulates over the epochs, saved with each checkpoint so that a
        resumed run goes on with it (None: nothing): the aggregation's running sum."""
        return None if self.aggregation is None else self.aggregation.state_dict()

    def load_training_state(self, state, path):
        """Go on from ``training_state`` saved in the checkpoint ``path`` (None: none)."""
        if self.aggregation is None:
            return
        if state is None:
            raise ValueError(
                f"The checkpoint '{path}' holds no running sum of the Gaussian prompt "
                f"aggregation (written before it was saved), so this run cannot resume: "
                f"{START_AGAIN}."
            )
        self.aggregation.load_state_dict(state)

    # ---- trained runs ----------------------------------------------------------------------
    def read_trained_run(self, directory, modules, epoch=None, best=False):
        """``{module name: SavedModule}`` for ``modules`` from a run directory: this
        project's or Dassl's layout, or the original DPT code's (which also ships CoOp, VPT
        and VLP). A method whose authors save otherwise reads their layout here."""
        return read_trained_states(directory, modules, self.original_dpt_folders, epoch, best)

    def adapt_loaded_state(self, name, module, state_dict):
        """Hook: fit a loaded state dict to this run's ``module`` (e.g. drop class-specific
        heads trained on other classes)."""
        return state_dict


def load_module_state(method, name, module, saved):
    """Load a checkpoint's parameters (``saved``, an ``engine.checkpoint.SavedModule``) into
    ``module``.

    Buffers derived from CLIP and the class names are rebuilt, not read; keys that other
    codebases save for them (the module's ``derived_checkpoint_keys``) are ignored, and the
    method may leave out more (``adapt_loaded_state``). A tensor of another shape is an error
    naming the settings behind it; anything else missing or unexpected names the module.
    """
    state_dict = saved.state_dict
    adapted = method.adapt_loaded_state(name, module, state_dict)
    skip = {k for k, _ in module.named_buffers()} | (set(state_dict) - set(adapted))
    derived = tuple(getattr(module, "derived_checkpoint_keys", ()))
    params = {k: v for k, v in adapted.items() if k not in skip and not k.startswith(derived)}
    check_shapes(method.cfg, name, module, params, saved)
    missing, unexpected = module.load_state_dict(params, strict=False)
    missing = [k for k in missing if k not in skip]
    if missing or unexpected:
        raise RuntimeError(
            f"Checkpoint for '{name}' does not fit the model: missing {missing}, "
            f"unexpected {unexpected}"
        )


def check_shapes(cfg, name, module, params, saved):
    """A saved tensor whose shape differs from the model's is a ValueError that names the
    settings behind it (those of TRAINER and MODEL, else DATASET, that differ from the
    config saved with the checkpoint)."""
    own = module.state_dict()
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in params.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]  # fmt: skip
    if not wrong:
        return
    key, there, here = wrong[0]
    where = f"'{saved.path}'" if saved.path else f"for '{name}'"
    message = (
        f"The checkpoint {where} does not fit this model: '{key}' has shape {list(there)} "
        f"there and {list(here)} here."
    )
    diffs = []
    if saved.config:
        diffs = config_differences(saved.config, cfg, ("TRAINER.", "MODEL."))
        diffs = diffs or config_differences(saved.config, cfg, ("DATASET.",))
    if diffs:
        settings = "; ".join(f"{k} {old} (this run: {new})" for k, old, new in diffs)
        message += (
            f" The run was trained with {settings}: use the run's values (drop the "
            "override, or pass the config files it was trained with)."
        )
    else:
        message += (
            " The run was trained with other settings (see the ** Config ** section of "
            "its log.txt): evaluate with the same settings."
        )
    raise ValueError(message)


def context_notes(cfg):
    """A note when a method's ``CTX_INIT`` sets another number of context vectors than its
    ``N_CTX`` says (one vector per word; ``N_CTX`` is then not used)."""
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY.names():
        return []  # a trainer of Dassl's, or none given
    method_type = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    if not method_type.context_from_words:
        return []
    notes = []
    for keys in method_type.config_keys:
        if not {"n_ctx", "ctx_init"} <= set(keys.keys):
            continue
        if not isinstance(get_value(cfg, keys.keys["ctx_init"]), str):
            continue  # KgCoOp's and ProGrad's boolean: their run names say it
        settings = keys.read(cfg)
        length = context_length(settings.n_ctx, settings.ctx_init)
        if length != settings.n_ctx:
            notes.append(
                f"Note: {keys.keys['ctx_init']} {settings.ctx_init!r} has {length} words, so "
                f"the text context has {length} vectors, one per word; {keys.keys['n_ctx']} "
                f"{settings.n_ctx} is not used (the run directory's name says nctx{length})."
            )
    return notes


def method_for(cfg):
    """The registered method named by TRAINER.NAME, built for ``cfg``."""
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
