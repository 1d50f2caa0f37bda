"""CoCoOp: conditional context from a meta-net on each image's feature (Zhou et al., CVPR 2022)."""

from yacs.config import CfgNode as CN

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.cocoop import CoCoOpModel
from trainers.base import ClipTrainer


@extend_cfg
def cocoop_cfg(cfg):
    # CoCoOp's own keys, so that its config files run unchanged.
    cfg.TRAINER.COCOOP = CN()
    cfg.TRAINER.COCOOP.N_CTX = 16
    cfg.TRAINER.COCOOP.CTX_INIT = ""
    cfg.TRAINER.COCOOP.PREC = ""  # a TRAINER.COOP.PREC mode; "" uses TRAINER.COOP.PREC
    # Images whose prompts the text encoder runs in one pass: 1 is the paper's loop over the
    # batch, 0 the whole batch at once. Same results; memory grows with images x classes.
    cfg.TRAINER.COCOOP.IMAGES_PER_TEXT_PASS = 0


@TRAINER_REGISTRY.register()
class CoCoOp(ClipTrainer):
    def get_precision(self):
        return self.cfg.TRAINER.COCOOP.PREC or self.cfg.TRAINER.COOP.PREC

    def create_model(self, clip_model, classnames):
        c = self.cfg.TRAINER.COCOOP
        return CoCoOpModel(
            clip_model,
            classnames,
            n_ctx=c.N_CTX,
            ctx_init=c.CTX_INIT,
            images_per_text_pass=c.IMAGES_PER_TEXT_PASS,
        )
