"""Checkpoints in Dassl's run-directory layout, written atomically.

``<run_dir>/<module>/model.pth.tar-<epoch>`` (1-based epoch) or ``model-best.pth.tar``, each a
dict with ``state_dict``, ``epoch``, ``optimizer``, ``scheduler`` and ``val_result``; the file
``<run_dir>/<module>/checkpoint`` names the latest one, as Dassl's resume logic expects.

A training run saves all its modules as one epoch (``save_epoch``): every module's file
first, then ``<run_dir>/last_epoch.json`` naming the epoch. Writing that file is the commit:
a run stopped at any moment resumes from the epoch it names, complete in every module, never
from a mix of epochs (``resumable_epoch``).
"""

import contextlib
import errno
import json
import os
import pickle
import re
import tempfile
from dataclasses import dataclass

from engine.permissions import share_as_umask

LATEST_POINTER = "checkpoint"
BEST_NAME = "model-best.pth.tar"
EPOCH_FILE = "last_epoch.json"
TEMP_PREFIX = ".tmp-"
_EPOCH_FILE_NAME = re.compile(r"^model\.pth\.tar-(\d+)$")


class RunWriteError(OSError):
    """A file of a run could not be written (disk space, permissions); the run stays
    resumable, and the message says from which epoch."""


def write_failure(what, err, run_dir=None, committed=None):
    """The message for a failed write of ``what`` (what and where, e.g. "epoch 3 in 'RUN'"):
    the cause, and, for a run directory, the epoch that ``committed`` (by default the one
    in its ``last_epoch.json``) lets the run resume from."""
    message = f"Could not save {what} ({err})."
    if run_dir is None:
        return f"{message} Fix the cause (permissions, free space), then run the command again."
    if committed is None:
        committed = committed_epoch(run_dir)
    start = "its start" if committed is None else f"epoch {committed}"
    return (
        f"{message} The run can resume from {start}: fix the cause (permissions, free "
        "space), then run the same command again."
    )


@contextlib.contextmanager
def stopped_by_full_disk(run_dir):
    """Any other write of the run that fails for want of space (or on a file system made
    read-only), e.g. of its lock or of a folder it makes, ends the run as a ``RunWriteError``
    naming the file; the writes that know what they save use ``saving``."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            raise
        what = f"'{err.filename}'" if err.filename else "a file of the run"
        raise RunWriteError(write_failure(what, err, run_dir)) from err


@contextlib.contextmanager
def saving(what, run_dir=None):
    """A failed write inside the block (``OSError``: a full disk, a folder made read-only)
    becomes a ``RunWriteError`` saying what was not saved and how the run goes on."""
    try:
        yield
    except RunWriteError:
        raise
    except OSError as err:
        raise RunWriteError(write_failure(what, err, run_dir)) from err


def epoch_name(epoch):
    return f"model.pth.tar-{epoch}"


def atomic_write(path, write_fn, mode="wb"):
    """Write through ``write_fn(file)`` to a temp file beside ``path``, then rename it (with
    the mode ``open()`` would give, not mkstemp's 0600). A failed write (a full disk) is an
    ``OSError`` naming ``path``."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX + os.path.basename(path))
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        share_as_umask(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.filename is None:
            raise OSError(err.errno, err.strerror, path) from err
        raise


def atomic_write_json(path, obj):
    atomic_write(path, lambda f: json.dump(obj, f, indent=2), mode="w")


@contextlib.contextmanager
def torch_write_errors():
    """torch's zip writer turns a failed write (a full disk) into "RuntimeError: [enforce
    fail at inline_container.cc] unexpected pos"; inside the block that is the ``OSError``
    it came from (its context)."""
    try:
        yield
    except RuntimeError as err:
        cause = err.__context__
        if isinstance(cause, OSError):
            raise OSError(cause.errno, cause.strerror, cause.filename) from err
        raise


def _save_state(path, state):
    import torch  # here: the writers above serve programs that never load torch

    def write(f):
        with torch_write_errors():
            torch.save(state, f)

    atomic_write(path, write)


def _point_to(module_dir, name):
    """Dassl's pointer: ``<module_dir>/checkpoint`` names the latest checkpoint file."""
    atomic_write(os.path.join(module_dir, LATEST_POINTER), lambda f: f.write(name + "\n"), "w")


def save_checkpoint(state, module_dir, is_best=False, remove_previous=False):
    """Save one module's ``state`` (its ``epoch`` is 1-based) and point ``checkpoint`` at it."""
    name = epoch_name(state["epoch"])
    path = os.path.join(module_dir, name)
    previous = latest_checkpoint(module_dir)
    _save_state(path, state)
    _point_to(module_dir, name)
    if is_best:
        _save_state(os.path.join(module_dir, BEST_NAME), state)
    if remove_previous and previous and os.path.basename(previous) != name:
        os.remove(previous)
    return path


def save_epoch(run_dir, states, is_best=False, keep_previous=True):
    """Save one epoch of every module (``states``: module name -> state) as a unit.

    The modules' files (and ``model-best.pth.tar`` with ``is_best``) are written first, then
    ``last_epoch.json`` names the epoch: until that rename the previous epoch stays the one to
    resume from. Then the Dassl pointers move on, and the previous epoch's files go unless
    ``keep_previous``. A failed write is a ``RunWriteError`` naming the epoch that a run
    can resume from."""
    epoch = next(iter(states.values()))["epoch"]
    previous = committed_epoch(run_dir)
    with saving(f"epoch {epoch} in '{run_dir}'", run_dir):
        _write_epoch(run_dir, states, is_best)
    try:
        _after_commit(run_dir, states, None if keep_previous else previous)
    except OSError as err:
        message = write_failure(f"Dassl's pointers to epoch {epoch}", err, run_dir, epoch)
        raise RunWriteError(f"Saved epoch {epoch} in '{run_dir}'. {message}") from err


def _write_epoch(run_dir, states, is_best):
    """Every module's file of the epoch, then the commit (``last_epoch.json``)."""
    epoch = next(iter(states.values()))["epoch"]
    for module, state in states.items():
        _save_state(os.path.join(run_dir, module, epoch_name(epoch)), state)
    if is_best:
        for module, state in states.items():
            _save_state(os.path.join(run_dir, module, BEST_NAME), state)
    atomic_write_json(os.path.join(run_dir, EPOCH_FILE), {"epoch": epoch, "modules": list(states)})


def _after_commit(run_dir, states, drop):
    """Dassl's pointers name the committed epoch; the files of epoch ``drop`` go."""
    epoch = next(iter(states.values()))["epoch"]
    for module in states:
        _point_to(os.path.join(run_dir, module), epoch_name(epoch))
    if drop is not None and drop != epoch:
        for module in states:
            stale = os.path.join(run_dir, module, epoch_name(drop))
            if os.path.isfile(stale):
                os.remove(stale)


def committed_epoch(run_dir):
    """The epoch ``last_epoch.json`` names (``{"epoch": N, "modules": [...]}``), or None."""
    path = os.path.join(run_dir, EPOCH_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return int(json.load(f)["epoch"])
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"'{path}' is damaged ({type(err).__name__}: {err}). Delete it to resume from the "
            "newest epoch saved in every module, or pass --overwrite to start the run again."
        ) from err


def saved_epochs(module_dir):
    """The epochs of the ``model.pth.tar-<epoch>`` files in ``module_dir``."""
    if not os.path.isdir(module_dir):
        return set()
    return {int(m[1]) for n in os.listdir(module_dir) if (m := _EPOCH_FILE_NAME.match(n))}


def resumable_epoch(run_dir, modules):
    """The newest epoch saved completely in every one of ``modules``, or None (no epoch saved).

    ``last_epoch.json`` names it; in run directories written before it existed (Dassl's and
    ours: each module has its ``checkpoint`` pointer), it is the newest epoch whose file every
    module has, whatever the pointers say. Files of a later, uncommitted epoch are ignored."""
    epoch = committed_epoch(run_dir)
    if epoch is not None:
        missing = [
            os.path.join(run_dir, m, epoch_name(epoch))
            for m in modules
            if not os.path.isfile(os.path.join(run_dir, m, epoch_name(epoch)))
        ]
        if missing:
            raise FileNotFoundError(
                f"{os.path.join(run_dir, EPOCH_FILE)} names epoch {epoch}, but {missing} do not "
                "exist. Restore them, or pass --overwrite to start the run again."
            )
        return epoch
    pointers = [m for m in modules if os.path.isfile(os.path.join(run_dir, m, LATEST_POINTER))]
    if not pointers:
        return None
    epochs = {m: saved_epochs(os.path.join(run_dir, m)) for m in modules}
    common = set.intersection(*epochs.values())
    if not common:
        found = {m: sorted(e) for m, e in epochs.items()}
        raise ValueError(
            f"The modules in '{run_dir}' hold checkpoints of different epochs ({found}): no "
            "epoch is complete in all of them. To train this run again, pass --overwrite (its "
            "checkpoints move to previous-<timestamp>/)."
        )
    return max(common)


def remove_temp_files(run_dir, modules):
    """Delete the temporary files that interrupted atomic writes left in ``run_dir`` and its
    ``modules``' folders (only safe while no other process writes there); returns their paths."""
    removed = []
    for folder in [run_dir] + [os.path.join(run_dir, m) for m in modules]:
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            if name.startswith(TEMP_PREFIX) and os.path.isfile(path):
                os.remove(path)
                removed.append(path)
    return removed


def latest_checkpoint(module_dir):
    """Path of the checkpoint that ``<module_dir>/checkpoint`` names, or None."""
    pointer = os.path.join(module_dir, LATEST_POINTER)
    if not os.path.isfile(pointer):
        return None
    with open(pointer) as f:
        name = f.readline().strip()
    path = os.path.join(module_dir, name)
    return path if os.path.isfile(path) else None


def load_checkpoint(path, advice="Restore it from a copy, or train the run again."):
    """The dict saved at ``path``; a truncated or corrupt file is a ValueError naming it."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Checkpoint not found: '{path}'")
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (EOFError, RuntimeError, OSError, ValueError, pickle.UnpicklingError) as err:
        reason = str(err).split(". ")[0].strip() or "no details"
        raise ValueError(
            f"Cannot read the checkpoint '{path}': it is truncated or corrupt "
            f"({type(err).__name__}: {reason}). {advice}"
        ) from err


@dataclass
class SavedModule:
    """One module's checkpoint, read for evaluation: its state dict, the (1-based) epoch, the
    run's config saved with it (a ``cfg_to_dict``; None in older checkpoints) and its path."""

    state_dict: dict
    epoch: int | None = None
    config: dict | None = None
    path: str = ""


def read_run_states(directory, names, epoch=None, best=False):
    """The checkpoints of the modules ``names`` of a run directory (this project's or
    Dassl's layout), as ``{name: SavedModule}``, all of one epoch.

    Without ``epoch``: ``model-best.pth.tar`` when every module has one (Dassl's default, and
    the weights a best_val run reported), else the newest epoch saved in every module."""
    has_best = all(os.path.isfile(os.path.join(directory, n, BEST_NAME)) for n in names)
    if epoch is None and not best and not has_best:
        epoch = resumable_epoch(directory, names)
    saved = {}
    for name in names:
        module_dir = os.path.join(directory, name)
        path = os.path.join(module_dir, BEST_NAME if best or epoch is None else epoch_name(epoch))
        if not os.path.isfile(path):
            found = sorted(os.listdir(module_dir)) if os.path.isdir(module_dir) else "nothing"
            raise FileNotFoundError(
                f"No checkpoint for module '{name}': '{path}' does not exist. "
                f"Found in {module_dir}: {found}"
            )
        ckpt = load_checkpoint(path, advice="Restore it, or evaluate another --load-epoch.")
        print(f"Loading weights to {name} from '{path}' (epoch = {ckpt.get('epoch')})")
        saved[name] = SavedModule(ckpt["state_dict"], ckpt.get("epoch"), ckpt.get("config"), path)
    epochs = {name: module.epoch for name, module in saved.items()}
    if len(set(epochs.values())) > 1:
        raise ValueError(
            f"The checkpoints loaded from '{directory}' are of different epochs ({epochs}): "
            "pass --load-epoch N for an epoch that every module has."
        )
    return saved
