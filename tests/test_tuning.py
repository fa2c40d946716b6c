"""``run --tune N``: equal budgets per arm, chosen on validation only, resumable, reproducible without tuning."""

from __future__ import annotations

import re
import shlex
import sqlite3
from pathlib import Path

import pytest

from medkd_bench.errors import MedkdError
from medkd_bench.registry import load_registry
from medkd_bench.specs import Choice, LogUniform, MethodSpec, Uniform
from medkd_bench.tune.space import check_space, contains
from tests.helpers import QUICK

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
    assert "| ofa-595 (labels only) | 3 (" in tuning and "| visformer-s -> ofa-595 (kd) | 3 (" in tuning
    assert "student rows tuned, 3 trials per arm" in page
    csv = (tuned_run / "boards" / "results.csv").read_text().splitlines()
    header = csv[0].split(",")
    rows = [dict(zip(header, line.split(","), strict=True)) for line in csv[1:]]
    assert {r["method"]: r["tuned"] for r in rows} == {"teacher": "false", "label-only": "true", "kd": "true"}
    assert {r["tune_trials"] for r in rows if r["method"] != "teacher"} == {"3"}


def test_the_first_trial_is_the_default_and_trials_are_recorded_with_their_points(tuned_run):
    import json

    trials = _trials(tuned_run / "work")
    first = {arm: json.loads(params) for arm, number, params, *_ in trials if number == 0}
    assert first["synthetic-cxr/visformer-s/ofa-595/kd"] == {"alpha": 0.5, "temperature": 4.0, "train.lr": 0.002}
    assert first["synthetic-cxr//ofa-595/label-only"] == {"train.label_smoothing": 0.0, "train.lr": 0.002}
    assert all(state in ("complete", "pruned", "failed") for *_, state, _ in trials)


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


def test_tuning_never_reads_the_test_split(tuned_run, tmp_path, monkeypatch):
    """Test labels replaced by garbage: the same trials, the same values, the same choices."""
    import medkd_bench.run.computer as computer
    from tests.helpers import run_main

    real = computer.prepare

    def garbled(*args, **kwargs):
        data = real(*args, **kwargs)
        test = data.splits["test"]
        test.labels.copy_((test.labels + 1) % data.num_classes)  # every test label wrong
        return data

    monkeypatch.setattr(computer, "prepare", garbled)
    assert run_main([*TUNE, *_dirs(tmp_path)]) == 0
    assert _trials(tmp_path / "work") == _trials(tuned_run / "work")


def test_an_interrupted_tuning_resumes_without_repeating_finished_trials(tuned_run, tmp_path, monkeypatch):
    import medkd_bench.tune.study as study
    from tests.helpers import run_main

    real = study.run_trial
    calls = {"n": 0, "interrupt_at": 5}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == calls["interrupt_at"]:  # the kd arm's second trial (the baseline's 3 come first)
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study, "run_trial", interrupted)
    assert run_main([*TUNE, *_dirs(tmp_path)]) == 130
    assert len(_trials(tmp_path / "work")) == 4  # the baseline's 3 trials and the kd arm's first
    calls.update(n=0, interrupt_at=-1)
    assert run_main([*TUNE, *_dirs(tmp_path)]) == 0
    assert calls["n"] == 2  # the kd arm's last two trials, nothing repeated
    assert _trials(tmp_path / "work") == _trials(tuned_run / "work")  # and what an uninterrupted run chose


@pytest.mark.parametrize("flag, says", [
    ("synthetic-cxr/visformer-s/ofa-595/kd.temperature=99", "is not a number in 1 .. 16"),
    ("synthetic-cxr/visformer-s/ofa-595/kd.beta=2", "'beta' is not tuned for this arm"),
    ("synthetic-cxr/visformer-s/ofa-595/label-only.train.lr=0.001", "the label-only baseline has no teacher"),
    ("synthetic-cxr/nope/ofa-595/kd.alpha=0.5", "nope"),
    ("synthetic-cxr/visformer-s/ofa-595/kd", "expected DATASET/TEACHER/STUDENT/METHOD.KEY=VALUE"),
])
def test_a_bad_tuned_option_is_one_line_before_any_work(run_cli, dirs, tmp_path, flag, says):
    result = run_cli([*QUICK, "--tuned-option", flag, *dirs])
    assert result.exit_code == 2
    assert result.err.strip().startswith("error: --tuned-option") and says in result.err
    assert len(result.err.strip().splitlines()) == 1
    assert not (tmp_path / "work").exists()
