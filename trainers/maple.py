"""MaPLe: multi-modal prompt learning (Khattak et al., CVPR 2023; the authors'
trainers/maple.py). Its keys are theirs: TRAINER.MAPLE.{N_CTX, CTX_INIT, PREC, PROMPT_DEPTH}.
"""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.maple import MaPLeModel
from models.settings import MaPLeCfg
from trainers.method import Method
from trainers.settings import ConfigKeys

MAPLE_KEYS = ConfigKeys(
    MaPLeCfg,
    n_ctx="TRAINER.MAPLE.N_CTX",
    ctx_init="TRAINER.MAPLE.CTX_INIT",
    depth="TRAINER.MAPLE.PROMPT_DEPTH",
)


@extend_cfg
def maple_cfg(cfg):
    MAPLE_KEYS.declare(cfg)
    cfg.TRAINER.MAPLE.PREC = ""  # a TRAINER.COOP.PREC mode; "" uses TRAINER.COOP.PREC


@TRAINER_REGISTRY.register()
class MaPLe(Method):
    """One optimiser setting (OPTIM) for the prompts and couplings, as the authors' single
    optimiser."""

    config_keys = (MAPLE_KEYS,)

    def read_settings(self, cfg):
        self.maple_cfg = MAPLE_KEYS.read(cfg)

    def precision(self, device):
        return self.cfg.TRAINER.MAPLE.PREC or super().precision(device)

    def create_model(self, clip_model, classnames, template):
        return MaPLeModel(clip_model, classnames, maple_cfg=self.maple_cfg)
