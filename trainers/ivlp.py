"""IVLP: independent deep vision-language prompts (the baseline of MaPLe, Khattak et al., CVPR
2023; the authors' trainers/independentVL.py). Its keys are theirs:
TRAINER.IVLP.{N_CTX_VISION, N_CTX_TEXT, CTX_INIT, PREC, PROMPT_DEPTH_VISION, PROMPT_DEPTH_TEXT}.
"""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.ivlp import IVLPModel
from models.settings import IVLPCfg
from trainers.method import Method
from trainers.settings import ConfigKeys

IVLP_KEYS = ConfigKeys(
    IVLPCfg,
    n_ctx_text="TRAINER.IVLP.N_CTX_TEXT",
    n_ctx_vision="TRAINER.IVLP.N_CTX_VISION",
    ctx_init="TRAINER.IVLP.CTX_INIT",
    depth_text="TRAINER.IVLP.PROMPT_DEPTH_TEXT",
    depth_vision="TRAINER.IVLP.PROMPT_DEPTH_VISION",
)


@extend_cfg
def ivlp_cfg(cfg):
    IVLP_KEYS.declare(cfg)
    cfg.TRAINER.IVLP.PREC = ""  # a TRAINER.COOP.PREC mode; "" uses TRAINER.COOP.PREC


@TRAINER_REGISTRY.register()
class IVLP(Method):
    """One optimiser setting (OPTIM) for all prompts, as the authors' single optimiser."""

    config_keys = (IVLP_KEYS,)

    def read_settings(self, cfg):
        self.ivlp_cfg = IVLP_KEYS.read(cfg)

    def precision(self, device):
        return self.cfg.TRAINER.IVLP.PREC or super().precision(device)

    def create_model(self, clip_model, classnames, template):
        return IVLPModel(clip_model, classnames, ivlp_cfg=self.ivlp_cfg)
