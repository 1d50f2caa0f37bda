"""Prompt-tuning models on a frozen CLIP: CoOp, VPT, VLP and DPT."""

from models.base import ModelOutput, PromptTuningModel
from models.coop import CoOpModel
from models.dpt import DPTModel
from models.vlp import VLPModel
from models.vpt import VPTModel

__all__ = ["CoOpModel", "DPTModel", "ModelOutput", "PromptTuningModel", "VLPModel", "VPTModel"]
