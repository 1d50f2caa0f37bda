"""Dassl on the torch this project pins."""

import inspect

from torch.optim.lr_scheduler import LRScheduler


def allow_current_torch_schedulers():
    """Dassl's warm-up schedulers pass ``verbose`` on to torch's ``LRScheduler``, whose
    constructor no longer takes it (torch >= 2.7): drop the argument there."""
    if "verbose" in inspect.signature(LRScheduler.__init__).parameters:
        return
    from dassl.optim.lr_scheduler import _BaseWarmupScheduler

    def __init__(self, optimizer, successor, warmup_epoch, last_epoch=-1, verbose=False):
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        LRScheduler.__init__(self, optimizer, last_epoch)

    _BaseWarmupScheduler.__init__ = __init__
