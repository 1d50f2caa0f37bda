"""CoOp: learnable text context, frozen CLIP (Zhou et al., IJCV 2022)."""

from engine.registry import TRAINER_REGISTRY
from models.coop import CoOpModel
from trainers.method import TEXT_PROMPT_KEYS, Method


@TRAINER_REGISTRY.register()
class CoOp(Method):
    """Keys: TRAINER.COOP.{N_CTX, CSC, CTX_INIT, CLASS_TOKEN_POSITION} (trainers/method.py)."""

    config_keys = (TEXT_PROMPT_KEYS,)

    def read_settings(self, cfg):
        self.text_cfg = TEXT_PROMPT_KEYS.read(cfg)

    def create_model(self, clip_model, classnames, template):
        return CoOpModel(clip_model, classnames, text_cfg=self.text_cfg)
