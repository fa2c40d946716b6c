"""Input past any sane size: one line naming the option, file or key, exit 2, before any work.

Numbers on the command line and in experiment files have upper bounds (a
``--seeds`` with twenty digits planned until the kernel killed it); TOML
nested thousands deep or with a 5000-digit number is refused before tomllib
meets it with a RecursionError or ValueError; and a file or class folder
whose name is not UTF-8 is named, not an internal UnicodeEncodeError.
"""

from __future__ import annotations

import click
import pytest

from tests.test_cli_errors import _one_line_error


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
        (["--seeds", "99999999999999999999"], ["'--seeds'", "99999999999999999999", "1<=x<=1000"]),
        (["--seeds", "1001"], ["'--seeds'", "1<=x<=1000"]),
        (["--teacher-seeds", "5000"], ["'--teacher-seeds'"]),
        (["--explain-images", "1000000"], ["'--explain-images'"]),
        (["--sanity-images", "1000000"], ["'--sanity-images'"]),
        (["--latency-runs", "100000000"], ["'--latency-runs'"]),
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
    _one_line_error(run_cli(["run", *args, *dirs, "--dry-run"]), *fragments)


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
    _one_line_error(result, *fragments)
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
    assert kinds["seeds"].max == 1000  # the table's bound for that name, on any command
    assert kinds["size"].max == 10  # an option's own bound stays
    with pytest.raises(click.BadParameter):
        kinds["rate"].convert("nan", None, None)
    assert bound_numeric_options(plugin_group) is plugin_group and sub.params[0].type is kinds["count"]
