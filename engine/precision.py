"""Precision modes (``TRAINER.COOP.PREC``): the dtype of the frozen weights, the autocast, the
grad scaler. Learnable parameters stay float32 in every mode (float32 master prompts).

    fp32      float32 weights
    fp16      float16 weights (CoOp's and the original DPT code's mode)
    bf16      bfloat16 weights
    amp       float32 weights, float16 autocast, one grad scaler stepping every optimiser
    amp_bf16  float32 weights, bfloat16 autocast (no scaler needed: bfloat16 has float32's range)
    auto      chosen per device: amp_bf16 on a GPU with bfloat16 support, amp on other GPUs,
              fp32 on the CPU (half precision there is slower than float32 without AMX)
"""

import contextlib

import torch

PRECISIONS = ("fp32", "fp16", "bf16", "amp", "amp_bf16", "auto")
WEIGHT_DTYPES = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "amp": torch.float32,
    "amp_bf16": torch.float32,
}
AUTOCAST_DTYPES = {"amp": torch.float16, "amp_bf16": torch.bfloat16}


def resolve_precision(precision, device):
    """``precision`` checked, with ``auto`` replaced by the mode chosen for ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"Precision '{precision}' is not one of {PRECISIONS}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "amp_bf16" if torch.cuda.is_bf16_supported() else "amp"
    return "fp32"


class MixedPrecision:
    """Autocast and the optimiser step for one resolved precision mode on ``device``."""

    def __init__(self, precision, device):
        if precision not in WEIGHT_DTYPES:
            raise ValueError(f"Precision '{precision}' is not one of {tuple(WEIGHT_DTYPES)}")
        self.precision = precision
        self.device = device
        self.scaler = torch.amp.GradScaler(device.type) if precision == "amp" else None

    @property
    def weight_dtype(self):
        return WEIGHT_DTYPES[self.precision]

    def autocast(self):
        dtype = AUTOCAST_DTYPES.get(self.precision)
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=dtype)

    def backward(self, loss, retain_graph=False):
        """Gradients of ``loss`` (scaled by the grad scaler for ``amp``)."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward(
            retain_graph=retain_graph
        )

    def step(self, optimizers):
        """One step of every optimiser (through the scaler for ``amp``, which it updates)."""
        for optim in optimizers:
            if self.scaler is None:
                optim.step()
            else:
                self.scaler.step(optim)
        if self.scaler is not None:
            self.scaler.update()

    def backward_and_step(self, loss, optimizers):
        """Backward pass and one step of every optimiser (through the scaler for ``amp``)."""
        for optim in optimizers:
            optim.zero_grad(set_to_none=True)
        self.backward(loss)
        self.step(optimizers)
