"""The results parser on crafted run folders: ours and Dassl's logs, partial sweeps, crashes."""

import builtins
import csv
import json
import os

import pytest

from engine.checkpoint import TEMP_PREFIX
from scripts import parse_results
from scripts.naming import base2new_dir, cross_dir, fewshot_dir, parse_run_dir, shown
from scripts.results import harmonic_mean, summarize
from scripts.runs import final_test_accuracy, read_run
from tests.forked_train import fill_disk_at

SETTING = "nctx16_cscFalse_ctpend"


def write_ours(path, accuracy, **fields):
    """A finished run of ours: log.txt and results.json."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "log.txt"), "w") as f:
        f.write("** Run started 2024-01-01 00:00:00 **\n")
    if accuracy is not None:
        with open(os.path.join(path, "results.json"), "w") as f:
            json.dump({"split": "test", "accuracy": accuracy, **fields}, f)


def write_dassl(path, accuracy, header="Do evaluation on test set", extra=""):
    """A log.txt as CoOp's Dassl writes it (no results.json)."""
    os.makedirs(path, exist_ok=True)
    lines = [
        "** Arguments **",
        "trainer: CoOp",
        "dataset_config_file: configs/datasets/dtd.yaml",
        "epoch [50/50][1/1] time 0.1 (0.1) loss 0.1 (0.1) acc 100.0 (100.0) lr 1e-05",
        extra,
    ]
    if accuracy is not None:
        lines += [header, "=> result", "* total: 1,692", "* correct: 1,100"]
        lines += [f"* accuracy: {accuracy:.2f}%", "* error: 35.00%", "* macro_f1: 64.00%"]
    with open(os.path.join(path, "log.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def fewshot_grid(out, values, trainer="CoOp", setting=SETTING, writer=write_ours):
    """``values`` = {(dataset, shots): [accuracy per seed 1, 2, ...]}; None = unfinished."""
    for (dataset, shots), accuracies in values.items():
        for seed, accuracy in enumerate(accuracies, start=1):
            path = fewshot_dir(str(out), dataset, trainer, "vit_b16", shots, setting, seed)
            writer(path, accuracy)


def row_of(summary, **match):
    rows = [r for r in summary.rows if all(r[k] == v for k, v in match.items())]
    assert len(rows) == 1, rows
    return rows[0]


def test_run_dir_layouts_round_trip(tmp_path):
    out = str(tmp_path)
    few = parse_run_dir(fewshot_dir(out, "dtd", "DPT", "vit_b16_ep50", 1, SETTING, 3))
    assert (few.protocol, few.dataset, few.trainer, few.config, few.shots, few.setting,
            few.seed) == ("fewshot", "dtd", "DPT", "vit_b16_ep50", 1, SETTING, 3)  # fmt: skip
    new = parse_run_dir(base2new_dir(out, "test_new", "eurosat", "CoCoOp", "c4", 16, "", 2))
    assert (new.protocol, new.dataset, new.shots, new.measure) == ("base2new", "eurosat", 16, "new")
    cross = parse_run_dir(cross_dir(out, "ucf101", "DPT", "vit_b16", 16, SETTING, 1))
    assert (cross.protocol, cross.dataset, cross.setting) == ("cross", "ucf101", SETTING)
    dg = parse_run_dir(cross_dir(out, "imagenet_a", "DPT", "vit_b16", 16, SETTING, 1))
    assert (dg.protocol, dg.dataset) == ("dg", "imagenet_a")
    # CoCoOp's cross-dataset folders have no setting part.
    old = parse_run_dir(os.path.join(out, "evaluation", "CoCoOp", "c4_16shots", "dtd", "seed1"))
    assert (old.dataset, old.setting, old.shots) == ("dtd", "", 16)
    assert parse_run_dir(os.path.join(out, "somewhere", "run1")) is None


def test_final_test_accuracy_ignores_val_and_baseline_blocks():
    ours = ["Evaluate zero-shot CLIP on the *test* set", "* accuracy: 50.0%",
            "Evaluate on the *val* set", "* accuracy: 70.0%",
            "Evaluate on the *test* set", "* accuracy: 80.5%",
            "Evaluate on the *val* set", "* accuracy: 99.0%"]  # fmt: skip
    assert final_test_accuracy(ours) == 80.5
    assert final_test_accuracy(ours[:4]) is None  # crashed before the final test
    assert final_test_accuracy(["Do evaluation on test set", "* accuracy: 63.52%"]) == 63.52
    assert final_test_accuracy(["* accuracy: 12.0%"]) == 12.0  # no header: a test


def test_fewshot_table_mean_std_average_exports_and_plots(tmp_path):
    out = tmp_path / "output"
    fewshot_grid(out, {("dtd", 1): [40, 44], ("dtd", 2): [50, 52],
                       ("eurosat", 1): [60, 62], ("eurosat", 2): [70, 74]})  # fmt: skip
    # DPT as old Dassl logs: they parse into the same table.
    fewshot_grid(out, {("dtd", 1): [45, 47], ("dtd", 2): [55, 57],
                       ("eurosat", 1): [65, 69], ("eurosat", 2): [75, 77]},
                 trainer="DPT", writer=write_dassl)  # fmt: skip
    summary = summarize(parse_results.collect([str(out)]))
    assert summary.incomplete == []
    dtd = row_of(summary, trainer="CoOp", shots=1, dataset="dtd")
    assert (dtd["accuracy"], dtd["accuracy_std"], dtd["n_seeds"]) == (42, 2, 2)
    average = row_of(summary, trainer="DPT", shots=2, dataset="Average")
    assert average["accuracy"] == pytest.approx((56 + 76) / 2)
    assert average["accuracy_std"] == pytest.approx(1.0)  # per-seed averages 65 and 67
    report = parse_results.format_report(summary)
    assert "42.00 ± 2.00 (2)" in report and "66.00 ± 1.00 (2)" in report
    assert "Missing" not in report

    tables = out / "tables"  # below the parsed folder: parsing it again reads the same runs
    exports = parse_results.export(summary, str(tables))
    names = sorted(os.path.basename(p) for p in exports)
    assert names == ["accuracy_vs_shots.pdf", "accuracy_vs_shots.png", "summary.csv",
                     "summary.json"]  # fmt: skip
    assert parse_results.summarize(parse_results.collect([str(out)])).rows == summary.rows
    with open(tables / "accuracy_vs_shots.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    with open(tables / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12  # 2 trainers x 2 shots x (2 datasets + average)
    first = rows[0]
    assert (first["trainer"], first["shots"], first["dataset"], first["seeds"]) == (
        "CoOp", "1", "dtd", "1 2")  # fmt: skip
    data = json.loads((tables / "summary.json").read_text())
    assert len(data["rows"]) == 12 and len(data["runs"]) == 16 and data["incomplete"] == []


def test_partial_sweep_lists_missing_and_unfinished_and_never_averages_them(tmp_path):
    out = tmp_path / "output"
    # seed 3 of CoOp on dtd is missing; seed 2 on eurosat crashed (our log, no results.json)
    fewshot_grid(out, {("dtd", 16): [50, 52], ("eurosat", 16): [70, None, 72]})
    # a Dassl run killed during training (no test accuracy, only a validation block)
    crashed = fewshot_dir(str(out), "dtd", "DPT", "vit_b16", 16, SETTING, 1)
    write_dassl(crashed, None, extra="Evaluate on the *val* set\n* accuracy: 30.0%")
    write_dassl(fewshot_dir(str(out), "dtd", "DPT", "vit_b16", 16, SETTING, 2), 60.0)
    # a run moved aside by --overwrite is not a run
    write_ours(os.path.join(crashed, "previous-20240101-000000"), 10.0)

    summary = summarize(parse_results.collect([str(out)]))
    incomplete = {(r.id.trainer, r.id.dataset, r.id.seed): r.why for r in summary.incomplete}
    assert set(incomplete) == {("CoOp", "dtd", 3), ("CoOp", "eurosat", 2), ("DPT", "dtd", 1),
                               ("DPT", "dtd", 3), ("DPT", "eurosat", 1), ("DPT", "eurosat", 2),
                               ("DPT", "eurosat", 3)}  # fmt: skip
    assert incomplete[("CoOp", "dtd", 3)] == "missing"
    assert incomplete[("CoOp", "eurosat", 2)].startswith("unfinished: no results.json")
    assert incomplete[("DPT", "dtd", 1)].startswith("unfinished: no test accuracy")
    eurosat = row_of(summary, trainer="CoOp", dataset="eurosat")
    assert (eurosat["accuracy"], eurosat["n_seeds"], eurosat["seeds"]) == (71, 2, [1, 3])
    average = row_of(summary, trainer="CoOp", dataset="Average")
    assert average.get("accuracy") is None and average["n_seeds"] == 0
    report = parse_results.format_report(summary)
    assert "Missing or unfinished runs (7)" in report
    assert f"{shown(crashed)}: unfinished: no test accuracy" in report


def test_base_to_new_pairs_train_base_with_test_new(tmp_path):
    out = str(tmp_path / "output")
    for dataset, base, new in (("dtd", [80, 82], [50, 54]), ("eurosat", [90, 92], [60, 62])):
        for seed in (1, 2):
            # CoCoOp's own layout (no setting folder) with Dassl logs
            write_dassl(base2new_dir(out, "train_base", dataset, "CoCoOp", "c4", 16, "", seed),
                        base[seed - 1])  # fmt: skip
            write_dassl(base2new_dir(out, "test_new", dataset, "CoCoOp", "c4", 16, "", seed),
                        new[seed - 1], header="Evaluate on the *test* set")  # fmt: skip
    summary = summarize(parse_results.collect([out]))
    dtd = row_of(summary, dataset="dtd")
    assert (dtd["base"], dtd["new"], dtd["n_seeds"]) == (81, 52, 2)
    assert dtd["H"] == pytest.approx(harmonic_mean(81, 52))
    average = row_of(summary, dataset="Average")
    assert (average["base"], average["new"]) == (86, 56.5)
    assert average["H"] == pytest.approx(harmonic_mean(86, 56.5))  # H of the averages
    report = parse_results.format_report(summary)
    assert "Base-to-new" in report and f"{harmonic_mean(86, 56.5):.2f}" in report
    paths = parse_results.export(summary, str(tmp_path / "tables"))
    assert os.path.join(str(tmp_path / "tables"), "base_new.png") in paths


def test_cross_dataset_domain_generalisation_and_unknown_layouts(tmp_path):
    out = str(tmp_path / "output")
    targets = {"dtd": 40.0, "eurosat": 50.0, "imagenetv2": 60.0, "imagenet_sketch": 45.0}
    for target, accuracy in targets.items():
        write_ours(cross_dir(out, target, "DPT", "vit_b16", 16, SETTING, 1), accuracy)
    write_ours(os.path.join(out, "my_runs", "first"), 33.0, trainer="VPT", dataset="DTD",
               num_shots=4)  # fmt: skip
    write_dassl(os.path.join(out, "old_runs", "seed1"), 20.0)
    summary = summarize(parse_results.collect([out]))
    assert row_of(summary, protocol="cross", dataset="Average")["accuracy"] == 45.0
    assert row_of(summary, protocol="dg", dataset="Average")["accuracy"] == 52.5
    mine = row_of(summary, protocol="other", trainer="VPT")
    assert (mine["dataset"], mine["shots"], mine["accuracy"]) == ("DTD", 4, 33.0)
    old = row_of(summary, protocol="other", trainer="CoOp")  # from the log's arguments
    assert (old["dataset"], old["seeds"], old["accuracy"]) == ("dtd", [1], 20.0)
    report = parse_results.format_report(summary)
    assert "Cross-dataset" in report and "Domain generalisation" in report
    assert "Other runs" in report


def test_same_run_below_two_folders_is_counted_once_and_listed(tmp_path):
    for root, accuracy in (("a", 50.0), ("b", 60.0)):
        write_ours(fewshot_dir(str(tmp_path / root), "dtd", "CoOp", "vit_b16", 1, SETTING, 1),
                   accuracy)  # fmt: skip
    summary = summarize(parse_results.collect([str(tmp_path / "a"), str(tmp_path / "b")]))
    assert row_of(summary, dataset="dtd")["accuracy"] == 50.0
    (duplicate,) = summary.incomplete
    assert duplicate.path.startswith(str(tmp_path / "b")) and "duplicate of" in duplicate.why


def test_missing_folder_reads_as_missing_run(tmp_path):
    run = read_run(fewshot_dir(str(tmp_path), "dtd", "CoOp", "vit_b16", 1, SETTING, 1))
    assert not run.finished and run.why == "missing" and run.id.dataset == "dtd"
    with pytest.raises(FileNotFoundError):
        parse_results.collect([str(tmp_path / "nowhere")])


def test_rows_of_per_shot_configs_list_in_shot_order(tmp_path):
    for config, shots in [("vit_b16_ep200", 16), ("vit_b16_ep50", 1), ("vit_b16_ep100", 4)]:
        write_ours(fewshot_dir(str(tmp_path), "dtd", "DPT", config, shots, SETTING, 1), 50.0)
    rows = summarize(parse_results.collect([str(tmp_path)])).rows
    assert [(r["shots"], r["config"]) for r in rows] == [
        (1, "vit_b16_ep50"), (4, "vit_b16_ep100"), (16, "vit_b16_ep200")]  # fmt: skip


def test_zero_shot_clip_as_the_runs_measured_it_has_rows_of_its_own(tmp_path):
    out = str(tmp_path / "output")
    for shots, accuracies in ((1, [60, 62]), (4, [70, 72])):
        for seed, accuracy in enumerate(accuracies, start=1):
            path = fewshot_dir(out, "dtd", "DPT", "vit_b16", shots, SETTING, seed)
            write_ours(path, accuracy, zeroshot_accuracy=44.0, backbone="ViT-B/16")
    for seed, (base, new) in enumerate(((80, 50), (82, 54)), start=1):
        for stage, accuracy, zeroshot in (("train_base", base, 70.0), ("test_new", new, 75.0)):
            path = base2new_dir(out, stage, "dtd", "DPT", "vit_b16", 16, SETTING, seed)
            write_ours(path, accuracy, zeroshot_accuracy=zeroshot, backbone="ViT-B/16")
    summary = summarize(parse_results.collect([out]))
    baseline = {"trainer": "ZeroshotCLIP", "config": "ViT-B/16", "setting": "baseline of the runs"}
    for shots in (1, 4):  # a line across the shots in the plot
        row = row_of(summary, protocol="fewshot", shots=shots, **baseline)
        assert (row["accuracy"], row["accuracy_std"], row["n_seeds"]) == (44.0, 0.0, 2)
    row = row_of(summary, protocol="base2new", **baseline)
    assert (row["base"], row["new"]) == (70.0, 75.0)
    assert row["H"] == pytest.approx(harmonic_mean(70, 75))
    assert not summary.incomplete and not summary.warnings
    report = parse_results.format_report(summary)
    line = next(line for line in report.splitlines() if "baseline of the runs" in line)
    assert line.startswith("| ZeroshotCLIP | ViT-B/16 ") and "| 44.00 ± 0.00 (2) |" in line


def test_a_single_seed_shows_no_spread(tmp_path):
    out = tmp_path / "output"
    fewshot_grid(out, {("dtd", 1): [61.25]})
    report = parse_results.format_report(summarize(parse_results.collect([str(out)])))
    assert "| 61.25 (1) |" in report and "±" not in report


@pytest.mark.slow
@pytest.mark.parametrize("name", ["summary.csv", "accuracy_vs_shots.pdf"])
def test_a_full_disk_while_exporting_is_a_message_and_leaves_no_part(
    tmp_path, monkeypatch, capsys, name
):
    """ENOSPC at a table or a plot of ``--out``: exit status 2 naming the file, no traceback,
    no half-written file; with the space back the same command writes them all."""
    out, tables = tmp_path / "output", tmp_path / "tables"
    fewshot_grid(out, {("dtd", 1): [40, 44], ("dtd", 2): [50, 52]})
    monkeypatch.setattr(builtins, "open", builtins.open)  # both put back after the test
    monkeypatch.setattr(os, "fdopen", os.fdopen)
    fill_disk_at(str(tables), name)
    assert parse_results.cli([str(out), "--out", str(tables)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: Could not save the summary in '{tables}' ([Errno 28] No "
                          f"space left on device: '{tables / name}'). Fix the cause")  # fmt: skip
    assert not (tables / name).exists()
    assert [f for f in os.listdir(tables) if f.startswith(TEMP_PREFIX)] == []
    monkeypatch.undo()
    assert parse_results.cli([str(out), "--out", str(tables)]) == 0
    assert (tables / name).stat().st_size > 0
