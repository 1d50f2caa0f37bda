"""The sweep: plans and run directories; end to end with an interruption, reruns and a failure;
the SLURM path through submitit's local executor."""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

import train
from datasets.toy import Toy
from engine.config import get_cfg_default, setup_cfg
from scripts import naming, parse_results, sweep, watch
from scripts.plan import plan
from scripts.spec import load_spec
from tests.run_fixtures import REPO
from trainers import builtin
from trainers.zeroshot_cache import zeroshot_key

SETTING = "nctx4_cscFalse_ctpend"
# A small Toy (30 classes, 3 train, 1 val and 2 test images each), generated once here.
SMALL_TOY = ["DATASET.TOY.TRAIN_PER_CLASS", "3", "DATASET.TOY.VAL_PER_CLASS", "1",
             "DATASET.TOY.TEST_PER_CLASS", "2"]  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    cfg = get_cfg_default()
    cfg.merge_from_list(["DATASET.ROOT", str(root / "data"), *SMALL_TOY])
    Toy(cfg)
    return {"data": str(root / "data")}


def tiny_spec(ws, out, **fields):
    """Spec fields for runs of a few seconds on the shipped tiny CLIP and a small Toy."""
    opts = [*SMALL_TOY, "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "TEST.ZEROSHOT_BASELINE", "False",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.COOP.N_CTX", "4", "TRAINER.COOP.PREC", "fp32",
            "TRAINER.VPT.N_CTX", "3", "TRAINER.TOPDOWN_SECOVPT.BOTTOMLIMIT", "2",
            "TRAINER.SELECTED_COVPT.CPN", "3", "PRETRAIN.C", "1"]  # fmt: skip
    return {"root": ws["data"], "output": str(out), "datasets": ["toy"],
            "configs": ["tiny"], "seeds": [1], "shots": [2], "opts": opts, **fields}  # fmt: skip


def write_spec(path, fields):
    path.write_text(yaml.safe_dump(fields))
    return str(path)


def sweep_cmd(*args):
    return [sys.executable, "-m", "scripts.sweep", *args]


def results_files(out):
    return sorted(glob.glob(os.path.join(out, "**", "results.json"), recursive=True))


def test_fewshot_plan_names_runs_as_coop_and_keeps_its_argument_order(workspace, tmp_path):
    configs = {"CoOp": {1: "tiny_ep200", 2: "tiny"}, "ZeroshotCLIP": ["tiny"]}
    spec = load_spec(**tiny_spec(workspace, tmp_path, trainers=["CoOp", "ZeroshotCLIP"],
                                 shots=[1, 2], seeds=[1, 2], configs=configs))  # fmt: skip
    jobs = plan(spec)
    dirs = [os.path.relpath(job.steps[0].out_dir, tmp_path) for job in jobs]
    assert dirs[:2] == [f"toy/CoOp/tiny_ep200_1shots/{SETTING}/seed1",
                        f"toy/CoOp/tiny_ep200_1shots/{SETTING}/seed2"]  # fmt: skip
    assert dirs[2] == f"toy/CoOp/tiny_2shots/{SETTING}/seed1"
    assert dirs[4] == "toy/ZeroshotCLIP/tiny_1shots/zeroshot/seed1"
    argv = jobs[0].steps[0].argv
    assert argv[:6] == ["--root", workspace["data"], "--seed", "1", "--trainer", "CoOp"]
    assert argv[-2:] == ["DATASET.NUM_SHOTS", "1"]
    assert argv[argv.index("--config-file") + 1].endswith("configs/trainers/CoOp/tiny_ep200.yaml")
    assert "--eval-only" in jobs[4].steps[0].argv and "--eval-only" not in argv
    assert {job.state() for job in jobs} == {"new"}


def test_base2new_and_cross_plans_evaluate_the_trained_run(workspace, tmp_path):
    spec = load_spec(**tiny_spec(workspace, tmp_path, protocol="base2new", trainers=["DPT"]))
    (job,) = plan(spec)
    train_dir, test_dir = (step.out_dir for step in job.steps)
    setting = f"{SETTING}_vctx3"
    assert os.path.relpath(test_dir, tmp_path) == (
        f"base2new/test_new/toy/shots_2/DPT/tiny/{setting}/seed1")  # fmt: skip
    assert naming.parse_run_dir(train_dir).measure == "base"
    train_argv, test_argv = (step.argv for step in job.steps)
    assert train_argv[-2:] == ["DATASET.SUBSAMPLE_CLASSES", "base"]
    assert test_argv[-2:] == ["DATASET.SUBSAMPLE_CLASSES", "new"]
    assert test_argv[test_argv.index("--eval-only") + 1 :][:2] == ["--model-dir", train_dir]

    names = ["toy", "caltech101"]
    spec = load_spec(**tiny_spec(workspace, tmp_path, protocol="cross", trainers=["CoOp"],
                                 source="toy", datasets=names))  # fmt: skip
    (job,) = plan(spec)
    source, *targets = job.steps
    assert os.path.relpath(source.out_dir, tmp_path).startswith("toy/CoOp/tiny_2shots")
    assert [os.path.relpath(t.out_dir, tmp_path) for t in targets] == [
        f"evaluation/CoOp/tiny_2shots/{SETTING}/{name}/seed1" for name in names
    ]
    for target in targets:
        flags = target.argv[target.argv.index("--eval-only") :][:3]
        assert flags == ["--eval-only", "--model-dir", source.out_dir]
        assert "DATASET.NUM_SHOTS" not in target.argv


def test_spec_errors_name_the_problem(workspace, tmp_path):
    base = tiny_spec(workspace, tmp_path, trainers=["CoOp"])
    with pytest.raises(ValueError, match="needs 'trainers'"):
        load_spec(**{**base, "trainers": []})
    with pytest.raises(ValueError, match="none for 16 shots"):
        load_spec(**{**base, "shots": [2, 16], "configs": {"CoOp": {2: "tiny"}}})
    with pytest.raises(ValueError, match="protocol must be one of"):
        load_spec(**{**base, "protocol": "zeroshot"})
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['shot'\]"):
        load_spec(write_spec(tmp_path / "bad.yaml", {**base, "shot": [1]}))
    with pytest.raises(KeyError, match="CoOq"):
        plan(load_spec(**{**base, "trainers": ["CoOq"]}))


def test_dry_run_prints_the_commands(workspace, tmp_path, capsys):
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(workspace, tmp_path, trainers=["CoOp"]))
    assert sweep.main(["--spec", spec, "--seeds", "1", "2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Sweep (fewshot): 2 runs: 0 finished, 0 to resume, 2 new" in out
    assert out.count(" train.py --root ") == 2 and not os.path.exists(tmp_path / "toy")


@pytest.mark.slow
def test_sweep_end_to_end_interrupted_rerun_crashed_and_failed(workspace, tmp_path):
    out = tmp_path / "output"
    fields = tiny_spec(workspace, out, trainers=["CoOp", "DPT"], shots=[1, 2], seeds=[1, 2])
    spec = write_spec(tmp_path / "spec.yaml", fields)

    # 1. Interrupted (SIGTERM) once the first run has finished.
    process = subprocess.Popen(sweep_cmd("--spec", spec), cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)  # fmt: skip
    deadline = time.time() + 180
    while not results_files(out) and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    log = process.communicate(timeout=120)[0]
    assert process.returncode == 130 and "Run the same command again" in log, log
    first = {path: os.path.getmtime(path) for path in results_files(out)}
    assert 1 <= len(first) < 8

    # 2. The same command finishes only the others.
    result = subprocess.run(sweep_cmd("--spec", spec, "--jobs", "2"), cwd=REPO,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"8 runs: {len(first)} finished" in result.stdout
    assert f"{len(first)} finished before, {8 - len(first)} done" in result.stdout
    assert len(results_files(out)) == 8
    assert all(os.path.getmtime(path) == mtime for path, mtime in first.items())
    assert "Few-shot accuracy" in result.stdout and "| DPT " in result.stdout

    # 3. A crashed run (its results gone after the last checkpoint) is re-run, not skipped;
    #    a run that fails is reported with its logs and the other runs go on.
    crashed = naming.fewshot_dir(str(out), "toy", "DPT", "tiny", 2, SETTING + "_vctx3", 2)
    broken = naming.fewshot_dir(str(out), "toy", "CoOp", "tiny", 1, SETTING, 1)
    for run in (crashed, broken):
        os.remove(os.path.join(run, "results.json"))
    with open(os.path.join(broken, "prompt_learner", "model.pth.tar-1"), "wb") as f:
        f.write(b"not a checkpoint")
    result = subprocess.run(sweep_cmd("--spec", spec, "--jobs", "2"), cwd=REPO,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 1
    assert "Sweep: 8 runs: 6 finished before, 1 done, 1 failed" in result.stdout
    assert os.path.isfile(os.path.join(crashed, "results.json"))
    with open(os.path.join(crashed, "log.txt")) as f:
        assert "Resumed from" in f.read()
    assert f"see {naming.shown(os.path.join(broken, 'stderr.txt'))}" in result.stdout
    assert f"failed: {naming.shown(broken)}: " in result.stdout
    assert "unfinished: no results.json" in result.stdout  # listed under the table

    # 4. The table and the plot.
    summary = parse_results.main([str(out), "--out", str(tmp_path / "tables")])
    counts = {(r["trainer"], r["shots"]): r["n_seeds"] for r in summary.rows}
    assert counts == {("CoOp", 1): 1, ("CoOp", 2): 2, ("DPT", 1): 2, ("DPT", 2): 2}
    assert [run.path for run in summary.incomplete] == [broken]
    assert os.path.getsize(tmp_path / "tables" / "accuracy_vs_shots.png") > 1000


@pytest.mark.slow
def test_submitit_local_executor_runs_base_to_new(workspace, tmp_path):
    out = tmp_path / "output"
    fields = tiny_spec(workspace, out, protocol="base2new", trainers=["CoOp"])
    spec = write_spec(tmp_path / "spec.yaml", fields)
    result = subprocess.run(sweep_cmd("--spec", spec, "--launcher", "submitit-local",
                                      "--submitit", "timeout_min=20"),
                            cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Submitted 1 tasks" in result.stdout
    assert len(results_files(out / "base2new")) == 2  # train_base and test_new
    assert os.path.isdir(out / ".submitit")
    assert "Base-to-new accuracy" in result.stdout


@pytest.mark.slow
def test_zero_shot_clip_is_evaluated_once_for_the_whole_sweep(workspace, tmp_path):
    out = tmp_path / "output"
    fields = tiny_spec(workspace, out, trainers=["ZeroshotCLIP", "CoOp"], shots=[1, 2])
    fields["opts"] += ["TEST.ZEROSHOT_BASELINE", "True"]  # CoOp evaluates it too
    assert sweep.main(["--spec", write_spec(tmp_path / "spec.yaml", fields)]) == 0
    runs = {(trainer, shots): naming.fewshot_dir(str(out), "toy", trainer, "tiny", shots,
                                                 setting, 1)
            for trainer, setting in (("ZeroshotCLIP", "zeroshot"), ("CoOp", SETTING))
            for shots in (1, 2)}  # fmt: skip
    logs = {key: read(os.path.join(run, "log.txt")) for key, run in runs.items()}
    first = runs[("ZeroshotCLIP", 1)]
    assert "Reusing" not in logs[("ZeroshotCLIP", 1)]
    for key in [("ZeroshotCLIP", 2), ("CoOp", 1), ("CoOp", 2)]:
        assert f"Reusing the evaluation made by the run in {first} " in logs[key], key
    assert len(os.listdir(out / ".zeroshot_cache")) == 1
    accuracy = {k: json.loads(read(os.path.join(run, "results.json"))) for k, run in runs.items()}
    zero_shot = accuracy[("ZeroshotCLIP", 1)]["accuracy"]
    assert accuracy[("ZeroshotCLIP", 2)]["accuracy"] == zero_shot
    assert accuracy[("CoOp", 1)]["zeroshot_accuracy"] == zero_shot


def read(path):
    with open(path) as f:
        return f.read()


def test_the_zero_shot_key_changes_with_what_changes_the_evaluation_only(workspace, tmp_path):
    def key(*opts, trainer="ZeroshotCLIP"):
        config = os.path.join(REPO, "configs", "trainers", "CoOp", "tiny.yaml")
        argv = ["--root", workspace["data"], "--trainer", trainer, "--config-file", config,
                "--dataset-config-file", os.path.join(REPO, "configs", "datasets", "toy.yaml"),
                *SMALL_TOY, "TRAINER.COOP.PREC", "fp32", *opts]  # fmt: skip
        built = builtin.build_trainer(setup_cfg(train.build_parser().parse_args(argv)))
        templates = built.method.zeroshot_templates(built.template) or [built.template]
        return zeroshot_key(built, templates, "test")

    reference = key()
    # Seeds, shots, training and the learned prompts' settings do not enter it ...
    assert key("SEED", "7", "DATASET.NUM_SHOTS", "1", "OPTIM.LR", "0.1") == reference
    assert key("TRAINER.COOP.N_CTX", "8", "TEST.ZEROSHOT_BASELINE", "True", trainer="CoOp") == (
        reference)  # fmt: skip
    # ... the data, classes, templates, image processing and CLIP do.
    no_sdpa = ["TRAINER.SPEED.SDPA", "False", "TRAINER.SPEED.SHARED_TEXT_PREFIX", "False"]
    changes = [
        ["DATASET.SUBSAMPLE_CLASSES", "base"],
        ["TRAINER.ZSCLIP.ENSEMBLE", "True"],
        ["INPUT.INTERPOLATION", "bilinear"],
        no_sdpa,
    ]
    clip_copy = shutil.copy(os.path.join(REPO, "assets/tiny_clip/tiny_clip_vit.pt"), tmp_path)
    changes.append(["MODEL.BACKBONE.NAME", clip_copy])
    for opts in changes:
        assert key(*opts) != reference, opts


@pytest.mark.slow
def test_compare_script_dry_run_prints_the_plan_and_parses_nothing():
    result = subprocess.run(["bash", "scripts/toy/compare.sh", "--dry-run"], cwd=REPO,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Sweep (fewshot): 45 runs:" in result.stdout
    assert result.stdout.count(" train.py --root ") == 45
    assert "error" not in result.stderr and "Few-shot accuracy" not in result.stdout


def test_two_planned_runs_in_one_folder_are_an_error_before_any_run(workspace, tmp_path):
    other = tmp_path / "elsewhere" / "tiny.yaml"  # the same file name as the shipped tiny.yaml
    other.parent.mkdir()
    other.write_text("OPTIM:\n  LR: 0.5\n")
    shipped = os.path.join(REPO, "configs", "trainers", "CoOp", "tiny.yaml")
    fields = tiny_spec(workspace, tmp_path / "out", trainers=["CoOp"])
    fields["configs"] = {"CoOp": [shipped, str(other)]}
    with pytest.raises(ValueError) as err:
        sweep.main(["--spec", write_spec(tmp_path / "spec.yaml", fields)])
    message = str(err.value)
    assert message.startswith("Two planned runs map to one run directory, ")
    assert "OPTIM.LR: 0.002 in one, 0.5 in the other" in message
    assert "Give them different config file names" in message
    assert not (tmp_path / "out").exists()


def test_the_wrappers_add_extra_opts_to_their_own(workspace):
    env = {**os.environ, "DATA": workspace["data"]}
    result = subprocess.run(
        ["bash", "scripts/coop/main.sh", "toy", "tiny", "end", "16", "4", "False",
         "--opts", "OPTIM.MAX_EPOCH", "10", "--dry-run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if " train.py " in line]
    assert len(commands) == 3  # seeds 1 2 3
    for command in commands:
        # tiny.yaml's CTX_INIT "a photo of a" learns 4 vectors whatever N_CTX says
        assert "/CoOp/tiny_4shots/nctx4_cscFalse_ctpend/seed" in command
        assert "TRAINER.COOP.N_CTX 16 TRAINER.COOP.CSC False" in command
        assert "TRAINER.COOP.CLASS_TOKEN_POSITION end OPTIM.MAX_EPOCH 10 " in command


@pytest.mark.slow
def test_a_run_of_other_settings_is_stale_never_finished_and_overwrite_trains_it(
    workspace, tmp_path, capsys
):
    out = tmp_path / "output"
    spec = write_spec(tmp_path / "spec.yaml", tiny_spec(workspace, out, trainers=["CoOp"]))
    assert sweep.main(["--spec", spec]) == 0
    run = naming.fewshot_dir(str(out), "toy", "CoOp", "tiny", 2, SETTING, 1)
    first = os.path.getmtime(os.path.join(run, "results.json"))
    capsys.readouterr()

    # The same folder, other settings: listed with the keys that differ, nothing trained.
    changed = ["--spec", spec, "--opts", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "0.5"]
    assert sweep.main(changed) == 2
    out_text, err = capsys.readouterr()
    assert "Sweep (fewshot): 1 runs: 0 finished, 1 stale, 0 to resume, 0 new" in out_text
    assert (
        f"  stale: {naming.shown(run)}: OPTIM.LR: 0.002 there, 0.5 planned; "
        "OPTIM.MAX_EPOCH: 1 there, 2 planned"
    ) in err
    assert "To keep them: add --tag NAME" in err and "To replace them: --overwrite" in err
    assert os.path.getmtime(os.path.join(run, "results.json")) == first
    # A change that cannot change the numbers is not one.
    assert sweep.main(["--spec", spec, "--opts", "TRAIN.PRINT_FREQ", "7", "--dry-run"]) == 0
    assert "1 runs: 1 finished" in capsys.readouterr().out

    # A second run of the same experiment with other settings (seed 2, with --tag-less
    # copies): the table shows them as two rows, never one mean, and names the key.
    seed2 = os.path.join(os.path.dirname(run), "seed2")
    shutil.copytree(run, seed2)
    config = yaml.safe_load(read(os.path.join(seed2, "config.yaml")))
    record = json.loads(read(os.path.join(seed2, "results.json")))
    config["OPTIM"]["LR"], config["SEED"] = 0.5, 2
    config["TEST"]["ZEROSHOT_CACHE"] = "elsewhere"  # declared neutral by the methods
    record["experiment_digest"], record["seed"] = "0123456789abcdef", 2
    with open(os.path.join(seed2, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    with open(os.path.join(seed2, "results.json"), "w") as f:
        json.dump(record, f)
    summary = parse_results.main([str(out), "--out", str(tmp_path / "tables")])
    assert sorted(row["n_seeds"] for row in summary.rows) == [1, 1]
    warning = capsys.readouterr().out
    assert "runs of 2 different settings, shown as separate rows, never averaged" in warning
    assert "OPTIM.LR: 0.002 in " in warning and ", 0.5 in " in warning
    assert "ZEROSHOT_CACHE" not in warning
    # The same from a process of its own, which imports no method before it compares.
    alone = subprocess.run([sys.executable, "-m", "scripts.parse_results", str(out)], cwd=REPO,
                           capture_output=True, text=True)  # fmt: skip
    assert "OPTIM.LR: 0.002 in " in alone.stdout and "ZEROSHOT_CACHE" not in alone.stdout
    shutil.rmtree(seed2)

    # --overwrite trains it again; the old run moves aside.
    assert sweep.main([*changed, "--overwrite"]) == 0
    assert os.path.getmtime(os.path.join(run, "results.json")) > first
    assert json.loads(read(os.path.join(run, "results.json")))["epoch"] == 2
    assert glob.glob(os.path.join(run, "previous-*", "results.json"))


def test_wrappers_read_the_datasets_folder_and_the_seeds_from_the_environment():
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "SEEDS")}
    # Without DATA, Toy is where its config file (and the main job) puts it.
    result = subprocess.run(["bash", "scripts/dpt/main.sh", "toy", "tiny", "2", "--dry-run"],
                            cwd=REPO, env={**env, "SEEDS": "4 5"}, capture_output=True,
                            text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    commands = [line for line in result.stdout.splitlines() if " train.py " in line]
    assert [" --seed 4 " in commands[0], " --seed 5 " in commands[1]] == [True, True]
    assert len(commands) == 2 and not any("--root" in command for command in commands)
    # A benchmark dataset without DATA: said before any run.
    result = subprocess.run(["bash", "scripts/coop/base2new.sh", "caltech101", "vit_b16_ep50",
                             "--dry-run"], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 2
    assert "error: No folder holds Caltech101: give the sweep --root (the wrappers: DATA=" in (
        result.stderr)  # fmt: skip


def test_a_base_to_new_plan_counts_its_commands(workspace, tmp_path, capsys):
    fields = tiny_spec(workspace, tmp_path, trainers=["CoOp"], protocol="base2new")
    assert sweep.main(["--spec", write_spec(tmp_path / "spec.yaml", fields), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "Sweep (base2new): 1 runs (2 train.py commands): 0 finished" in out
    assert out.count("python train.py ") == 2


def test_the_watcher_shows_what_each_running_run_wrote_since_the_sweep_started(tmp_path):
    runs = {name: tmp_path / name for name in ("training", "evaluating", "queued", "ended")}
    for run in runs.values():
        run.mkdir()
    # An earlier session's lines are not this sweep's.
    (runs["queued"] / "log.txt").write_text("epoch [3/3] batch [2/2] loss 1.0 eta 0:00:00\n")
    watcher = watch.Watcher([str(run) for run in runs.values()], 60, print)
    assert watcher.lines() == []
    shown = {name: naming.shown(str(run)) for name, run in runs.items()}
    epoch_line = "epoch [2/10] batch [5/8] time 0.1 (0.1) loss 1.2 (1.3) lr 1.0e-02 eta 0:01:12\n"
    with open(runs["training"] / "log.txt", "a") as f:
        f.write("Building the model\n" + epoch_line + "epoch [2/10] batch [6")  # a partial line
    (runs["evaluating"] / "log.txt").write_text(epoch_line + "Evaluate on the *test* set\n")
    (runs["ended"] / "log.txt").write_text(epoch_line)
    watcher.ended([str(runs["ended"])])
    assert watcher.lines() == [
        f"      running     epoch 2/10 batch 5/8 eta 0:01:12  {shown['training']}",
        f"      running     evaluating (test)  {shown['evaluating']}",
    ]
    (runs["evaluating"] / "results.json").write_text("{}")  # finished
    with open(runs["training"] / "log.txt", "a") as f:
        f.write("/8] time 0.1 (0.1) loss 1.2 (1.3) lr 1.0e-02 eta 0:01:05\n")
    assert watcher.lines() == [
        f"      running     epoch 2/10 batch 6/8 eta 0:01:05  {shown['training']}"
    ]


@pytest.mark.slow
def test_a_sweep_prints_its_running_runs_epochs_and_none_when_all_are_skipped(workspace, tmp_path):
    fields = tiny_spec(workspace, tmp_path / "output", trainers=["CoOp"], seeds=[1, 2])
    fields["opts"] += ["OPTIM.MAX_EPOCH", "4", "TRAIN.PRINT_FREQ", "1"]
    spec = write_spec(tmp_path / "spec.yaml", fields)
    result = subprocess.run(sweep_cmd("--spec", spec, "--jobs", "2", "--progress", "0.05"),
                            cwd=REPO, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    running = [line for line in result.stdout.splitlines() if " running " in line]
    assert any(re.search(r"running +epoch [1-4]/4 batch \d+/\d+ eta [\d:]+  \S+/seed[12]$", line)
               for line in running), result.stdout  # fmt: skip
    again = subprocess.run(sweep_cmd("--spec", spec, "--progress", "0.05"), cwd=REPO,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert "2 runs: 2 finished" in again.stdout and " running " not in again.stdout
