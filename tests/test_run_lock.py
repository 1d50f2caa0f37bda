"""One writer per run directory: a second start is refused naming the running process; the lock
of a process that is gone is taken over with a note."""

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys

import pytest

import train
from engine.run_lock import LOCK_FILE, RunDirInUse, RunLock
from tests.forked_train import ForkedRun
from tests.run_fixtures import make_workspace, snapshot, train_argv

CLASSES = {"red_circle": 6, "green_square": 6, "blue_star": 6}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("lock"), CLASSES)


def test_a_second_start_is_refused_with_the_running_process_pid(workspace, tmp_path, capsys):
    out = tmp_path / "run"
    first = ForkedRun(train_argv(workspace, out, "CoOp"), out, pause_at=1)
    first.wait_paused()  # at its first checkpoint write, holding the lock
    before = snapshot(out)
    holder = f"another process (PID {first.pid} on host {socket.gethostname()}, started "
    for argv in (
        train_argv(workspace, out, "CoOp", "--seed", "2"),  # the second seed
        train_argv(workspace, out, "ZeroshotCLIP", "--eval-only"),  # eval-only runs too
        train_argv(workspace, out, "CoOp", "--overwrite"),
    ):
        assert train.cli(argv) == 2
        err = capsys.readouterr().err
        assert f"error: '{out}' is in use: {holder}" in err
        assert f"Wait for it to finish, stop it (kill {first.pid}), or choose another" in err
        assert snapshot(out) == before
    first.resume()
    assert not first.wait()
    assert json.loads((out / "results.json").read_text())["seed"] == 1
    assert (out / "log.txt").read_text().count("** Run started") == 1
    assert not (out / LOCK_FILE).exists()  # released and removed at the end


def test_a_killed_process_lock_is_taken_over_with_a_note(workspace, tmp_path):
    out = tmp_path / "run"
    killed = ForkedRun(train_argv(workspace, out, "CoOp"), out, kill_at=1)
    assert killed.wait()
    record = json.loads((out / LOCK_FILE).read_text())
    assert record["pid"] == killed.pid and record["host"] == socket.gethostname()
    original_keys = ("TRAINER.VPT.LN", "True")  # accepted, noted at the start of the log too
    assert train.cli(train_argv(workspace, out, "CoOp", overrides=original_keys)) == 0
    log = (out / "log.txt").read_text()
    assert "Note: TRAINER.VPT.LN True has no effect (the original DPT code defines it" in log
    assert (
        f"Note: took over '{out / LOCK_FILE}' from a process that is no longer running "
        f"(PID {killed.pid} on host {socket.gethostname()}, started {record['started']})."
    ) in log
    assert not (out / LOCK_FILE).exists()


def _holder_file(run_dir, pid, host):
    os.makedirs(run_dir, exist_ok=True)
    record = {"pid": pid, "host": host, "started": "2024-01-01 00:00:00"}
    (run_dir / LOCK_FILE).write_text(json.dumps(record))


@pytest.fixture
def no_flock(monkeypatch):
    """A file system without record locks (some NFS and Lustre mounts): the recorded PID
    decides."""

    def unsupported(fd, operation, *args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", unsupported)


def test_without_flock_a_dead_pid_on_this_host_is_taken_over(tmp_path, no_flock):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    _holder_file(tmp_path, int(gone.stdout), socket.gethostname())
    with RunLock(str(tmp_path)) as lock:
        assert f"(PID {int(gone.stdout)} on host {socket.gethostname()}" in lock.note
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


@pytest.mark.parametrize("host", ["this", "elsewhere"])
def test_without_flock_a_live_or_unverifiable_holder_is_refused(tmp_path, no_flock, host):
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        name = socket.gethostname() if host == "this" else "node-elsewhere"
        _holder_file(tmp_path, alive.pid, name)
        with pytest.raises(RunDirInUse) as err, RunLock(str(tmp_path)):
            pass
        assert f"(PID {alive.pid} on host {name}" in str(err.value)
        assert f"(if it is gone, delete '{tmp_path / LOCK_FILE}')" in str(err.value)
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == alive.pid
    finally:
        alive.kill()
        alive.wait()
