"""Suite-wide fixtures."""

import os
from pathlib import Path

import pytest
import torch

GOLDEN_DIR = Path(__file__).resolve().parents[2] / "shared" / "golden"


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """The tiny test models run many small ops: one thread is several times faster on shared
    CPUs than a contended pool, and results are reproducible."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def under_ci():
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def golden_dir():
    """``../shared/golden``, the original code's reference outputs. Missing, the test skips on
    a developer's machine and fails under CI (``CI`` set), where they must always be checked."""
    if not GOLDEN_DIR.is_dir():
        message = f"reference outputs of the original code not found at {GOLDEN_DIR}"
        if under_ci():
            pytest.fail(f"{message} (CI is set: the golden tests must run)")
        pytest.skip(message)
    return GOLDEN_DIR
