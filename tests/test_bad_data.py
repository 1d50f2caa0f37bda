"""Bad data, bad backbone files, mistyped paths and leftovers, through train.py: exit status 2
and a message naming the file and what to do, with nothing lost; or, where the case is not
an error, what now happens instead (a note, a marked result, a run name that tells)."""

import json
import os
import shutil

import pytest
import torch

import train
from engine.data import read_and_split_data
from scripts import parse_results
from tests.data_fixtures import make_image_folder
from tests.run_fixtures import make_workspace, snapshot, train_argv

CLASSES = {"red_circle": 6, "green_square": 6, "blue_star": 6}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    return make_workspace(tmp_path_factory.mktemp("bad_data"), CLASSES)


def own_data(workspace, tmp_path):
    """A copy of the workspace's data folder that a test may change."""
    data = shutil.copytree(workspace["data"], tmp_path / "data")
    return {**workspace, "data": str(data)}


def read(path):
    with open(path) as f:
        return f.read()


def open_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def cli(argv, capsys):
    """train.py's exit status and its stderr."""
    code = train.cli([str(arg) for arg in argv])
    return code, capsys.readouterr().err


def run_records(out):
    """What a refused run leaves in its new run directory: its log (with the error) only."""
    return sorted(os.listdir(out)) if out.exists() else []


@pytest.mark.parametrize(
    "contents, why",
    [
        ("text", "it is not a file that torch.save writes (it begins 'hello')"),
        ("truncated", "it is truncated or corrupt (PytorchStreamReader failed reading zip "
         "archive: failed finding central directory); download or copy it again"),
        ("dict", "it holds a dict with the keys ['a', 'b'], without CLIP's text_projection"),
        ("run checkpoint", "it holds Python objects besides tensors, as the checkpoints of a "
         "training run (model.pth.tar-N: the learned prompts with their optimiser state, not "
         "CLIP) do; evaluate such a run with --eval-only --model-dir RUN"),
    ],
)  # fmt: skip
def test_a_backbone_file_that_is_not_clip_is_named_with_what_it_should_hold(
    workspace, tmp_path, capsys, contents, why
):
    if contents == "run checkpoint":
        run = tmp_path / "trained"
        assert (
            train.cli(train_argv(workspace, run, "CoOp", overrides=("OPTIM.MAX_EPOCH", "1"))) == 0
        )
        path = run / "prompt_learner" / "model.pth.tar-1"
    else:
        path = tmp_path / "clip.pt"
        if contents == "text":
            path.write_text("hello\nworld\n")
        elif contents == "truncated":
            data = open_bytes(workspace["clip"])
            path.write_bytes(data[: len(data) // 2])
        else:
            torch.save({"a": torch.zeros(1), "b": 1}, path)
    out = tmp_path / "run"
    code, err = cli(train_argv(workspace, out, "CoOp", overrides=("MODEL.BACKBONE.NAME", path)),
                    capsys)  # fmt: skip
    assert code == 2
    assert f"error: '{path}' is not a CLIP checkpoint: {why}. MODEL.BACKBONE.NAME must name " in err
    assert "OpenAI's TorchScript archive" in err and "Traceback" not in err
    assert run_records(out) == ["log.txt"]


def test_a_label_out_of_range_in_the_test_list_stops_the_run(workspace, tmp_path, capsys):
    """It used to score 91.7% over a phantom class, or end in an IndexError."""
    ws = own_data(workspace, tmp_path)
    path = os.path.join(ws["data"], "split.json")
    split = json.loads(read(path))
    split["test"][0][1] = 7
    with open(path, "w") as f:
        json.dump(split, f)
    before = snapshot(ws["data"])
    out = tmp_path / "run"
    code, err = cli(train_argv(ws, out, "CoOp", overrides=("TEST.PER_CLASS_RESULT", "True")),
                    capsys)  # fmt: skip
    assert code == 2
    assert f"error: Split file '{path}', list 'test', entry 0 [" in err
    assert "label 7 is not a class of the list 'train' (labels 0..2)" in err
    assert snapshot(ws["data"]) == before
    assert run_records(out) == ["log.txt"]


def test_an_empty_image_says_what_to_do_with_the_split_that_lists_it(workspace, tmp_path, capsys):
    """Followed, the advice works: the image and the generated split.json deleted, the next
    run makes a split without it and trains."""
    data = make_image_folder(tmp_path / "data", CLASSES, size=(40, 36))
    empty = read_and_split_data(data, seed=1)[0][0].impath  # a train image of the split made
    open(empty, "wb").close()
    ws = {**workspace, "data": data}
    out = tmp_path / "run"
    code, err = cli(train_argv(ws, out, "CoOp", overrides=("DATASET.NUM_SHOTS", "-1")), capsys)
    assert code == 2
    assert f"error: Cannot read image '{empty}' (the file is empty (0 bytes))." in err
    assert (
        "or delete it and remove its entry from the split file that lists it (a split file "
        "that the dataset generated, such as ImageFolder's split.json, is made again without "
        "it when deleted)"
    ) in err
    os.remove(empty)
    os.remove(os.path.join(data, "split.json"))
    code, err = cli(train_argv(ws, out, "CoOp", "--overwrite",
                               overrides=("DATASET.NUM_SHOTS", "-1")), capsys)  # fmt: skip
    assert code == 0, err
    assert os.path.relpath(empty, data) not in read(os.path.join(data, "split.json"))


def test_a_mistyped_model_dir_creates_nothing(workspace, tmp_path, capsys):
    typo = tmp_path / "doesnotexist"
    before = snapshot(tmp_path)
    code, err = cli(
        ["--root", workspace["data"], "--trainer", "CoOp", "--eval-only", "--model-dir", typo,
         "--config-file", train_argv(workspace, "x", "CoOp")[9], "DATASET.NAME", "ImageFolder",
         "MODEL.BACKBONE.NAME", workspace["clip"], "INPUT.SIZE", "(32, 32)"],
        capsys,
    )  # fmt: skip
    assert code == 2
    assert f"error: --model-dir '{typo}' does not exist (or is not a folder)" in err
    assert not typo.exists() and snapshot(tmp_path) == before


def test_an_untrained_evaluation_is_marked_and_left_out_of_tables(workspace, tmp_path, capsys):
    out = tmp_path / "toy" / "CoOp" / "vit_b32_2shots" / "nctx4_cscFalse_ctpend" / "seed1"
    code, err = cli(train_argv(workspace, out, "CoOp", "--eval-only"), capsys)
    assert code == 0, err
    assert json.loads((out / "results.json").read_text())["untrained"] is True
    assert parse_results.cli([str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "an untrained model (--eval-only without --model-dir): left out" in report
    assert "± " not in report  # no table row


def test_a_nan_result_shows_as_a_failed_run(tmp_path, capsys):
    runs = tmp_path / "toy" / "CoOp" / "tiny_16shots" / "nctx4_cscFalse_ctpend"
    for seed, accuracy in [(1, "71.0"), (2, "NaN"), (3, "73.0")]:
        (runs / f"seed{seed}").mkdir(parents=True)
        (runs / f"seed{seed}" / "results.json").write_text(f'{{"accuracy": {accuracy}}}')
    assert parse_results.cli([str(tmp_path)]) == 0
    report = capsys.readouterr().out
    assert "72.00 ± 1.00 (2)" in report and "nan ±" not in report
    assert "seed2: failed: its accuracy is nan (see its log.txt)" in report


def test_best_val_without_a_val_split_is_refused_before_training(workspace, tmp_path, capsys):
    ws = own_data(workspace, tmp_path)
    path = os.path.join(ws["data"], "split.json")
    split = json.loads(read(path))
    split["val"] = []
    with open(path, "w") as f:
        json.dump(split, f)
    out = tmp_path / "run"
    code, err = cli(train_argv(ws, out, "CoOp", overrides=("TEST.FINAL_MODEL", "best_val")),
                    capsys)  # fmt: skip
    assert code == 2
    assert (
        "error: TEST.FINAL_MODEL best_val chooses the epoch to deploy by its val accuracy, and "
        "this run's data (ImageFolder) has no val split: set TEST.FINAL_MODEL last_step"
    ) in err
    assert not (out / "prompt_learner").exists()


def test_a_ctx_init_longer_than_n_ctx_is_noted_and_named_by_its_length(
    workspace, tmp_path, monkeypatch, capsys
):
    """Without --output-dir the run goes where a sweep would put it: named nctx5, not 2."""
    monkeypatch.chdir(tmp_path)
    argv = train_argv(workspace, "unused", "CoOp", overrides=(
        "TRAINER.COOP.N_CTX", "2", "TRAINER.COOP.CTX_INIT", "a photo of a big",
        "OPTIM.MAX_EPOCH", "1"))  # fmt: skip
    i = argv.index("--output-dir")
    del argv[i : i + 2]
    code, err = cli(argv, capsys)
    assert code == 0, err
    (run,) = [d for d, _, files in os.walk(tmp_path / "output") if "results.json" in files]
    assert os.path.basename(os.path.dirname(run)) == "nctx5_cscFalse_ctpend"
    log = read(os.path.join(run, "log.txt"))
    assert (
        "Note: TRAINER.COOP.CTX_INIT 'a photo of a big' has 5 words, so the text context has "
        "5 vectors, one per word; TRAINER.COOP.N_CTX 2 is not used (the run directory's name "
        "says nctx5)."
    ) in log
    ckpt = torch.load(os.path.join(run, "prompt_learner", "model.pth.tar-1"), weights_only=False)
    assert ckpt["state_dict"]["ctx"].shape[0] == 5
