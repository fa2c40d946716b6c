"""Input past any sane size: one line naming the option, file or key, exit 2, before any work.

Numbers on the command line and in experiment files have upper bounds (a
``--seeds`` with twenty digits planned until the kernel killed it); TOML
nested thousands deep or with a 5000-digit number is refused before tomllib
meets it with a RecursionError or ValueError; and a file or class folder
whose name is not UTF-8 is named, not an internal UnicodeEncodeError.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import pytest
from PIL import Image

from tests.fixture_trees import grey_image
from tests.helpers import assert_one_line_error


@pytest.fixture
def no_planning(monkeypatch):
    """Fail the test if ``run`` gets as far as planning: the bound must stop it before (and, unfixed, a
    twenty-digit ``--seeds`` would plan until memory runs out instead of failing the test)."""
    import medkd_bench.run.plan

    def refuse(*args, **kwargs):
        raise AssertionError("run planned cells: the bad value was not refused before any work")

    monkeypatch.setattr(medkd_bench.run.plan, "plan", refuse)


# ---- numbers on the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--seeds", "99999999999999999999"], ["'--seeds'", "99999999999999999999", "1<=x<=100"]),
        (["--seeds", "101"], ["'--seeds'", "1<=x<=100."]),
        (["--teacher-seeds", "5000"], ["'--teacher-seeds'"]),
        (["--explain-images", "1000000"], ["'--explain-images'"]),
        (["--sanity-images", "1000000"], ["'--sanity-images'"]),
        (["--latency-runs", "100000000"], ["'--latency-runs'"]),
        (["--latency-seconds", "1e9"], ["'--latency-seconds'", "<= 3600"]),
        (["--latency-attempts", "1000"], ["'--latency-attempts'", "1<=x<=100"]),
        (["--latency-seconds", "-1"], ["'--latency-seconds'", ">= 0"]),
        (["--latency-seconds", "nan"], ["'--latency-seconds'"]),
        (["--bootstrap", "1000000000"], ["'--bootstrap'"]),
        (["--teacher-cache-mb", "1e300"], ["'--teacher-cache-mb'", "<= 1048576"]),
        (["--teacher-cache-mb", "inf"], ["'--teacher-cache-mb'"]),
        (["--temperature", "1e9"], ["'--temperature'"]),
        (["--max-retries", "1000000"], ["'--max-retries'"]),
        (["--ray-cpus", "99999999"], ["'--ray-cpus'"]),
        (["--gpus-per-cell", "1e6"], ["'--gpus-per-cell'"]),
        (["--dataset-option", "synthetic-cxr.n_train=1000000000"],
         ["--dataset-option synthetic-cxr.n_train=1000000000", "out of range (allowed: 0 .. 100000)"]),
        (["--dataset-option", "synthetic-cxr.seed=99999999999"], ["synthetic-cxr.seed", "0 .. 2147483647"]),
        (["--dataset-option", "synthetic-cxr.n_test=" + "9" * 5000], ["5000 characters, too long for a whole number"]),
    ],
    ids=lambda v: " ".join(v)[:60] if isinstance(v, list) and v and v[0].startswith("--") else "",
)
def test_numeric_run_options_have_upper_bounds(run_cli, dirs, no_planning, args, fragments):
    assert_one_line_error(run_cli(["run", *args, *dirs, "--dry-run"]), *fragments)


def test_jobs_has_an_upper_bound(run_cli, dirs):
    from medkd_bench.cli.executors import resolve_jobs
    from medkd_bench.errors import MedkdError

    for bad in ("100000", "9" * 5000):
        with pytest.raises(MedkdError, match="--jobs"):
            resolve_jobs(bad, "cpu", cells=10)


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["leaderboard", "--bootstrap", "99999999999"], ["'--bootstrap'"]),
        (["explain", "--dataset", "synthetic-cxr", "--teacher", "vgg19", "--student", "ofa-595", "--images",
          "100000000"], ["'--images'"]),
        (["student", "search", "--seed", "99999999999999999999"], ["'--seed'"]),
        (["student", "search", "--latency-ms", "nan"], ["'--latency-ms'"]),
        (["student", "search", "--population", "100000000"], ["'--population'"]),
        (["datasets", "add", "x", "--seed", "99999999999999999999"], ["'--seed'"]),
    ],
)
def test_numeric_options_of_other_commands_have_upper_bounds(run_cli, tmp_path, args, fragments):
    result = run_cli([*args, "--work-dir", str(tmp_path / "work")])
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "work").exists()


def _numeric_params(command: click.Command, path: str = ""):
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _numeric_params(sub, f"{path} {name}".strip())
        return
    from medkd_bench.cli.options import FiniteFloat

    for param in command.params:
        if isinstance(param.type, click.types.IntParamType | click.types.FloatParamType | FiniteFloat):
            yield path, param


def test_every_numeric_option_of_every_command_has_an_upper_bound():
    """Plugins' commands included: the bound is applied where commands join the group, not option by option."""
    from medkd_bench.cli.main import add_plugin_commands, cli

    add_plugin_commands()
    params = list(_numeric_params(cli))
    assert {path for path, _ in params} >= {"run", "leaderboard", "explain", "student search", "datasets add"}
    for path, param in params:
        kind = param.type
        high = kind.high if hasattr(kind, "high") else kind.max
        assert high is not None, f"{path} --{param.name}: no upper bound"


def test_a_command_added_later_gets_bounds_and_finite_floats():
    from medkd_bench.cli.options import DEFAULT_UPPER_BOUND, bound_numeric_options

    @click.group()
    def plugin_group():
        pass

    @plugin_group.command()
    @click.option("--count", type=click.IntRange(1))
    @click.option("--rate", type=float)
    @click.option("--seeds", type=int)
    @click.option("--size", type=click.IntRange(1, 10))
    def sub(count, rate, seeds, size):
        pass

    bound_numeric_options(plugin_group)
    kinds = {p.name: p.type for p in sub.params}
    assert kinds["count"].min == 1 and kinds["count"].max == DEFAULT_UPPER_BOUND
    assert kinds["seeds"].max == 100  # the table's bound for that name, on any command
    assert kinds["size"].max == 10  # an option's own bound stays
    with pytest.raises(click.BadParameter):
        kinds["rate"].convert("nan", None, None)
    assert bound_numeric_options(plugin_group) is plugin_group and sub.params[0].type is kinds["count"]


# ---- experiment files -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,fragments",
    [
        ("epochs = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n",
         [":1: arrays or inline tables nested more than 32 deep (key 'epochs')"]),
        ('datasets = "synthetic-cxr"\nteachers = ' + "[" * 5000 + "]" * 5000 + "\n",
         [":2: arrays or inline tables nested more than 32 deep (key 'teachers')"]),
        ("\n[method-options.dkd]\nbeta = " + "[" * 40 + "]" * 40 + "\n", [":3:", "(key 'beta')"]),
        ("# a comment\nepochs = " + "9" * 5000 + "\n",
         [":2: a number of 5000 characters; numbers have at most 64 (key 'epochs')"]),
        ("[dataset-options.synthetic-cxr]\nn_test = -" + "1" * 5000 + "\n", [":2:", "(key 'n_test')"]),
        ("seeds = 99999999999999999999\n", ["key 'seeds': 99999999999999999999 is not in the range 1<=x<=100."]),
        ("[dataset-options.synthetic-cxr]\nn_train = 99999999999\n",
         ["key 'dataset-options':", "out of range (allowed: 0 .. 100000)"]),
    ],
    ids=["inline-tables-5000-deep", "arrays-5000-deep", "arrays-40-deep-in-a-table", "5000-digit-integer",
         "5000-digit-negative-option", "huge-seeds", "huge-dataset-option"],
)
def test_experiment_file_past_the_limits(run_cli, dirs, tmp_path, no_planning, text, fragments):
    path = tmp_path / "experiment.toml"
    path.write_text(text, encoding="utf-8")
    result = run_cli(["run", "--config", str(path), *dirs, "--dry-run"])
    assert_one_line_error(result, str(path), *fragments)
    assert "internal error" not in result.err


def test_experiment_file_too_large(run_cli, dirs, tmp_path, no_planning):
    path = tmp_path / "big.toml"
    path.write_text("# padding\n" * 200_000, encoding="utf-8")
    assert_one_line_error(run_cli(["run", "--config", str(path), *dirs]), str(path), "too large for an experiment file")


def test_brackets_and_digits_inside_strings_and_comments_are_not_counted():
    from medkd_bench.cli.config_file import _beyond_limits

    deep, long = "[" * 100 + "{" * 100, "9" * 100
    for text in (f'teachers = "{deep}{long}"\n', f"teachers = '{deep}{long}'\n", f"# {deep} {long}\nepochs = 2\n",
                 f'teachers = """\n{deep}\\"""{long}\n"""\nepochs = 2\n', f"teachers = '''{deep}\n{long}'''\n",
                 f'a = "\\"{deep}"\n', "d = 1979-05-27T07:32:00Z\nx = [[1, 2], [3, {a = 4}]]\nh = 0xDEADBEEF\n"):
        assert _beyond_limits(text) is None, text
    assert _beyond_limits(f'a = """x\n"""\nb = {"[" * 33}') == (3, "arrays or inline tables nested more than 32 deep")
    assert _beyond_limits("x = 0x" + "F" * 70) == (1, "a number of 72 characters; numbers have at most 64")
    assert _beyond_limits("x = " + "1_" * 40) == (1, "a number of 80 characters; numbers have at most 64")


# ---- file names that are not UTF-8 -------------------------------------------------------------------------


def _bytes_names_supported(tmp_path: Path) -> bool:
    try:
        probe = os.path.join(os.fsencode(tmp_path), b"\xff-probe")
        open(probe, "wb").close()
        os.remove(probe)
    except (OSError, ValueError):
        return False
    return True


def _class_tree_bytes(root: Path, classes: list[bytes], per_class: int = 10, odd_file: bytes | None = None) -> None:
    """``root/<class>/<i>.png`` with names given as bytes (as a Linux file system takes them)."""
    for label, cls in enumerate(classes):
        folder = os.path.join(os.fsencode(root), cls)
        os.makedirs(folder)
        for i in range(per_class):
            name = odd_file if (odd_file is not None and i == 0) else b"%d.png" % i
            Image.fromarray(grey_image(label, i)).save(os.fsdecode(os.path.join(folder, name)), format="PNG")


@pytest.mark.skipif(sys.platform != "linux", reason="file names as arbitrary bytes: Linux file systems")
def test_a_class_folder_named_in_no_utf8_is_one_line(run_cli, tmp_path):
    if not _bytes_names_supported(tmp_path):
        pytest.skip("this file system refuses names that are not UTF-8")
    _class_tree_bytes(tmp_path / "imgs", [b"benign", b"malig\xffnant"])
    result = run_cli(["datasets", "add", "mine", "--folder", str(tmp_path / "imgs"),
                      "--out", str(tmp_path / "specs" / "mine.json")])
    assert_one_line_error(result, str(tmp_path.resolve() / "imgs" / "malig") + "\\xffnant",
                          "class folder name is not UTF-8 text; rename the folder")
    assert not (tmp_path / "specs").exists()


@pytest.mark.skipif(sys.platform != "linux", reason="file names as arbitrary bytes: Linux file systems")
def test_a_file_named_in_no_utf8_is_a_bad_file(run_cli, tmp_path, monkeypatch):
    if not _bytes_names_supported(tmp_path):
        pytest.skip("this file system refuses names that are not UTF-8")
    _class_tree_bytes(tmp_path / "imgs", [b"a", b"b"], odd_file=b"x\xfe.png")
    args = ["datasets", "add", "mine", "--folder", str(tmp_path / "imgs"), "--out", str(tmp_path / "specs" / "mine.json")]
    result = run_cli(args)
    odd = str(tmp_path.resolve() / "imgs" / "a" / "x") + "\\xfe.png"
    assert_one_line_error(result, odd, "file name is not UTF-8 text",
                          "--skip-bad")
    assert not (tmp_path / "specs").exists()
    # Under --skip-bad it is left out like any bad file; the dataset reads (and fingerprints) without it.
    added = run_cli([*args, "--skip-bad"])
    assert added.exit_code == 0, added.err
    assert f"2 bad file(s), first {odd}" in added.out.replace("\n", "")
    monkeypatch.setenv("MEDKD_DATASETS", str(tmp_path / "specs"))
    checked = run_cli(["datasets", "check", "mine", "--skip-bad", "--img-size", "32",
                       "--work-dir", str(tmp_path / "work")])
    assert checked.exit_code == 0, checked.err
    assert "ok: mine" in checked.out or "left out" in checked.out + checked.err
