"""CoOp: learnable text context, frozen CLIP image encoder."""

from collections import OrderedDict

import torch

from models.base import ModelOutput, PromptTuningModel, l2_normalize
from models.settings import TextPromptCfg
from models.text import LearnedTextFeatures, PromptLearner
from models.visual import frozen_image_encoder


class CoOpModel(PromptTuningModel):
    """Logits of CLIP's image features against the learned prompts' text features."""

    def __init__(self, clip_model, classnames, *, text_cfg=TextPromptCfg()):
        super().__init__(clip_model)
        prompt_learner = PromptLearner(clip_model, classnames, settings=text_cfg)
        self.text = LearnedTextFeatures(clip_model, prompt_learner)
        self.image_encoder = frozen_image_encoder(clip_model.visual)

    def learnable_modules(self):
        return OrderedDict(prompt_learner=self.text.prompt_learner)

    def forward(self, images):
        with torch.no_grad():  # nothing learnable on the image side
            image_features = l2_normalize(self.image_encoder(images.to(self.dtype)))
        text_features = l2_normalize(self.text())
        return ModelOutput(self.logit_scale() * image_features @ text_features.t())
