"""An epoch is saved across modules as a unit (``last_epoch.json`` written last); resume takes
the newest epoch complete in every module, also in run directories written before that file
existed."""

import json
import os

import pytest
import torch

import engine.checkpoint as checkpoint
from engine.checkpoint import (
    EPOCH_FILE,
    RunWriteError,
    remove_temp_files,
    resumable_epoch,
    save_checkpoint,
    save_epoch,
)

MODULES = ["visual_prompt", "cavpt", "prompt_learner"]


def states(epoch):
    return {m: {"state_dict": {"w": torch.full((2,), float(epoch))}, "epoch": epoch}
            for m in MODULES}  # fmt: skip


def test_epoch_files_then_commit_then_pointers(tmp_path):
    save_epoch(str(tmp_path), states(1))
    save_epoch(str(tmp_path), states(2), is_best=True, keep_previous=False)
    assert json.loads((tmp_path / EPOCH_FILE).read_text()) == {"epoch": 2, "modules": MODULES}
    for module in MODULES:
        files = sorted(os.listdir(tmp_path / module))
        assert files == ["checkpoint", "model-best.pth.tar", "model.pth.tar-2"]
        assert (tmp_path / module / "checkpoint").read_text() == "model.pth.tar-2\n"
    assert resumable_epoch(str(tmp_path), MODULES) == 2
    save_epoch(str(tmp_path), states(3), keep_previous=True)
    assert sorted(os.listdir(tmp_path / "cavpt"))[-2:] == ["model.pth.tar-2", "model.pth.tar-3"]


def test_a_write_failing_between_modules_leaves_the_previous_epoch_to_resume(tmp_path, monkeypatch):
    save_epoch(str(tmp_path), states(1))
    real = checkpoint._save_state

    def cavpt_fails(path, state):
        if os.sep + "cavpt" + os.sep in path:
            raise PermissionError(13, "Permission denied", path)
        real(path, state)

    monkeypatch.setattr(checkpoint, "_save_state", cavpt_fails)
    with pytest.raises(RunWriteError) as err:
        save_epoch(str(tmp_path), states(2), keep_previous=False)
    assert str(err.value) == (
        f"Could not save epoch 2 in '{tmp_path}' ([Errno 13] Permission denied: "
        f"'{tmp_path / 'cavpt' / 'model.pth.tar-2'}'). The run can resume from epoch 1: fix the "
        "cause (permissions, free space), then run the same command again."
    )
    assert (tmp_path / "visual_prompt" / "model.pth.tar-2").exists()  # written, not committed
    assert resumable_epoch(str(tmp_path), MODULES) == 1
    assert (tmp_path / "visual_prompt" / "checkpoint").read_text() == "model.pth.tar-1\n"


def test_a_failure_after_the_commit_says_the_epoch_is_saved(tmp_path, monkeypatch):
    save_epoch(str(tmp_path), states(1))

    def pointer_fails(module_dir, name):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "_point_to", pointer_fails)
    with pytest.raises(RunWriteError, match=r"^Saved epoch 2 in .*resume from epoch 2:"):
        save_epoch(str(tmp_path), states(2))
    assert resumable_epoch(str(tmp_path), MODULES) == 2


def legacy_run(root, epochs):
    """A run directory as written before last_epoch.json: per module, its files and pointer."""
    for module, saved in epochs.items():
        for epoch in saved:
            save_checkpoint(states(epoch)[module], str(root / module))


def test_legacy_run_resumes_the_newest_epoch_every_module_has(tmp_path):
    legacy_run(tmp_path, {"visual_prompt": [1, 2, 3], "cavpt": [1, 2], "prompt_learner": [1, 2]})
    assert resumable_epoch(str(tmp_path), MODULES) == 2  # visual_prompt's pointer says 3


def test_legacy_run_without_a_common_epoch_is_an_error(tmp_path):
    legacy_run(tmp_path, {"visual_prompt": [4], "cavpt": [3], "prompt_learner": [3]})
    with pytest.raises(ValueError) as err:
        resumable_epoch(str(tmp_path), MODULES)
    assert str(err.value) == (
        f"The modules in '{tmp_path}' hold checkpoints of different epochs ({{'visual_prompt': "
        "[4], 'cavpt': [3], 'prompt_learner': [3]}): no epoch is complete in all of them. To "
        "train this run again, pass --overwrite (its checkpoints move to previous-<timestamp>/)."
    )


def test_files_of_a_first_epoch_never_committed_are_no_run_to_resume(tmp_path):
    checkpoint._save_state(str(tmp_path / "visual_prompt" / "model.pth.tar-1"), states(1))
    assert resumable_epoch(str(tmp_path), MODULES) is None


def test_a_committed_epoch_with_a_missing_file_or_a_damaged_record(tmp_path):
    save_epoch(str(tmp_path), states(1))
    os.remove(tmp_path / "cavpt" / "model.pth.tar-1")
    with pytest.raises(FileNotFoundError, match=r"names epoch 1, but \[.*cavpt/model.pth.tar-1"):
        resumable_epoch(str(tmp_path), MODULES)
    (tmp_path / EPOCH_FILE).write_text('{"epoch": ')
    with pytest.raises(ValueError, match=r"is damaged \(JSONDecodeError: .*Delete it to resume"):
        resumable_epoch(str(tmp_path), MODULES)


def test_temporary_files_are_removed_from_the_run_and_its_modules_only(tmp_path):
    stale = [tmp_path / ".tmp-results.jsonab12", tmp_path / "cavpt" / ".tmp-model.pth.tar-3x"]
    other = tmp_path / "eval_test" / ".tmp-results.jsoncd34"  # another run's folder
    for path in [*stale, other]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    assert sorted(remove_temp_files(str(tmp_path), MODULES)) == sorted(map(str, stale))
    assert other.exists() and not any(p.exists() for p in stale)
