import math

import pytest
import torch

from engine.config import get_cfg_default
from engine.optim import build_lr_scheduler, build_optimizer, lr_at_epoch


def _optim_cfg(**kw):
    cfg = get_cfg_default().OPTIM
    cfg.merge_from_list([x for k, v in kw.items() for x in (k, v)])
    return cfg


def _lrs(cfg, n):
    param = torch.nn.Parameter(torch.zeros(1))
    optim = build_optimizer([param], cfg)
    sched = build_lr_scheduler(optim, cfg)
    out = []
    for _ in range(n):
        out.append(optim.param_groups[0]["lr"])
        sched.step()
    return out


def test_cosine_matches_torch():
    cfg = _optim_cfg(NAME="sgd", LR=0.1, LR_SCHEDULER="cosine", MAX_EPOCH=10)
    param = torch.nn.Parameter(torch.zeros(1))
    ref_opt = torch.optim.SGD([param], lr=0.1)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(ref_opt, T_max=10)
    expected = []
    for _ in range(10):
        expected.append(ref_opt.param_groups[0]["lr"])
        ref_opt.step()
        ref.step()
    assert _lrs(cfg, 10) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_constant_warmup_then_recounted_cosine():
    # The original DPT text prompt: LR 0.002, one constant warm-up epoch at 1e-5.
    cfg = _optim_cfg(
        NAME="sgd",
        LR=0.002,
        LR_SCHEDULER="cosine",
        MAX_EPOCH=5,
        WARMUP_EPOCH=1,
        WARMUP_TYPE="constant",
        WARMUP_CONS_LR=1e-5,
    )
    lrs = _lrs(cfg, 5)
    assert lrs[0] == 1e-5
    assert lrs[1] == pytest.approx(0.002)
    assert lrs[2] == pytest.approx(0.002 * 0.5 * (1 + math.cos(math.pi * 1 / 5)))


def test_linear_warmup_and_steps():
    cfg = _optim_cfg(
        NAME="sgd",
        LR=1.0,
        LR_SCHEDULER="single_step",
        STEPSIZE=(2,),
        GAMMA=0.1,
        MAX_EPOCH=8,
        WARMUP_EPOCH=2,
        WARMUP_TYPE="linear",
        WARMUP_MIN_LR=0.01,
    )
    assert _lrs(cfg, 6) == pytest.approx([0.01, 0.5, 1.0, 1.0, 0.1, 0.1])
    cfg = _optim_cfg(LR=1.0, LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.5, MAX_EPOCH=5)
    assert [lr_at_epoch(cfg, 1.0, e) for e in range(5)] == [1.0, 0.5, 0.5, 0.25, 0.25]


def test_warmup_without_recount_continues_the_main_schedule():
    cfg = _optim_cfg(
        LR=1.0,
        LR_SCHEDULER="cosine",
        MAX_EPOCH=10,
        WARMUP_EPOCH=2,
        WARMUP_TYPE="constant",
        WARMUP_RECOUNT=False,
    )
    assert lr_at_epoch(cfg, 1.0, 2) == 1.0
    assert lr_at_epoch(cfg, 1.0, 5) == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 10)))


def test_scheduler_state_round_trip():
    cfg = _optim_cfg(NAME="adamw", LR=0.1, LR_SCHEDULER="cosine", MAX_EPOCH=10)
    param = torch.nn.Parameter(torch.zeros(1))
    optim = build_optimizer([param], cfg)
    sched = build_lr_scheduler(optim, cfg)
    for _ in range(3):
        sched.step()
    other_opt = build_optimizer([param], cfg)
    other = build_lr_scheduler(other_opt, cfg)
    other.load_state_dict(sched.state_dict())
    assert other_opt.param_groups[0]["lr"] == optim.param_groups[0]["lr"]
    assert isinstance(optim, torch.optim.AdamW)


def test_bad_names_are_reported():
    with pytest.raises(ValueError, match="OPTIM.NAME 'sgdd'"):
        build_optimizer([torch.nn.Parameter(torch.zeros(1))], _optim_cfg(NAME="sgdd"))
    with pytest.raises(ValueError, match="OPTIM.LR_SCHEDULER 'cos'"):
        _lrs(_optim_cfg(LR_SCHEDULER="cos"), 1)
