"""Prompt-tuning models on a frozen CLIP: CoOp, CoCoOp, VPT, VLP and DPT."""

from models.base import GuidedOutput, ModelOutput, PromptTuningModel
from models.cocoop import CoCoOpModel
from models.coop import CoOpModel
from models.dpt import DPTModel, DPTOutput
from models.settings import (
    CAVPTCfg,
    CoCoOpCfg,
    GuidanceCfg,
    SettingError,
    TextPromptCfg,
    VisualPromptCfg,
)
from models.vlp import VLPModel
from models.vpt import VPTModel

__all__ = [
    "CAVPTCfg",
    "CoCoOpCfg",
    "CoCoOpModel",
    "CoOpModel",
    "DPTModel",
    "DPTOutput",
    "GuidanceCfg",
    "GuidedOutput",
    "ModelOutput",
    "PromptTuningModel",
    "SettingError",
    "TextPromptCfg",
    "VLPModel",
    "VPTModel",
    "VisualPromptCfg",
]
