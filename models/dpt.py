"""DPT: VLP plus class-aware visual prompts (CAVPT) in the top ViT blocks.

The paper's terms (Xing et al., TMM 2023) and where they live:

    text prompt                  ``PromptLearner.ctx`` (models/text.py), CoOp's context;
                                 its features T: ``LearnedTextFeatures``
    deep visual prompt           ``DeepPrompt.tokens`` (models/prompting.py): tokens
                                 appended in blocks 1..first_block-1 (``AppendedPrompts``)
    CAVPT                        ``CAVPT`` / ``ClassAwarePromptBlock`` (models/visual.py), in
                                 blocks first_block..L (``CAVPTCfg.first_block``, the
                                 original's TOPDOWN_SECOVPT.BOTTOMLIMIT)
    class-aware visual prompts   what a ``ClassAwarePromptBlock`` returns: one token per
                                 selected class, from cross-attention of the class's text
                                 feature (query) to the block's image tokens (keys, values)
    top-K classes                ``DPTOutput.top_k_classes``: the zero-shot CLIP top-K
                                 (``CAVPTCfg.top_k``, the original's SELECTED_COVPT.CPN)
    auxiliary loss               ``cavpt_loss`` below: cross-entropy of ``DPTOutput.cavpt_logits``
                                 over the (image, block, slot) triples whose class is the label
    alpha                        ``CAVPTCfg.loss_weight`` (TRAINER.ALPHA), its weight
    general-knowledge guidance   ``guided_loss`` (models/base.py) for the first
                                 ``GuidanceCfg.epochs`` epochs (PRETRAIN.C), on
                                 ``GuidedOutput.frozen_image_logits`` / ``frozen_text_logits``
"""

import warnings
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from models.base import GuidedOutput
from models.settings import CAVPTCfg, GuidanceCfg, SettingError, TextPromptCfg, VisualPromptCfg
from models.visual import CAVPT, AppendedPrompts, require_vit
from models.vlp import VLPModel


@dataclass
class DPTOutput(GuidedOutput):
    """cavpt_logits: the auxiliary logits, one [K, B, C] tensor per CAVPT block.
    top_k_classes: the zero-shot top-K classes of each image, best first, [B, K]."""

    cavpt_logits: list[torch.Tensor] | None = None
    top_k_classes: torch.Tensor | None = None


def cavpt_loss_total(cavpt_logits, top_k_classes, labels):
    """Summed CE of the auxiliary logits over the (image, CAVPT block, slot) triples whose
    selected class is the label, and how many there are. The sum runs over a mask, so every
    CAVPT parameter stays in the graph (with zero gradient when nothing is selected)."""
    logits = torch.stack(cavpt_logits)  # [J, K, B, C]
    n_blocks, k, batch, n_classes = logits.shape
    selected = (top_k_classes == labels[:, None]).t().expand(n_blocks, k, batch).reshape(-1)
    targets = labels.expand(n_blocks, k, batch).reshape(-1)
    ce = F.cross_entropy(logits.reshape(-1, n_classes).float(), targets, reduction="none")
    return (ce * selected).sum(), int(selected.sum())


def mean_of_selected(total, count):
    """The mean over this batch's selected triples (0 when there are none), and their count."""
    return total / max(count, 1), count


class DPTModel(VLPModel):
    """Dual-modality prompt tuning: text prompt, deep visual prompt in blocks
    1..first_block-1, class-aware visual prompts of the K = min(top_k, C) zero-shot top
    classes in blocks first_block..L.

    ``cavpt_loss_mean(total, count)`` turns the summed auxiliary loss of the selected triples
    into their mean; data-parallel training passes the mean over every process's triples
    (``engine.distributed.global_mean``).
    """

    def __init__(self, clip_model, classnames, template, *, text_cfg=TextPromptCfg(),
                 vpt_cfg=VisualPromptCfg(), guidance_cfg=GuidanceCfg(), cavpt_cfg=CAVPTCfg(),
                 cavpt_loss_mean=mean_of_selected):  # fmt: skip
        require_vit(clip_model, "DPT")
        n_blocks = len(clip_model.visual.transformer.resblocks)
        if cavpt_cfg.first_block > n_blocks:
            raise SettingError(
                CAVPTCfg,
                "first_block",
                f"must be in 1..{n_blocks} for this {n_blocks}-block ViT (CAVPT runs in blocks "
                f"first_block..{n_blocks}), got {cavpt_cfg.first_block}",
            )
        n_classes = len(classnames)
        if cavpt_cfg.top_k > n_classes:
            warnings.warn(
                f"CAVPT top_k = {cavpt_cfg.top_k} is more than the {n_classes} classes: "
                f"using K = {n_classes}",
                stacklevel=2,
            )
        super().__init__(
            clip_model,
            classnames,
            template,
            text_cfg=text_cfg,
            vpt_cfg=vpt_cfg,
            guidance_cfg=guidance_cfg,
            vpt_blocks=cavpt_cfg.first_block - 1,
        )
        self.top_k = min(cavpt_cfg.top_k, n_classes)
        self.cavpt_loss_weight = cavpt_cfg.loss_weight
        self.cavpt_loss_mean = cavpt_loss_mean
        self.cavpt = CAVPT(
            n_blocks - self.visual_prompt.n_layers,
            cavpt_cfg,
            text_dim=clip_model.text_projection.shape[1],
            width=self.image_encoder.width,
            n_classes=n_classes,
            device=clip_model.logit_scale.device,
        )

    def learnable_modules(self):
        return OrderedDict(
            visual_prompt=self.visual_prompt,
            cavpt=self.cavpt,
            prompt_learner=self.text.prompt_learner,
        )

    def forward(self, images):
        zeroshot_features = self.zeroshot.image_features(images)
        top_k_classes = self.zeroshot.top_classes(zeroshot_features, self.top_k, self.logit_scale())
        text_features = self.text()
        # the un-normalised learned features: the text prompt also learns through CAVPT
        class_text = text_features[top_k_classes]  # [B, K, E]
        n_vpt = self.visual_prompt.n_layers
        cavpt_logits = []

        def block_prompts(block, sequence):
            if block < n_vpt:
                return self.visual_prompt(block, sequence)
            prompts, logits = self.cavpt(block - n_vpt, sequence, class_text)
            cavpt_logits.append(logits)
            return prompts

        image_features = self.image_encoder(images, AppendedPrompts(block_prompts))
        return self._output(
            DPTOutput,
            image_features,
            text_features,
            zeroshot_features,
            cavpt_logits=cavpt_logits,
            top_k_classes=top_k_classes,
        )

    def loss_terms(self, out, labels, epoch):
        loss, terms = super().loss_terms(out, labels, epoch)
        total, n_selected = cavpt_loss_total(out.cavpt_logits, out.top_k_classes, labels)
        cavpt_loss, n_selected = self.cavpt_loss_mean(total, n_selected)
        terms["cavpt_triples"] = n_selected
        if n_selected:
            terms["cavpt_loss"] = cavpt_loss
        return loss + self.cavpt_loss_weight * cavpt_loss, terms
