"""Typed settings of the prompt modules, each validated once where it is made.

The models take these keyword-only (open_clip's ``CLIPVisionCfg`` pattern) instead of long
argument lists. A bad value raises ``SettingError`` naming the settings class and field; the
trainers translate that into the config key the value came from (``trainers/settings.py``).
"""

from dataclasses import dataclass, fields

PROMPT_INIT_STD = 0.02  # std of the normal initialisation of every learnable prompt token
CLASS_TOKEN_POSITIONS = ("end", "middle", "front")


class SettingError(ValueError):
    """A setting out of range: ``settings_type`` and ``field`` say which one."""

    def __init__(self, settings_type, field, message):
        self.settings_type = settings_type
        self.field = field
        self.message = message
        super().__init__(f"{settings_type.__name__}.{field} {message}")


def check_at_least(settings, field, minimum, what):
    value = getattr(settings, field)
    if value < minimum:
        raise SettingError(type(settings), field, f"({what}) must be >= {minimum}, got {value}")


@dataclass(frozen=True, kw_only=True)
class TextPromptCfg:
    """CoOp's learnable text context.

    n_ctx: context vectors (ignored with ``ctx_init``: one vector per word then).
    ctx_init: initialise the context from these words (underscores read as spaces).
    csc: one context per class (class-specific context) instead of one shared.
    class_token_position: where the class name goes: after, amid or before the context.
    """

    n_ctx: int = 16
    ctx_init: str = ""
    csc: bool = False
    class_token_position: str = "end"

    def __post_init__(self):
        if not isinstance(self.ctx_init, str):
            raise SettingError(
                type(self),
                "ctx_init",
                "must be the words to initialise the context from ('' for a random one), got "
                f"{self.ctx_init!r} (a boolean is KgCoOp's and ProGrad's: --trainer KgCoOp or "
                "ProGrad)",
            )
        if not self.ctx_init:
            check_at_least(self, "n_ctx", 1, "context tokens")
        if self.class_token_position not in CLASS_TOKEN_POSITIONS:
            raise SettingError(
                type(self),
                "class_token_position",
                f"must be one of {', '.join(CLASS_TOKEN_POSITIONS)}, "
                f"got {self.class_token_position!r}",
            )


@dataclass(frozen=True, kw_only=True)
class VisualPromptCfg:
    """VPT-deep: ``n_ctx`` learnable tokens appended in each prompted ViT block."""

    n_ctx: int = 10

    def __post_init__(self):
        check_at_least(self, "n_ctx", 1, "visual prompt tokens per block")


@dataclass(frozen=True, kw_only=True)
class GuidanceCfg:
    """General-knowledge guidance: for the first ``epochs`` epochs the loss adds the frozen
    CLIP terms (frozen image features against the learned text, prompted image features
    against the hand-crafted text); afterwards it is the main cross-entropy alone."""

    epochs: int = 30


@dataclass(frozen=True, kw_only=True)
class CAVPTCfg:
    """Class-aware visual prompt tuning.

    first_block: CAVPT runs in blocks first_block..L (1-based); blocks before it get the deep
        visual prompt.
    top_k: K, the zero-shot top classes whose text features query the image (min(K, C)).
    loss_weight: alpha, the weight of the auxiliary classification loss.
    n_kv: learnable key/value tokens per CAVPT block (10 in the original code).
    attn_dim: width of the query/key projections (32 in the original code).
    """

    first_block: int = 12
    top_k: int = 10
    loss_weight: float = 0.3
    n_kv: int = 10
    attn_dim: int = 32

    def __post_init__(self):
        check_at_least(self, "first_block", 1, "the first CAVPT block")
        check_at_least(self, "top_k", 1, "K, the classes CAVPT attends from")
        check_at_least(self, "loss_weight", 0, "the CAVPT loss weight")
        check_at_least(self, "n_kv", 1, "CAVPT key/value tokens")
        check_at_least(self, "attn_dim", 1, "CAVPT attention width")


@dataclass(frozen=True, kw_only=True)
class CoCoOpCfg:
    """CoCoOp's context (shared, class name at the end) and how the text tower is batched.

    images_per_text_pass: images whose C prompts each go through the text encoder together;
        1 is the paper's loop over the batch, 0 all at once. Same results, more memory.
    """

    n_ctx: int = 16
    ctx_init: str = ""
    images_per_text_pass: int = 0

    def __post_init__(self):
        if not self.ctx_init:
            check_at_least(self, "n_ctx", 1, "context tokens")
        check_at_least(self, "images_per_text_pass", 0, "images per text-encoder pass")


PHRASE_INIT_MAX_CTX = 4  # IVLP, MaPLe: ctx_init is used only with at most this many tokens


@dataclass(frozen=True, kw_only=True)
class IVLPCfg:
    """Independent vision-language prompts (IVLP): deep prompts in both towers, learned
    independently.

    n_ctx_text, n_ctx_vision: prompt tokens per layer in each tower.
    ctx_init: initial text context, used as the authors do only when n_ctx_text <= 4: the whole
        phrase precedes the class name and its first n_ctx_text tokens are learnable (the
        rest stays fixed); otherwise the context starts random. Underscores read as spaces.
    depth_text: text layers with prompts (>= 1): the input context, then fresh tokens
        replacing it before blocks 1..depth_text-1; later blocks carry what they get.
    depth_vision: vision layers with prompts (0: none): tokens appended to the input before
        ``ln_pre``, replaced before blocks 1..depth_vision-1, carried after that.
    """

    n_ctx_text: int = 2
    n_ctx_vision: int = 2
    ctx_init: str = "a photo of a"
    depth_text: int = 9
    depth_vision: int = 9

    def __post_init__(self):
        check_at_least(self, "n_ctx_text", 1, "text prompt tokens")
        check_at_least(self, "depth_text", 1, "text layers with prompts")
        check_at_least(self, "depth_vision", 0, "vision layers with prompts")
        if self.depth_vision:
            check_at_least(self, "n_ctx_vision", 1, "vision prompt tokens")


@dataclass(frozen=True, kw_only=True)
class MaPLeCfg:
    """Multi-modal prompt learning (MaPLe): IVLP's text prompts, and in the image tower the
    same number of tokens mapped from them by learned linear couplings, in the first
    ``depth`` layers of both towers.

    n_ctx: prompt tokens per layer; ctx_init: as ``IVLPCfg.ctx_init`` (with n_ctx);
    depth: layers with prompts (>= 1; 1 is shallow MaPLe, the input only).
    """

    n_ctx: int = 2
    ctx_init: str = "a photo of a"
    depth: int = 9

    def __post_init__(self):
        check_at_least(self, "n_ctx", 1, "prompt tokens")
        check_at_least(self, "depth", 1, "layers with prompts")


def check_depth(settings, field, n_layers, tower):
    """A prompt depth beyond the tower's layers would hold tokens that no block reads."""
    depth = getattr(settings, field)
    if depth > n_layers:
        raise SettingError(
            type(settings),
            field,
            f"({tower} layers with prompts) must be <= the {n_layers} layers of this CLIP's "
            f"{tower} tower, got {depth}",
        )


def field_names(settings_type):
    return [f.name for f in fields(settings_type)]


@dataclass(frozen=True, kw_only=True)
class RegularizerCfg:
    """Knowledge-preserving regularisers: each keeps a learned model near frozen zero-shot CLIP
    (its image features and the text features of hand-crafted prompts, the anchor), and each
    is off at 0. They compose: the loss terms add up, and the projection and the aggregation
    act on the step and on the epochs whatever the loss is.

    text_consistency: KgCoOp's weight (``TRAINER.COOP.W``) of 1 - the mean cosine of each
        class's learned text features with the anchor's.
    text_agreement, image_agreement: PromptSRC's weights (``TEXT_LOSS_WEIGHT``,
        ``IMAGE_LOSS_WEIGHT``) of the mean absolute difference of the normalised learned
        text features from the anchor's, and of the prompted image features from frozen
        CLIP's.
    logits_agreement: PromptSRC's weight (1 in its code) of KL(zero-shot || learned) over the
        batch's softmaxed logits, summed and divided by the number of logits.
    projection: ProGrad's lambda (``LOSS.LAMBDA``): a parameter's gradient that points
        against the gradient of the distillation loss (the zero-shot logits as soft targets,
        at ``temperature``, ``LOSS.T``) loses lambda times its component along it.
    gpa_mean, gpa_std: PromptSRC's Gaussian prompt aggregation (``GPA_MEAN``, ``GPA_STD``; on
        when gpa_std > 0): after each epoch e (1-based) the learnable parameters are added
        to a running sum with the weight N(e; mean, std) normalised over the epochs, and the
        sum replaces them after the last epoch.
    """

    text_consistency: float = 0.0
    text_agreement: float = 0.0
    image_agreement: float = 0.0
    logits_agreement: float = 0.0
    projection: float = 0.0
    temperature: float = 1.0
    gpa_mean: float = 0.0
    gpa_std: float = 0.0

    def __post_init__(self):
        for name in field_names(type(self)):
            if name != "gpa_mean":
                check_at_least(self, name, 0, "a regulariser's weight or parameter")
        if self.temperature <= 0:
            raise SettingError(type(self), "temperature", f"must be > 0, got {self.temperature}")

    @property
    def loss_weights(self):
        """The weights of the terms added to the loss, by term name."""
        names = ("text_consistency", "text_agreement", "image_agreement", "logits_agreement")
        return {name: getattr(self, name) for name in names}

    @property
    def active(self):
        """Whether any regulariser is on."""
        return any(self.loss_weights.values()) or self.projection > 0 or self.gpa_std > 0
