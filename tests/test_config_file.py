"""``run --config experiment.toml``: the file's options, flags overriding them, and every bad file a one-line error.

Nothing here trains: the options are checked with ``--dry-run`` (the planned
cells' config hashes), and the error cases stop before any work. The TOML
writer the leaderboards' provenance uses is checked by its round trip
through tomllib.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    import tomli as tomllib

from tests.helpers import assert_one_line_error

#: Three cells (teacher, baseline, KD) on a tiny slice of synthetic-cxr.
SMALL = ["--datasets", "synthetic-cxr", "--teachers", "visformer-s", "--students", "ofa-595", "--methods", "kd",
         "--img-size", "32", "--epochs", "1", "--dataset-option", "synthetic-cxr.n_train=24",
         "--dataset-option", "synthetic-cxr.n_val=9", "--dataset-option", "synthetic-cxr.n_test=9"]
SMALL_TOML = """\
datasets = "synthetic-cxr"
teachers = ["visformer-s"]
students = "ofa-595"
methods = ["kd"]
img_size = 32
epochs = 1

[dataset-options.synthetic-cxr]
n_train = 24
n_val = 9
n_test = 9
"""


def _hashes(result) -> list[str]:
    """The config hashes a ``--dry-run`` lists, in order."""
    assert result.exit_code == 0, result.err
    return re.findall(r"\b[0-9a-f]{16}\b", result.out)


def _write(tmp_path: Path, text: str, name: str = "experiment.toml") -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---- the TOML writer ------------------------------------------------------------------------------------------


HOSTILE = ['plain', 'say "hi"', "back\\slash \\n not a newline", "tab\there\nnewline\r\n", '"""', "'''", "'",
           "\x00\x01\x1b\x7f\x08\x0c", "ünïcödé 中文 😀 \u200b \u202e", "", "# not a comment", "a = b", "[table]",
           "\\u0041", "trailing\\"]


def test_toml_writer_round_trips_through_tomllib():
    from medkd_bench.report.toml_text import dumps

    data = {
        "strings": HOSTILE,
        **{f"s{i}": s for i, s in enumerate(HOSTILE)},
        "int": 3, "negative": -7, "big": 2**62, "zero": 0,
        "floats": [0.1, 1e-05, 1e300, -2.5, 100.0, 5e-324, float("inf"), float("-inf")],
        "yes": True, "no": False, "empty": [],
        "dataset-options": {"synthetic-cxr": {"n_train": 2000, "flip": True, "name": 'x"y'},
                            "odd name.with dots": {"ключ": "значение"}},
        "method-options": {"dkd": {"beta": 8.0}},
        "weights": {"ofa-595": "C:\\weights\\ofa.pt"},
        "empty-table": {},
        "quoted key \"x\"": 1,
    }
    text = dumps(data)
    assert tomllib.loads(text) == data
    nan = tomllib.loads(dumps({"x": float("nan")}))["x"]
    assert math.isnan(nan)


def test_toml_writer_refuses_what_toml_cannot_hold():
    from medkd_bench.report.toml_text import dumps

    with pytest.raises(ValueError, match="lone surrogate"):
        dumps({"x": "\ud800"})
    with pytest.raises(TypeError, match="NoneType"):
        dumps({"x": None})


# ---- options from the file ------------------------------------------------------------------------------------


def test_config_plans_the_same_cells_as_the_flags(run_cli, dirs, tmp_path):
    by_flags = _hashes(run_cli(["run", *SMALL, *dirs, "--dry-run"]))
    assert len(by_flags) == 3
    by_file = _hashes(run_cli(["run", "--config", _write(tmp_path, SMALL_TOML), *dirs, "--dry-run"]))
    assert by_file == by_flags
    # The flags' own form works in a file too: a list of NAME.KEY=VALUE strings, underscores or dashes.
    as_strings = SMALL_TOML.split("[dataset-options")[0].replace("img_size", "img-size") + \
        'dataset_option = ["synthetic-cxr.n_train=24", "synthetic-cxr.n_val=9", "synthetic-cxr.n_test=9"]\n'
    assert _hashes(run_cli(["run", "--config", _write(tmp_path, as_strings, "b.toml"), *dirs, "--dry-run"])) \
        == by_flags
    assert not (tmp_path / "work").exists()  # a dry run writes nothing, from a file too


def test_flags_override_the_file(run_cli, dirs, tmp_path):
    config = ["--config", _write(tmp_path, SMALL_TOML), *dirs, "--dry-run"]
    # A plain option: the flag wins.
    assert _hashes(run_cli(["run", *config, "--epochs", "2"])) == \
        _hashes(run_cli(["run", *SMALL, "--epochs", "2", *dirs, "--dry-run"]))
    # A keyed option: the flag wins for its key, the file's other keys stay.
    merged = _hashes(run_cli(["run", *config, "--dataset-option", "synthetic-cxr.n_test=6"]))
    assert merged == _hashes(run_cli(["run", *SMALL, "--dataset-option", "synthetic-cxr.n_test=6", *dirs,
                                      "--dry-run"]))
    # A list: the flag's replaces the file's.
    assert len(_hashes(run_cli(["run", *config, "--teachers", "vgg19,visformer-s"]))) == 5


def test_every_run_option_has_a_key_and_the_refused_ones_exist():
    from medkd_bench.cli.config_file import NAMED_OPTIONS, NOT_IN_FILE, SPEC_OPTIONS, file_keys
    from medkd_bench.cli.run import run

    keys = file_keys(run)
    names = {p.name for p in run.params}
    assert {p.name for p in keys.values()} == names
    assert set(NOT_IN_FILE) | set(SPEC_OPTIONS) | set(NAMED_OPTIONS) <= names
    assert keys["dataset-options"].name == keys["dataset-option"].name == "dataset_options"


# ---- bad files: one line naming the file and key, exit 2, nothing written -----------------------------------


#: A file that would plan three small cells, if the case's lines did not break it.
BASE = 'datasets = "synthetic-cxr"\nteachers = "visformer-s"\nmethods = "kd"\nimg-size = 32\n'


@pytest.mark.parametrize(
    "lines,fragments",
    [
        ("epochs = = 1\n", [":5:10: not valid TOML", "(key 'epochs')"]),
        ("epochs = 1\nepochs = 2\n", [":6:", "not valid TOML", "(key 'epochs')"]),
        ("epoch = 1\n", ["unknown key 'epoch' (did you mean 'epochs'?)"]),
        ("zzz = 1\n", ["unknown key 'zzz'"]),
        ("dry-run = true\n", ["key 'dry-run': not allowed in an experiment file", "pass --dry-run on the command line"]),
        ("config = 'other.toml'\n", ["key 'config': not allowed in an experiment file"]),
        ("img_size = 64\n", ["keys 'img-size' and 'img_size' are the same option"]),
        ("epochs = 0\n", ["key 'epochs': 0 is not in the range 1<=x<=10000"]),
        ("epochs = 1.5\n", ["key 'epochs': expected a whole number, got 1.5 (a float)"]),
        ("epochs = true\n", ["key 'epochs': expected a whole number, got True (a boolean)"]),
        ("epochs = '3'\n", ["key 'epochs': expected a whole number, got '3' (a string)"]),
        ("alpha = 1.5\n", ["key 'alpha':", "1.5 is out of range"]),
        ("temperature = 'hot'\n", ["key 'temperature': expected a number"]),
        ("deterministic = 'yes'\n", ["key 'deterministic': expected true or false"]),
        ("students = 3\n", ["key 'students': expected a list of strings or a comma-separated string, got 3"]),
        ("students = ['ofa-595', 2]\n", ["key 'students': expected a list of strings"]),
        ("students = ['tiny']\n", ["key 'students': unknown student(s) 'tiny' in --students"]),
        ("data-root = 5\n", ["key 'data-root': expected a string, got 5 (an integer)"]),
        ("device = 'tpu'\n", ["key 'device':", "--device tpu"]),
        ("dataset-options = 3\n", ["key 'dataset-options': expected a table"]),
        ("[dataset-options]\nsynthetic-cxr = 5\n", ["key 'dataset-options.synthetic-cxr': expected a table"]),
        ("[dataset-options.synthetic-cxr]\nn_train = [1]\n",
         ["key 'dataset-options.synthetic-cxr.n_train': expected a string, number or boolean, got a list"]),
        ("[dataset-options.synthetic-cxr]\nn_tran = 5\n",
         ["key 'dataset-options':", "dataset 'synthetic-cxr' has no option 'n_tran'"]),
        ("[dataset-options.synthetic-cxr]\nn_train = 2.5\n", ["key 'dataset-options':", "expected a whole number"]),
        ("[dataset-options.no-such-data]\nn_train = 2\n", ["key 'dataset-options':", "unknown dataset 'no-such-data'"]),
        ("[method-options.dkd]\nbeta = 'big'\n", ["key 'method-options':", "dkd.beta=big: expected a number"]),
        ("[weights]\nofa-595 = 3\n", ["key 'weights.ofa-595': expected a path (a string), got 3"]),
        ("[weights]\nofa-595 = '/no/such.safetensors'\n", ["key 'weights':", "no such file"]),
    ],
)
def test_bad_experiment_file(run_cli, dirs, tmp_path, lines, fragments):
    path = _write(tmp_path, BASE + lines)
    assert_one_line_error(run_cli(["run", "--config", path, *dirs]), path, *fragments)
    assert not (tmp_path / "work").exists() and not (tmp_path / "boards").exists()


def test_unreadable_experiment_files(run_cli, dirs, tmp_path):
    missing = str(tmp_path / "none.toml")
    assert_one_line_error(run_cli(["run", "--config", missing, *dirs]), missing, "cannot read the experiment file")
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('teachers = "vgg19 é"\n'.encode("latin-1"))
    assert_one_line_error(run_cli(["run", "--config", str(latin1), *dirs]), str(latin1), "not a UTF-8 text file")


def test_a_bad_flag_next_to_a_file_names_the_flag_not_the_file(run_cli, dirs, tmp_path):
    """The file's keyed options merge with the flag's: an error names whichever of the two gave the bad value."""
    path = _write(tmp_path, SMALL_TOML)
    result = run_cli(["run", "--config", path, "--dataset-option", "synthetic-cxr.n_tran=5", *dirs])
    assert_one_line_error(result, "--dataset-option synthetic-cxr.n_tran=5")
    assert path not in result.err
    result = run_cli(["run", "--config", path, "--epochs", "0", *dirs])
    assert_one_line_error(result, "--epochs")
    assert path not in result.err
    bad = _write(tmp_path, SMALL_TOML.replace("n_test", "n_tst"), "bad.toml")
    assert_one_line_error(run_cli(["run", "--config", bad, "--dataset-option", "synthetic-cxr.n_val=4", *dirs]),
                          f"{bad}: key 'dataset-options': --dataset-option synthetic-cxr.n_tst=9")


def test_medkd_data_beats_the_files_data_root(run_cli, dirs, tmp_path, monkeypatch):
    """Where the data lies is the machine's business: the environment variable wins over the experiment file."""
    path = _write(tmp_path, 'data-root = "/no/such/root"\ndatasets = "lc25000"\n')
    monkeypatch.delenv("MEDKD_DATA", raising=False)
    assert_one_line_error(run_cli(["run", "--config", path, *dirs, "--dry-run"]),
                          f"{path}: key 'data-root':", "--data-root /no/such/root is not a folder")
    (tmp_path / "env").mkdir()
    monkeypatch.setenv("MEDKD_DATA", str(tmp_path / "env"))
    result = run_cli(["run", "--config", path, *dirs, "--dry-run"])
    assert_one_line_error(result, f"--data-root {tmp_path / 'env'}")
    assert path not in result.err
