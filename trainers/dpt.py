"""DPT: text prompt, deep visual prompt and class-aware visual prompts (Xing et al., TMM 2023).

Owns the keys of the original DPT code (PRETRAIN.C, TRAINER.SELECTED_COVPT.CPN,
TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT, TRAINER.ALPHA) and the TRAINER.DPT block of what the
original hard-codes; VLP, DPT's ablation without CAVPT, reads them from here.
"""

from engine import distributed
from engine.config import add_inert_key, check_at_least, declare_epoch_key, extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.dpt import DPTModel, mean_of_selected
from models.settings import CAVPTCfg, GuidanceCfg
from models.upstream import ORIGINAL_CAVPT
from trainers.coop import CoOp
from trainers.method import TEXT_PROMPT_KEYS, Method
from trainers.settings import ConfigKeys
from trainers.vpt import VISUAL_PROMPT_KEYS, VPT

GUIDANCE_KEYS = ConfigKeys(GuidanceCfg, epochs="PRETRAIN.C")
CAVPT_KEYS = ConfigKeys(
    CAVPTCfg,
    first_block="TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT",
    top_k="TRAINER.SELECTED_COVPT.CPN",
    loss_weight="TRAINER.ALPHA",
    n_kv="TRAINER.DPT.CAVPT_N_KV",
    attn_dim="TRAINER.DPT.CAVPT_ATTN_DIM",
)


@extend_cfg
def dpt_cfg(cfg):
    GUIDANCE_KEYS.declare(cfg)  # epochs trained with the guidance terms
    CAVPT_KEYS.declare(cfg)
    add_inert_key(
        cfg,
        "TRAINER.TOPDOWN_SECOVPT.LR",
        0.01,
        "the original DPT code defines it, never reads it: CAVPT learns at OPTIM.LR",
    )
    # The original hard-codes the text prompt's optimiser: OPTIM with LR 0.002 and one
    # warm-up epoch. These keys keep those values as defaults.
    cfg.TRAINER.DPT.TEXT_LR = 0.002
    cfg.TRAINER.DPT.TEXT_WARMUP_EPOCH = 1
    # Warm-up epochs of the visual modules; -1 keeps OPTIM.WARMUP_EPOCH. (The original
    # forces 1 on ImageNet; set 1 here to reproduce that.)
    cfg.TRAINER.DPT.VISUAL_WARMUP_EPOCH = -1


declare_epoch_key(
    "PRETRAIN.C",
    "the guidance terms (frozen CLIP's features against the learned prompts) stay in the "
    "loss for the whole run",
)
declare_epoch_key("TRAINER.DPT.TEXT_WARMUP_EPOCH", "the text prompt trains at the warm-up rate "
                  "for the whole run")  # fmt: skip
declare_epoch_key("TRAINER.DPT.VISUAL_WARMUP_EPOCH", "the visual prompts train at the warm-up "
                  "rate for the whole run")  # fmt: skip


def _optim_with(cfg, **changes):
    optim = cfg.OPTIM.clone()
    optim.defrost()
    for key, value in changes.items():
        optim[key] = value
    optim.freeze()
    return optim


def text_optim_cfg(cfg):
    d = cfg.TRAINER.DPT
    return _optim_with(cfg, LR=d.TEXT_LR, WARMUP_EPOCH=d.TEXT_WARMUP_EPOCH)


def visual_optim_cfg(cfg):
    warmup = cfg.TRAINER.DPT.VISUAL_WARMUP_EPOCH
    return _optim_with(cfg, WARMUP_EPOCH=warmup) if warmup >= 0 else cfg.OPTIM


@TRAINER_REGISTRY.register()
class DPT(Method):
    """Three optimisers as in the original: the deep visual prompt and CAVPT at OPTIM.LR, the
    text prompt at TRAINER.DPT.TEXT_LR with its own warm-up."""

    config_keys = (TEXT_PROMPT_KEYS, VISUAL_PROMPT_KEYS, GUIDANCE_KEYS, CAVPT_KEYS)
    training_only_keys = ("PRETRAIN.C", "TRAINER.ALPHA")
    text_prompt_module = "prompt_learner"
    cavpt_module = "cavpt"
    original_dpt_folders = {
        **CoOp.original_dpt_folders,
        **VPT.original_dpt_folders,
        "cavpt": ORIGINAL_CAVPT,
    }

    @classmethod
    def run_setting(cls, cfg):
        """CoOp's name for the text prompt, ``_vctx<N>`` for the visual one (VLP too)."""
        return f"{super().run_setting(cfg)}_vctx{cfg.TRAINER.VPT.N_CTX}"

    @property
    def epoch_keys(self):
        visual = "TRAINER.DPT.VISUAL_WARMUP_EPOCH"
        visual = visual if self.cfg.TRAINER.DPT.VISUAL_WARMUP_EPOCH >= 0 else "OPTIM.WARMUP_EPOCH"
        return ("PRETRAIN.C", "TRAINER.DPT.TEXT_WARMUP_EPOCH", visual)

    def read_settings(self, cfg):
        self.read_dual_prompt_settings(cfg)
        self.cavpt_cfg = CAVPT_KEYS.read(cfg)

    def read_dual_prompt_settings(self, cfg):
        """What VLP has too: the text and deep visual prompts, the guidance, the text LR."""
        self.text_cfg = TEXT_PROMPT_KEYS.read(cfg)
        self.vpt_cfg = VISUAL_PROMPT_KEYS.read(cfg)
        self.guidance_cfg = GUIDANCE_KEYS.read(cfg)
        check_at_least(cfg, "TRAINER.DPT.TEXT_LR", 0, "the text prompt's learning rate")

    def create_model(self, clip_model, classnames, template):
        # data-parallel training: the CAVPT loss is a mean over all ranks' triples
        mean = distributed.global_mean if distributed.is_distributed() else mean_of_selected
        return DPTModel(
            clip_model,
            classnames,
            template,
            text_cfg=self.text_cfg,
            vpt_cfg=self.vpt_cfg,
            guidance_cfg=self.guidance_cfg,
            cavpt_cfg=self.cavpt_cfg,
            cavpt_loss_mean=mean,
        )

    def optim_cfg(self, module_name):
        if module_name == "prompt_learner":
            return text_optim_cfg(self.cfg)
        return visual_optim_cfg(self.cfg)

    def adapt_loaded_state(self, name, module, state_dict):
        """CAVPT's auxiliary heads are class-specific and only serve the training loss: weights
        trained on other classes (cross-dataset evaluation) are left out; inference is
        unaffected."""
        if name != "cavpt":
            return state_dict
        n_cls = module.blocks[0].classifier.out_features if len(module.blocks) else 0
        heads = [k for k in state_dict if k.endswith("classifier.weight")]
        foreign = [k for k in heads if state_dict[k].shape[0] != n_cls]
        if foreign:
            n_saved = state_dict[foreign[0]].shape[0]
            print(
                f"Note: the checkpoint's CAVPT heads have {n_saved} classes, this run {n_cls}; "
                "they are not loaded (inference does not use them)."
            )
            state_dict = {k: v for k, v in state_dict.items() if k not in foreign}
        return state_dict
