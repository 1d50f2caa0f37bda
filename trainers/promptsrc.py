"""PromptSRC (Khattak et al., ICCV 2023; github muzairkhattak/PromptSRC, trainers/promptsrc.py):
IVLP's prompts with the agreement regularisers (text, image, logits; anchored on the mean of 60
ImageNet templates) and the Gaussian aggregation of the prompts over the epochs
(trainers/knowledge.py). Its keys are the authors': TRAINER.PROMPTSRC.{N_CTX_VISION,
N_CTX_TEXT, CTX_INIT, PREC, PROMPT_DEPTH_VISION, PROMPT_DEPTH_TEXT, TEXT_LOSS_WEIGHT,
IMAGE_LOSS_WEIGHT, GPA_MEAN, GPA_STD}.
"""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.settings import IVLPCfg, RegularizerCfg
from models.templates import IMAGENET_TEMPLATES
from trainers.ivlp import IVLP
from trainers.settings import ConfigKeys

PROMPTSRC_KEYS = ConfigKeys(
    IVLPCfg,
    n_ctx_text="TRAINER.PROMPTSRC.N_CTX_TEXT",
    n_ctx_vision="TRAINER.PROMPTSRC.N_CTX_VISION",
    ctx_init="TRAINER.PROMPTSRC.CTX_INIT",
    depth_text="TRAINER.PROMPTSRC.PROMPT_DEPTH_TEXT",
    depth_vision="TRAINER.PROMPTSRC.PROMPT_DEPTH_VISION",
)
REGULARIZER_KEYS = ConfigKeys(
    RegularizerCfg,
    fixed={"logits_agreement": 1.0},  # the authors' KL term has no weight of its own
    text_agreement="TRAINER.PROMPTSRC.TEXT_LOSS_WEIGHT",
    image_agreement="TRAINER.PROMPTSRC.IMAGE_LOSS_WEIGHT",
    gpa_mean="TRAINER.PROMPTSRC.GPA_MEAN",
    gpa_std="TRAINER.PROMPTSRC.GPA_STD",
)


@extend_cfg
def promptsrc_cfg(cfg):
    PROMPTSRC_KEYS.declare(cfg)
    c = cfg.TRAINER.PROMPTSRC
    c.N_CTX_TEXT = 4  # the authors' defaults, where IVLP's differ
    c.N_CTX_VISION = 4
    c.PREC = ""  # a TRAINER.COOP.PREC mode; "" uses TRAINER.COOP.PREC
    # the authors' defaults, ints as they declare them
    REGULARIZER_KEYS.declare(cfg, text_agreement=25, image_agreement=10, gpa_mean=15, gpa_std=1)


@TRAINER_REGISTRY.register()
class PromptSRC(IVLP):
    """IVLP with its self-regulating constraints, read from its own keys."""

    config_keys = (PROMPTSRC_KEYS,)
    regularizer_keys = REGULARIZER_KEYS
    precision_key = "TRAINER.PROMPTSRC.PREC"

    @classmethod
    def run_setting(cls, cfg):
        c = cfg.TRAINER.PROMPTSRC
        return (
            f"nctxt{c.N_CTX_TEXT}_nctxv{c.N_CTX_VISION}_deptht{c.PROMPT_DEPTH_TEXT}"
            f"_depthv{c.PROMPT_DEPTH_VISION}_ctxinit{bool(c.CTX_INIT)}"
            f"_w{c.TEXT_LOSS_WEIGHT:g}-{c.IMAGE_LOSS_WEIGHT:g}_gpa{c.GPA_MEAN:g}-{c.GPA_STD:g}"
        )

    def read_settings(self, cfg):
        self.ivlp_cfg = PROMPTSRC_KEYS.read(cfg)

    def regularizer_templates(self, template):
        return IMAGENET_TEMPLATES
