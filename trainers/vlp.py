"""VLP: CoOp's text prompt plus deep visual prompts, with the general-knowledge guidance loss."""

from yacs.config import CfgNode as CN

from engine.config import check_at_least, extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.vlp import VLPModel
from trainers.base import ClipTrainer
from trainers.coop import text_prompt_kwargs


@extend_cfg
def vlp_cfg(cfg):
    cfg.PRETRAIN = CN()
    cfg.PRETRAIN.C = 30  # epochs trained with the guidance terms (logits1, logits2)
    # The original hard-codes the text prompt's optimiser: OPTIM with LR 0.002 and one
    # warm-up epoch. These keys keep those values as defaults.
    cfg.TRAINER.DPT = CN()
    cfg.TRAINER.DPT.TEXT_LR = 0.002
    cfg.TRAINER.DPT.TEXT_WARMUP_EPOCH = 1
    # Warm-up epochs of the visual modules; -1 keeps OPTIM.WARMUP_EPOCH. (The original
    # forces 1 on ImageNet; set 1 here to reproduce that.)
    cfg.TRAINER.DPT.VISUAL_WARMUP_EPOCH = -1


def visual_optim_cfg(cfg):
    optim = cfg.OPTIM.clone()
    if cfg.TRAINER.DPT.VISUAL_WARMUP_EPOCH >= 0:
        optim.defrost()
        optim.WARMUP_EPOCH = cfg.TRAINER.DPT.VISUAL_WARMUP_EPOCH
        optim.freeze()
    return optim


def text_optim_cfg(cfg):
    optim = cfg.OPTIM.clone()
    optim.defrost()
    optim.LR = cfg.TRAINER.DPT.TEXT_LR
    optim.WARMUP_EPOCH = cfg.TRAINER.DPT.TEXT_WARMUP_EPOCH
    optim.freeze()
    return optim


@TRAINER_REGISTRY.register()
class VLP(ClipTrainer):
    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_at_least(cfg, "TRAINER.VPT.N_CTX", 1, "visual prompt tokens per block")
        check_at_least(cfg, "TRAINER.DPT.TEXT_LR", 0, "the text prompt's learning rate")

    def create_model(self, clip_model, classnames):
        cfg = self.cfg
        return VLPModel(
            clip_model,
            classnames,
            self.template(),
            vpt_n_ctx=cfg.TRAINER.VPT.N_CTX,
            pretrain_c=cfg.PRETRAIN.C,
            **text_prompt_kwargs(cfg),
        )

    def optim_cfg_for(self, module_name):
        if module_name == "prompt_learner":
            return text_optim_cfg(self.cfg)
        return visual_optim_cfg(self.cfg)
