"""Dassl on the torch this project pins, and what its checkpoints need to hold."""

import contextlib
import inspect
import os

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


def save_warmup_successors_as_states():
    """Dassl's warm-up schedulers keep their successor scheduler, optimizer included, as an
    object in ``state_dict()``: torch >= 2.6 refuses to load such a checkpoint (weights only),
    and where it loads, the successor steps an unpickled copy of the optimizer, so the learning
    rate stops following the schedule after a resume past the warm-up. Save the successor's
    state instead and load it into the live successor (an older checkpoint's object too)."""
    from dassl.optim.lr_scheduler import _BaseWarmupScheduler

    def state_dict(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        return {**state, "successor": self.successor.state_dict()}

    def load_state_dict(self, state_dict):
        state = dict(state_dict)
        successor = state.pop("successor")
        if not isinstance(successor, dict):
            successor = successor.state_dict()
        self.successor.load_state_dict(successor)
        self.__dict__.update(state)

    _BaseWarmupScheduler.state_dict = state_dict
    _BaseWarmupScheduler.load_state_dict = load_state_dict


@contextlib.contextmanager
def checkpoints_with(extra):
    """Dassl's ``save_model`` adding ``extra`` (a dict) to each checkpoint it writes."""
    import dassl.engine.trainer as dassl_trainer

    save = dassl_trainer.save_checkpoint
    dassl_trainer.save_checkpoint = lambda state, *args, **kwargs: save(
        {**state, **extra}, *args, **kwargs
    )
    try:
        yield
    finally:
        dassl_trainer.save_checkpoint = save


def resumed_checkpoint(directory, name):
    """The path of the checkpoint of module ``name`` that Dassl's resume reads (its
    ``checkpoint`` pointer file in ``directory/name``)."""
    folder = os.path.join(directory, name)
    with open(os.path.join(folder, "checkpoint")) as f:
        return os.path.join(folder, f.readline().strip("\n"))
