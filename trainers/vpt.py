"""VPT: deep visual prompts in every ViT block, frozen hand-crafted text (DPT's ablation)."""

from engine.config import add_inert_key, extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.settings import VisualPromptCfg
from models.upstream import ORIGINAL_VISUAL_PROMPT
from models.vpt import VPTModel
from trainers.method import Method
from trainers.settings import ConfigKeys

VISUAL_PROMPT_KEYS = ConfigKeys(VisualPromptCfg, n_ctx="TRAINER.VPT.N_CTX")


@extend_cfg
def vpt_cfg(cfg):
    VISUAL_PROMPT_KEYS.declare(cfg)  # TRAINER.VPT.N_CTX: visual prompt tokens per block
    add_inert_key(cfg, "TRAINER.VPT.LN", False, "the original DPT code defines it, never reads it")


@TRAINER_REGISTRY.register()
class VPT(Method):
    config_keys = (VISUAL_PROMPT_KEYS,)
    original_dpt_folders = {"visual_prompt": ORIGINAL_VISUAL_PROMPT}

    @classmethod
    def run_setting(cls, cfg):
        return f"vctx{cfg.TRAINER.VPT.N_CTX}"

    def read_settings(self, cfg):
        self.vpt_cfg = VISUAL_PROMPT_KEYS.read(cfg)

    def create_model(self, clip_model, classnames, template):
        return VPTModel(clip_model, classnames, template, vpt_cfg=self.vpt_cfg)
