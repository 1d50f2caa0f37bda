"""Every trainer's run directory predicts, through ``load_classifier``, what its final test
scored (a small CLIP checkpoint and image folder)."""

import os

import pytest

import train
from engine.confusion import confusion_matrix
from engine.data import read_split
from inference import load_classifier
from tests.run_fixtures import make_workspace, train_argv

pytestmark = pytest.mark.slow  # trains runs (and starts processes)

CLASSES = {name: 6 for name in ["ant", "bee", "cat", "dog"]}
SMALL_PROMPTS = ("TRAINER.VPT.N_CTX", "3", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
                 "TRAINER.SELECTED_COVPT.CPN", "3", "PRETRAIN.C", "1")  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("inference"), CLASSES)


@pytest.mark.parametrize(
    "trainer, config",
    [
        ("CoOp", "CoOp/vit_b32.yaml"),
        ("CoCoOp", "CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml"),
        ("VPT", "VPT/vit_b32.yaml"),
        ("VLP", "VLP/vit_b32.yaml"),
        ("DPT", "DPT/vit_b32.yaml"),
    ],
)
def test_a_run_predicts_what_its_final_test_scored(workspace, tmp_path, trainer, config):
    out = tmp_path / "run"
    overrides = (*SMALL_PROMPTS, "OPTIM.MAX_EPOCH", "1", "TEST.COMPUTE_CMAT", "True")
    results = train.main(train_argv(workspace, out, trainer, overrides=overrides, config=config))
    clf = load_classifier(str(out))
    assert clf.classnames == ["ant", "bee", "cat", "dog"]
    _, _, test = read_split(os.path.join(workspace["data"], "split.json"), workspace["data"])
    predictions, unreadable = clf.predict_files([item.impath for item in test], batch_size=3)
    assert not unreadable and predictions.paths == [item.impath for item in test]
    predicted = predictions.probs.argmax(1)
    cmat = confusion_matrix([item.label for item in test], predicted, len(CLASSES))
    assert cmat.tolist() == results["confusion_matrix"]


def test_class_specific_context_cannot_move_to_other_classes(workspace, tmp_path):
    out = tmp_path / "csc"
    overrides = ("TRAINER.COOP.CSC", "True", "OPTIM.MAX_EPOCH", "1")
    train.main(train_argv(workspace, out, "CoOp", overrides=overrides))
    for other in (["ant", "bee", "cat"], ["bee", "ant", "cat", "dog"]):
        with pytest.raises(ValueError, match=r"class-specific text context \(TRAINER.COOP.CSC"):
            load_classifier(str(out), classnames=other)
    same = load_classifier(str(out), classnames=["ant", "bee", "cat", "dog"])
    assert same.predict(os.path.join(workspace["data"], "ant", "ant_0.png")).probs.shape == (1, 4)
