"""Saliency panels a clinician can read: a colour bar, each model's verdict on each image, flat maps flagged.

The figure is inspected as matplotlib objects (axes, labels, texts), not as
pixels: what it says is checked, not how it is anti-aliased.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from PIL import Image

from medkd_bench.data.prepare import PreparedData, prepare
from medkd_bench.explain import panels
from medkd_bench.explain.panels import (
    FLAT_SPREAD,
    PanelColumn,
    Prediction,
    is_flat,
    stored_predictions,
)
from medkd_bench.registry import load_registry
from tests.helpers import QUICK


@functools.cache
def _data() -> PreparedData:
    return prepare(load_registry().datasets["synthetic-cxr"], 32, None, {"n_train": 6, "n_val": 3, "n_test": 9})


def _blob(cy: int, cx: int, size: int = 32) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    m = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 50.0)
    return ((m - m.min()) / np.ptp(m)).astype(np.float32)


def test_flat_means_the_middle_of_the_map_barely_varies():
    rng = np.random.default_rng(0)
    assert is_flat(np.zeros((32, 32)))  # a ReLU-ed CAM negative everywhere
    assert is_flat(np.full((32, 32), 0.7))
    assert is_flat(0.3 + rng.uniform(0, FLAT_SPREAD * 0.9, (32, 32)))  # noise within one hue of the scale
    spike = np.zeros((32, 32))
    spike[3, 4] = spike[10, 10] = 1.0  # two stray pixels (0.2% of the map): nothing to localise
    assert is_flat(spike)
    assert not is_flat(_blob(16, 16)) and not is_flat(_blob(2, 2))  # a hot spot, even in a corner
    assert not is_flat(0.3 + rng.uniform(0, FLAT_SPREAD * 1.5, (32, 32)))


def test_stored_predictions_come_from_the_cells_scored_probabilities():
    probs = [[0.1, 0.7, 0.2], [0.8, 0.1, 0.1], [0.2, 0.2, 0.6]]
    assert stored_predictions({"test_probabilities": probs}, [2, 0], 3) == [Prediction(2, 0.6), Prediction(1, 0.7)]
    # Cells stored before probabilities were: the class without a confidence.
    assert stored_predictions({"test_predictions": [1, 0, 2]}, [1], 3) == [Prediction(0, None)]
    # Scored on another test split (a different length): no prediction rather than another image's.
    assert stored_predictions({"test_probabilities": probs, "test_predictions": [1, 0, 2]}, [0], 9) is None
    assert stored_predictions({}, [0], 3) is None


def test_panel_has_a_colour_bar_each_models_verdict_and_flags_flat_maps(tmp_path):
    data = _data()
    test = data.splits["test"]
    indices = [next(i for i in range(len(test)) if int(test.labels[i]) == c) for c in range(data.num_classes)]
    truth = [int(test.labels[i]) for i in indices]
    flat = np.zeros((32, 32), np.float32)
    columns = [
        PanelColumn("teacher vgg19", np.stack([_blob(8, 8), _blob(20, 20), _blob(16, 16)]),
                    [Prediction(t, 0.93) for t in truth]),
        PanelColumn("ofa-595 labels only", np.stack([_blob(8, 24), flat, _blob(24, 8)]),
                    [Prediction((t + 1) % 3, 0.614) for t in truth]),
        PanelColumn("ofa-595 kd", np.stack([_blob(9, 9), _blob(20, 21), flat]), None),
    ]
    fig = panels.panel_figure(data, indices, columns, "score-cam: test", mask_name="lesion")
    try:
        bars = [ax for ax in fig.axes if "saliency for the true class" in ax.get_ylabel()]
        assert len(bars) == 1  # one colour bar for every map: they share the [0, 1] scale
        ticks = [t.get_text() for t in bars[0].get_yticklabels()]
        assert ticks[0].startswith("0") and ticks[-1].startswith("1")
        grid = [ax for ax in fig.axes if ax not in bars]
        assert len(grid) == 3 * 4
        rows = [grid[r * 4:(r + 1) * 4] for r in range(3)]
        classes = data.spec.classes
        assert [row[0].get_title() for row in rows] == [f"true class: {classes[t]}" for t in truth]
        assert [ax.get_title() for ax in rows[0][1:]] == ["teacher vgg19", "ofa-595 labels only", "ofa-595 kd"]
        for r, t in enumerate(truth):
            assert rows[r][1].get_xlabel() == f"✓ right: {classes[t]} (93%)"
            assert rows[r][2].get_xlabel() == f"✗ wrong: {classes[(t + 1) % 3]} (61%)"
            assert rows[r][3].get_xlabel() == "prediction not stored"
        flagged = [(r, c) for r, row in enumerate(rows) for c, ax in enumerate(row)
                   if any(txt.get_gid() == "flat-map" for txt in ax.texts)]
        assert flagged == [(1, 2), (2, 3)]
        assert fig.get_supxlabel() == panels.LEGEND and "FLAT MAP" in panels.LEGEND  # the key travels with the PNG
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)
    out = panels.render_panel(tmp_path / "p.png", data, indices, columns, "score-cam: test", mask_name="lesion")
    with Image.open(out) as img:  # read at 100% where the page links it: wide enough for 9 pt labels
        assert img.format == "PNG" and img.width >= 900 and "Software" not in img.info


@pytest.mark.parametrize("path", ["run", "explain"])
def test_run_and_explain_panels_show_the_predictions_the_store_scored(run_cli, dirs, quick_run, tmp_path,
                                                                      monkeypatch, path):
    """Both panel writers (a run's, and ``explain`` from finished cells) label maps with the stored predictions."""
    from medkd_bench.explain import from_store
    from medkd_bench.run import explanations
    from medkd_bench.run.store import Store

    drawn: list[tuple[list[int], list[PanelColumn]]] = []

    def capture(out, data, indices, columns, title, mask_name=None):
        drawn.append((list(indices), list(columns)))
        return panels.render_panel(out, data, indices, columns, title, mask_name)

    monkeypatch.setattr(explanations if path == "run" else from_store, "render_panel", capture)
    if path == "run":  # a new explainer on the finished cells: maps and the KD cell's panel, nothing retrained
        result = run_cli([*QUICK, *dirs, "--explain-images", "6", "--explainers", "grad-cam"])
    else:
        result = run_cli(["explain", "--dataset", "synthetic-cxr", "--teacher", "visformer-s", "--student",
                          "ofa-595", "--images", "1", "--explainer", "grad-cam", *dirs])
    assert result.exit_code == 0, result.err
    assert len(drawn) == 1
    indices, columns = drawn[0]
    with Store(tmp_path / "work" / "runs.sqlite") as store:
        cells = {c.method: c for c in store.cells()}
    assert [c.name for c in columns] == ["teacher visformer-s", "ofa-595 labels only", "ofa-595 kd"]
    for column, method in zip(columns, ["teacher", "label-only", "kd"], strict=True):
        probs = np.asarray(cells[method].metrics["test_probabilities"])
        assert column.predictions == [Prediction(int(probs[i].argmax()), float(probs[i].max())) for i in indices]
