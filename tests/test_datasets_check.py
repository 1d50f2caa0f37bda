"""``python -m datasets.check`` reports complete, incomplete, broken and absent datasets."""

import os
import shutil
import subprocess
import sys

import pytest

from datasets.check import main
from tests.data_fixtures import write_truncated_image
from tests.dataset_miniatures import build

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def status_rows(out):
    """{dataset: the rest of its table row, split}."""
    rows = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].endswith("/"):
            rows[fields[0]] = fields[2:]
    return rows


def test_reports_each_dataset_and_what_to_do(tmp_path, capsys):
    build("Caltech101", tmp_path)  # complete, split generated on first run
    build("OxfordPets", tmp_path)
    os.remove(tmp_path / "oxford_pets" / "annotations" / "test.txt")
    build("ImageNet", tmp_path)
    val = tmp_path / "imagenet" / "images" / "val"
    shutil.rmtree(val)
    os.makedirs(val)
    (val / "ILSVRC2012_val_00000001.JPEG").write_bytes(b"")
    build("EuroSAT", tmp_path)
    (tmp_path / "eurosat" / "split_zhou_EuroSAT.json").write_text(
        '{"train": [["Forest/gone.jpg", 0, "Forest"]], "val": [], "test": []}'
    )

    assert main(["--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    rows = status_rows(out)
    assert rows["Caltech101"] == ["ok", "4", "12", "4", "8"]
    assert rows["OxfordPets"] == ["incomplete"]
    assert rows["ImageNet"] == ["incomplete"]
    assert rows["EuroSAT"] == ["error"]
    assert rows["SUN397"] == ["not", "installed"]
    assert "split_zhou_Caltech101.json is missing: the first run generates it" in out
    assert "4 classes, but the full dataset has 100" in out
    assert "missing annotations/test.txt: from annotations.tar.gz" in out
    assert "not one folder per class" in out
    assert "Forest/gone.jpg" in out
    assert "Not installed: StanfordCars" in out
    assert not os.path.exists(tmp_path / "caltech-101" / "split_zhou_Caltech101.json")  # no writes


def test_named_datasets_show_their_layout_and_set_the_exit_status(tmp_path, capsys):
    build("ImageNetA", tmp_path)
    assert main(["--root", str(tmp_path), "--name", "imagenet_a"]) == 0
    assert status_rows(capsys.readouterr().out)["ImageNetA"] == ["ok", "200", "200", "200"]

    assert main(["--root", str(tmp_path), "--name", "FGVCAircraft", "--name", "dtd"]) == 1
    out = capsys.readouterr().out
    assert "create " + os.path.join(str(tmp_path), "fgvc_aircraft") in out
    assert "images_variant_train.txt" in out and "split_zhou_DescribableTextures.json" in out


@pytest.mark.slow
def test_command_line_entry_point(tmp_path):
    build("DescribableTextures", tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "datasets.check", "--root", str(tmp_path), "--name", "DTD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no runpy warning about a module imported twice
    assert status_rows(result.stdout)["DescribableTextures"][:2] == ["ok", "3"]


def test_decode_finds_unreadable_images(tmp_path, capsys):
    build("EuroSAT", tmp_path)
    assert main(["--root", str(tmp_path), "--name", "EuroSAT"]) == 0
    capsys.readouterr()
    broken = sorted((tmp_path / "eurosat" / "2750").rglob("*.jpg"))[1]
    write_truncated_image(str(broken))
    assert main(["--root", str(tmp_path), "--name", "EuroSAT"]) == 0  # not decoded: unseen
    capsys.readouterr()
    assert main(["--root", str(tmp_path), "--name", "EuroSAT", "--decode"]) == 1
    out = capsys.readouterr().out
    assert status_rows(out)["EuroSAT"][0] == "error"
    advice = "1 unreadable image(s): fix or remove them, or train with DATASET.ON_BAD_IMAGE skip"
    assert advice in out
    assert f"{broken}: OSError: " in out
