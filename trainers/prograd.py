"""ProGrad (Zhu et al., ICCV 2023; github BeierZhu/Prompt-align 1b76203,
ProGrad.public/trainers/prograd.py): CoOp whose step keeps no component against the gradient
of distilling zero-shot CLIP (trainers/knowledge.py), with its authors' keys
``LOSS.{NAME, LAMBDA, T}``; zero-shot CLIP there is the dataset's template in ProGrad's table
(models/templates.py).

``TRAINER.COOP.CTX_INIT`` is a boolean in its config files (trainers/coop.py): True ends the
N_CTX context vectors with that template's words (those before them start at zero), False
starts them from random values.
"""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.coop import CoOpModel, template_context
from models.settings import RegularizerCfg
from models.templates import PROGRAD_TEMPLATES
from trainers.coop import CoOp, boolean_ctx_init
from trainers.method import TEXT_PROMPT_KEYS
from trainers.settings import ConfigKeys

PROGRAD_KEYS = ConfigKeys(RegularizerCfg, fixed={}, projection="LOSS.LAMBDA", temperature="LOSS.T")
LOSS_NAME = "prograd"  # the one loss its trainer builds


@extend_cfg
def prograd_cfg(cfg):
    PROGRAD_KEYS.declare(cfg, projection=1.0)  # the authors' defaults: LAMBDA 1, T 1
    cfg.LOSS.NAME = LOSS_NAME  # "" in the authors' defaults, "prograd" in their configs


@TRAINER_REGISTRY.register()
class ProGrad(CoOp):
    """CoOp's keys (CTX_INIT also a boolean) and LOSS.{NAME, LAMBDA, T}."""

    regularizer_keys = PROGRAD_KEYS

    @classmethod
    def run_setting(cls, cfg):
        """CoOp's, whether the context starts from words, lambda and T, e.g.
        ``nctx16_cscFalse_ctpend_ctxinitTrue_lambda1_t1``."""
        init, c = bool(cfg.TRAINER.COOP.CTX_INIT), cfg.LOSS
        return f"{super().run_setting(cfg)}_ctxinit{init}_lambda{c.LAMBDA:g}_t{c.T:g}"

    def read_settings(self, cfg):
        if cfg.LOSS.NAME != LOSS_NAME:
            raise ValueError(
                f"LOSS.NAME must be {LOSS_NAME!r} (the only loss of ProGrad's trainer), got "
                f"{cfg.LOSS.NAME!r}"
            )
        self.from_template, words = boolean_ctx_init(cfg)
        self.text_cfg = TEXT_PROMPT_KEYS.read(cfg, ctx_init=words)

    def prograd_template(self, template):
        return PROGRAD_TEMPLATES.get(self.cfg.DATASET.NAME, template)

    def create_model(self, clip_model, classnames, template):
        context = None
        if self.from_template:
            n_ctx = self.text_cfg.n_ctx
            context = template_context(clip_model, n_ctx, self.prograd_template(template))
        return CoOpModel(clip_model, classnames, text_cfg=self.text_cfg, context=context)

    def regularizer_templates(self, template):
        return [self.prograd_template(template)]
