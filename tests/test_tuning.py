"""``run --tune N``: equal budgets per arm, chosen on validation only, resumable, reproducible without tuning."""

from __future__ import annotations

import re
import shlex
import sqlite3
from pathlib import Path

import pytest

from medkd_bench.errors import MedkdError
from medkd_bench.registry import load_registry
from medkd_bench.run.store import Store
from medkd_bench.specs import Choice, LogUniform, MethodSpec, Uniform
from medkd_bench.tune.session import arms_of
from medkd_bench.tune.space import check_space, contains
from tests.helpers import QUICK, TINY_DATA, assert_one_line_error, plugin_fixture

TUNE = [*QUICK, "--tune", "3"]
ARMS = {"synthetic-cxr//ofa-595/label-only", "synthetic-cxr/visformer-s/ofa-595/kd"}


def _trials(work: Path) -> list[tuple]:
    with sqlite3.connect(work / "runs.sqlite") as db:
        return db.execute("SELECT arm, number, params, state, value FROM trials ORDER BY arm, number").fetchall()


def _dirs(root: Path) -> list[str]:
    return ["--work-dir", str(root / "work"), "--leaderboard-dir", str(root / "boards")]


# ---- the contract -----------------------------------------------------------------------------------------------


def test_every_builtin_method_declares_a_space_holding_its_paper_default():
    registry = load_registry()
    for name in ("kd", "dkd", "fitnet", "at", "cat-kd"):
        spec = registry.methods[name]
        assert spec.search_space, name
        for key, param in spec.search_space.items():
            assert contains(param, spec.options[key]), (name, key)


@pytest.mark.parametrize("space, says", [
    ({"nope": Uniform(0, 1)}, "'nope' is not one of its options"),
    ({"w": LogUniform(0.0, 10.0)}, "low end must be > 0"),
    ({"w": Uniform(5.0, 1.0)}, "finite low < high"),
    ({"w": LogUniform(10.0, 100.0)}, "does not contain the default 1.0"),
    ({"w": Choice(())}, "offers no values"),
])
def test_a_bad_search_space_is_refused_at_registration(space, says):
    spec = MethodSpec(name="m", build=lambda ctx: None, options={"w": 1.0}, search_space=space)
    with pytest.raises(MedkdError, match=re.escape(says)):
        check_space("p", spec)


# ---- tuning a matrix --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory) -> Path:
    from tests.helpers import run_main

    root = tmp_path_factory.mktemp("tuned")
    assert run_main([*TUNE, *_dirs(root)]) == 0
    return root


def test_every_arm_and_the_baseline_get_exactly_n_trials(tuned_run):
    trials = _trials(tuned_run / "work")
    by_arm: dict[str, list[int]] = {}
    for arm, number, *_ in trials:
        by_arm.setdefault(arm, []).append(number)
    assert by_arm == {arm: [0, 1, 2] for arm in ARMS}
    page = (tuned_run / "boards" / "synthetic-cxr.md").read_text()
    tuning = page.split("## Tuning")[1].split("## Teachers")[0]
    assert "same budget of 3 trials" in tuning
    assert "| student ofa-595 (labels only) | 3 (" in tuning and "| visformer-s -> ofa-595 (kd) | 3 (" in tuning
    assert "student rows tuned, 3 trials per arm" in page
    import csv

    with open(tuned_run / "boards" / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert {r["method"]: r["tuned"] for r in rows} == {"teacher": "False", "label-only": "True", "kd": "True"}
    assert {r["tune_trials"] for r in rows if r["method"] != "teacher"} == {"3"}


def test_the_first_trial_is_the_default_and_trials_are_recorded_with_their_points(tuned_run):
    import json

    trials = _trials(tuned_run / "work")
    first = {arm: json.loads(params) for arm, number, params, *_ in trials if number == 0}
    assert first["synthetic-cxr/visformer-s/ofa-595/kd"] == {"alpha": 0.5, "temperature": 4.0, "train.lr": 0.002}
    assert first["synthetic-cxr//ofa-595/label-only"] == {"train.label_smoothing": 0.0, "train.lr": 0.002}
    assert all(state in ("complete", "pruned", "failed") for *_, state, _ in trials)
    with Store(tuned_run / "work" / "runs.sqlite", readonly=True) as store:  # what a trial cost, for tune_cost.py
        assert all(t.record["cpu_seconds"] > 0 and t.record["seconds"] > 0 for t in store.trials())


def test_tune_cost_compares_every_arms_trials_with_its_final_cell_in_cpu_seconds(tuned_run):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tune_cost.py"
    out = subprocess.run([sys.executable, str(script), "--store", str(tuned_run / "work" / "runs.sqlite")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    lines = {line.split()[0]: line.split() for line in out.splitlines()[1:-1]}
    assert set(lines) == ARMS and all(row[1] == "3" and float(row[-1]) > 0 for row in lines.values())
    assert re.fullmatch(r"all arms with a final cell: tuning \d+ CPU s = \d+\.\d\dx their final cells' \d+ CPU s "
                        r"at the tuning seed; \d+\.\d\dx the 2 final student cells of every seed \(\d+ CPU s, what an "
                        r"untuned run of the matrix trains\)", out.splitlines()[-1])


def test_the_pages_command_and_toml_reproduce_the_tuned_cells_without_tuning(run_cli, tuned_run):
    page = (tuned_run / "boards" / "synthetic-cxr.md").read_text()
    provenance = page.split("## Provenance")[1]
    hashes = re.findall(r"\| `([0-9a-f]{16})` \|", provenance)
    assert len(hashes) == 3
    (command,) = [line for line in page.splitlines() if line.startswith("medkd-bench run")]
    assert "--tune " not in command and command.count("--tuned-option") == 5
    work = ["--work-dir", str(tuned_run / "work"), "--dry-run"]
    by_flags = run_cli([*shlex.split(command)[1:], *work])
    assert by_flags.exit_code == 0, by_flags.err
    assert sorted(re.findall(r"\b[0-9a-f]{16}\b", by_flags.out)) == sorted(hashes)
    assert by_flags.out.count("done") == 3
    (toml,) = re.findall(r"```toml\n(.*?)```", provenance, flags=re.S)
    experiment = tuned_run / "experiment.toml"
    experiment.write_text(toml)
    by_file = run_cli(["run", "--config", str(experiment), *work])
    assert by_file.exit_code == 0, by_file.err
    assert sorted(re.findall(r"\b[0-9a-f]{16}\b", by_file.out)) == sorted(hashes)


@pytest.fixture(scope="module")
def tuned_and_default(tuned_run, tmp_path_factory) -> Path:
    """The tuned run's store, then the same matrix with the paper defaults in it (kd's tuned cell is another)."""
    import shutil

    from tests.helpers import run_main

    root = tmp_path_factory.mktemp("both")
    shutil.copytree(tuned_run / "work", root / "work")
    assert run_main([*QUICK, *_dirs(root)]) == 0
    return root


def test_tune_cost_takes_each_arms_chosen_final_cell_not_its_paper_default_cell(tuned_and_default):
    """The default cell is trial 0's point too: with the untuned matrix in the store, kd's ratio was taken
    against its paper-default cell."""
    import subprocess
    import sys

    work = tuned_and_default / "work"
    with Store(work / "runs.sqlite", readonly=True) as store:
        runs = store.run_settings()
        kd = {c.hash: c for c in store.cells(status="done") if c.method == "kd"}
    assert len(kd) == 2
    (tuned_kd,) = [c for h, c in kd.items() if any(s.get("tuned") for _, s in runs[h])]
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "tune_cost.py"
    out = subprocess.run([sys.executable, str(script), "--store", str(work / "runs.sqlite")],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    (row,) = [line.split() for line in out.splitlines() if line.startswith("synthetic-cxr/visformer-s/ofa-595/kd ")]
    assert float(row[5]) == pytest.approx(tuned_kd.timings["total_cpu_s"], abs=0.05)


def test_default_and_tuned_pages_put_each_methods_two_gains_and_ranks_side_by_side(tuned_and_default):
    """Tuned cells get a page of their own (their settings differ), so "does tuning change which method wins?"
    needs both rankings in one table: each page shows it, links the other, and quotes both pages' own gains."""
    boards = tuned_and_default / "boards"
    default = (boards / "synthetic-cxr.md").read_text()  # the most recent run's settings: the main page
    (tuned_file,) = [p.name for p in boards.glob("synthetic-cxr.*.md")]
    tuned = (boards / tuned_file).read_text()
    settings = {name: page.split("- Settings: ")[1].split(" (every row")[0] for name, page in (("default", default),
                                                                                              ("tuned", tuned))}
    assert "student rows tuned" in settings["tuned"] and "tuned" not in settings["default"]

    def students_gain(page: str) -> str:
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in page.split("## Students")[1].splitlines()
                if line.startswith("| ofa-595")]  # student and teacher may carry trust marks (§)
        (gain,) = [cols[6] for cols in rows if cols[2] == "kd"]
        return gain.rstrip("≈")

    def accuracy(page: str, method: str) -> float:
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in page.split("## Students")[1].splitlines()
                if line.startswith("| ofa-595")]
        (acc,) = [float(cols[3].split(" ")[0]) for cols in rows if cols[2] == method]
        return acc

    for page, other in ((default, tuned_file), (tuned, "synthetic-cxr.md")):
        section = page.split("## Paper defaults against tuning")[1].split("## Per-class F1")[0]
        assert f"]({other})" in section
        (row,) = [line for line in section.splitlines() if line.startswith("| visformer-s | kd |")]
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[2:6] == [students_gain(default), "1", students_gain(tuned), "1"]
        effect = float(cells[6].split(" ")[0])  # tuned minus paper-default kd, paired by seed and image
        assert effect == pytest.approx(accuracy(tuned, "kd") - accuracy(default, "kd"), abs=0.15)  # each rounded to 0.1
        assert "- From visformer-s" not in section  # one method: no winner to name
    glance = {name: page.split("## At a glance")[1].split("Accuracies in percent")[0]
              for name, page in (("default", default), ("tuned", tuned))}
    assert (f"- [The same students tuned (`--tune 3`)]({tuned_file}): see [Paper defaults against tuning]"
            "(#paper-defaults-against-tuning)." in glance["default"])
    assert "- [The same students with each paper's default options](synthetic-cxr.md): see" in glance["tuned"]


def test_the_side_by_side_ranks_methods_per_teacher_and_names_each_way_s_winner_among_methods_run_both_ways():
    """Tuning can reorder the methods; a method run one way only gets no winner's line against the other."""
    from medkd_bench.report.tuned_vs_default import Side, comparison, glance_line

    def side(acc: dict) -> Side:
        base = acc[("label-only", "", "s")]
        return Side(list(acc), acc.__getitem__,
                    {k: {"mean": v - base} for k, v in acc.items() if k[0] != "label-only"},
                    {k: {"accuracy": {"mean": v, "ci": (v - 0.02, v + 0.02)}} for k, v in acc.items()})

    default = side({("label-only", "", "s"): 0.60, ("kd", "a", "s"): 0.62, ("dkd", "a", "s"): 0.55,
                    ("fitnet", "a", "s"): 0.70, ("kd", "b", "s"): 0.61, ("dkd", "b", "s"): 0.64})
    tuned = side({("label-only", "", "s"): 0.63, ("kd", "a", "s"): 0.70, ("dkd", "a", "s"): 0.72,
                  ("fitnet", "a", "s"): 0.69, ("kd", "b", "s"): 0.66})
    (s,) = comparison(default, tuned, lambda key: {"mean": tuned.accuracy(key) - default.accuracy(key)}
                      if key in tuned.keys and key in default.keys else None)
    assert s["baseline"] == {"default": "60.0 [58.0, 62.0]", "tuned": "63.0 [61.0, 65.0]"}
    rows = [(r["teacher"], r["method"], r["default"]["rank"], r["tuned"]["rank"]) for r in s["rows"]]
    assert rows == [("a", "dkd", "3", "1"), ("a", "kd", "2", "2"), ("a", "fitnet", "1", "3"),
                    ("b", "kd", "2", "1"), ("b", "dkd", "1", "-")]
    assert s["rows"][0]["default"]["gain"].startswith("-5.0") and s["rows"][0]["tuned"]["gain"].startswith("+9.0")
    assert [r["effect"] for r in s["rows"]] == ["+17.0", "+8.0", "-1.0", "+5.0", "-"]
    assert s["baseline_effect"] == "+3.0"
    assert s["best"] == [{"teacher": "a", "n": 3, "default": "fitnet", "tuned": "dkd", "same": False}]
    line = glance_line({"students": [s], "other": "x.1234.md", "here_tuned": False, "trials": 8})
    assert line == ("[The same students tuned (`--tune 8`)](x.1234.md); tuning changed the most accurate method for 1 "
                    "of 1 teacher: see [Paper defaults against tuning](#paper-defaults-against-tuning).")


def _plan_rows(out: str) -> dict[str, tuple[str, str]]:
    """``--dry-run``'s table: (hash, status) by the cell's kind (one seed, one teacher, so unique).

    A row's label wraps onto lines whose other columns are empty; a row starts where the hash column is not.
    """
    rows: list[list[str]] = []
    for line in out.splitlines():
        cols = [c.strip() for c in line.split("│")[1:-1]]
        if len(cols) != 3:
            continue
        if cols[1]:
            rows.append(cols)
        elif rows:
            rows[-1][0] += " " + cols[0]
    kinds = {"teacher": "| teacher ", "kd": "(kd)", "labels only": "(labels only)"}
    return {kind: (h, status) for label, h, status in rows for kind, mark in kinds.items() if mark in label}


def test_a_dry_run_of_a_tuned_run_shows_the_final_cells_of_tuned_arms_and_not_the_untuned_ones(run_cli, tuned_run,
                                                                                              tmp_path):
    """``--dry-run --tune N`` showed the untuned cells' hashes and statuses (on the reference store: 35 'checkpoint
    missing' cells the tuned run would never train); an arm's options are known once its N trials are stored."""
    import shutil

    with Store(tuned_run / "work" / "runs.sqlite", readonly=True) as store:
        done = {c.hash for c in store.cells(status="done")}
    plan = run_cli([*TUNE, *_dirs(tuned_run), "--dry-run"])
    assert plan.exit_code == 0, plan.err
    rows = _plan_rows(plan.out)
    assert set(rows) == {"teacher", "kd", "labels only"} and all(h in done and st == "done" for h, st in rows.values())
    assert "0 of 3 cells would train" in plan.out and "2 arms, 2 of them tuned already" in plan.out

    shutil.copytree(tuned_run / "work", tmp_path / "work")  # the kd arm's last trial not run yet
    with sqlite3.connect(tmp_path / "work" / "runs.sqlite") as db:
        db.execute("DELETE FROM trials WHERE arm LIKE '%/kd' AND number = 2")
    plan = run_cli([*TUNE, *_dirs(tmp_path), "--dry-run"])
    assert plan.exit_code == 0, plan.err
    partial = _plan_rows(plan.out)
    assert partial["kd"] == ("-", "after tuning") and partial["labels only"] == rows["labels only"]
    assert "0 of 2 cells would train; 1 more are hashed after tuning" in plan.out
    assert "2 arms, 1 of them tuned already" in plan.out


def _tuner_inputs(tuned_run: Path, tmp_path: Path):
    """A runner over a copy of ``tuned_run``'s work dir (its teacher trained) with its trials removed, and its cells.

    The options are the ones ``run`` builds from ``TUNE``, so the hashes (and the studies' keys) are the same.
    """
    import shutil

    from medkd_bench.cli.options import parse_dataset_options
    from medkd_bench.run.computer import CellComputer
    from medkd_bench.run.executors.worker import absolute_paths
    from medkd_bench.run.plan import plan
    from medkd_bench.run.run_options import RunOptions
    from medkd_bench.run.runner import MatrixRunner
    from medkd_bench.run.store import Store
    from medkd_bench.runtime.device import resolve_runtime

    shutil.copytree(tuned_run / "work", tmp_path / "work")
    with sqlite3.connect(tmp_path / "work" / "runs.sqlite") as db:
        db.execute("DELETE FROM trials")
    registry = load_registry()
    dataset_options = [TUNE[i + 1] for i, a in enumerate(TUNE) if a == "--dataset-option"]
    options = absolute_paths(RunOptions(
        work_dir=tmp_path / "work", leaderboard_dir=tmp_path / "boards", img_size=32, epochs=1, latency_runs=3, latency_seconds=0,
        dataset_options=parse_dataset_options(dataset_options, registry), explain_images=3, sanity_images=2))
    store = Store(tmp_path / "work" / "runs.sqlite")
    runner = MatrixRunner(CellComputer(registry, options, resolve_runtime("auto", "auto", False)), store)
    cells = plan(registry, "quick", ["visformer-s"], [], [], 0)
    teacher = next(c for c in cells if c.method == "teacher")
    assert store.is_done(runner.computer.hash(teacher))  # the CLI's teacher (untuned: its hash is the same), not retrained
    return runner, cells


def test_tuning_never_reads_the_test_split(tuned_run, tmp_path, monkeypatch):
    """Test labels replaced by garbage: the same trials, the same values, the same choices."""
    import medkd_bench.run.computer as computer
    from medkd_bench.tune.session import tune_matrix

    real = computer.prepare

    def garbled(*args, **kwargs):
        data = real(*args, **kwargs)
        test = data.splits["test"]
        test.labels.copy_((test.labels + 1) % data.num_classes)  # every test label wrong
        return data

    monkeypatch.setattr(computer, "prepare", garbled)
    runner, cells = _tuner_inputs(tuned_run, tmp_path)
    tune_matrix(runner, cells, None, 3, 0)
    assert runner.computer.data("synthetic-cxr").splits["test"].labels.tolist() != []  # the garbled data was used
    runner.store.close()
    assert _trials(tmp_path / "work") == _trials(tuned_run / "work")


def test_an_interrupted_tuning_resumes_without_repeating_finished_trials(tuned_run, tmp_path, monkeypatch):
    import medkd_bench.tune.study as study
    from medkd_bench.tune.session import tune_matrix

    real = study.run_trial
    calls = {"n": 0, "interrupt_at": 5}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["interrupt_at"]:  # the kd arm's second trial (the baseline's 3 come first)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study, "run_trial", interrupted)
    runner, cells = _tuner_inputs(tuned_run, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        tune_matrix(runner, cells, None, 3, 0)
    assert len(_trials(tmp_path / "work")) == 4  # the baseline's 3 trials and the kd arm's first
    calls.update(n=0, interrupt_at=-1)
    results = tune_matrix(runner, cells, None, 3, 0)
    assert calls["n"] == 2  # the kd arm's last two trials, nothing repeated
    runner.store.close()
    assert _trials(tmp_path / "work") == _trials(tuned_run / "work")  # and what an uninterrupted run chose
    assert [r.arm.key for r in results.tuned] == [a.key for a in arms_of(cells)] and results.died == {}


@pytest.mark.slow
def test_a_worker_dying_while_tuning_stops_the_run_before_any_final_cell_and_keeps_the_trials(run_cli, dirs, tmp_path):
    """``--jobs 2``: arms tune side by side in the pool, each trial stored by the driver as it ends. The kernel's
    out-of-memory killer, as a method whose loss ends its process: the other arms finish their trials, and no final
    cell trains, since an arm left at its default would not be tuned like the rest. Run again (here without the
    method that kills), the pool's workers replay the stored trials instead of training them again."""
    matrix = ["--datasets", "synthetic-cxr", "--teachers", "visformer-s", "--students", "ofa-595", "--explainers",
              "grad-cam", *TINY_DATA, "--jobs", "2", "--tune", "1", *dirs]
    result = run_cli(["run", "--plugin", plugin_fixture("dying_method"), "--methods", "kd,dies", *matrix])
    assert result.exit_code == 1, result.out + result.err
    assert ("tuning synthetic-cxr/visformer-s/ofa-595/dies: worker process died running its trials (exit code 3; "
            in result.err) and "its finished trials are kept: run again to resume" in result.err
    assert "Traceback" not in result.err
    by_arm: dict[str, list[int]] = {}
    for arm, number, *_ in _trials(tmp_path / "work"):
        by_arm.setdefault(arm, []).append(number)
    assert by_arm == {"synthetic-cxr//ofa-595/label-only": [0], "synthetic-cxr/visformer-s/ofa-595/kd": [0]}
    with Store(tmp_path / "work" / "runs.sqlite", readonly=True) as store:
        assert [c.method for c in store.cells()] == ["teacher"]  # tuning's teacher; no student cell
    trials = _trials(tmp_path / "work")

    again = run_cli(["run", "--methods", "kd", *matrix])
    assert again.exit_code == 0, again.out + again.err
    assert "2 at a time in worker processes" in again.out and "trial 1/1" not in again.out  # replayed, not trained
    assert _trials(tmp_path / "work") == trials
    with Store(tmp_path / "work" / "runs.sqlite", readonly=True) as store:
        assert sorted(c.method for c in store.cells(status="done")) == ["kd", "label-only", "teacher"]


@pytest.mark.slow
def test_the_cli_stops_an_interrupted_tuning_with_130_and_keeps_its_trials(run_cli, tmp_path, monkeypatch):
    import medkd_bench.tune.study as study

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(study, "run_trial", interrupted)
    result = run_cli([*TUNE, "--epochs", "1", *_dirs(tmp_path)])
    assert result.exit_code == 130


@pytest.mark.parametrize("flag, says", [
    ("synthetic-cxr/visformer-s/ofa-595/kd.temperature=99", "is not a number in 1 .. 16"),
    ("synthetic-cxr/visformer-s/ofa-595/kd.beta=2", "'beta' is not tuned for this arm"),
    ("synthetic-cxr/visformer-s/ofa-595/label-only.train.lr=0.001", "the label-only baseline has no teacher"),
    ("synthetic-cxr/nope/ofa-595/kd.alpha=0.5", "nope"),
    ("synthetic-cxr/visformer-s/ofa-595/kd", "expected DATASET/TEACHER/STUDENT/METHOD.KEY=VALUE"),
])
def test_a_bad_tuned_option_is_one_line_before_any_work(run_cli, dirs, tmp_path, flag, says):
    result = run_cli([*QUICK, "--tuned-option", flag, *dirs])
    line = assert_one_line_error(result, says)
    assert line.startswith("error: --tuned-option"), line
    assert not (tmp_path / "work").exists()


def test_plugins_show_lists_a_methods_options_ranges_and_search_space(run_cli):
    import json

    shown = run_cli(["plugins", "show", "dkd"])
    assert shown.exit_code == 0, shown.err
    assert "--method-option dkd.KEY=VALUE" in shown.out and "log-uniform 0.5 .. 16" in shown.out
    assert "0.01 .. 100" in shown.out and "learning rate" in shown.out
    (spec,) = json.loads(run_cli(["plugins", "show", "dkd", "--json"]).out)
    beta = next(o for o in spec["options"] if o["name"] == "beta")
    assert beta == {"name": "beta", "default": 8.0, "allowed": "0 .. inf", "tuned": "log-uniform 0.5 .. 16"}
    typo = run_cli(["plugins", "show", "dkdd"])
    assert_one_line_error(typo, "did you mean dkd")
    assert run_cli(["plugins"]).exit_code == 0  # the listing without a subcommand stays


@pytest.mark.parametrize(("n_train", "batch", "cap"), [(200, 16, 75), (2000, 16, 75), (40, 16, 144)])
def test_a_trials_cap_leaves_room_for_the_plateau_rule_counted_in_steps(n_train, batch, cap):
    """A trial must be able to reach a plateau: its cap covers ``min_epochs`` plus the patience as the run counts it.

    40 images in batches of 16 are 3 steps an epoch, so 400 steps of patience are 134 epochs (144 with the 10
    before a plateau may be declared): a cap of half the final 150 (75) would end every trial before any plateau.
    """
    from medkd_bench.specs import TrainSettings
    from medkd_bench.tune.trial import trial_settings

    settings = TrainSettings(epochs=150, batch_size=batch, patience=8, patience_steps=400, min_epochs=10)
    assert trial_settings(settings, n_train).epochs == cap
    fixed = settings.replace(early_stopping=False, epochs=4)
    assert trial_settings(fixed, n_train) == fixed
