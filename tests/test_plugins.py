"""Plugin discovery: built-ins and third parties through entry points, single files, clashes.

The only tests that read every installed entry point: the rest of the suite
loads medkd-bench's own plugins alone (``MEDKD_BENCH_LOAD_PLUGINS``, set in
``conftest.pytest_configure``).
"""

import json
import sys
import textwrap
from pathlib import Path

import pytest

from medkd_bench import MedkdError
from medkd_bench.registry import load_registry
from tests.helpers import assert_one_line_error

BUILTINS = {
    "teacher": {"vgg19", "visformer-s", "autoformer-v2-t"},
    "student": {"ofa-595"},
    "dataset": {"synthetic-cxr"},
    "explainer": {"score-cam"},
}

EXTRA_TEACHER = """
from medkd_bench import TeacherSpec, hookimpl, last_module, timm_builder

@hookimpl
def register_teachers(register):
    register(TeacherSpec(name={name!r}, build=timm_builder("resnet10t"), target_layers=last_module("layer4"),
                         citation="He et al., 2016"))
"""


@pytest.fixture(autouse=True)
def every_installed_plugin(monkeypatch):
    monkeypatch.delenv("MEDKD_BENCH_LOAD_PLUGINS", raising=False)


def test_builtins_arrive_through_entry_points():
    registry = load_registry()
    for kind, names in BUILTINS.items():
        assert names <= set(registry.specs[kind]), kind
    origins = {p.name: p.origin for p in registry.plugins}
    assert origins["vgg19"] == "entry point (medkd-bench)"


def test_no_entry_points_means_no_builtins():
    registry = load_registry(entry_points=False)
    assert not any(registry.specs.values())


def _install_fake_distribution(site: Path, module: str, body: str, ep_name: str) -> None:
    """A real installed distribution as pip lays it out: module + dist-info with entry points."""
    (site / f"{module}.py").write_text(body)
    info = site / f"{module}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[medkd_bench]\n{ep_name} = {module}\n")


def test_third_party_entry_point_is_discovered(tmp_path, monkeypatch):
    _install_fake_distribution(tmp_path, "medkd_thirdparty_demo", EXTRA_TEACHER.format(name="resnet10t"), "demo")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = load_registry()
    assert "resnet10t" in registry.teachers
    info = next(p for p in registry.plugins if p.name == "demo")
    assert info.origin == "entry point (medkd_thirdparty_demo)"
    assert info.version == "1.2.3"
    assert info.registers == {"teacher": ["resnet10t"]}
    sys.modules.pop("medkd_thirdparty_demo", None)


def test_a_package_installed_twice_contributes_only_the_copy_python_imports(tmp_path, monkeypatch):
    """An editable checkout shadowed by a venv copy: the shadowed copy's entry points are not loaded."""
    first, second = tmp_path / "venv", tmp_path / "system"
    first.mkdir()
    second.mkdir()
    _install_fake_distribution(first, "medkd_twice_demo", EXTRA_TEACHER.format(name="resnet10t"), "twice")
    _install_fake_distribution(second, "medkd_twice_demo", "", "twice")
    (second / "medkd_twice_demo-1.2.3.dist-info" / "entry_points.txt").write_text(
        "[medkd_bench]\ntwice = medkd_twice_demo\nstale = module_only_the_old_copy_had\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))  # first on sys.path: the copy Python imports
    registry = load_registry()
    assert "resnet10t" in registry.teachers
    assert "stale" not in {p.name for p in registry.plugins}
    sys.modules.pop("medkd_twice_demo", None)


def test_single_file_plugin(tmp_path):
    path = tmp_path / "my_teacher.py"
    path.write_text(EXTRA_TEACHER.format(name="resnet10t"))
    registry = load_registry([path])
    assert "resnet10t" in registry.teachers
    model = registry.teachers["resnet10t"].build(3, 32)
    assert model.fc.out_features == 3


def test_duplicate_name_names_both_plugins(tmp_path):
    path = tmp_path / "clash.py"
    path.write_text(EXTRA_TEACHER.format(name="vgg19"))
    with pytest.raises(MedkdError) as err:
        load_registry([path])
    message = str(err.value)
    assert "duplicate teacher name 'vgg19'" in message
    assert "'vgg19'" in message and f"file:{path}" in message


def test_hook_that_raises_is_named(tmp_path):
    path = tmp_path / "broken.py"
    path.write_text(textwrap.dedent("""
        from medkd_bench import hookimpl

        @hookimpl
        def register_students(register):
            raise RuntimeError("cannot find my weights")
    """))
    with pytest.raises(MedkdError, match=r"plugin 'file:.*broken.py' failed in register_students: RuntimeError"):
        load_registry([path])


def test_wrong_spec_type_is_rejected(tmp_path):
    path = tmp_path / "wrong.py"
    path.write_text(textwrap.dedent("""
        from medkd_bench import StudentSpec, hookimpl, last_module, timm_builder

        @hookimpl
        def register_teachers(register):
            register(StudentSpec(name="x", build=timm_builder("resnet10t"), target_layers=last_module("layer4")))
    """))
    with pytest.raises(MedkdError, match="expected TeacherSpec"):
        load_registry([path])


def test_missing_plugin_file():
    with pytest.raises(MedkdError, match="no such file"):
        load_registry([Path("/nonexistent/plugin.py")])


def test_plugins_command_lists_json(run_cli, tmp_path):
    path = tmp_path / "extra.py"
    path.write_text(EXTRA_TEACHER.format(name="resnet10t"))
    result = run_cli(["plugins", "--json", "--plugin", str(path)])
    assert result.exit_code == 0
    rows = {p["name"]: p for p in json.loads(result.out)}
    assert rows["ofa-595"]["registers"] == {"student": ["ofa-595"]}
    assert rows[f"file:{path}"]["registers"] == {"teacher": ["resnet10t"]}
    assert rows[f"file:{path}"]["origin"] == "file"


def test_plugins_command_table(run_cli):
    result = run_cli(["plugins"])
    assert result.exit_code == 0
    assert "synthetic-cxr" in result.out and "score-cam" in result.out


def test_a_misspelled_hook_is_an_error_naming_plugin_and_hook(run_cli, tmp_path):
    plugin = tmp_path / "typo.py"
    plugin.write_text("from medkd_bench import hookimpl\n\n@hookimpl\ndef register_teacher(register):\n    pass\n")
    result = run_cli(["plugins", "--plugin", str(plugin)])
    assert_one_line_error(result, "typo.py': unknown hook 'register_teacher'", "register_teachers")


def test_load_plugins_env_restricts_entry_points(monkeypatch):
    monkeypatch.setenv("MEDKD_BENCH_LOAD_PLUGINS", "vgg19,score-cam")
    registry = load_registry()
    assert set(registry.teachers) == {"vgg19"} and set(registry.explainers) == {"score-cam"}
    monkeypatch.setenv("MEDKD_BENCH_LOAD_PLUGINS", "")
    assert not load_registry().plugins


def test_student_search_is_a_command_the_ofa_search_plugin_adds(run_cli, monkeypatch):
    result = run_cli(["student", "search", "--help"])
    assert result.exit_code == 0 and "--latency-ms" in result.out
    monkeypatch.setenv("MEDKD_BENCH_LOAD_PLUGINS", "vgg19")  # without the plugin, no such command
    from medkd_bench.cli import cli

    cli.commands.pop("student", None)
    result = run_cli(["student", "search", "--help"])
    assert_one_line_error(result, "No such command 'student'")


@pytest.mark.parametrize(("field", "value", "allowed"), [
    ("gpu_precision", "bfloat16", "fp32, tf32, bf16, fp16"),
    ("gpu_deploy_dtype", "int8", "fp16, bf16, fp32"),
])
def test_a_gpu_choice_typo_is_refused_at_registration_on_any_machine(tmp_path, field, value, allowed):
    """Checked when the plugin registers, so a CPU-only CI catches what would fail first on a GPU."""
    path = tmp_path / "typo.py"
    path.write_text(textwrap.dedent(f"""
        from medkd_bench import TeacherSpec, hookimpl, last_module, timm_builder

        @hookimpl
        def register_teachers(register):
            register(TeacherSpec(name="x", build=timm_builder("resnet10t"), target_layers=last_module("layer4"),
                                 {field}={value!r}))
    """))
    with pytest.raises(MedkdError, match=rf"plugin 'file:.*typo.py': teacher 'x': {field} '{value}' is not one of "
                                         rf"{allowed}"):
        load_registry([path])
