"""A run directory's classifier and the classes it may classify (every method's run predicting
what its final test scored: tests/test_methods.py)."""

import os

import pytest

import train
from inference import load_classifier
from tests.run_fixtures import make_workspace, train_argv

pytestmark = pytest.mark.slow  # trains runs (and starts processes)

CLASSES = {name: 6 for name in ["ant", "bee", "cat", "dog"]}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("inference"), CLASSES)


def test_class_specific_context_cannot_move_to_other_classes(workspace, tmp_path):
    out = tmp_path / "csc"
    overrides = ("TRAINER.COOP.CSC", "True", "OPTIM.MAX_EPOCH", "1")
    train.main(train_argv(workspace, out, "CoOp", overrides=overrides))
    for other in (["ant", "bee", "cat"], ["bee", "ant", "cat", "dog"]):
        with pytest.raises(ValueError, match=r"class-specific text context \(TRAINER.COOP.CSC"):
            load_classifier(str(out), classnames=other)
    same = load_classifier(str(out), classnames=["ant", "bee", "cat", "dog"])
    assert same.predict(os.path.join(workspace["data"], "ant", "ant_0.png")).probs.shape == (1, 4)
