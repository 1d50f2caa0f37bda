"""DPT: text prompt, deep visual prompt and class-aware visual prompts (Xing et al., TMM 2023)."""

from yacs.config import CfgNode as CN

from engine import distributed
from engine.config import add_inert_key, check_at_least, extend_cfg
from engine.registry import TRAINER_REGISTRY
from models.dpt import DPTModel
from trainers.coop import text_prompt_kwargs
from trainers.vlp import VLP


@extend_cfg
def dpt_cfg(cfg):
    cfg.TRAINER.SELECTED_COVPT = CN()
    cfg.TRAINER.SELECTED_COVPT.CPN = 10  # K: zero-shot top-K classes that CAVPT attends from
    cfg.TRAINER.TOPDOWN_SECOVPT = CN()
    cfg.TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT = 12  # CAVPT from this (1-based) block on
    add_inert_key(
        cfg,
        "TRAINER.TOPDOWN_SECOVPT.LR",
        0.01,
        "the original DPT code defines it, never reads it: CAVPT learns at OPTIM.LR",
    )
    cfg.TRAINER.ALPHA = 0.3  # weight of the CAVPT auxiliary loss
    # Hard-coded in the original; the defaults are its values.
    cfg.TRAINER.DPT.CAVPT_N_KV = 10  # learnable key/value tokens per CAVPT block
    cfg.TRAINER.DPT.CAVPT_ATTN_DIM = 32  # width of the CAVPT query/key projection


@TRAINER_REGISTRY.register()
class DPT(VLP):
    """Three optimisers as in the original: visual prompt and CAVPT at OPTIM.LR, text prompt
    at TRAINER.DPT.TEXT_LR (VLP's ``optim_cfg_for``)."""

    def check_cfg(self, cfg):
        super().check_cfg(cfg)
        check_at_least(cfg, "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", 1, "the first CAVPT block")
        check_at_least(cfg, "TRAINER.SELECTED_COVPT.CPN", 1, "K, the classes CAVPT attends from")
        check_at_least(cfg, "TRAINER.ALPHA", 0, "the CAVPT loss weight")
        check_at_least(cfg, "TRAINER.DPT.CAVPT_N_KV", 1, "CAVPT key/value tokens")
        check_at_least(cfg, "TRAINER.DPT.CAVPT_ATTN_DIM", 1, "CAVPT attention width")

    def create_model(self, clip_model, classnames):
        cfg = self.cfg
        model = DPTModel(
            clip_model,
            classnames,
            self.template(),
            vpt_n_ctx=cfg.TRAINER.VPT.N_CTX,
            pretrain_c=cfg.PRETRAIN.C,
            bottomlimit=cfg.TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT,
            cpn=cfg.TRAINER.SELECTED_COVPT.CPN,
            alpha=cfg.TRAINER.ALPHA,
            cavpt_n_kv=cfg.TRAINER.DPT.CAVPT_N_KV,
            cavpt_attn_dim=cfg.TRAINER.DPT.CAVPT_ATTN_DIM,
            **text_prompt_kwargs(cfg),
        )
        if distributed.is_distributed():  # the CAVPT loss is a mean over all ranks' triples
            model.selected_mean = distributed.global_mean
        return model

    def adapt_loaded_state(self, name, state_dict):
        """CAVPT's auxiliary heads are class-specific and only serve the training loss: weights
        trained on other classes (cross-dataset evaluation) are left out; inference is
        unaffected."""
        if name != "cavpt":
            return state_dict
        n_cls = self.dm.num_classes
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
