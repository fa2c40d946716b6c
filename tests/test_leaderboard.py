"""Leaderboard rendering from store rows: tables, gains over label-only, the method summary, index, failures."""

import re

from medkd_bench.registry import load_registry
from medkd_bench.report.leaderboard import render_all
from medkd_bench.run.store import CellRecord, Store
from tests.helpers import embedded_dataset_config


def _metrics(acc, f1, params, gmacs, latency):
    return {"accuracy": acc, "macro_f1": f1, "params_m": params, "gmacs": gmacs, "latency_ms": latency,
            "throughput": 100.0, "best_epoch": 3, "n_test": 240, "machine": "test machine",
            "per_class_f1": {"COVID-19": f1, "Non-COVID": f1, "Normal": f1},
            # Converged (the training loop's record): test_trust_section_* covers cells that did not.
            "stopped": "plateau", "epochs_run": 5}


def _add(store, h, method, teacher, student, metrics=None, error=None, artifacts=None):
    config = {"dataset": {"img_size": 64}}
    if method not in ("teacher", "label-only"):
        options = {"temperature": 4.0, "alpha": 0.5} if method == "kd" else {"at_weight": 1000.0}
        config["distill"] = {"method": method, "revision": "1", "options": options}
    store.start(h, "synthetic-cxr", teacher, student, method, 0, config)
    if error:
        store.fail(h, error)
    else:
        store.finish(h, metrics, {"train_s": 12.0}, artifacts or {})


#: Two teachers (vgg19 below the label-only student), the baseline, then kd and at from each.
SUMMARY_ROWS = [
    ("t1", "teacher", "vgg19", "", _metrics(0.70, 0.7, 139.6, 1.6, 20.0)),
    ("t2", "teacher", "visformer-s", "", _metrics(0.95, 0.95, 39.2, 0.4, 9.0)),
    ("s1", "label-only", "", "ofa-595", _metrics(0.80, 0.8, 7.6, 0.044, 6.0)),
    ("k1", "kd", "visformer-s", "ofa-595", _metrics(0.85, 0.85, 7.6, 0.044, 6.0)),
    ("k2", "kd", "vgg19", "ofa-595", _metrics(0.75, 0.75, 7.6, 0.044, 6.0)),
    ("a1", "at", "visformer-s", "ofa-595", _metrics(0.90, 0.9, 7.6, 0.044, 6.0)),
    ("a2", "at", "vgg19", "ofa-595", _metrics(0.75, 0.75, 7.6, 0.044, 6.0)),
]


def _page_of(tmp_path, rows) -> str:
    """The synthetic-cxr page rendered from a store holding ``rows`` (hash, method, teacher, student, metrics)."""
    with Store(tmp_path / "runs.sqlite") as store:
        for row in rows:
            _add(store, *row)
        return render_all(load_registry(), store, tmp_path / "boards")[0].read_text()


def test_method_summary_ranks_methods_and_flags_weak_teachers(tmp_path):
    board = _page_of(tmp_path, SUMMARY_ROWS)
    summary = board.split("## Methods: ofa-595")[1].split("## Per-class F1")[0]
    assert "| method | vgg19 ‡ | visformer-s | mean gain (pp) | mean rank |" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| at") or line.startswith("| kd")]
    # at: first with visformer-s, tied with kd on vgg19 (ranks 1 and 1.5); kd: 2 and 1.5.
    assert rows[0] == "| at | -5.0 | +10.0 | +2.5 | 1.25 |"
    assert rows[1] == "| kd | -5.0 | +5.0 | +0.0 | 1.75 |"
    students = board.split("## Students")[1].split("## Methods")[0]
    assert "| ofa-595 | vgg19 ‡ | kd |" in students and "| ofa-595 | visformer-s | kd |" in students
    assert "‡ the teacher is less accurate than the label-only student" in students
    assert "- `at` (revision 1): at_weight = 1000.0." in board


def test_rendered_tables(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t1", "teacher", "vgg19", "", _metrics(0.9, 0.89, 139.6, 1.6, 20.0))
        _add(store, "t2", "teacher", "visformer-s", "", _metrics(0.95, 0.95, 39.2, 0.4, 9.0))
        _add(store, "s1", "label-only", "", "ofa-595", _metrics(0.80, 0.79, 7.6, 0.044, 6.0))
        _add(store, "k1", "kd", "visformer-s", "ofa-595",
             {**_metrics(0.875, 0.87, 7.6, 0.044, 6.0), "timed_on": "pool driver"})
        summary = {"mean": 0.61, "ci": [0.55, 0.66], "n": 6}
        explained = {"n_images": 6, "n_sanity": 3, "agreement": {"spearman": summary, "top20_iou": summary},
                     "localisation": {"mask": "lesion", "energy_pointing_game": summary, "chance": summary},
                     "localisation_other": {"lung": {"mask": "lung", "energy_pointing_game": summary,
                                                     "chance": {"mean": 0.2, "ci": [0.19, 0.21], "n": 6}}}}
        panel = {"panel": "panels/synthetic-cxr/score-cam/visformer-s__ofa-595__kd.png"}
        store.save_explanation("k1", "score-cam", 6, 0, "done", explained, panel)
        # A later --explain-images 64 run of the same explainer replaces the default sample everywhere.
        store.save_explanation("k1", "score-cam", 64, 0, "done", {**explained, "n_images": 64}, panel)
        _add(store, "k2", "kd", "vgg19", "ofa-595", _metrics(0.775, 0.77, 7.6, 0.044, 6.0))
        _add(store, "t3", "teacher", "autoformer-v2-t", "", error="RuntimeError: boom | pipe")
        written = render_all(load_registry(), store, tmp_path / "boards")
    assert [p.name for p in written] == ["synthetic-cxr.md", "results.csv", "README.md"]
    board = written[0].read_text()
    teachers = board.split("## Teachers")[1].split("## Students")[0]
    assert teachers.index("visformer-s") < teachers.index("vgg19")  # sorted by accuracy
    # Rows without stored predictions (and a config too sparse to rebuild labels) show no CI.
    assert "| visformer-s | 95.0 | 95.0 | - | 39.20 | 0.400 | 9.00 | 100 | 3 | 12 |" in teachers
    students = board.split("## Students")[1].split("## Per-class F1")[0]
    assert "| ofa-595 | - | label-only | 80.0 |" in students
    assert "| ofa-595 | visformer-s | kd | 87.5 | 87.0 | - | +7.5 | - |" in students
    assert "| ofa-595 | vgg19 | kd | 77.5 | 77.0 | - | -2.5 | - |" in students
    assert students.count("[score-cam](panels/synthetic-cxr/score-cam/visformer-s__ofa-595__kd.png)") == 1
    explained = board.split("## Explanations: score-cam")[1]
    assert explained.lstrip().startswith("64 test images per model")
    assert "| visformer-s | kd | ofa-595 | 0.61 [0.55, 0.66] | - | 0.61 [0.55, 0.66] | - |" in explained
    assert ("| ofa-595 | kd from visformer-s | 0.61 [0.55, 0.66] | - | 0.61 [0.55, 0.66] "
            "| 0.61 [0.55, 0.66] (chance 0.20) | - | - |") in explained
    assert "| chance level | `lung`: energy pointing game | ROAD |" in explained
    assert "![score-cam: visformer-s -> ofa-595 (kd)](panels/synthetic-cxr/score-cam/visformer-s__ofa-595__kd.png)" in explained
    assert "- `kd` (revision 1): alpha = 0.5, temperature = 4.0. Hinton" in board and "chance accuracy: 0.333" in board
    assert "| teacher autoformer-v2-t, seed 0 | RuntimeError: boom / pipe |" in board
    # Cost figures name where they were timed (a pool's driver), training provenance where it trained.
    assert "- Latency: batch 1, median of timed runs after warm-up, on pool driver; test machine" in board
    assert "- Machine (training): test machine" in board
    index = written[-1].read_text()
    assert ("| [synthetic-cxr](synthetic-cxr.md) | visformer-s (95.0) | visformer-s -> ofa-595, kd (87.5, +7.5 pp) "
            "| ofa-595 (80.0) | 5 / 1 |") in index


def test_the_trust_section_names_teachers_with_no_distilled_rows(tmp_path):
    """A teacher whose students are not in the store yet (a run in parts) is named, not silently missing."""
    board = _page_of(tmp_path, SUMMARY_ROWS[:4])  # no row distilled from vgg19
    trust = board.split("## Can these comparisons be trusted?")[1].split("## Teachers")[0]
    assert ("**Distilled students**: 1 cell in 1 row; stopped: 1 on a plateau; rows flagged in the students table "
            "(not converged, or gain below detectable): 0 of 1; no distilled rows yet from vgg19.") in trust
    # Teachers and the baseline only (a run in parts, its students not trained yet): nothing to test yet.
    (tmp_path / "early").mkdir()
    early = _page_of(tmp_path / "early", SUMMARY_ROWS[:3])
    assert "**Smallest detectable gain**: No distilled rows yet: there is no gain to test." in early


def test_a_row_not_yet_timed_names_no_latency_machine(tmp_path):
    """A pool run stopped before its driver's timing pass leaves cells without latency: the page says so.

    The Latency line lists where latencies were measured; a row with none (its cell trained in a
    one-thread worker) must not put that worker's machine there as if it had been timed on it.
    """
    untimed = {k: v for k, v in _metrics(0.9, 0.89, 139.6, 1.6, 0.0).items() if k not in ("latency_ms", "throughput")}
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t1", "teacher", "vgg19", "", {**untimed, "machine": "worker, 1 thread"})
        _add(store, "t2", "teacher", "visformer-s", "", {**_metrics(0.95, 0.95, 39.2, 0.4, 9.0), "timed_on": "pool driver"})
        _add(store, "s1", "label-only", "", "ofa-595", {**_metrics(0.80, 0.79, 7.6, 0.044, 6.0), "timed_on": "pool driver"})
        board = render_all(load_registry(), store, tmp_path / "boards")[0].read_text()
    teachers = board.split("## Teachers")[1].split("## Students")[0]
    assert "| vgg19 | 90.0 | 89.0 | - | 139.60 | 1.600 | - | - | 3 | 12 |" in teachers
    assert ("- Latency: batch 1, median of timed runs after warm-up, on pool driver; 1 row not timed yet "
            "(shown as -: the next run's timing pass measures it)") in board


def test_gpu_pages_show_latency_as_deployed_with_its_method(tmp_path):
    """Only pages with CUDA timings get the column (CPU pages render as before: ``test_rendered_tables``)."""
    deployed = {"latency_deployed_ms": 0.4123, "latency_deployed_iqr_ms": 0.0041,
                "latency_deployed_method": "CUDA graph, fp16, channels-last", "latency_deployed_max_abs_logit_diff": 0.002}
    refused = {"latency_deployed_method": "not published: fp16 gave non-finite logits; fp32 | x ⚠"}
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t1", "teacher", "vgg19", "", {**_metrics(0.9, 0.89, 139.6, 1.6, 20.0), **deployed})
        _add(store, "s1", "label-only", "", "ofa-595", {**_metrics(0.80, 0.79, 7.6, 0.044, 6.0), **refused})
        written = render_all(load_registry(), store, tmp_path / "boards")
    board = written[0].read_text()
    teachers = board.split("## Teachers")[1].split("## Students")[0]
    students = board.split("## Students")[1].split("## Per-class F1")[0]
    assert ("| latency (ms), median (IQR) | latency as deployed (ms), median (IQR; method) | throughput (img/s) |"
            in teachers)
    assert ("| vgg19 | 90.0 | 89.0 | - | 139.60 | 1.600 | 20.00 "
            "| 0.412 (IQR 0.004; CUDA graph, fp16, channels-last) | 100 | 3 | 12 |") in teachers
    assert ("| 6.00 | - (not published: fp16 gave non-finite logits; fp32 / x ⚠) | - | 100 |") in students
    for table in (teachers, students):  # every row has as many cells as the header
        lines = [line for line in table.splitlines() if line.startswith("|")]
        assert len({line.count(" | ") + line.count("|---") for line in lines[:1] + lines[2:]}) == 1
        assert lines[1].count("|") == lines[0].count("|")
    assert "as deployed: the weights converted to the model's deployment dtype" in board
    csv_text = written[1].read_text()
    assert "latency_deployed_method" in csv_text.splitlines()[0] and "CUDA graph, fp16, channels-last" in csv_text


def test_a_later_success_replaces_an_earlier_failure(tmp_path):
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t1", "teacher", "vgg19", "", error="RuntimeError: first try")
        store.start("t1", "synthetic-cxr", "vgg19", "", "teacher", 0, {"dataset": {"img_size": 64}})
        store.finish("t1", _metrics(0.9, 0.9, 1, 1, 1), {}, {})
        board = render_all(load_registry(), store, tmp_path / "boards")[0].read_text()
    assert "Failed cells" not in board and "| vgg19 | 90.0 |" in board


def _per_image(labels, preds, seed_acc_params=7.6):
    from sklearn.metrics import accuracy_score, f1_score

    m = _metrics(accuracy_score(labels, preds), f1_score(labels, preds, average="macro"), seed_acc_params, 0.044, 6.0)
    m.update(test_labels=list(labels), test_predictions=list(preds), n_test=len(labels),
             versions={"medkd-bench": "0.1.0", "torch": "2.14.1"}, data_checksums={"train": "aa", "val": "bb",
                                                                                  "test": "cc"})
    return m


def test_cis_seed_spread_and_significance_from_stored_predictions(tmp_path):
    """Two seeds of a teacher, a baseline and two KD students, from per-image predictions."""
    import re

    labels = [i % 3 for i in range(60)]
    base = [[y if i < 36 else (y + 1) % 3 for i, y in enumerate(labels)],  # 60% right
            [y if i < 42 else (y + 1) % 3 for i, y in enumerate(labels)]]  # 70% right
    registry = load_registry()
    dataset_cfg = embedded_dataset_config(registry)
    with Store(tmp_path / "runs.sqlite") as store:
        def add(h, method, teacher, student, seed, preds):
            cfg = {"dataset": dataset_cfg, "model": {"name": teacher or student, "init": "random",
                                                     "train": {"epochs": 99}}}
            if method == "kd":
                cfg["distill"] = {"method": "kd", "revision": "1", "options": {"temperature": 4.0, "alpha": 0.5}}
            store.start(h, "synthetic-cxr", teacher, student, method, seed, cfg)
            store.finish(h, _per_image(labels, preds), {"train_s": 10.0 + seed}, {})

        for seed in (0, 1):
            add(f"t{seed}", "teacher", "visformer-s", "", seed, labels)
            add(f"s{seed}", "label-only", "", "ofa-595", seed, base[seed])
            add(f"k{seed}", "kd", "visformer-s", "ofa-595", seed, labels)  # right wherever the baseline is, and more
            add(f"v{seed}", "kd", "vgg19", "ofa-595", seed, base[seed])  # exactly the baseline
        written = render_all(registry, store, tmp_path / "boards", resamples=300)
        again = render_all(registry, store, tmp_path / "again", resamples=300)
    board = written[0].read_text()
    assert board == again[0].read_text()  # seeded bootstrap: re-rendering changes nothing
    students = board.split("## Students")[1].split("## Per-class F1")[0]
    base_row = next(line for line in students.splitlines() if "| label-only |" in line)
    assert re.search(r"\| 65\.0 \[\d+\.\d, \d+\.\d\] \| .* \| 65\.0 ± 7\.1 \(2 seeds\) \| - \| - \|", base_row)
    kd_row = next(line for line in students.splitlines() if "| visformer-s | kd |" in line)
    gain = re.search(r"\| \+35\.0 \[\+(\d+\.\d), \+(\d+\.\d)\]† \| <0\.001 / <0\.001 \|", kd_row)
    assert gain and 0 < float(gain[1]) < 35 < float(gain[2])
    assert "| 100.0 [100.0, 100.0] |" in kd_row
    same_row = next(line for line in students.splitlines() if "| vgg19 | kd |" in line)
    # No discordant image: no gain is detectable, so even +0.0 is flagged as indistinguishable from noise.
    assert "| +0.0 [+0.0, +0.0]≈ | 1.000 / 1.000 |" in same_row and "†" not in same_row
    provenance = board.split("## Provenance")[1].split("</details>")[0]
    assert "medkd-bench run --datasets synthetic-cxr --teachers vgg19,visformer-s --students ofa-595" in provenance
    assert "--epochs 99" in provenance and "--seeds 2" in provenance and "--bootstrap 300" in provenance
    assert "medkd-bench 0.1.0, torch 2.14.1, timm ?" in provenance
    assert "train `aa`, val `bb`, test `cc`" in provenance
    assert provenance.count("| kd from visformer-s |") == 2 and "| `k1` |" in provenance
    assert "24 / 0, p = <0.001" in provenance  # seed 0: KD alone right on 24 images
    (toml,) = _toml_blocks(board)  # inferred from the cells' configs: no run recorded its settings here
    assert 'teachers = ["vgg19", "visformer-s"]' in toml and "epochs = 99" in toml and "seeds = 2" in toml
    index = written[-1].read_text()
    assert "visformer-s -> ofa-595, kd (100.0, +35.0 pp†)" in index


def test_one_seed_marks_no_gain_however_clear_over_test_images(tmp_path):
    """One seed: +25 pp with an images-only CI far above 0 is still no claim about the method (no †, said why)."""
    labels = [i % 3 for i in range(120)]
    with Store(tmp_path / "runs.sqlite") as store:
        for h, method, teacher, student, n_right in (("t", "teacher", "visformer-s", "", 112),
                                                     ("s", "label-only", "", "ofa-595", 80),
                                                     ("k", "kd", "visformer-s", "ofa-595", 110)):
            cfg = {"dataset": {"img_size": 64}}
            if method == "kd":
                cfg["distill"] = {"method": "kd", "revision": "1", "options": {"temperature": 4.0, "alpha": 0.5}}
            store.start(h, "synthetic-cxr", teacher, student, method, 0, cfg)
            store.finish(h, _per_image(labels, _right_on(labels, n_right)), {"train_s": 10.0}, {})
        written = render_all(load_registry(), store, tmp_path / "boards", resamples=300)
    page, index = written[0].read_text(), written[-1].read_text()
    kd_row = next(line for line in page.split("## Students")[1].splitlines() if "| visformer-s | kd |" in line)
    gain = re.search(r"\| \+25\.0 \[\+(\d+\.\d), \+\d+\.\d\] \|", kd_row)
    assert gain and float(gain[1]) > 10  # the images-only CI is far above 0 ...
    assert "†" not in kd_row  # ... and yet no claim
    assert "with one training seed it says nothing about training noise, so no gain is marked †" in page
    assert "none of its 1 distilled row is called better or worse than label-only: one training seed" in page
    assert "One training seed: each gain's CI resamples the test images only" in page
    assert ("Verdict: worth distilling from: beats the label-only student, CI above zero (one label-only seed: the "
            "CI covers test images, not training noise).") in page
    assert "+25.0 pp)" in index and "†" not in index.split("| dataset |")[1].split("\n\n")[0]


def test_a_one_seed_row_on_a_page_of_several_says_its_ci_is_over_images_only(tmp_path):
    """A reference run in parts publishes a method's first seed beside rows with three: that row gets no †."""
    labels = [i % 3 for i in range(120)]
    with Store(tmp_path / "runs.sqlite") as store:
        for h, method, teacher, student, seed, n_right in (("t", "teacher", "visformer-s", "", 0, 112),
                                                           ("s0", "label-only", "", "ofa-595", 0, 80),
                                                           ("s1", "label-only", "", "ofa-595", 1, 81),
                                                           ("k0", "kd", "visformer-s", "ofa-595", 0, 110),
                                                           ("k1", "kd", "visformer-s", "ofa-595", 1, 110),
                                                           ("a0", "at", "visformer-s", "ofa-595", 0, 112)):
            cfg = {"dataset": {"img_size": 64}}
            if method not in ("teacher", "label-only"):
                cfg["distill"] = {"method": method, "revision": "1", "options": {}}
            store.start(h, "synthetic-cxr", teacher, student, method, seed, cfg)
            store.finish(h, _per_image(labels, _right_on(labels, n_right)), {"train_s": 10.0}, {})
        written = render_all(load_registry(), store, tmp_path / "boards", resamples=300)
    students = written[0].read_text().split("## Students")[1].split("## Methods")[0]
    rows = {line.split(" | ")[2]: line for line in students.splitlines() if "| visformer-s |" in line}
    assert "†" in rows["kd"] and "†" not in rows["at"]  # two consistent seeds; one seed (+26.7 over images only)
    assert ("A row whose distilled and label-only students share only one seed shows the CI over test images and "
            "no †.") in students
    assert "most accurate distilled: at from visformer-s (one seed), 93.3 [" in written[0].read_text()


def test_explanations_by_method_count_each_baseline_once(tmp_path):
    """Two methods distilled from one teacher: the label-only agreement is one cell, not one per method."""
    summary = {"mean": 0.5, "ci": [0.4, 0.6], "n": 6}
    with Store(tmp_path / "runs.sqlite") as store:
        _add(store, "t1", "teacher", "visformer-s", "", _metrics(0.95, 0.95, 39.2, 0.4, 9.0))
        _add(store, "s1", "label-only", "", "ofa-595", _metrics(0.80, 0.8, 7.6, 0.044, 6.0))
        for h, method, value in (("k1", "kd", 0.7), ("a1", "at", 0.3)):
            _add(store, h, method, "visformer-s", "ofa-595", _metrics(0.85, 0.85, 7.6, 0.044, 6.0))
            store.save_explanation(h, "score-cam", 6, 0, "done", {
                "n_images": 6, "agreement": {"spearman": {**summary, "mean": value}, "top20_iou": summary},
                "label_only_agreement": {"spearman": summary, "top20_iou": summary}})
        board = render_all(load_registry(), store, tmp_path / "boards")[0].read_text()
    by_method = board.split("| method | Spearman vs teacher |")[1].split("\n\n")[0]
    assert "| label-only | 0.50 (1) | 0.50 (1) | - | - |" in by_method
    assert "| at | 0.30 (1) |" in by_method and "| kd | 0.70 (1) |" in by_method


def test_trust_section_says_when_no_teacher_map_finds_the_evidence(tmp_path):
    """Teacher maps at chance against the lesion mask: the page says the agreement columns cannot be read;
    one teacher above chance: it says so instead (the CI's lower end against the chance level's mean)."""
    chance = {"mean": 0.04, "ci": [0.03, 0.05], "n": 4}

    def explained(epg_ci):
        return {"n_images": 6, "localisation": {"mask": "lesion", "chance": chance, "energy_pointing_game":
                                                 {"mean": sum(epg_ci) / 2, "ci": epg_ci, "n": 4}}}

    def page(epg_cis, tmp):
        with Store(tmp / "runs.sqlite") as store:
            _add(store, "s1", "label-only", "", "ofa-595", _metrics(0.80, 0.8, 7.6, 0.044, 6.0))
            for i, (name, ci) in enumerate(zip(("visformer-s", "vgg19"), epg_cis, strict=True)):
                _add(store, f"t{i}", "teacher", name, "", _metrics(0.95, 0.95, 39.2, 0.4, 9.0))
                store.save_explanation(f"t{i}", "score-cam", 6, 0, "done", explained(ci))
            return render_all(load_registry(), store, tmp / "boards")[0].read_text()

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    at_chance = page([[0.02, 0.06], [0.039, 0.07]], tmp_path / "a")
    trust = at_chance.split("## Can these comparisons be trusted?")[1].split("\n## ")[0]
    assert ("**Explanations**: score-cam: no teacher's maps put more of their saliency inside the `lesion` mask "
            "than a uniform map would (energy pointing game 95% CI reaching the chance level in 2 of 2 teacher "
            "cells, 6 images each).") in trust
    assert "cannot tell whether distillation kept the teacher's focus" in at_chance.split("## Explanations: score-cam")[1]
    one_above = page([[0.02, 0.06], [0.05, 0.09]], tmp_path / "b")
    assert ("score-cam: 1 of 2 teacher cells put more of their saliency inside the `lesion` mask than a uniform map "
            "would (energy pointing game 95% CI above the chance level); the most, vgg19, 0.07 [0.05, 0.09] "
            "against 0.04 by chance.") in one_above
    assert "no teacher's maps" not in one_above


# ---- provenance: the experiment file next to the command ------------------------------------------------------


def _toml_blocks(page: str) -> list[str]:
    provenance = page.split("## Provenance")[1].split("</details>")[0]
    return re.findall(r"```toml\n(.*?)```", provenance, flags=re.S)


def test_provenance_toml_and_command_plan_the_pages_cells(run_cli, quick_run):
    """The page's TOML block, run with ``--config --dry-run``, plans exactly the cells of the page's rows."""
    import shlex

    page = (quick_run / "boards" / "synthetic-cxr.md").read_text()
    hashes = re.findall(r"\| `([0-9a-f]{16})` \|", page.split("## Provenance")[1])
    assert len(hashes) == 3
    (toml,) = _toml_blocks(page)
    assert "[dataset-options.synthetic-cxr]" in toml and "n_train = 24" in toml
    experiment = quick_run / "experiment.toml"
    experiment.write_text(toml)
    work = ["--work-dir", str(quick_run / "work"), "--dry-run"]
    by_file = run_cli(["run", "--config", str(experiment), *work])
    assert by_file.exit_code == 0, by_file.err
    assert sorted(re.findall(r"\b[0-9a-f]{16}\b", by_file.out)) == sorted(hashes)
    assert by_file.out.count("done") == 3 and "new" not in by_file.out
    (command,) = [line for line in page.splitlines() if line.startswith("medkd-bench run")]
    by_flags = run_cli([*shlex.split(command)[1:], *work])
    assert sorted(re.findall(r"\b[0-9a-f]{16}\b", by_flags.out)) == sorted(hashes)


def test_a_page_keeps_reproducing_its_cells_after_a_dataset_default_changes(run_cli, quick_run, monkeypatch):
    """Cells trained at a default that has since changed: the command and the TOML name the value they used.

    The run recorded only the options it was given; the cells' configs hold every option. Session 26 changed
    synthetic-histo's ``n_train`` default, and the committed page's command would have trained other cells.
    """
    import shlex

    from medkd_bench_plugins.datasets import synthetic_cxr

    page = (quick_run / "boards" / "synthetic-cxr.md").read_text()
    hashes = sorted(re.findall(r"\| `([0-9a-f]{16})` \|", page.split("## Provenance")[1]))
    monkeypatch.setitem(synthetic_cxr.DEFAULTS, "seed", 5)  # the cells were generated with seed 0
    boards = ["--work-dir", str(quick_run / "work"), "--leaderboard-dir", str(quick_run / "boards")]
    assert run_cli(["leaderboard", *boards]).exit_code == 0
    page = (quick_run / "boards" / "synthetic-cxr.md").read_text()
    (command,) = [line for line in page.splitlines() if line.startswith("medkd-bench run")]
    assert "synthetic-cxr.seed=0" in command
    (toml,) = _toml_blocks(page)
    assert "seed = 0" in toml.split("[dataset-options.synthetic-cxr]")[1]
    header = next(line for line in page.splitlines() if line.startswith("- Settings: "))
    assert "synthetic-cxr.seed=0" in header  # the page says so too, not only its command
    work = ["--work-dir", str(quick_run / "work"), "--dry-run"]
    by_flags = run_cli([*shlex.split(command)[1:], *work])
    assert sorted(re.findall(r"\b[0-9a-f]{16}\b", by_flags.out)) == hashes
    experiment = quick_run / "experiment.toml"
    experiment.write_text(toml)
    by_file = run_cli(["run", "--config", str(experiment), *work])
    assert sorted(re.findall(r"\b[0-9a-f]{16}\b", by_file.out)) == hashes


def test_cells_trained_before_a_default_changed_get_a_page_of_their_own():
    """Two "default" runs, before and after a dataset default changed: one page paired a student of one
    training split with a baseline of the other (synthetic-histo's ``n_train``, session 26)."""
    from medkd_bench.report.pages_by_settings import pages_for
    from medkd_bench.run.store import CellRecord

    spec = load_registry().datasets["synthetic-histo"]
    today = dict(spec.options)
    before = {**today, "n_train": 200, "teacher_train_factor": 4.5}

    def record(h: str, method: str, options: dict, finished: float) -> CellRecord:
        config = {"dataset": {"name": "synthetic-histo", "img_size": spec.img_size, "options": options,
                              "revision": spec.revision, "root": None}}
        return CellRecord(h, "synthetic-histo", "vgg19" if method != "label-only" else "", "ofa-595", method, 0,
                          "done", config, {}, {}, {}, None, 0.0, finished)

    old_kd, old_base = record("o1", "kd", before, 1.0), record("o2", "label-only", before, 2.0)
    new_base = record("n1", "label-only", today, 3.0)  # the new split's cells so far: its baseline only
    runs = {"o1": [(1, {})], "o2": [(1, {})], "n1": [(2, {})]}
    pages = pages_for("synthetic-histo", [old_kd, old_base, new_base], runs, spec)
    assert [(p.file, sorted(r.hash for r in p.records)) for p in pages] == [
        ("synthetic-histo.md", ["n1"]), (pages[1].file, ["o1", "o2"])]
    assert pages[0].settings_text == "defaults"
    assert pages[1].settings_text == ("--dataset-option synthetic-histo.n_train=200 "
                                      "--dataset-option synthetic-histo.teacher_train_factor=4.5")
    # A run given a default's value computed the default's cells: the same page.
    given = {"dataset_options": {"synthetic-histo": {"n_train": today["n_train"]}}}
    same = pages_for("synthetic-histo", [new_base, record("n2", "kd", today, 4.0)], {"n1": [(2, {})], "n2": [(3, given)]},
                     spec)
    assert [sorted(r.hash for r in p.records) for p in same] == [["n1", "n2"]] and same[0].settings_text == "defaults"


def test_provenance_toml_gives_run_the_same_options_as_the_command(tmp_path):
    """Every kind of setting a page can state: the TOML and the flags parse to the same ``run`` parameters."""
    from medkd_bench.cli.run import run
    from medkd_bench.report.experiment import command_flags, experiment_toml
    from medkd_bench.report.pages_by_settings import settings_entries
    from medkd_bench.report.provenance import _seed_entries

    settings = {"epochs": 3, "img_size": 48, "dataset_options": {"synthetic-cxr": {"n_train": 2000, "seed": 3}},
                "pretrained": True, "weights": {"ofa-595": "ab12"}, "amp": "bf16", "deterministic": True,
                "method_options": {"dkd": {"beta": 6.5, "warmup_epochs": 2.0},
                                   "cat-kd": {"normalise": False}, "fitnet": {"student_layer": "layer \"3\" é"}}}
    registry = load_registry()
    for seeds in ([2, 3, 4], [1, 4]):
        for entries in _seed_entries(seeds):
            entries = [("datasets", ["synthetic-cxr"]), ("teachers", ["vgg19", "visformer-s"]),
                       *settings_entries(settings), ("data-root", "/data/my \"cxr\""), ("explain-images", 4),
                       ("bootstrap", 300), *entries]
            path = tmp_path / "experiment.toml"
            path.write_text(experiment_toml(entries))
            by_flags = _parsed(run.make_context("run", command_flags(entries)).params, registry)
            by_file = _parsed(run.make_context("run", ["--config", str(path)]).params, registry)
            assert by_file == by_flags
            assert by_file["dataset_options"] == settings["dataset_options"]
            assert by_file["method_options"] == settings["method_options"]
            assert by_file["seed"] == (seeds[0] if len(seeds) == 3 else entries[-1][1])


def _parsed(params: dict, registry) -> dict:
    """``run``'s parameters as its body reads them: names split at commas, KEY=VALUE options parsed."""
    from medkd_bench.cli.options import parse_dataset_options, parse_method_options, split_names

    out = dict(params)
    for name in ("datasets", "teachers", "students", "methods", "explainers"):
        out[name] = split_names(params[name])
    out["dataset_options"] = parse_dataset_options(params["dataset_options"], registry)
    out["method_options"] = parse_method_options(params["method_options"], registry)
    return out


# ---- "Can these comparisons be trusted?": convergence, teacher margins, the smallest detectable gain ------------


def _right_on(labels, n_right):
    """Predictions right on the first ``n_right`` images, wrong on the rest."""
    return [y if i < n_right else (y + 1) % 3 for i, y in enumerate(labels)]


def test_trust_section_margins_detectable_gain_and_flags(tmp_path):
    """One teacher cell per dataset serving three student seeds; a teacher stopped at its cap; a tiny gain."""
    import csv

    import pytest

    from medkd_bench.evaluate import power, stats
    from medkd_bench.report import trust as trust_module

    labels = [i % 3 for i in range(120)]
    right = {0: 80, 1: 84, 2: 78}  # label-only images right, per seed
    base = {seed: _right_on(labels, n) for seed, n in right.items()}
    # vgg19's students: the baseline with its first 10 images wrong and its next 12 wrong images right (+2).
    tiny = {seed: [(y + 1) % 3 if i < 10 else p for i, (y, p) in enumerate(zip(labels, _right_on(labels, n + 12),
                                                                                  strict=True))]
            for seed, n in right.items()}
    teachers = {"visformer-s": (_right_on(labels, 110), "epoch-cap", 30, 30),
                "vgg19": (_right_on(labels, 82), "plateau", 17, 12)}
    with Store(tmp_path / "runs.sqlite") as store:
        def add(h, method, teacher, student, seed, preds, stopped, epochs_run, best_epoch, teacher_hash=None):
            cfg = {"dataset": {"img_size": 64}}
            if method == "kd":
                cfg["distill"] = {"method": "kd", "revision": "1", "options": {"temperature": 4.0, "alpha": 0.5}}
                cfg["teacher"] = teacher_hash
            store.start(h, "synthetic-cxr", teacher, student, method, seed, cfg)
            store.finish(h, {**_per_image(labels, preds), "stopped": stopped, "epochs_run": epochs_run,
                             "best_epoch": best_epoch}, {"train_s": 10.0}, {})

        for name, (preds, stopped, epochs_run, best_epoch) in teachers.items():
            add(f"t-{name}", "teacher", name, "", 0, preds, stopped, epochs_run, best_epoch)
        for seed in base:
            add(f"s{seed}", "label-only", "", "ofa-595", seed, base[seed], "plateau", 12, 9)
            add(f"kv{seed}", "kd", "visformer-s", "ofa-595", seed, _right_on(labels, 110), "plateau", 14, 10,
                "t-visformer-s")
            add(f"kg{seed}", "kd", "vgg19", "ofa-595", seed, tiny[seed], "fixed" if seed == 1 else "plateau", 12, 12,
                "t-vgg19")
        written = render_all(load_registry(), store, tmp_path / "boards", resamples=300)
    page = written[0].read_text()
    assert page.index("## Can these comparisons be trusted?") < page.index("## Teachers")
    assert "- Teachers: one per dataset (seed 0), distilled into every student seed: a fixed teacher" in page
    trust = page.split("## Can these comparisons be trusted?")[1].split("## Teachers")[0]

    # The margin is the KD-gain computation with the one teacher cell paired with every label-only seed.
    margin = stats.paired_difference(labels, [teachers["visformer-s"][0]] * 3, [base[s] for s in base], 0, 300)
    lo, hi = margin["ci"]
    assert (f"- visformer-s: not shown to have converged: hit its epoch cap while still improving (epochs run 30, "
            f"best epoch 30). Margin over the label-only ofa-595: {100 * margin['mean']:+.1f} pp "
            f"[{100 * lo:+.1f}, {100 * hi:+.1f}] (teacher seed 0 against label-only seeds 0, 1, 2). Verdict: worth "
            "distilling from: beats the label-only student, CI above zero.") in trust
    assert 0 < lo and margin["mean"] == pytest.approx((110 - (80 + 84 + 78) / 3) / 120)
    assert ("- vgg19: converged: stopped on a validation plateau (epochs run 17, best epoch 12). Margin over the "
            "label-only ofa-595: +1.1 pp [") in trust
    assert "Verdict: not shown to beat the label-only student (CI includes zero)." in trust
    assert ("- ofa-595: converged: stopped on a validation plateau (seeds 0 / 1 / 2: epochs run 12 / 12 / 12, "
            "best epoch 9 / 9 / 9). Its test accuracy per seed 66.7 / 70.0 / 65.0% (sd 2.5 pp), a spread every "
            "gain's and margin's CI counts.") in trust
    assert ("**Distilled students**: 6 cells in 2 rows; stopped: 5 on a plateau, 1 on a fixed schedule; rows flagged "
            "in the students table (not converged, or gain below detectable): 2 of 2.") in trust

    # The smallest detectable gain: pooled discordance over the six distilled cells, on one seed's 120 images.
    discordant = sum(110 - n for n in right.values()) + 3 * 22
    rate = discordant / (6 * 120)
    mde = power.detectable_difference(120, rate)
    assert mde is not None
    assert (f"With 120 test images and a discordance rate of {100 * rate:.1f}%, a gain smaller than "
            f"{100 * mde:.1f} pp cannot be told from noise (80% power, alpha 0.05) on one seed's test set, before "
            "training noise across seeds adds to it.") in trust
    # Across seeds: each row's own figure, from the t test behind its CI (seed spread and test images).
    row_mdes = sorted(trust_module.detectable_gain(stats.paired_difference(labels, [p] * 3 if p is not None else
                                                                            [tiny[s] for s in base],
                                                                            [base[s] for s in base], 0, 300))
                      for p in (_right_on(labels, 110), None))
    assert (f"runs from {100 * row_mdes[0]:.1f} pp to {100 * row_mdes[1]:.1f} pp (median "
            f"{100 * sum(row_mdes) / 2:.1f} pp); ≈ marks gains below their row's figure.") in trust
    assert "Its 95% CI is a t interval whose variance adds the spread of the per-seed gains" in trust

    teachers_table = page.split("## Teachers")[1].split("## Students")[0]
    assert "| visformer-s § | 91.7 [" in teachers_table and "| vgg19 | 68.3 [" in teachers_table
    assert "§ the teacher is not shown to have converged" in teachers_table
    students = page.split("## Students")[1].split("## Methods")[0]
    rows = {line.split(" | ")[1]: line for line in students.splitlines() if "| kd |" in line}
    assert rows["visformer-s §"].startswith("| ofa-595 | visformer-s § | kd |")  # its teacher hit the cap
    assert "≈" not in rows["visformer-s §"]  # +24 pp: far above what the test can detect
    assert rows["vgg19"].startswith("| ofa-595 § | vgg19 | kd |")  # seed 1 ran a fixed schedule
    assert re.search(r"\| \+1\.7 \[[^]]+\]≈ \|", rows["vgg19"])  # 2 of 120 images: below detectable
    assert "| ofa-595 | - | label-only |" in students
    assert "≈ the gain is smaller than the smallest gain this row's test detects with 80% power at alpha 0.05 (the t " \
        "test behind its CI, from the row's own seed spread and test set)" in students
    assert "§ beside a model's name" in students

    cells = {(r["method"], r["teacher"], r["seed"]): r for r in csv.DictReader(written[1].read_text().splitlines())}
    assert [cells[("teacher", "visformer-s", "0")][c] for c in ("stopped", "epochs_run", "detectable_gain")] == \
        ["epoch-cap", "30", ""]
    kd = cells[("kd", "visformer-s", "0")]
    assert (kd["stopped"], kd["epochs_run"]) == ("plateau", "14")
    assert float(kd["detectable_gain"]) == power.detectable_difference(120, 30 / 120)
    assert float(cells[("kd", "vgg19", "1")]["detectable_gain"]) == power.detectable_difference(120, 22 / 120)
    assert cells[("kd", "vgg19", "1")]["stopped"] == "fixed"


def test_cells_stored_before_convergence_was_recorded_read_unknown(tmp_path):
    """No ``stopped`` or ``epochs_run``: "unknown", epochs run from the history, the rows flagged, CSV fields empty."""
    import csv

    old = {"history": [{"epoch": e, "loss": 1.0, "val_accuracy": 0.5} for e in (1, 2, 3, 4)]}
    with Store(tmp_path / "runs.sqlite") as store:
        def metrics(acc):
            m = {**_metrics(acc, acc, 7.6, 0.044, 6.0), **old}
            del m["stopped"], m["epochs_run"]
            return m

        _add(store, "t1", "teacher", "visformer-s", "", metrics(0.95))
        _add(store, "s1", "label-only", "", "ofa-595", metrics(0.80))
        _add(store, "k1", "kd", "visformer-s", "ofa-595", metrics(0.85))
        written = render_all(load_registry(), store, tmp_path / "boards")
    page = written[0].read_text()
    trust = page.split("## Can these comparisons be trusted?")[1].split("## Teachers")[0]
    assert ("- visformer-s: not shown to have converged: convergence not recorded (stored before it was) "
            "(epochs run 4, best epoch 3). Margin over the label-only ofa-595: +15.0 pp. Verdict: not tested "
            "(no per-image test predictions stored).") in trust
    assert "1 cell in 1 row; stopped: 1 unrecorded" in trust
    assert "the smallest detectable gain cannot be computed" in trust
    assert "| ofa-595 § | visformer-s § | kd |" in page and "| ofa-595 § | - | label-only |" in page
    row = next(r for r in csv.DictReader(written[1].read_text().splitlines()) if r["method"] == "kd")
    assert (row["stopped"], row["epochs_run"], row["detectable_gain"]) == ("", "4", "")


def test_teacher_margin_pairs_each_label_only_seed_with_its_teacher_cell():
    """Same seed where the teacher has it (``--teacher-seeds``), else the teacher's lowest seed (trained once)."""
    from medkd_bench.evaluate import stats
    from medkd_bench.report.row_stats import RowStats
    from medkd_bench.run.store import CellRecord

    labels = [i % 3 for i in range(90)]

    def cell(method, seed, n_right):
        m = {"accuracy": n_right / 90, "test_labels": labels, "test_predictions": _right_on(labels, n_right)}
        return CellRecord(f"{method}{seed}", "synthetic-cxr", "", "", method, seed, "done", {}, m, {}, {}, None,
                          None, None)

    teacher = [cell("teacher", 1, 85), cell("teacher", 0, 80)]
    base = [cell("label-only", s, n) for s, n in ((0, 60), (1, 66), (2, 63))]
    margin = RowStats(load_registry(), resamples=200).margin(teacher, base)
    assert margin["seeds"] == [0, 1, 2] and margin["teacher_seeds"] == [0, 1, 0]
    expected = stats.paired_difference(labels, [_right_on(labels, n) for n in (80, 85, 80)],
                                       [_right_on(labels, n) for n in (60, 66, 63)], 0, 200)
    assert margin["mean"] == expected["mean"] and margin["ci"] == expected["ci"]
    assert [m["b"] for m in margin["mcnemar"]] == [20, 19, 17]


def test_a_damaged_stop_record_reads_unknown_and_falls_back_to_the_history():
    """Fault injection: a row whose stopped/epochs_run were garbled must not crash or claim convergence."""
    from medkd_bench.report.convergence import converged, epochs_run, stopped
    from medkd_bench.report.curves import UNRECORDED, curve_series
    from medkd_bench.run.store import CellRecord

    history = [{"epoch": e, "loss": 1.0, "val_accuracy": 0.5 + 0.1 * e} for e in (1, 2, 3)]
    for bad_stop, bad_epochs in (("banana", "12x"), (None, True), (7, -3), ("plateau ", 2.5)):
        m = {"stopped": bad_stop, "epochs_run": bad_epochs, "history": history, "best_epoch": 3}
        rec = CellRecord("h", "synthetic-cxr", "visformer-s", "", "teacher", 0, "done", {}, m, {}, {}, None, None, None)
        assert stopped(rec) == "unknown" and not converged([rec])
        assert epochs_run(rec) == 3  # from the history, not the damaged field
        series = curve_series(("teacher", "visformer-s", ""), [rec])
        assert series is not None and series.stops[0].reason == UNRECORDED


def test_a_student_is_flagged_when_its_teacher_was_trained_again_after_it():
    """By the recorded checkpoint digest where the cell has one; cells stored before that record, by time."""
    from medkd_bench.report.trust import taught_by_earlier_checkpoint

    def cell(method: str, metrics: dict, artifacts: dict, started: float, finished: float) -> CellRecord:
        return CellRecord(method, "synthetic-cxr", "vgg19", "ofa-595" if method != "teacher" else "", method, 0,
                          "done", {"teacher": "teacher"}, metrics, {}, artifacts, None, started, finished)

    teacher = cell("teacher", {}, {"checkpoint_sha256": "new"}, 0.0, 100.0)
    assert taught_by_earlier_checkpoint(cell("kd", {"teacher_checkpoint_sha256": "old"}, {}, 200.0, 300.0), teacher)
    assert not taught_by_earlier_checkpoint(cell("kd", {"teacher_checkpoint_sha256": "new"}, {}, 50.0, 300.0),
                                            teacher)  # the digest decides where there is one
    assert taught_by_earlier_checkpoint(cell("kd", {}, {}, 50.0, 60.0), teacher)  # started before the retraining
    assert not taught_by_earlier_checkpoint(cell("kd", {}, {}, 150.0, 160.0), teacher)
    assert taught_by_earlier_checkpoint(cell("label-only", {}, {}, 50.0, 60.0), teacher) is None
    assert taught_by_earlier_checkpoint(cell("kd", {}, {}, 50.0, 60.0), None) is None
