"""TensorBoard event files in ``<run dir>/tensorboard/``, with the tags and steps of Dassl's
``TrainerX``, written while a run trains (not by ``--eval-only``):

- ``train/<name>`` for each entry of the step's log dict (``loss``, ``acc`` and each loss term),
  its running mean over the epoch, and ``train/lr``, the first module's learning rate, after
  every batch; step ``epoch * batches_per_epoch + batch`` (0-based).
- ``train/lr/<module>``: each module's learning rate, at the same steps (not in Dassl).
- ``<split>/accuracy``, ``<split>/error_rate``, ``<split>/macro_f1`` (and with
  TEST.PER_CLASS_RESULT ``<split>/perclass_accuracy``, the mean of the classes' accuracies)
  after each evaluation (the ``val`` split each epoch with TEST.FINAL_MODEL best_val, then the
  final one); step: the evaluated model's epoch (0-based).

A resumed run adds an event file to the folder; its first event hides the steps from its first
one on that the interrupted session wrote (``purge_step``), so that a curve does not double
back. Only the main process writes. Nothing here draws from a random generator.
"""

import os

FOLDER = "tensorboard"
# This project's evaluator's keys -> Dassl's names of them (perclass_accuracy: with
# TEST.PER_CLASS_RESULT).
METRICS = {"accuracy": "accuracy", "error": "error_rate", "macro_f1": "macro_f1",
           "perclass_accuracy": "perclass_accuracy"}  # fmt: skip


def module_lrs(optims):
    """``{"train/lr/<module>": learning rate}`` of ``{module name: optimiser}``."""
    return {f"train/lr/{name}": optim.param_groups[0]["lr"] for name, optim in optims.items()}


def open_writer(log_dir, first_step):
    """A ``SummaryWriter`` on ``log_dir`` whose steps start at ``first_step`` (what an
    earlier session wrote from there on is hidden)."""
    from torch.utils.tensorboard import SummaryWriter  # imported when a run trains

    print(f"Initialize tensorboard (log_dir={log_dir})")  # Dassl's line
    return SummaryWriter(log_dir=log_dir, purge_step=first_step)


class ScalarLog:
    """The builtin engine's writer: ``open`` it when training starts (main process only), then
    each call writes, or does nothing when it is not open."""

    def __init__(self):
        self._writer = None

    def open(self, output_dir, first_step):
        self._writer = open_writer(os.path.join(output_dir, FOLDER), first_step)

    def train_step(self, step, means, optims):
        """``means``: ``{name: running mean}``; ``optims``: ``{module: optimiser}``."""
        if self._writer is None:
            return
        scalars = {f"train/{name}": value for name, value in means.items()}
        scalars["train/lr"] = next(iter(optims.values())).param_groups[0]["lr"]
        scalars.update(module_lrs(optims))
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, step)

    def evaluation(self, split, results, epoch):
        if self._writer is None:
            return
        for key, name in METRICS.items():
            if key in results:
                self._writer.add_scalar(f"{split}/{name}", results[key], epoch)

    def flush(self):
        if self._writer is not None:
            self._writer.flush()

    def close(self):
        if self._writer is not None:
            self._writer.close()
            self._writer = None
