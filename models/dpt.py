"""DPT: VLP plus class-aware visual prompts (CAVPT) in the top ViT blocks."""

import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F

from models.visual import CAVPT, require_vit
from models.vlp import VLPModel


def cavpt_loss_total(layer_logits, indices, labels):
    """Summed CE of the auxiliary logits over the (image, CAVPT block, slot) triples whose
    selected class is the label, and how many there are. The sum runs over a mask, so every
    CAVPT parameter stays in the graph (with zero gradient when nothing is selected)."""
    logits = torch.stack(layer_logits)  # [J, K, B, C]
    n_blocks, k, batch, n_classes = logits.shape
    selected = (indices == labels[:, None]).t().expand(n_blocks, k, batch).reshape(-1)
    targets = labels.expand(n_blocks, k, batch).reshape(-1)
    ce = F.cross_entropy(logits.reshape(-1, n_classes).float(), targets, reduction="none")
    return (ce * selected).sum(), int(selected.sum())


def mean_of_selected(total, count):
    """The mean over this batch's selected triples (0 when there are none), and their count."""
    return total / max(count, 1), count


class DPTModel(VLPModel):
    """Dual-modality prompt tuning.

    Blocks 1..bottomlimit-1 (1-based) get the deep visual prompt, blocks bottomlimit..L the
    K = min(cpn, C) class-aware prompts of the zero-shot top-K classes. ``alpha`` weighs the
    CAVPT auxiliary loss; ``cavpt_n_kv`` and ``cavpt_attn_dim`` are the CAVPT key/value token
    count and attention width (10 and 32 in the original code).
    """

    def __init__(self, clip_model, classnames, template, n_ctx=16, ctx_init="", csc=False,
                 class_token_position="end", vpt_n_ctx=10, bottomlimit=12, cpn=10, alpha=0.3,
                 cavpt_n_kv=10, cavpt_attn_dim=32, pretrain_c=30):  # fmt: skip
        require_vit(clip_model, "DPT")
        n_blocks = len(clip_model.visual.transformer.resblocks)
        if not 1 <= bottomlimit <= n_blocks:
            raise ValueError(
                f"bottomlimit (TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT) must be in 1..{n_blocks} "
                f"for this {n_blocks}-block ViT (CAVPT runs in blocks bottomlimit..{n_blocks}), "
                f"got {bottomlimit}"
            )
        n_classes = len(classnames)
        if cpn < 1:
            raise ValueError(f"cpn (TRAINER.SELECTED_COVPT.CPN) must be >= 1, got {cpn}")
        if alpha < 0:
            raise ValueError(f"alpha (TRAINER.ALPHA) must be >= 0, got {alpha}")
        if cpn > n_classes:
            warnings.warn(
                f"cpn (TRAINER.SELECTED_COVPT.CPN) = {cpn} is more than the {n_classes} "
                f"classes: using K = {n_classes}",
                stacklevel=2,
            )
        super().__init__(
            clip_model, classnames, template, n_ctx, ctx_init, csc, class_token_position,
            vpt_n_ctx, pretrain_c, vpt_layers=bottomlimit - 1,
        )  # fmt: skip
        self.n_selected_classes = min(cpn, n_classes)
        self.alpha = alpha
        self.cavpt = CAVPT(
            n_blocks - self.visual_prompt.n_layers,
            text_dim=clip_model.text_projection.shape[1],
            width=self.image_encoder.width,
            n_classes=n_classes,
            n_kv=cavpt_n_kv,
            attn_dim=cavpt_attn_dim,
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
        indices = self.zeroshot.top_classes(
            zeroshot_features, self.n_selected_classes, self.logit_scale()
        )
        text_features = self.text()
        # the un-normalised learned features: the text prompt also learns through CAVPT
        class_text = text_features[indices]  # [B, K, E]
        n_vpt = self.visual_prompt.n_layers
        layer_logits = []

        def block_prompts(block, sequence):
            if block < n_vpt:
                return self.visual_prompt(block, sequence)
            prompts, logits = self.cavpt(block - n_vpt, sequence, class_text)
            layer_logits.append(logits)
            return prompts

        image_features = self.image_encoder(images, block_prompts)
        out = self._output(image_features, text_features, zeroshot_features)
        out.layer_logits = layer_logits
        out.indices = indices
        return out

    # How the CAVPT loss averages over the selected triples; data-parallel training replaces
    # it by the mean over every process's triples (engine.distributed.global_mean).
    selected_mean = staticmethod(mean_of_selected)

    def loss_terms(self, out, labels, epoch):
        loss, terms = super().loss_terms(out, labels, epoch)
        total, n_selected = cavpt_loss_total(out.layer_logits, out.indices, labels)
        layer_loss, n_selected = self.selected_mean(total, n_selected)
        terms["n_selected"] = n_selected
        if n_selected:
            terms["layer_loss"] = layer_loss
        return loss + self.alpha * layer_loss, terms
