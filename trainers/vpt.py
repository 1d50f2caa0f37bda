"""VPT: deep visual prompts in every ViT block, frozen hand-crafted text (DPT's ablation)."""

from yacs.config import CfgNode as CN

from engine.config import add_inert_key, check_at_least, extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.vpt import VPTModel
from trainers.base import ClipTrainer


@extend_cfg
def vpt_cfg(cfg):
    cfg.TRAINER.VPT = CN()
    cfg.TRAINER.VPT.N_CTX = 10  # visual prompt tokens per block
    add_inert_key(cfg, "TRAINER.VPT.LN", False, "the original DPT code defines it, never reads it")


@TRAINER_REGISTRY.register()
class VPT(ClipTrainer):
    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_at_least(cfg, "TRAINER.VPT.N_CTX", 1, "visual prompt tokens per block")

    def create_model(self, clip_model, classnames):
        return VPTModel(
            clip_model, classnames, self.template(), vpt_n_ctx=self.cfg.TRAINER.VPT.N_CTX
        )
