"""Plots: one colour per method in every figure, whatever else the figure shows."""

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex

from scripts.plots import METHOD_COLORS, base_new_figure, method_color, shots_figure


def fewshot_row(trainer, shots, accuracy, setting="s", config="c", dataset="dtd"):
    return {"protocol": "fewshot", "trainer": trainer, "setting": setting, "config": config,
            "shots": shots, "dataset": dataset, "accuracy": accuracy,
            "accuracy_std": 1.0}  # fmt: skip


def base_new_row(trainer, dataset="dtd"):
    return {"protocol": "base2new", "trainer": trainer, "setting": "s", "config": "c",
            "shots": 16, "dataset": dataset, "base": 80.0, "new": 70.0, "H": 74.7,
            "base_std": 1.0, "new_std": 1.0}  # fmt: skip


def line_colors(fig):
    """{legend label: (colour, line style)} of the lines in every panel."""
    found = {}
    for ax in fig.axes:
        for line in ax.get_lines():
            found.setdefault(line.get_label(), set()).add(
                (to_hex(line.get_color()), line.get_linestyle())
            )
    return found


def test_a_method_has_the_same_colour_in_every_figure():
    one = [fewshot_row(t, s, 50.0) for t in ("DPT", "CoOp") for s in (1, 4)]
    # Another figure: other methods first, an unknown trainer, two settings of DPT.
    two = [fewshot_row(t, s, 60.0, dataset="eurosat")
           for t in ("ZeroshotCLIP", "VPT", "MyMethod", "DPT") for s in (1, 16)]  # fmt: skip
    two += [fewshot_row("DPT", s, 70.0, setting="s2", dataset="eurosat") for s in (1, 16)]
    first, second = line_colors(shots_figure(one)), line_colors(shots_figure(two))
    assert first["DPT"] == {(to_hex(METHOD_COLORS["DPT"]), "-")}
    assert first["CoOp"] == {(to_hex(METHOD_COLORS["CoOp"]), "-")}
    assert second["ZeroshotCLIP"] == {(to_hex(METHOD_COLORS["ZeroshotCLIP"]), "-")}
    # The two DPT settings keep DPT's colour and differ in line style.
    assert second["DPT s"] == {(to_hex(METHOD_COLORS["DPT"]), "-")}
    assert second["DPT s2"] == {(to_hex(METHOD_COLORS["DPT"]), "--")}
    assert second["MyMethod"] == {(to_hex(method_color("MyMethod")), "-")}
    assert method_color("MyMethod") not in METHOD_COLORS.values()
    assert len(set(METHOD_COLORS.values())) == len(METHOD_COLORS)

    bars = base_new_figure([base_new_row("VLP"), base_new_row("DPT")])
    colours = {}
    for ax in bars.axes:
        for container in ax.containers:
            if hasattr(container, "patches") and container.get_label():
                colours[container.get_label()] = to_hex(container.patches[0].get_facecolor())
    assert colours == {"VLP": to_hex(METHOD_COLORS["VLP"]), "DPT": to_hex(METHOD_COLORS["DPT"])}


def test_a_long_legend_goes_below_the_panels_and_leaves_them_their_height():
    trainers = list(METHOD_COLORS) + ["MyMethod"]
    rows = [base_new_row(t) for t in trainers]
    rows += [dict(base_new_row("DPT"), setting=f"nctx4_cscFalse_ctpend_vctx10_{tag}")
             for tag in ("kg", "src", "proj", "gpa")]  # fmt: skip
    for fig in (base_new_figure(rows), shots_figure([fewshot_row(t, 16, 50.0) for t in trainers])):
        renderer = FigureCanvasAgg(fig).get_renderer()
        fig.draw(renderer)
        inch = fig.dpi
        (ax,) = [ax for ax in fig.axes if ax.get_visible()]
        panel = ax.get_window_extent(renderer)
        legend = fig.legends[0].get_window_extent(renderer)
        assert panel.height >= 2.0 * inch  # the bars keep their room
        assert legend.y1 <= panel.y0  # below the panel, not over it
        assert legend.y0 >= 0 and legend.x0 >= 0 and legend.x1 <= fig.bbox.width  # not cut
