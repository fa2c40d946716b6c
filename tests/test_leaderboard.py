"""Leaderboard rendering from store rows: tables, KD gain, index, failures."""

from medkd_bench.leaderboard import render_all
from medkd_bench.plugins import load_registry
from medkd_bench.store import Store


def _metrics(acc, f1, params, gmacs, latency):
    return {"accuracy": acc, "macro_f1": f1, "params_m": params, "gmacs": gmacs, "latency_ms": latency,
            "throughput": 100.0, "best_epoch": 3, "n_test": 240, "machine": "test machine",
            "per_class_f1": {"COVID-19": f1, "Non-COVID": f1, "Normal": f1}}


def _add(store, h, method, teacher, student, metrics=None, error=None, artifacts=None):
    config = {"dataset": {"img_size": 64}}
    if method == "kd":
        config["kd"] = {"temperature": 4.0, "alpha": 0.5}
    store.start(h, "synthetic-cxr", teacher, student, method, 0, config)
    if error:
        store.fail(h, error)
    else:
        store.finish(h, metrics, {"train_s": 12.0}, artifacts or {})


def test_rendered_tables(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t1", "teacher", "vgg19", "", _metrics(0.9, 0.89, 139.6, 1.6, 20.0))
        _add(store, "t2", "teacher", "visformer-s", "", _metrics(0.95, 0.95, 39.2, 0.4, 9.0))
        _add(store, "s1", "label-only", "", "ofa-595", _metrics(0.80, 0.79, 7.6, 0.044, 6.0))
        _add(store, "k1", "kd", "visformer-s", "ofa-595", _metrics(0.875, 0.87, 7.6, 0.044, 6.0))
        summary = {"mean": 0.61, "ci": [0.55, 0.66], "n": 6}
        store.save_explanation(
            "k1", "score-cam", 6, 0, "done",
            {"n_images": 6, "n_sanity": 3, "agreement": {"spearman": summary, "top20_iou": summary},
             "localisation": {"mask": "lesion", "energy_pointing_game": summary, "chance": summary}},
            {"panel": "panels/synthetic-cxr/score-cam/visformer-s__ofa-595.png"})
        _add(store, "k2", "kd", "vgg19", "ofa-595", _metrics(0.775, 0.77, 7.6, 0.044, 6.0))
        _add(store, "t3", "teacher", "autoformer-v2-t", "", error="RuntimeError: boom | pipe")
        written = render_all(load_registry(), store, tmp_path / "boards")
    assert [p.name for p in written] == ["synthetic-cxr.md", "README.md"]
    board = written[0].read_text()
    teachers = board.split("## Teachers")[1].split("## Students")[0]
    assert teachers.index("visformer-s") < teachers.index("vgg19")  # sorted by accuracy
    # Rows without stored predictions (and a config too sparse to rebuild labels) show no CI.
    assert "| visformer-s | 95.0 | 95.0 | - | 39.20 | 0.400 | 9.00 | 100 | 3 | 12 |" in teachers
    students = board.split("## Students")[1].split("## Per-class F1")[0]
    assert "| ofa-595 | - | label-only | 80.0 |" in students
    assert "| ofa-595 | visformer-s | kd | 87.5 | 87.0 | - | +7.5 | - |" in students
    assert "| ofa-595 | vgg19 | kd | 77.5 | 77.0 | - | -2.5 | - |" in students
    assert "[score-cam](panels/synthetic-cxr/score-cam/visformer-s__ofa-595.png)" in students
    explained = board.split("## Explanations: score-cam")[1]
    assert "| visformer-s | ofa-595 | 0.61 [0.55, 0.66] | - | 0.61 [0.55, 0.66] | - |" in explained
    assert "| ofa-595 | kd from visformer-s | 0.61 [0.55, 0.66] | - | 0.61 [0.55, 0.66] | - | - |" in explained
    assert "![score-cam: visformer-s -> ofa-595](panels/synthetic-cxr/score-cam/visformer-s__ofa-595.png)" in explained
    assert "T = 4.0, alpha = 0.5" in board and "chance accuracy: 0.333" in board
    assert "| teacher autoformer-v2-t seed 0 | RuntimeError: boom / pipe |" in board
    assert "on test machine" in board
    index = written[1].read_text()
    assert ("| [synthetic-cxr](synthetic-cxr.md) | visformer-s (95.0) | visformer-s -> ofa-595 (87.5, +7.5 pp) "
            "| ofa-595 (80.0) | 5 / 1 |") in index


def test_a_later_success_replaces_an_earlier_failure(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t1", "teacher", "vgg19", "", error="RuntimeError: first try")
        store.start("t1", "synthetic-cxr", "vgg19", "", "teacher", 0, {"dataset": {"img_size": 64}})
        store.finish("t1", _metrics(0.9, 0.9, 1, 1, 1), {}, {})
        board = render_all(load_registry(), store, tmp_path / "boards")[0].read_text()
    assert "Failed cells" not in board and "| vgg19 | 90.0 |" in board
