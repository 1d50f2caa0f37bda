"""Optimisers and per-epoch learning-rate schedules with Dassl's options and semantics."""

import math

import torch

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULERS = ("single_step", "multi_step", "cosine")
WARMUP_TYPES = ("constant", "linear")


def build_optimizer(params, optim_cfg):
    """Build ``optim_cfg.NAME`` over ``params`` (a module, or an iterable of parameters)."""
    if isinstance(params, torch.nn.Module):
        params = [p for p in params.parameters() if p.requires_grad]
    name, lr, wd = optim_cfg.NAME, optim_cfg.LR, optim_cfg.WEIGHT_DECAY
    if name == "sgd":
        return torch.optim.SGD(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=betas)
    if name == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            alpha=optim_cfg.RMSPROP_ALPHA,
        )
    raise ValueError(f"OPTIM.NAME '{name}' is not supported; choose one of {OPTIMIZERS}")


def _main_factor(optim_cfg, t):
    """LR factor of the main schedule after ``t`` scheduler steps (no warm-up)."""
    name, max_epoch = optim_cfg.LR_SCHEDULER, optim_cfg.MAX_EPOCH
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t / max_epoch))
    stepsize = optim_cfg.STEPSIZE
    if name == "single_step":
        step = stepsize[-1] if isinstance(stepsize, (list, tuple)) else stepsize
        step = max_epoch if step <= 0 else step
        return optim_cfg.GAMMA ** (t // step)
    if name == "multi_step":
        milestones = stepsize if isinstance(stepsize, (list, tuple)) else (stepsize,)
        return optim_cfg.GAMMA ** sum(1 for m in milestones if m <= t)
    raise ValueError(f"OPTIM.LR_SCHEDULER '{name}' is not supported; choose one of {SCHEDULERS}")


def lr_at_epoch(optim_cfg, base_lr, epoch):
    """Learning rate used during ``epoch`` (0-based), as Dassl's warm-up wrappers give it.

    During warm-up the LR is WARMUP_CONS_LR (constant) or rises linearly from WARMUP_MIN_LR.
    With WARMUP_RECOUNT the main schedule starts counting at the end of warm-up; without it,
    it continues from the warm-up's length.
    """
    warmup = optim_cfg.WARMUP_EPOCH
    if warmup is None or warmup <= 0:
        return base_lr * _main_factor(optim_cfg, epoch)
    if epoch < warmup:
        if optim_cfg.WARMUP_TYPE == "constant":
            return optim_cfg.WARMUP_CONS_LR
        if optim_cfg.WARMUP_TYPE == "linear":
            return optim_cfg.WARMUP_MIN_LR if epoch == 0 else base_lr * epoch / warmup
        raise ValueError(
            f"OPTIM.WARMUP_TYPE '{optim_cfg.WARMUP_TYPE}' is not supported; "
            f"choose one of {WARMUP_TYPES}"
        )
    if optim_cfg.WARMUP_RECOUNT:
        return base_lr * _main_factor(optim_cfg, epoch - warmup)
    return base_lr * (1.0 if epoch == warmup else _main_factor(optim_cfg, epoch))


class EpochLRScheduler:
    """Sets each param group's LR from ``lr_at_epoch``; ``step()`` once per finished epoch."""

    def __init__(self, optimizer, optim_cfg):
        self.optimizer = optimizer
        self.optim_cfg = optim_cfg
        _main_factor(optim_cfg, 0)  # validate the schedule name before training starts
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_epoch = 0
        self._apply()

    def _apply(self):
        for group, base_lr in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = lr_at_epoch(self.optim_cfg, base_lr, self.last_epoch)

    def step(self):
        self.last_epoch += 1
        self._apply()

    def get_last_lr(self):
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self):
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state):
        self.last_epoch = state["last_epoch"]
        self.base_lrs = list(state["base_lrs"])
        self._apply()


def build_lr_scheduler(optimizer, optim_cfg):
    return EpochLRScheduler(optimizer, optim_cfg)
