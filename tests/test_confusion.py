"""Confusion matrices: counts and a PNG legible for 100+ classes."""

import numpy as np
import pytest
from PIL import Image

from engine.confusion import confusion_matrix, label_layout, plot_confusion_matrix


def test_counts_rows_are_true_classes_columns_predictions():
    cmat = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cmat.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


@pytest.mark.slow
def test_a_120_class_matrix_renders_every_name_legibly(tmp_path):
    n = 120
    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(n), 10)
    pred = np.where(rng.random(true.size) < 0.7, true, rng.integers(0, n, true.size))
    path = plot_confusion_matrix(
        confusion_matrix(true, pred, n), [f"class {i}" for i in range(n)], tmp_path / "cm.png"
    )
    cell, font, step = label_layout(n)
    assert step == 1 and font >= 5  # every class named, at 5 pt or more
    with Image.open(path) as image:
        width, height = image.size
        pixels = np.asarray(image.convert("L"), float)
    assert width >= 1500 and height >= 1500  # 1,500 px or more for 120 rows of names
    # Not blank: a dark diagonal (70% of each row), light cells and text.
    assert pixels.std() > 20 and (pixels < 80).mean() > 0.005 and (pixels > 240).mean() > 0.3


@pytest.mark.slow
def test_huge_class_counts_stay_bounded_and_name_every_kth_class():
    cell, font, step = label_layout(1000)
    assert 1000 * cell <= 55 and step > 1 and font >= 5


def test_matrix_and_names_must_agree(tmp_path):
    with pytest.raises(ValueError, match=r"confusion matrix of shape \(2, 2\) for 3 class names"):
        plot_confusion_matrix(np.eye(2), ["a", "b", "c"], tmp_path / "cm.png")
