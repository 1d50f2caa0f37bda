"""CoOp: learnable text context, frozen CLIP (Zhou et al., IJCV 2022)."""

from engine.config import accept_types
from engine.registry import TRAINER_REGISTRY
from models.coop import CoOpModel
from models.upstream import ORIGINAL_TEXT_PROMPT
from trainers.method import TEXT_PROMPT_KEYS, Method

# KgCoOp's and ProGrad's config files set TRAINER.COOP.CTX_INIT to a boolean: True starts the
# context from their template, False from random values (``boolean_ctx_init``). CoOp's
# meaning, the words to start from, stays that of a text (theirs reads any text as True).
accept_types("TRAINER.COOP.CTX_INIT", str, bool)


def boolean_ctx_init(cfg):
    """(whether the context starts from the method's template, CoOp's init words or "")."""
    init = cfg.TRAINER.COOP.CTX_INIT
    return (init, "") if isinstance(init, bool) else (False, init)


@TRAINER_REGISTRY.register()
class CoOp(Method):
    """Keys: TRAINER.COOP.{N_CTX, CSC, CTX_INIT, CLASS_TOKEN_POSITION} (trainers/method.py)."""

    config_keys = (TEXT_PROMPT_KEYS,)
    text_prompt_module = "prompt_learner"
    original_dpt_folders = {"prompt_learner": ORIGINAL_TEXT_PROMPT}

    def read_settings(self, cfg):
        self.text_cfg = TEXT_PROMPT_KEYS.read(cfg)

    def create_model(self, clip_model, classnames, template):
        return CoOpModel(clip_model, classnames, text_cfg=self.text_cfg)
