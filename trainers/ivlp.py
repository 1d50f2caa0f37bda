"""IVLP: independent deep vision-language prompts (the baseline of MaPLe, Khattak et al., CVPR
2023; the authors' trainers/independentVL.py). Its keys are theirs:
TRAINER.IVLP.{N_CTX_VISION, N_CTX_TEXT, CTX_INIT, PREC, PROMPT_DEPTH_VISION, PROMPT_DEPTH_TEXT}.
"""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.ivlp import IVLPModel, ivlp_names_in
from models.settings import IVLPCfg
from trainers.authors_runs import read_whole_model_run
from trainers.method import Method
from trainers.settings import ConfigKeys

IVLP_KEYS = ConfigKeys(
    IVLPCfg,
    n_ctx_text="TRAINER.IVLP.N_CTX_TEXT",
    n_ctx_vision="TRAINER.IVLP.N_CTX_VISION",
    ctx_init="TRAINER.IVLP.CTX_INIT",
    depth_text="TRAINER.IVLP.PROMPT_DEPTH_TEXT",
    depth_vision="TRAINER.IVLP.PROMPT_DEPTH_VISION",
)


@extend_cfg
def ivlp_cfg(cfg):
    IVLP_KEYS.declare(cfg)
    cfg.TRAINER.IVLP.PREC = ""  # a TRAINER.COOP.PREC mode; "" uses TRAINER.COOP.PREC


@TRAINER_REGISTRY.register()
class IVLP(Method):
    """One optimiser setting (OPTIM) for all prompts, as the authors' single optimiser."""

    context_from_words = False  # the first N_CTX tokens of CTX_INIT's phrase are learned
    config_keys = (IVLP_KEYS,)
    precision_key = "TRAINER.IVLP.PREC"
    text_prompt_module = "prompt_learner"  # the context of the text input

    @classmethod
    def run_setting(cls, cfg):
        """The prompt sizes and depths of both towers and whether the context starts from
        words, e.g. ``nctxt2_nctxv2_deptht9_depthv9_ctxinitTrue``."""
        c = cfg.TRAINER.IVLP
        return (
            f"nctxt{c.N_CTX_TEXT}_nctxv{c.N_CTX_VISION}_deptht{c.PROMPT_DEPTH_TEXT}"
            f"_depthv{c.PROMPT_DEPTH_VISION}_ctxinit{bool(c.CTX_INIT)}"
        )

    def read_settings(self, cfg):
        self.ivlp_cfg = IVLP_KEYS.read(cfg)

    def create_model(self, clip_model, classnames, template):
        return IVLPModel(clip_model, classnames, ivlp_cfg=self.ivlp_cfg)

    def read_trained_run(self, directory, modules, epoch=None, best=False):
        """Also the authors' run directories (their whole model in ``VLPromptLearner/``)."""
        return read_whole_model_run(
            directory, "VLPromptLearner", ivlp_names_in, modules, epoch, best
        )
