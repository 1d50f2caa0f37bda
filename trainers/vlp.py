"""VLP: CoOp's text prompt plus deep visual prompts, with the general-knowledge guidance loss
(DPT without CAVPT: its keys and optimisers are DPT's, trainers/dpt.py)."""

from engine.registry import TRAINER_REGISTRY
from models.vlp import VLPModel
from trainers.coop import CoOp
from trainers.dpt import DPT, GUIDANCE_KEYS
from trainers.method import TEXT_PROMPT_KEYS
from trainers.vpt import VISUAL_PROMPT_KEYS, VPT


@TRAINER_REGISTRY.register()
class VLP(DPT):
    config_keys = (TEXT_PROMPT_KEYS, VISUAL_PROMPT_KEYS, GUIDANCE_KEYS)
    cavpt_module = None  # DPT without CAVPT
    original_dpt_folders = {**CoOp.original_dpt_folders, **VPT.original_dpt_folders}

    def read_settings(self, cfg):
        self.read_dual_prompt_settings(cfg)

    def create_model(self, clip_model, classnames, template):
        return VLPModel(
            clip_model,
            classnames,
            template,
            text_cfg=self.text_cfg,
            vpt_cfg=self.vpt_cfg,
            guidance_cfg=self.guidance_cfg,
        )
