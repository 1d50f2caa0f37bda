"""README is the manual: every command of its code blocks is run here, in a fresh copy of the
repository, or checked as far as this machine allows, so that a command in README cannot break
unnoticed.

Each command falls under one rule of ``RULES``: *run* as written (the main job, evaluation,
predict, the tools, the Toy sweeps, the Dassl run where Dassl is installed) in README's order,
Toy's trainings on a short schedule unless ``README_TEST_FULL=1`` (then as written, and their
printed results must be README's); *planned* (sweeps over benchmarks that are not here: their
``--dry-run``, each planned ``train.py`` command then checked); *checked* (``train.py`` on data
or GPUs that are not here: its flags parsed and its config files and overrides merged and
validated, as ``train.py`` does before any work); or *not run*, with the reason. A command no
rule covers fails the test, naming its README line."""

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

import train
from tests.run_fixtures import REPO
from tools import benchmark

README = Path(REPO, "README.md")
FULL = os.environ.get("README_TEST_FULL", "") not in ("", "0")
# Toy's trainings on a short schedule: the same commands, the same folders, 2 epochs.
SHORT_TRAIN = " OPTIM.MAX_EPOCH 2"
SHORT_SWEEP = " --trainers ZeroshotCLIP DPT --shots 1 --seeds 1 --epoch-scale 0.01"
HAVE_DASSL = importlib.util.find_spec("dassl") is not None
MAIN_RUN = "output/toy/DPT/tiny_16shots/nctx4_cscFalse_ctpend_vctx10/seed1"


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int  # README's line of the opening fence


@dataclass(frozen=True)
class Command:
    text: str  # continuation lines joined, the trailing comment dropped
    block: Block


@dataclass(frozen=True)
class Rule:
    pattern: str
    how: str  # run, plan, check or skip
    why: str = ""


RULES = [
    Rule(r"pip install ", "skip", "installs packages: CI runs README's install command first"),
    Rule(r"(git clone |cd\b)", "skip", "fetches Dassl from GitHub; Dassl's tests use an install"),
    Rule(r"python -m pytest", "skip", "the test suite itself"),
    Rule(r"python tools/benchmark\.py ", "check", "times ViT-B/32 for minutes: flags parsed"),
    Rule(r"torchrun ", "check", "needs GPUs and a benchmark's data"),
    Rule(r"python train\.py .*--root \$?DATA\b", "check", "needs a benchmark's data"),
    Rule(r"python train\.py --engine dassl ", "run"),
    Rule(r"python train\.py ", "run"),
    Rule(r"python -m scripts\.sweep --spec sweep\.yaml", "plan", "a sweep over benchmarks"),
    Rule(r"python -m scripts\.sweep --spec scripts/toy/", "plan", "every method on Toy: an hour"),
    Rule(r"(SEEDS=\S+ )?bash scripts/\S+ toy\b", "run"),
    Rule(r"bash scripts/toy/compare\.sh", "run"),
    Rule(r"bash scripts/", "plan", "a sweep over benchmarks"),
    Rule(r"RUN=|python predict\.py |python -m tools\.", "run"),
    Rule(r"python -m scripts\.parse_results ", "run"),
]


def readme_blocks():
    text = README.read_text()
    fence = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
    return [Block(m[1], m[2], text.count("\n", 0, m.start()) + 1) for m in fence.finditer(text)]


def commands(block):
    lines = block.text.replace("\\\n", " ").splitlines()
    stripped = (re.sub(r"(^|\s)#.*$", "", line) for line in lines)
    return [Command(" ".join(line.split()), block) for line in stripped if line.strip()]


def shell_commands():
    return [c for block in readme_blocks() if block.lang == "bash" for c in commands(block)]


def rule_for(command):
    return next((rule for rule in RULES if re.match(rule.pattern, command.text)), None)


def text_block_after(marker):
    """The first plain code block (printed output) after README's line holding ``marker``."""
    readme = README.read_text()
    line = readme.count("\n", 0, readme.index(marker)) + 1
    return next(b.text for b in readme_blocks() if b.lang == "" and b.line > line)


def test_every_readme_command_is_run_or_has_a_reason():
    uncovered = [f"line {c.block.line}: {c.text}" for c in shell_commands() if not rule_for(c)]
    assert not uncovered, "README commands that no rule of tests/test_readme.py covers:\n" + (
        "\n".join(uncovered)
    )
    for c in shell_commands():
        rule = rule_for(c)
        assert rule.how == "run" or rule.why, f"line {c.block.line}: {c.text}"
    assert sum(rule_for(c).how == "run" for c in shell_commands()) >= 8


def test_the_toy_comparison_spec_in_readme_is_the_file():
    specs = [b.text for b in readme_blocks() if b.lang == "yaml" and "toy_comparison" in b.text]
    spec_file = Path(REPO, "scripts/toy/compare.yaml").read_text().splitlines(keepends=True)
    assert specs == ["".join(line for line in spec_file if not line.startswith("#"))]


def check_train_command(argv, monkeypatch):
    """What ``train.py`` checks before any work: flags, config files, overrides, values."""
    monkeypatch.chdir(REPO)
    args = train.build_parser().parse_args(argv)
    if args.engine == "dassl":
        pytest.importorskip("dassl", reason="Dassl is not installed")
    engine = train.load_engine(args.engine)
    cfg = engine.setup_cfg(args)
    train.check_args(engine, cfg, args)
    return cfg


def train_argv(command, data_root):
    words = shlex.split(command.replace("$DATA", str(data_root)))
    assert words[0] in ("python", "torchrun") and "train.py" in words, command
    after = words[words.index("train.py") + 1 :]
    return [str(data_root) if word == "DATA" else word for word in after]


@pytest.mark.parametrize(
    "command",
    [c for c in shell_commands() if rule_for(c) and rule_for(c).how == "check"],
    ids=lambda c: f"line{c.block.line}",
)
def test_readme_commands_on_data_that_is_not_here_are_valid(command, tmp_path, monkeypatch):
    if command.text.startswith("python tools/benchmark.py"):
        args = benchmark.build_parser().parse_args(shlex.split(command.text)[2:])
        assert args.backbone == "ViT-B/32" and args.threads == 2
        return
    data_root = str(tmp_path)
    cfg = check_train_command(train_argv(command.text, data_root), monkeypatch)
    assert data_root == cfg.DATASET.ROOT


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory):
    """The repository's files (tracked and new, not ignored) in a folder of their own, with no
    output, no generated data and no caches."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    copy = tmp_path_factory.mktemp("fresh") / "repo"
    for name in filter(None, listed.split("\0")):
        source = Path(REPO, name)
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    return copy


def start(script, cwd, env=None):
    return subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process):
    out, err = process.communicate(timeout=1800 if FULL else 600)
    script = process.args[-1]
    assert process.returncode == 0, f"{script}\n{out[-2000:]}\n{err[-3000:]}"
    return out


def shell(script, cwd, env=None):
    return finish(start(script, cwd, env))


def as_run_here(command):
    """The command as this test runs it: Toy's trainings shortened unless README_TEST_FULL."""
    text = command.text
    if FULL:
        return text
    if text.startswith("python train.py") and "--eval-only" not in text:
        return text + SHORT_TRAIN
    if text.startswith("bash scripts/toy/compare.sh"):
        return text + SHORT_SWEEP
    return text


@pytest.mark.slow
def test_readme_planned_sweeps_plan_valid_runs(fresh_copy, tmp_path, monkeypatch):
    spec = next(b.text for b in readme_blocks() if b.lang == "yaml" and "protocol:" in b.text)
    (fresh_copy / "sweep.yaml").write_text(spec)
    planned = [c for c in shell_commands() if rule_for(c) and rule_for(c).how == "plan"]
    assert len(planned) >= 7
    dry_runs = [
        start(c.text + ("" if "--dry-run" in c.text else " --dry-run"), fresh_copy,
              env={"DATA": str(tmp_path)})
        for c in planned
    ]  # fmt: skip
    checked = 0
    for command, dry_run in zip(planned, dry_runs):
        printed = finish(dry_run)
        runs = [line.strip() for line in printed.splitlines() if "python train.py" in line]
        assert runs, f"line {command.block.line}: {command.text} planned no run:\n{printed}"
        for run in runs[:: max(1, len(runs) // 3)]:  # a few of each plan: the first, the last
            words = shlex.split(run)
            monkeypatch.chdir(fresh_copy)
            cfg = check_train_command(words[words.index("train.py") + 1 :], monkeypatch)
            assert cfg.OUTPUT_DIR
            checked += 1
    assert checked >= len(planned)


@pytest.mark.slow
def test_readme_walk_from_a_fresh_copy(fresh_copy):
    """Every command README runs on this machine, in its order, in one fresh copy."""
    printed = {}
    for block in readme_blocks():
        if block.lang == "python" and "load_classifier" in block.text:
            printed["api"] = shell(f"python - <<'EOF'\n{block.text}EOF", fresh_copy)
            continue
        runs = [c for c in commands(block) if block.lang == "bash" and rule_for(c).how == "run"]
        if not runs:
            continue
        dassl_run = any(c.text.startswith("python train.py --engine dassl") for c in runs)
        if dassl_run and not HAVE_DASSL:
            continue
        out = shell("\n".join(as_run_here(c) for c in runs), fresh_copy)
        printed[runs[0].text] = out

    main_job = next(out for cmd, out in printed.items() if cmd.startswith("python train.py --tr"))
    line = re.search(r"Zero-shot CLIP: \S+% -> DPT: \S+% on the test split", main_job).group(0)
    readme_line = text_block_after("## Main job").strip()
    assert line.split(" -> ")[0] == readme_line.split(" -> ")[0]
    if FULL:
        assert line == readme_line
    run = fresh_copy / MAIN_RUN
    trained = json.loads((run / "results.json").read_text())
    evaluated = json.loads((run / "eval" / "toy_test" / "results.json").read_text())
    assert evaluated["accuracy"] == trained["accuracy"]

    predictions = next(out for cmd, out in printed.items() if cmd.startswith("RUN="))
    readme_interpret = text_block_after("### The learned prompt in words").splitlines()
    lines = predictions.splitlines()
    star = sorted((fresh_copy / ".cache/data/toy/images/blue_star").iterdir())
    assert len([ln for ln in lines if "/blue_star/" in ln]) == len(star) == 140
    assert all(re.fullmatch(r"\S+  (\S+ \S+ \d+\.\d%( \| )?){3}", ln) for ln in lines[:140])
    assert list((fresh_copy / "output/attention").glob("*.png"))
    header = re.sub(r"epoch \d+", "epoch 2", readme_interpret[0])
    assert (header if not FULL else readme_interpret[0]) in lines[140:]

    names = re.match(r"\[('[a-z ]+'), ('[a-z ]+')\]", printed["api"])
    assert names, printed["api"]
    if FULL:
        assert printed["api"].startswith("['red circle', 'blue star'] [('red circle', 0.9")

    summary = fresh_copy / "output/toy_comparison/summary/summary.csv"
    assert "DPT" in summary.read_text()
    assert (fresh_copy / "results/summary.csv").is_file()
    if HAVE_DASSL:
        assert (fresh_copy / "output/toy/DPT/tiny_dassl/results.json").is_file()
