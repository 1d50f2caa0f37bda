"""MaPLe: multi-modal prompt learning (Khattak et al., CVPR 2023; the authors'
trainers/maple.py). Its keys are theirs: TRAINER.MAPLE.{N_CTX, CTX_INIT, PREC, PROMPT_DEPTH}.
"""

from engine.config import extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.maple import MaPLeModel, maple_names_in
from models.settings import MaPLeCfg
from trainers.authors_runs import read_whole_model_run
from trainers.method import Method
from trainers.settings import ConfigKeys

MAPLE_KEYS = ConfigKeys(
    MaPLeCfg,
    n_ctx="TRAINER.MAPLE.N_CTX",
    ctx_init="TRAINER.MAPLE.CTX_INIT",
    depth="TRAINER.MAPLE.PROMPT_DEPTH",
)


@extend_cfg
def maple_cfg(cfg):
    MAPLE_KEYS.declare(cfg)
    cfg.TRAINER.MAPLE.PREC = ""  # a TRAINER.COOP.PREC mode; "" uses TRAINER.COOP.PREC


@TRAINER_REGISTRY.register()
class MaPLe(Method):
    """One optimiser setting (OPTIM) for the prompts and couplings, as the authors' single
    optimiser."""

    context_from_words = False  # the first N_CTX tokens of CTX_INIT's phrase are learned
    config_keys = (MAPLE_KEYS,)
    precision_key = "TRAINER.MAPLE.PREC"
    text_prompt_module = "prompt_learner"  # the context of the text input

    @classmethod
    def run_setting(cls, cfg):
        """The prompt size and depth and whether the context starts from words, e.g.
        ``nctx2_depth9_ctxinitTrue``."""
        c = cfg.TRAINER.MAPLE
        return f"nctx{c.N_CTX}_depth{c.PROMPT_DEPTH}_ctxinit{bool(c.CTX_INIT)}"

    def read_settings(self, cfg):
        self.maple_cfg = MAPLE_KEYS.read(cfg)

    def create_model(self, clip_model, classnames, template):
        return MaPLeModel(clip_model, classnames, maple_cfg=self.maple_cfg)

    def read_trained_run(self, directory, modules, epoch=None, best=False):
        """Also the authors' run directories (their whole model in ``MultiModalPromptLearner/``)."""
        return read_whole_model_run(
            directory, "MultiModalPromptLearner", maple_names_in, modules, epoch, best
        )
