"""Bad input: one line naming the culprit, exit code 2, nothing half-written."""


import pytest

from tests.helpers import TINY_DATA, assert_one_line_error, plugin_fixture


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
    assert_one_line_error(run_cli(["run", *TINY_DATA, *dirs, *args]), *fragments)


#: An "unknown name" line stays short whatever is installed: a few names, never the 55 registered datasets.
SHORT = 200


@pytest.mark.parametrize(
    "args,fragments",
    [
        (["run", "--teachers", "vgg-19"], ["unknown teacher(s) 'vgg-19' in --teachers (did you mean vgg19?)"]),
        (["run", "--students", "ofa595"], ["unknown student(s) 'ofa595' in --students (did you mean ofa-595?)"]),
        (["run", "--datasets", "my-xary"], ["unknown dataset(s) 'my-xary' in --datasets (did you mean my-xray?)"]),
        (["run", "--datasets", "zzzz"], ["unknown dataset(s) 'zzzz' in --datasets (registered: ", " more; "
                                         "`medkd-bench plugins` lists them)"]),
        (["run", "--methods", "dkdd"], ["unknown method(s) 'dkdd' in --methods (did you mean dkd"]),
        (["run", "--explainers", "scorecam"], ["unknown explainer 'scorecam' in --explainers (did you mean score-cam?)"]),
        (["run", "--method-option", "dkdd.beta=2"], ["--method-option dkdd.beta=2: unknown method 'dkdd' (did you mean dkd"]),
        (["run", "--dataset-option", "synthetic-cxr.n_tran=5"], ["has no option 'n_tran' (did you mean 'n_train'?"]),
        (["explain", "--dataset", "synthetic-cxr", "--teacher", "vgg-19", "--student", "ofa-595"],
         ["unknown teacher 'vgg-19' in --teacher (did you mean vgg19?)"]),
        (["datasets", "check", "my-xary"], ["unknown dataset 'my-xary' (did you mean my-xray?)"]),
        (["plugins", "show", "scorecam"], ["(did you mean score-cam?)"]),
    ],
)
def test_unknown_names_are_one_short_line_with_did_you_mean(run_cli, tmp_path, args, fragments):
    """The issue's `--teachers vgg-19` and `--datasets my-xary` (a typo of a dataset added in the work dir)."""
    from PIL import Image

    from tests.fixture_trees import grey_image

    for label, cls in enumerate(("a", "b")):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(grey_image(label, i)).save(tmp_path / "imgs" / cls / f"{i}.png")
    work = ["--work-dir", str(tmp_path / "work")]
    assert run_cli(["datasets", "add", "my-xray", "--folder", str(tmp_path / "imgs"), "--val", "0.25",
                    "--test", "0.25", *work]).exit_code == 0
    # run and explain get a leaderboard dir of their own: the default, leaderboards/, is the checkout's.
    boards = ["--leaderboard-dir", str(tmp_path / "boards")] if args[0] in ("run", "explain") else []
    result = run_cli([*args, *work, *boards])
    assert_one_line_error(result, *fragments)
    assert len(result.err.strip()) < SHORT, result.err


def test_an_unknown_explainer_writes_nothing(run_cli, dirs, tmp_path):
    """Bad input is refused before anything is written: no owner file in the leaderboard dir, no store."""
    result = run_cli(["run", "--explainers", "scorecam", *TINY_DATA, *dirs])
    assert_one_line_error(result, "unknown explainer 'scorecam'")
    assert not (tmp_path / "boards").exists() and not (tmp_path / "work").exists()


def test_unwritable_work_dir(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli(["run", *TINY_DATA, "--work-dir", str(blocker / "sub"), "--leaderboard-dir", str(tmp_path)])
    assert_one_line_error(result, "--work-dir", str(blocker / "sub"), "not writable")


def test_unwritable_leaderboard_dir_fails_before_training(run_cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = run_cli(["run", *TINY_DATA, "--work-dir", str(tmp_path / "w"), "--leaderboard-dir", str(blocker)])
    assert_one_line_error(result, "--leaderboard-dir", "not writable")
    assert not (tmp_path / "w" / "checkpoints").exists()


def test_plugin_hook_that_raises(run_cli, dirs, tmp_path):
    assert_one_line_error(run_cli(["run", "--plugin", plugin_fixture("raising_hook"), *dirs]),
                          "plugin 'file:", "raising_hook.py' failed in register_datasets: ValueError: no data here")


def test_plugin_file_with_syntax_error(run_cli, tmp_path):
    plugin = tmp_path / "syntax.py"
    plugin.write_text("def broken(:\n")
    assert_one_line_error(run_cli(["plugins", "--plugin", str(plugin)]), "syntax.py: failed to import: SyntaxError")


def test_leaderboard_without_store(run_cli, tmp_path):
    assert_one_line_error(run_cli(["leaderboard", "--work-dir", str(tmp_path / "none")]), "no run store at")


def test_run_defaults_match_the_run_options_provenance_compares_with():
    """The reproduce command leaves out settings equal to these defaults: they must agree."""
    from medkd_bench.cli.run import run
    from medkd_bench.run.run_options import RunOptions

    defaults = {p.name: p.default for p in run.params}
    assert defaults["explain_images"] == RunOptions.explain_images
    assert defaults["sanity_images"] == RunOptions.sanity_images
    assert defaults["latency_runs"] == RunOptions.latency_runs
    assert defaults["latency_seconds"] == RunOptions.latency_seconds
    assert defaults["latency_attempts"] == RunOptions.latency_attempts
