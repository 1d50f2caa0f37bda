"""Suite-wide fixtures."""

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def single_thread():
    """The tiny test models run many small ops: one thread is several times faster on shared
    CPUs than a contended pool, and results are reproducible."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
