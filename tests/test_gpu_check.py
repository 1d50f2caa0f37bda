"""tools/gpu_check.py, the one-shot check for a lent GPU machine, kept from rotting on the CPU:
``--smoke`` runs every section's code path on the shipped tiny CLIP (about 40 s on 2 idle
cores); the report's bookkeeping (a failing section is recorded and the next one runs, the
time budget, the JSON after each section) and the bad-argument exits are checked directly."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import gpu_check
from tools.check_report import CheckReport, SectionSkipped
from tools.original_code import default_original_dir, original_unavailable

REPO = Path(__file__).resolve().parents[1]
SMOKE = gpu_check.SIZES["smoke"]
DPT_MODULES = {"visual_prompt", "cavpt", "prompt_learner"}


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("gpu_check")
    out = work_dir / "gpu_check.json"
    command = [sys.executable, "tools/gpu_check.py", "--smoke", "--out", str(out)]
    command += ["--work-dir", str(work_dir)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return json.loads(out.read_text())


def expected_sections():
    names = ["environment", "inputs"]
    for n in SMOKE.classes:
        for precision in gpu_check.PRECISIONS:
            names.append(f"dpt_{n}_{precision}")
            if precision == "fp16":
                names.append(f"original_{n}_fp16")
    names += [f"{t}_{SMOKE.classes[0]}" for t in ("coop", "vpt", "vlp")]
    return names + ["nccl", "torchrun", "dassl", "compile"]


def may_skip(name):
    """Sections that skip, with the reason, where this machine lacks what they need."""
    if name.startswith("original_"):
        return original_unavailable(default_original_dir())
    if name == "dassl":
        import importlib.util

        return importlib.util.find_spec("dassl") is None
    return False


@pytest.mark.slow
def test_smoke_runs_every_section(smoke_report):
    sections = smoke_report["sections"]
    assert list(sections) == expected_sections()
    for name, record in sections.items():
        expected = "skipped" if may_skip(name) else "ok"
        assert record["status"] == expected, (name, record)
    assert smoke_report["counts"]["failed"] == 0
    assert smoke_report["elapsed_s"] < smoke_report["budget_s"]


@pytest.mark.slow
def test_smoke_precision_modes_train_and_track_fp32(smoke_report):
    sections = smoke_report["sections"]
    for n in SMOKE.classes:
        for precision in gpu_check.PRECISIONS:
            record = sections[f"dpt_{n}_{precision}"]
            assert record["precision"] == precision and record["classes"] == n
            assert record["steps"] == len(record["losses"]) == SMOKE.steps
            assert all(math.isfinite(loss) for loss in record["losses"])
            assert record["losses"][-1] < record["losses"][0]  # it learns
            assert record["images_per_s"] == pytest.approx(SMOKE.batch / record["step_s"], 1e-2)
            assert record["peak_memory_mib"] > 0
            assert set(record["moved"]) == DPT_MODULES and min(record["moved"].values()) > 0
            if precision == "fp32":
                continue
            tracking = record["tracks_fp32"]
            assert tracking["within"] and tracking["steps_compared"] == SMOKE.steps
            assert set(tracking["moved_ratio"]) == DPT_MODULES
        # fp16 without a grad scaler and amp_bf16 follow fp32 closely; amp's scaler skips
        # steps at first, so only its first step is that close.
        for precision in ("fp16", "amp_bf16"):
            tracking = sections[f"dpt_{n}_{precision}"]["tracks_fp32"]
            assert tracking["end_diff_of_first_loss"] < 0.01
        assert sections[f"dpt_{n}_amp"]["tracks_fp32"]["first_step_rel_diff"] < 2e-3


@pytest.mark.slow
def test_smoke_original_brief_distributed_engine_and_compile(smoke_report):
    sections = smoke_report["sections"]
    original = sections[f"original_{SMOKE.classes[0]}_fp16"]
    if original["status"] == "ok":
        assert original["steps"] == SMOKE.brief_steps
        assert all(math.isfinite(loss) for loss in original["losses"])
        assert original["original_over_ours_fp16"] > 0
    for trainer in ("coop", "vpt", "vlp"):
        record = sections[f"{trainer}_{SMOKE.classes[0]}"]
        assert record["steps"] == SMOKE.brief_steps and record["precision"] == "fp32"
    nccl = sections["nccl"]
    assert (nccl["backend"], nccl["world_size"], nccl["all_reduce"]) == ("gloo", 1, [1, 1, 1])
    assert nccl["ddp_grad_finite"]
    for name in ("torchrun", "dassl"):
        if sections[name]["status"] == "ok":
            assert 0 <= sections[name]["accuracy"] <= 100
            assert sections[name]["returncode"] == 0
    compiled = sections["compile"]
    assert compiled["compile_backend"] == "eager" and compiled["precision"] == "fp32"
    # the eager backend runs the very operators of the uncompiled run
    assert compiled["tracks_uncompiled"]["within"]
    assert compiled["tracks_uncompiled"]["first_step_rel_diff"] == 0


def test_failing_section_is_recorded_and_the_next_runs(tmp_path):
    out = tmp_path / "report.json"
    report = CheckReport(str(out), budget_s=60, header={"tool": "test"})

    def fails(record):
        record["figure"] = 1
        raise RuntimeError("broken kernel")

    def skips(record):
        raise SectionSkipped("no Dassl")

    report.section("first", fails)
    assert json.loads(out.read_text())["sections"]["first"]["status"] == "failed"
    report.section("second", skips)
    report.section("third", lambda record: record.update(value=float("nan")))
    report.section("fourth", lambda record: None, needs_s=1e6)
    sections = json.loads(out.read_text())["sections"]
    assert sections["first"]["error"] == "RuntimeError: broken kernel"
    assert "broken kernel" in sections["first"]["traceback"] and sections["first"]["figure"] == 1
    assert sections["second"] == {"status": "skipped", "reason": "no Dassl", "seconds": 0.0}
    assert sections["third"]["status"] == "ok" and sections["third"]["value"] == "nan"
    assert sections["fourth"]["status"] == "skipped"
    assert sections["fourth"]["reason"].startswith("time budget")
    assert report.failed() == ["first"]


def test_budget_ends_the_check_early(tmp_path, capsys):
    out = tmp_path / "gpu_check.json"
    argv = ["--smoke", "--budget-s", "2", "--out", str(out), "--work-dir", str(tmp_path)]
    assert gpu_check.main(argv) == 0
    sections = json.loads(out.read_text())["sections"]
    assert list(sections) == expected_sections()
    assert sections["inputs"]["status"] == "ok"
    assert all(
        record["status"] == "skipped" and record["reason"].startswith("time budget")
        for name, record in sections.items()
        if name not in ("environment", "inputs")
    )
    assert "Figures: " in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--smoke", "--out", "/nonexistent/folder/x.json"], "does not exist or is not writable"),
        (["--smoke", "--work-dir", "/nonexistent/work"], "is not a folder"),
        (["--out", "x.json"], "no CUDA GPU is visible"),
    ],
)
def test_bad_arguments_exit_2_before_any_work(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
