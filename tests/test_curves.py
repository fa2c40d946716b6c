"""Learning curves on the leaderboard pages: the series checked by hand, the PNG written, linked and reproducible."""

from __future__ import annotations

import pytest
from PIL import Image

from medkd_bench.registry import load_registry
from medkd_bench.report.curves import UNRECORDED, Mark, curve_data, curve_series
from medkd_bench.report.leaderboard import render_all
from medkd_bench.run.store import Store


def _history(values):
    return [{"epoch": e, "loss": 1.0 / e, "val_accuracy": v} for e, v in enumerate(values, 1)]


def _add(store, h, method, teacher, student, seed, values, **extra):
    """A finished cell; ``values`` its validation accuracy per epoch (None: stored without a history)."""
    metrics = {"accuracy": 0.8, "macro_f1": 0.8, "n_test": 9, "params_m": 7.6, "latency_ms": 6.0,
               "per_class_f1": {"COVID-19": 0.8, "Non-COVID": 0.8, "Normal": 0.8}, **extra}
    if values is not None:
        metrics["history"] = _history(values)
    config = {"dataset": {"img_size": 32}}
    if method not in ("teacher", "label-only"):
        config["distill"] = {"method": method, "revision": "1", "options": {}}
    store.start(h, "synthetic-cxr", teacher, student, method, seed, config)
    store.finish(h, metrics, {"train_s": 1.0}, {})


def _two_seeds(store, h="k", method="kd", teacher="visformer-s", student="ofa-595"):
    """Seed 0 runs 4 epochs to the cap; seed 1 stops on a plateau after 3."""
    _add(store, f"{h}0", method, teacher, student, 0, [0.5, 0.7, 0.6, 0.8], best_epoch=4, epochs_run=4,
         stopped="epoch-cap")
    _add(store, f"{h}1", method, teacher, student, 1, [0.3, 0.9, 0.85], best_epoch=2, epochs_run=3,
         stopped="plateau")


def test_two_seeds_of_different_lengths_by_hand(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _two_seeds(store)
        records = store.cells()
    s = curve_series(("kd", "visformer-s", "ofa-595"), records)
    assert s is not None and s.epochs == (1, 2, 3, 4)
    assert s.mean == pytest.approx((0.4, 0.8, 0.725, 0.8))  # epoch 4: seed 0 alone
    assert s.low == pytest.approx((0.3, 0.7, 0.6, 0.8))
    assert s.high == pytest.approx((0.5, 0.9, 0.85, 0.8))
    assert s.n_seeds == (2, 2, 2, 1) and s.full == (True, True, True, False)
    assert s.stops == (Mark(0, 4, 0.8, "epoch-cap"), Mark(1, 3, 0.85, "plateau"))
    assert s.bests == (Mark(0, 4, 0.8), Mark(1, 2, 0.9))


def test_cells_stored_before_stops_were_recorded_fall_back_to_their_history(tmp_path):
    """No ``epochs_run``, ``stopped`` or ``best_epoch``: the last epoch, reason unrecorded, the later of tied bests."""
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t0", "teacher", "vgg19", "", 0, [0.5, 0.7, 0.7, 0.6])
        records = store.cells()
    s = curve_series(("teacher", "vgg19", ""), records)
    assert s is not None and s.stops == (Mark(0, 4, 0.6, UNRECORDED),) and s.bests == (Mark(0, 3, 0.7),)
    assert s.full == (True,) * 4 and s.mean == pytest.approx((0.5, 0.7, 0.7, 0.6))


def test_panels_per_teacher_with_a_one_seed_teacher_and_a_cell_without_history(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t", "teacher", "visformer-s", "", 0, [0.6, 0.9])  # one teacher, every student seed from it
        _add(store, "v", "teacher", "vgg19", "", 0, [0.5, 0.6])
        _two_seeds(store, "l", "label-only", "", "ofa-595")
        _two_seeds(store, "k", "kd", "visformer-s", "ofa-595")
        _add(store, "a0", "at", "vgg19", "ofa-595", 0, None)  # an older cell: no history
        groups = {}
        for r in store.cells():
            groups.setdefault((r.method, r.teacher, r.student), []).append(r)
    data = curve_data(groups)
    assert [p.title for p in data.panels] == ["teacher vgg19 → student ofa-595",  # by name
                                              "teacher visformer-s → student ofa-595"]
    assert [s.key for s in data.panels[0].series] == [("teacher", "vgg19", ""), ("label-only", "", "ofa-595")]
    assert [s.key for s in data.panels[1].series] == [("teacher", "visformer-s", ""), ("label-only", "", "ofa-595"),
                                                      ("kd", "visformer-s", "ofa-595")]
    assert [s.seeds for s in data.panels[1].series] == [1, 2, 2]
    assert data.skipped == ("vgg19 -> ofa-595 (at), seed 0",) and data.methods == ("kd",)


def _store_with_curves(path):
    store = Store(path)
    _add(store, "t", "teacher", "visformer-s", "", 0, [0.6, 0.8, 0.9, 0.85], best_epoch=3, epochs_run=4,
         stopped="plateau")
    _two_seeds(store, "l", "label-only", "", "ofa-595")
    _two_seeds(store, "k", "kd", "visformer-s", "ofa-595")
    return store


def test_the_png_is_written_linked_near_the_top_and_byte_identical_when_rendered_again(tmp_path):
    with _store_with_curves(tmp_path / "runs.sqlite") as store:
        registry = load_registry()
        page = render_all(registry, store, tmp_path / "boards", resamples=20)[0].read_text()
        png = tmp_path / "boards" / "plots" / "synthetic-cxr.curves.png"
        first = png.read_bytes()
        render_all(registry, store, tmp_path / "boards", resamples=20)  # in place, as `leaderboard` does
        render_all(registry, store, tmp_path / "again", resamples=20)
    assert png.read_bytes() == first == (tmp_path / "again" / "plots" / "synthetic-cxr.curves.png").read_bytes()
    top = page.split("## Teachers")[0]
    assert "](plots/synthetic-cxr.curves.png)" in top and "](plots/synthetic-cxr.pareto.png)" in top
    caption = top.split("](plots/synthetic-cxr.curves.png)")[1].strip().splitlines()[0]
    assert "shaded: min..max over them" in caption and "dashed where some seeds had already stopped" in caption
    assert "seeds per curve: teachers 1; students 2" in caption
    assert "✕ stopped early on a plateau (3 of 5 runs), ▶ stopped at the epoch cap (2 of 5 runs)" in caption
    assert "dotted: chance (0.333)" in caption and "No per-epoch history" not in page
    with Image.open(png) as img:
        assert img.format == "PNG" and img.width >= 600 and "Software" not in img.info


def test_a_page_with_cells_lacking_history_still_renders_and_says_which(tmp_path):
    with _store_with_curves(tmp_path / "runs.sqlite") as store:
        _add(store, "a0", "at", "visformer-s", "ofa-595", 0, None)
        _add(store, "a1", "at", "visformer-s", "ofa-595", 1, [])
        page = render_all(load_registry(), store, tmp_path / "boards", resamples=20)[0].read_text()
    top = page.split("## Teachers")[0]
    assert "](plots/synthetic-cxr.curves.png)" in top
    assert ("No per-epoch history stored for visformer-s -> ofa-595 (at), seed 0; "
            "visformer-s -> ofa-595 (at), seed 1: left out of the curves.") in top
    assert "| visformer-s | at |" in page  # the rows themselves are still on the page (flags may mark the student)


def test_a_page_without_any_history_has_no_curves(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t", "teacher", "visformer-s", "", 0, None)
        page = render_all(load_registry(), store, tmp_path / "boards", resamples=20)[0].read_text()
    assert ".curves.png" not in page and not (tmp_path / "boards" / "plots" / "synthetic-cxr.curves.png").exists()
    assert "No per-epoch history stored for teacher visformer-s, seed 0" in page


def test_pages_of_other_settings_get_their_own_curves(tmp_path):
    """Keyed like the Pareto plot, by the page's file: a run with other settings does not overwrite the default's."""
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t", "teacher", "visformer-s", "", 0, [0.6, 0.9])
        _add(store, "u", "teacher", "visformer-s", "", 1, [0.2, 0.3, 0.4])
        store.begin_run({}, ["t"])
        store.begin_run({"epochs": 3}, ["u"])
        written = render_all(load_registry(), store, tmp_path / "boards", resamples=20)
    pages = {p.name: p.read_text() for p in written if p.suffix == ".md" and p.name != "README.md"}
    (other,) = [name for name in pages if name != "synthetic-cxr.md"]
    stem = other.removesuffix(".md")
    assert "](plots/synthetic-cxr.curves.png)" in pages["synthetic-cxr.md"]
    assert f"](plots/{stem}.curves.png)" in pages[other]
    plots = tmp_path / "boards" / "plots"
    assert (plots / "synthetic-cxr.curves.png").read_bytes() != (plots / f"{stem}.curves.png").read_bytes()
