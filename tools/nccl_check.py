"""Run by ``tools/gpu_check.py`` under ``torchrun --nproc_per_node 1``: join the process group
with the device's backend (NCCL on a GPU, gloo on the CPU), run the collectives that training
uses and one DistributedDataParallel step, and write what happened to a JSON file.

    torchrun --standalone --nproc_per_node 1 tools/nccl_check.py OUT.json [--cpu]

``train.py`` joins a process group only for WORLD_SIZE > 1 (engine/distributed.py), so under
one process it runs its one-process path; this is how NCCL gets checked on one GPU.
"""

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="JSON file for the record")
    parser.add_argument("--cpu", action="store_true", help="gloo on the CPU even with a GPU")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.cpu
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    value = torch.ones(3, device=device)
    dist.all_reduce(value)
    gathered = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, {"rank": dist.get_rank()})
    model = torch.nn.Linear(8, 4).to(device)
    ddp = DistributedDataParallel(model, device_ids=[0] if cuda else None)
    ddp(torch.randn(2, 8, device=device)).square().sum().backward()
    dist.barrier()
    record = {
        "backend": dist.get_backend(),
        "world_size": dist.get_world_size(),
        "all_reduce": value.tolist(),
        "all_gather_object": gathered,
        "ddp_grad_finite": bool(torch.isfinite(model.weight.grad).all()),
    }
    dist.destroy_process_group()
    Path(args.out).write_text(json.dumps(record))


if __name__ == "__main__":
    main()
