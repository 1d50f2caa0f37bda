"""Distributed data parallel under ``torchrun``: the process group and what ranks share.

``torchrun --nproc_per_node N train.py ...`` starts N processes with RANK, WORLD_SIZE and
LOCAL_RANK set; ``init_from_env`` joins them (NCCL on GPUs, gloo on the CPU). Without torchrun
everything here is the one-process identity, so the single-process path is unchanged.
"""

import os

import torch
import torch.distributed as dist


def init_from_env(use_cuda=True):
    """Join the process group torchrun describes (once); True when running distributed."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        cuda = use_cuda and torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(local_rank())
        dist.init_process_group("nccl" if cuda else "gloo")
    return True


def is_distributed():
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank():
    return dist.get_rank() if is_distributed() else 0


def world_size():
    return dist.get_world_size() if is_distributed() else 1


def local_rank():
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process():
    return rank() == 0


def barrier():
    if is_distributed():
        dist.barrier()


def gather_objects(obj):
    """``obj`` of every rank, in rank order (``[obj]`` in one process)."""
    if not is_distributed():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values):
    """A dict of floats averaged over the ranks; a key missing on some ranks (a loss term
    without samples there) is averaged over the ranks that have it."""
    if not is_distributed():
        return values
    gathered = gather_objects(values)
    keys = dict.fromkeys(key for part in gathered for key in part)
    return {
        key: sum(p[key] for p in gathered if key in p) / sum(key in p for p in gathered)
        for key in keys
    }


def all_ranks_true(flag):
    """Whether ``flag`` holds on every rank (a collective: every rank must call it)."""
    if not is_distributed():
        return bool(flag)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([0 if flag else 1], device=device)
    dist.all_reduce(tensor)
    return int(tensor) == 0


def global_mean(total, count):
    """(``total / count`` over all ranks, the count over all ranks); the mean is scaled by
    the world size so that DDP's gradient averaging yields the gradient of the mean over the
    whole (global) batch, and its average over the ranks is that mean."""
    counts = torch.tensor(float(count), device=total.device)
    dist.all_reduce(counts)
    return total * world_size() / counts.clamp_min(1), int(counts)


def seed_for_epoch(seed, epoch):
    """Seed torch's RNG per (seed, epoch, rank) in distributed runs with a fixed seed, so that
    the ranks draw different augmentations and a resumed run draws the same ones."""
    if is_distributed() and seed >= 0:
        torch.manual_seed(hash((seed, epoch, rank())) & (2**63 - 1))
