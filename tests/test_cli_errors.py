"""Bad input: one line naming the culprit, exit code 2, nothing half-written."""


import pytest

from tests.helpers import TINY_DATA, plugin_fixture


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.out + result.err
    lines = [line for line in result.err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "Traceback" not in result.err
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["--teachers", "vgg91"], ["unknown teacher(s) 'vgg91' in --teachers", "vgg19"]),
        (["--students", "tiny"], ["unknown student(s) 'tiny'"]),
        (["--datasets", "covid"], ["unknown dataset(s) 'covid'"]),
        (["--matrix", "huge"], ["unknown --matrix 'huge'", "full, quick"]),
        (["--dataset-option", "synthetic-cxr.n_tran=5"], ["--dataset-option synthetic-cxr.n_tran=5", "dataset 'synthetic-cxr' has no option 'n_tran'"]),
        (["--dataset-option", "nodot=5"], ["expected DATASET.KEY=VALUE"]),
        (["--weights", "ofa-595=/no/such.safetensors"], ["no such file"]),
        (["--explainers", "lime"], ["unknown explainer 'lime'"]),
        (["--device", "tpu"], ["--device tpu"]),
        (["--alpha", "1.5"], ["--alpha"]),
    ],
)
def test_bad_run_options(run_cli, dirs, args, fragments):
    _one_line_error(run_cli(["run", *TINY_DATA, *dirs, *args]), *fragments)


def test_unwritable_work_dir(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli(["run", *TINY_DATA, "--work-dir", str(blocker / "sub"), "--leaderboard-dir", str(tmp_path)])
    _one_line_error(result, "--work-dir", str(blocker / "sub"), "not writable")


def test_unwritable_leaderboard_dir_fails_before_training(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli(["run", *TINY_DATA, "--work-dir", str(tmp_path / "w"), "--leaderboard-dir", str(blocker)])
    _one_line_error(result, "--leaderboard-dir", "not writable")
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_plugin_hook_that_raises(run_cli, dirs, tmp_path):
    _one_line_error(run_cli(["run", "--plugin", plugin_fixture("raising_hook"), *dirs]),
                    "plugin 'file:", "raising_hook.py' failed in register_datasets: ValueError: no data here")


def test_plugin_file_with_syntax_error(run_cli, tmp_path):
    plugin = tmp_path / "syntax.py"
    plugin.write_text("def broken(:\n")
    _one_line_error(run_cli(["plugins", "--plugin", str(plugin)]), "syntax.py: failed to import: SyntaxError")


def test_leaderboard_without_store(run_cli, tmp_path):
    _one_line_error(run_cli(["leaderboard", "--work-dir", str(tmp_path / "none")]), "no run store at")


def test_run_defaults_match_the_run_options_provenance_compares_with():
    """The reproduce command leaves out settings equal to these defaults: they must agree."""
    from medkd_bench.cli.run import run
    from medkd_bench.run.options import RunOptions

    defaults = {p.name: p.default for p in run.params}
    assert defaults["explain_images"] == RunOptions.explain_images
    assert defaults["sanity_images"] == RunOptions.sanity_images
    assert defaults["latency_runs"] == RunOptions.latency_runs
