"""CoCoOp: conditional context from a meta-net on each image's feature (Zhou et al., CVPR 2022)."""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.cocoop import CoCoOpModel
from models.settings import CoCoOpCfg
from scripts.naming import context_length
from trainers.method import Method
from trainers.settings import ConfigKeys

COCOOP_KEYS = ConfigKeys(
    CoCoOpCfg,
    n_ctx="TRAINER.COCOOP.N_CTX",
    ctx_init="TRAINER.COCOOP.CTX_INIT",
    images_per_text_pass="TRAINER.COCOOP.IMAGES_PER_TEXT_PASS",
)


@extend_cfg
def cocoop_cfg(cfg):
    # CoCoOp's own keys, so that its config files run unchanged.
    COCOOP_KEYS.declare(cfg)
    cfg.TRAINER.COCOOP.PREC = ""  # a TRAINER.COOP.PREC mode; "" uses TRAINER.COOP.PREC


@TRAINER_REGISTRY.register()
class CoCoOp(Method):
    config_keys = (COCOOP_KEYS,)
    precision_key = "TRAINER.COCOOP.PREC"
    text_prompt_module = "prompt_learner"

    @classmethod
    def run_setting(cls, cfg):
        c = cfg.TRAINER.COCOOP
        return f"nctx{context_length(c.N_CTX, c.CTX_INIT)}_ctxinit{bool(c.CTX_INIT)}"

    def read_settings(self, cfg):
        self.cocoop_cfg = COCOOP_KEYS.read(cfg)

    def create_model(self, clip_model, classnames, template):
        return CoCoOpModel(clip_model, classnames, cocoop_cfg=self.cocoop_cfg)
