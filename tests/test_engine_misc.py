import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.checkpoint import (
    atomic_write_json,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from engine.eval_cache import EvaluationCache
from engine.evaluator import ClassificationEvaluator, macro_f1
from engine.registry import Registry
from engine.threads import OPENMP_WAITS, set_threads
from models.clip_loader import ClipWeightsNotFound, load_clip, resolve_checkpoint
from tests.clip_fixtures import make_clip, save_clip_checkpoint
from tests.run_fixtures import REPO


def test_registry_lists_names_and_suggests():
    reg = Registry("trainer")

    @reg.register()
    class CoOp:
        pass

    assert reg.get("CoOp") is CoOp
    with pytest.raises(KeyError, match="Did you mean 'CoOp'.*Registered: CoOp"):
        reg.get("Coop")


def test_checkpoint_layout_and_pointer(tmp_path):
    module_dir = tmp_path / "prompt_learner"
    save_checkpoint({"state_dict": {"ctx": torch.ones(2)}, "epoch": 1}, str(module_dir))
    save_checkpoint(
        {"state_dict": {"ctx": torch.zeros(2)}, "epoch": 2},
        str(module_dir),
        is_best=True,
        remove_previous=True,
    )
    assert sorted(os.listdir(module_dir)) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2"]
    assert (module_dir / "checkpoint").read_text().strip() == "model.pth.tar-2"
    assert load_checkpoint(latest_checkpoint(str(module_dir)))["epoch"] == 2


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    module_dir = tmp_path / "m"
    save_checkpoint({"state_dict": {}, "epoch": 1}, str(module_dir))

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"state_dict": {}, "epoch": 2}, str(module_dir))
    assert sorted(os.listdir(module_dir)) == ["checkpoint", "model.pth.tar-1"]


def test_evaluator_prints_dassl_block(capsys):
    ev = ClassificationEvaluator({0: "cat", 1: "dog"}, per_class=True)
    ev.process(
        torch.tensor([[2.0, 1.0], [0.0, 1.0], [3.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 1, 1, 1])
    )
    res = ev.evaluate()
    out = capsys.readouterr().out
    assert "* total: 4\n* correct: 3\n* accuracy: 75.0%\n* error: 25.0%\n" in out
    assert res["per_class"]["dog"]["accuracy"] == pytest.approx(200 / 3)
    # F1: cat 2*1/(2+1+0)=2/3, dog 2*2/(4+0+1)=0.8
    assert res["macro_f1"] == pytest.approx(100 * (2 / 3 + 0.8) / 2)
    assert macro_f1(np.array([0, 0]), np.array([1, 1])) == 0.0


@pytest.mark.parametrize("jit", [False, True])
def test_load_clip_from_local_file(tmp_path, jit):
    path = save_clip_checkpoint(tmp_path / "tiny.pt", jit=jit)
    model = load_clip(path)
    ref = make_clip().float()
    assert model.visual.input_resolution == 32
    assert all(not p.requires_grad for p in model.parameters())
    assert model.dtype == torch.float32
    tokens = torch.zeros(1, 77, dtype=torch.long)
    tokens[0, :2] = torch.tensor([49406, 49407])
    torch.testing.assert_close(
        model.encode_text(tokens), ref.encode_text(tokens), rtol=2e-2, atol=2e-3
    )


def test_missing_weights_offline_names_file_url_and_fix(tmp_path, monkeypatch):
    import clip

    def offline(url, root):
        raise OSError("network is unreachable")

    monkeypatch.setattr(clip.clip, "_download", offline)
    with pytest.raises(ClipWeightsNotFound) as info:
        resolve_checkpoint("ViT-B/16", cache_dir=str(tmp_path))
    msg = str(info.value)
    assert os.path.join(str(tmp_path), "ViT-B-16.pt") in msg
    assert "https://" in msg and "ViT-B-16.pt" in msg and "copy the file" in msg


def test_unknown_backbone_and_corrupt_file(tmp_path):
    with pytest.raises(ClipWeightsNotFound, match="neither a file nor a CLIP model name"):
        resolve_checkpoint("ViT-X/99", cache_dir=str(tmp_path))
    missing = os.path.join("assets", "nope", "clip.pt")
    with pytest.raises(ClipWeightsNotFound, match="run from the repository root") as info:
        resolve_checkpoint(missing, cache_dir=str(tmp_path))
    assert os.path.abspath(missing) in str(info.value)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="is not a CLIP checkpoint: it is not a file that"):
        load_clip(str(bad))


def test_threads_default_to_the_available_cpus_less_the_loader_workers(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5, 7}, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    previous = torch.get_num_threads()
    try:
        line = set_threads(0, 1)
        assert torch.get_num_threads() == 3
        assert line.startswith("CPU threads: 3 (4 CPUs available to this process, 1 loader work")
        set_threads(0, 8)
        assert torch.get_num_threads() == 1
        assert set_threads(2, 8).startswith("CPU threads: 2 (NUM_THREADS;")
        assert torch.get_num_threads() == 2
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(1)  # as torch does at start-up with that variable
        assert set_threads(0, 0).startswith("CPU threads: 1 (OMP_NUM_THREADS in the environment")
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)


@pytest.mark.slow
def test_train_py_bounds_openmp_spinning_unless_the_environment_sets_the_waits():
    code = "import os, train; print(*(os.environ.get(k) for k in train.OPENMP_WAITS))"
    for given, expected in (({}, "PASSIVE 3000"), ({"GOMP_SPINCOUNT": "0"}, "None 0")):
        env = {k: v for k, v in os.environ.items() if k not in OPENMP_WAITS}
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, **given},
                                capture_output=True, text=True, timeout=300)  # fmt: skip
        assert result.stdout.strip() == expected, result.stderr[-2000:]


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_atomically_written_files_get_the_mode_of_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_json(str(tmp_path / "results.json"), {"accuracy": 1.0})
        save_checkpoint({"epoch": 1, "state_dict": {}}, str(tmp_path / "module"))
    finally:
        os.umask(previous)
    for path in ("results.json", "module/model.pth.tar-1", "module/checkpoint"):
        assert stat.S_IMODE(os.stat(tmp_path / path).st_mode) == mode, path


def test_evaluation_cache_reuses_only_the_same_key(tmp_path):
    cache = EvaluationCache(str(tmp_path / "cache"))
    key = {"dataset": "Toy", "size": (32, 32)}
    assert cache.get(key) is None
    cache.put(key, [1, 0], [1, 1], source="run1")
    entry = cache.get({"size": [32, 32], "dataset": "Toy"})  # the same key, as JSON reads it
    assert (entry["pred"], entry["label"], entry["source"]) == ([1, 0], [1, 1], "run1")
    assert cache.get({"dataset": "Toy", "size": (64, 64)}) is None
    # An entry whose stored key differs (a digest collision) or that cannot be read is none.
    path = cache.path(key)
    with open(path) as f:
        stored = json.load(f)
    stored["key"]["dataset"] = "Other"
    with open(path, "w") as f:
        json.dump(stored, f)
    assert cache.get(key) is None
    with open(path, "w") as f:
        f.write("{truncated")
    assert cache.get(key) is None


def test_overwriting_twice_within_a_second_keeps_both_previous_runs(tmp_path, monkeypatch):
    from engine import rundir

    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20261129-120000")
    for run in ("first", "second"):
        (tmp_path / "results.json").write_text(json.dumps({"run": run}))
        rundir.prepare_output_dir(str(tmp_path), overwrite=True)
    archived = {
        folder.name: json.loads((folder / "results.json").read_text())["run"]
        for folder in tmp_path.iterdir()
    }
    assert archived == {"previous-20261129-120000": "first", "previous-20261129-120000-2": "second"}
