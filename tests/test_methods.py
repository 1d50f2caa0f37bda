"""What every registered method must do, found in the registry (a new method is covered with
no list to edit): its own tiny config for Toy, its own precision key and run-directory name,
training under both engines, its run evaluated by the other engine to the same accuracy and
predicted by predict.py's classifier as its final test scored, and its authors' run
directories where it reads them."""

import importlib.util
import os

import pytest
import torch

import train
import trainers  # noqa: F401  (registers the methods)
from engine.config import get_cfg_default, get_value, merge_from_file, setup_cfg
from engine.confusion import confusion_matrix
from engine.data import read_split
from engine.registry import TRAINER_REGISTRY
from inference import load_classifier
from inference.attention import require_cavpt
from scripts.naming import setting
from scripts.plan import Planner
from scripts.spec import Spec, trainer_config
from tests.test_dassl_engine import results, toy_argv
from tools import interpret_prompt
from trainers.builtin import build_trainer

METHODS = sorted(TRAINER_REGISTRY.names())
LEARNED = [name for name in METHODS if TRAINER_REGISTRY.get(name).trains]
ENGINES = ["builtin"] + (["dassl"] if importlib.util.find_spec("dassl") else [])


def config_of(name):
    return trainer_config(name, "tiny")


@pytest.mark.parametrize("name", METHODS)
def test_every_method_has_a_tiny_config_for_toy_and_its_own_keys(name):
    assert os.path.isfile(config_of(name)), f"{name} has no tiny.yaml for Toy"
    cfg = get_cfg_default()
    method_type = TRAINER_REGISTRY.get(name)
    get_value(cfg, method_type.precision_key)  # declared
    merge_from_file(cfg, config_of(name))
    cfg.TRAINER.NAME = name
    assert setting(cfg) == method_type.run_setting(cfg) != ""


def test_sweeps_test_new_classes_and_other_datasets_unless_the_method_is_closed_set(tmp_path):
    """A closed-set method (``Method.closed_set``, the linear probe) gets no new-class step in
    base-to-new and is tested across datasets on ImageNet's variants only; every other method
    gets both."""
    out = tmp_path / "out"
    spec = Spec(protocol="base2new", root=str(tmp_path), output=str(out), trainers=LEARNED,
                datasets=["toy", "imagenet_a"], source="toy", configs=["tiny"])  # fmt: skip
    planner = Planner(spec)

    def tested(job, part):  # one part of the folder of each step after the training
        return [os.path.relpath(step.out_dir, out).split(os.sep)[part] for step in job.steps[1:]]

    for name in LEARNED:
        config = spec.configs_for(name, 16)[0]
        closed = TRAINER_REGISTRY.get(name).closed_set
        stages = tested(planner.base2new(name, "toy", config, 16, 1), 1)
        assert stages == ([] if closed else ["test_new"]), name
        cross = tested(planner.cross(name, config, 16, 1), -2)
        assert cross == (["imagenet_a"] if closed else ["toy", "imagenet_a"]), name


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("name", LEARNED)
def test_every_method_trains_and_the_other_engine_evaluates_its_run(tmp_path, name, engine):
    data, run = tmp_path / "data", tmp_path / "run"
    train.main(toy_argv(data, run, name, engine, opts=("TEST.COMPUTE_CMAT", "True")))
    record = results(run)
    assert record["trainer"] == name and record["total"] == 60
    other = ENGINES[-1] if engine == ENGINES[0] else ENGINES[0]
    out = tmp_path / "eval"
    train.main(toy_argv(data, out, name, other, "--eval-only", "--model-dir", str(run)))
    assert results(out)["accuracy"] == record["accuracy"]
    # predict.py's classifier predicts what the final test scored
    clf = load_classifier(str(run))
    toy = data / "toy"
    _, _, test = read_split(str(toy / "split_toy.json"), str(toy))
    predictions, unreadable = clf.predict_files([item.impath for item in test], batch_size=7)
    assert not unreadable
    predicted = predictions.probs.argmax(1)
    cmat = confusion_matrix([item.label for item in test], predicted, 30)
    assert cmat.trace() == record["correct"]
    if "confusion_matrix" in record:  # the builtin engine's evaluator writes it
        assert cmat.tolist() == record["confusion_matrix"]
    check_tools_read_the_parts_it_declares(clf, name)


def check_tools_read_the_parts_it_declares(clf, name):
    """The prompt interpretation and the attention maps read the modules that the method names
    (``text_prompt_module``, ``cavpt_module``); where it names none, they say so, naming it."""
    method = clf.trainer.method
    lacks = f"this run was trained with {name}, which learns none"
    if method.text_prompt_module is None:
        with pytest.raises(ValueError, match=lacks):
            interpret_prompt.interpret(clf)
    else:
        (_, first_class), *_ = interpret_prompt.interpret(clf, k=2)
        assert len(first_class) == interpret_prompt.learned_context(clf).shape[-2]
    if method.cavpt_module is None:
        with pytest.raises(ValueError, match=lacks):
            require_cavpt(clf)
    else:
        assert require_cavpt(clf) is clf.model.learnable_modules()[method.cavpt_module]


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,folder", [("IVLP", "VLPromptLearner"), ("MaPLe", "MultiModalPromptLearner")]
)
def test_authors_run_directories_evaluate(tmp_path, name, folder):
    """A run directory as the authors' code writes it (the whole CustomCLIP in float16 under
    their names, frozen CLIP and derived buffers included) evaluates to our run's accuracy."""
    data, run = tmp_path / "data", tmp_path / "run"
    train.main(toy_argv(data, run, name, "builtin"))
    args = train.build_parser().parse_args(toy_argv(data, tmp_path / "x", name, "builtin"))
    trainer = build_trainer(setup_cfg(args))
    trainer.load_model(str(run))
    model = trainer.model
    theirs = model.upstream_names().to_theirs(model.learnable_state_dict())
    state = {key: value.half() for key, value in theirs.items()}
    state["prompt_learner.token_prefix"] = torch.zeros(3, 1, 8).half()  # derived: not read
    state["text_encoder.positional_embedding"] = torch.zeros(77, 8).half()  # frozen CLIP
    authors = tmp_path / "authors_run"
    os.makedirs(authors / folder)
    torch.save({"state_dict": state, "epoch": 2, "optimizer": None},
               authors / folder / "model.pth.tar-2")  # fmt: skip
    (authors / folder / "checkpoint").write_text("model.pth.tar-2\n")  # as Dassl writes it
    loaded = trainer.method.read_trained_run(str(authors), trainer._modules)
    for module, saved in loaded.items():
        for key, value in saved.state_dict.items():
            mine = trainer._modules[module].state_dict()[key]
            torch.testing.assert_close(value, mine.half().float(), rtol=0, atol=0)
    out = tmp_path / "eval"
    flags = ("--eval-only", "--model-dir", str(authors))
    train.main(toy_argv(data, out, name, "builtin", *flags))
    assert abs(results(out)["accuracy"] - results(run)["accuracy"]) <= 100 / 60


class OwnStep(TRAINER_REGISTRY.get("CoOp")):
    """CoOp with the step written out with the hooks a method that steps otherwise uses
    (ProGrad's gradient projection, PromptSRC's aggregation at each epoch's end)."""

    config_folder = "CoOp"
    epochs_ended = []

    def training_step(self, step):
        with step.autocast():
            output = step.model(step.images)
            loss, parts = self.loss(step.module, output, step.labels, step.epoch)
        step.check_finite(loss)
        step.zero_grad()
        step.backward(loss, retain_graph=True)
        grads = [p.grad.clone() for p in step.module.parameters() if p.requires_grad]
        step.zero_grad()
        step.backward(loss)  # the same gradients again, from the kept graph
        params = [p for p in step.module.parameters() if p.requires_grad]
        assert all(torch.equal(p.grad, g) for p, g in zip(params, grads))
        step.step()
        return {**parts, "loss": float(loss)}

    def after_epoch(self, model, epoch):
        self.epochs_ended.append(epoch)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_a_method_owns_its_step_and_epoch_end_under_each_engine(tmp_path, monkeypatch, engine):
    monkeypatch.setitem(TRAINER_REGISTRY._entries, "OwnStep", OwnStep)
    monkeypatch.setattr(OwnStep, "epochs_ended", [])
    data = tmp_path / "data"
    for name in ("CoOp", "OwnStep"):
        train.main(toy_argv(data, tmp_path / name, name, engine, config="CoOp"))
    assert OwnStep.epochs_ended == [0, 1]
    assert results(tmp_path / "OwnStep")["accuracy"] == results(tmp_path / "CoOp")["accuracy"]
    coop, own = (saved_context(tmp_path / name) for name in ("CoOp", "OwnStep"))
    assert all(torch.equal(coop[key], own[key]) for key in coop)


def saved_context(run):
    path = run / "prompt_learner" / "model.pth.tar-2"
    return torch.load(path, weights_only=False)["state_dict"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["KgCoOp", "ProGrad"])
def test_authors_coop_style_run_directories_evaluate(tmp_path, name):
    """A run directory as KgCoOp's or ProGrad's code writes it (Dassl's layout: the prompt
    learner in float16 with its derived token buffers; KgCoOp's also with a bias and a
    meta-net it never uses) evaluates to our run's accuracy."""
    data, run = tmp_path / "data", tmp_path / "run"
    train.main(toy_argv(data, run, name, "builtin"))
    saved = torch.load(run / "prompt_learner" / "model.pth.tar-2", weights_only=False)
    state = {"ctx": saved["state_dict"]["ctx"].half()}
    state["token_prefix"] = torch.zeros(3, 1, 128).half()  # derived: not read
    state["token_suffix"] = torch.zeros(3, 72, 128).half()
    if name == "KgCoOp":
        state["bias_vectors"] = torch.zeros(1, 512).half()
        state["meta_net.linear1.weight"] = torch.zeros(512, 512).half()
        state["meta_net.linear1.bias"] = torch.zeros(512).half()
    authors = tmp_path / "authors_run" / "prompt_learner"
    os.makedirs(authors)
    torch.save({"state_dict": state, "epoch": 2, "optimizer": None}, authors / "model.pth.tar-2")
    (authors / "checkpoint").write_text("model.pth.tar-2\n")
    out = tmp_path / "eval"
    flags = ("--eval-only", "--model-dir", str(tmp_path / "authors_run"))
    train.main(toy_argv(data, out, name, "builtin", *flags))
    assert abs(results(out)["accuracy"] - results(run)["accuracy"]) <= 100 / 60
