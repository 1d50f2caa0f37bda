"""Prompt-tuning models on a frozen CLIP: CoOp, CoCoOp, VPT, VLP, DPT, IVLP and MaPLe."""

from models.base import GuidedOutput, ModelOutput, PromptTuningModel
from models.cocoop import CoCoOpModel
from models.coop import CoOpModel
from models.dpt import DPTModel, DPTOutput
from models.ivlp import IVLPModel
from models.maple import MaPLeModel
from models.settings import (
    CAVPTCfg,
    CoCoOpCfg,
    GuidanceCfg,
    IVLPCfg,
    MaPLeCfg,
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
    "IVLPCfg",
    "IVLPModel",
    "MaPLeCfg",
    "MaPLeModel",
    "ModelOutput",
    "PromptTuningModel",
    "SettingError",
    "TextPromptCfg",
    "VLPModel",
    "VPTModel",
    "VisualPromptCfg",
]
