"""CoOp: learnable text context, frozen CLIP (Zhou et al., IJCV 2022)."""

from yacs.config import CfgNode as CN

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.coop import CoOpModel
from trainers.base import ClipTrainer


@extend_cfg
def coop_cfg(cfg):
    cfg.TRAINER.COOP = CN()
    cfg.TRAINER.COOP.N_CTX = 16  # number of context tokens
    cfg.TRAINER.COOP.CSC = False  # class-specific context
    cfg.TRAINER.COOP.CTX_INIT = ""  # initialise the context from these words
    # fp16 | fp32 | bf16 | amp | amp_bf16 | auto, for every CLIP trainer (engine/precision.py).
    # auto: bfloat16 autocast on GPUs that have it, float16 autocast + grad scaler on other
    # GPUs, float32 on the CPU. fp16 is what CoOp and the original DPT code run.
    cfg.TRAINER.COOP.PREC = "auto"
    cfg.TRAINER.COOP.CLASS_TOKEN_POSITION = "end"  # end | middle | front


def text_prompt_kwargs(cfg):
    """CoOp's text-prompt settings as model keyword arguments (VLP and DPT use them too)."""
    c = cfg.TRAINER.COOP
    return dict(
        n_ctx=c.N_CTX,
        ctx_init=c.CTX_INIT,
        csc=c.CSC,
        class_token_position=c.CLASS_TOKEN_POSITION,
    )


@TRAINER_REGISTRY.register()
class CoOp(ClipTrainer):
    def create_model(self, clip_model, classnames):
        return CoOpModel(clip_model, classnames, **text_prompt_kwargs(self.cfg))
