"""KgCoOp (Yao et al., CVPR 2023; github htyao89/KgCoOp c43ccc3, KgCoOp/trainers/kgcoop.py):
CoOp with the text consistency to a hand-crafted prompt (trainers/knowledge.py), weighted by
its authors' ``TRAINER.COOP.W``; its anchor is the dataset's template in KgCoOp's table
(models/templates.py).

``TRAINER.COOP.CTX_INIT`` is a boolean in its config files (trainers/coop.py): True starts the
context from "a photo of a" (four tokens, whatever N_CTX), False from random values.
"""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.settings import RegularizerCfg
from models.templates import KGCOOP_CTX_INIT, KGCOOP_TEMPLATES
from trainers.coop import CoOp, boolean_ctx_init
from trainers.method import TEXT_PROMPT_KEYS
from trainers.settings import ConfigKeys

KGCOOP_KEYS = ConfigKeys(RegularizerCfg, fixed={}, text_consistency="TRAINER.COOP.W")


@extend_cfg
def kgcoop_cfg(cfg):
    # the authors' default; their base-to-new script passes 8.0
    KGCOOP_KEYS.declare(cfg, text_consistency=1.0)


@TRAINER_REGISTRY.register()
class KgCoOp(CoOp):
    """CoOp's keys (CTX_INIT also a boolean) and TRAINER.COOP.W."""

    regularizer_keys = KGCOOP_KEYS

    @classmethod
    def run_setting(cls, cfg):
        """CoOp's, whether the context starts from words and the weight, e.g.
        ``nctx4_cscFalse_ctpend_ctxinitTrue_w8``."""
        init = bool(cfg.TRAINER.COOP.CTX_INIT)
        return f"{super().run_setting(cfg)}_ctxinit{init}_w{cfg.TRAINER.COOP.W:g}"

    def read_settings(self, cfg):
        from_template, words = boolean_ctx_init(cfg)
        init = KGCOOP_CTX_INIT if from_template else words
        self.text_cfg = TEXT_PROMPT_KEYS.read(cfg, ctx_init=init)

    def regularizer_templates(self, template):
        return [KGCOOP_TEMPLATES.get(self.cfg.DATASET.NAME, template)]

    def adapt_loaded_state(self, name, module, state_dict):
        """KgCoOp's prompt learner also saves a bias and a meta-net that it never uses."""
        return {
            key: value
            for key, value in state_dict.items()
            if key != "bias_vectors" and not key.startswith("meta_net.")
        }
