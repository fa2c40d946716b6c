"""The plugin contract (``medkd_bench.specs``): declared layer options, the one name rule, method search spaces.

Fast checks on specs and registration alone: nothing here trains.
"""

from __future__ import annotations

import textwrap

import pytest
from torch import nn

from medkd_bench import Choice, LogUniform, MethodSpec, Uniform
from medkd_bench.distill.taps import layer_choices
from medkd_bench.errors import MedkdError
from medkd_bench.registry import load_registry


def _method_plugin(tmp_path, spec_source: str):
    path = tmp_path / "method_plugin.py"
    path.write_text(textwrap.dedent(f"""
        from torch import nn
        from medkd_bench import Choice, LogUniform, MethodSpec, Uniform, hookimpl

        @hookimpl
        def register_methods(register):
            register({spec_source})
    """))
    return path


def _one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


# ---- declared layer options ------------------------------------------------------------------------


def test_declared_layer_options_are_what_the_host_reads():
    spec = MethodSpec(name="hints", build=lambda ctx: nn.Identity(), needs=("features",),
                      options={"hint_layer": "layer2", "student_layer": "layer1"},
                      layer_options={"teacher": "hint_layer"})
    # student_layer is an ordinary option here: only declared options name layers.
    assert layer_choices(spec, spec.options) == {"student": (None, "target"), "teacher": ("hint_layer", "layer2")}
    assert layer_choices(spec, {**spec.options, "hint_layer": "layer3"})["teacher"] == ("hint_layer", "layer3")


def test_without_declared_layer_options_the_conventional_names_are_read_where_present():
    spec = MethodSpec(name="old-style", build=lambda ctx: nn.Identity(), options={"teacher_layer": "stage3"})
    assert layer_choices(spec, spec.options) == {"student": (None, "target"), "teacher": ("teacher_layer", "stage3")}
    plain = MethodSpec(name="logits", build=lambda ctx: nn.Identity())
    assert layer_choices(plain, {}) == {"student": (None, "target"), "teacher": (None, "target")}


def test_builtin_feature_methods_declare_their_layer_options():
    registry = load_registry()
    for name in ("fitnet", "at"):
        assert registry.methods[name].layer_options == {"student": "student_layer", "teacher": "teacher_layer"}


@pytest.mark.parametrize(("layer_options", "options", "message"), [
    ("{'teacher': 'hint_layer'}", "{}", "layer option 'hint_layer' (teacher) must be one of its options"),
    ("{'teacher': 'hint_layer'}", "{'hint_layer': 3}", "layer option 'hint_layer' (teacher) must be one of its"),
    ("{'assistant': 'a_layer'}", "{'a_layer': 'target'}", "layer_options role 'assistant' is not one of student"),
])
def test_a_bad_layer_option_declaration_fails_registration_in_one_line(tmp_path, layer_options, options, message):
    path = _method_plugin(tmp_path, f"MethodSpec(name='hints', build=lambda ctx: nn.Identity(), "
                                    f"options={options}, layer_options={layer_options})")
    with pytest.raises(MedkdError) as exc:
        load_registry([path], entry_points=False)
    assert f"plugin 'file:{path}': method 'hints': {message}" in _one_line(exc)


# ---- one name rule ---------------------------------------------------------------------------------

NAMES = ["resnet34", "my-teacher", "ofa-cpu-2p5ms", "a", "x" * 64,  # allowed
         "a_b", "a.b", "My-Net", "3net", "a--b", "-a", "a-", "a b", "../x", "a\n", "x" * 65, ""]  # refused


def _teacher_plugin(tmp_path, name: str):
    path = tmp_path / "named_teacher.py"
    path.write_text(textwrap.dedent(f"""
        from medkd_bench import TeacherSpec, hookimpl, last_module, timm_builder

        @hookimpl
        def register_teachers(register):
            register(TeacherSpec(name={name!r}, build=timm_builder("resnet10t"),
                                 target_layers=last_module("layer3"), citation="x"))
    """))
    return path


@pytest.mark.parametrize("name", NAMES)
def test_registration_and_the_conformance_kit_apply_one_name_rule(tmp_path, name):
    """A name registers exactly when the kit's name check passes it, so ``a_b`` cannot register and then fail."""
    from types import SimpleNamespace

    from medkd_bench.testing.common import check_identity

    path = _teacher_plugin(tmp_path, name)
    try:
        registered = name in load_registry([path], entry_points=False).teachers
    except MedkdError as exc:
        registered = False
        assert "\n" not in str(exc)
        assert str(exc).startswith(f"plugin 'file:{path}': teacher name {name!r} is not allowed (names are")
    try:
        check_identity(SimpleNamespace(name=name, citation="x"))
        kit_passes = True
    except AssertionError as exc:
        kit_passes = False
        assert f"name {name!r} is not allowed" in str(exc)
    assert registered == kit_passes == (NAMES.index(name) < 5)


@pytest.mark.parametrize("name", NAMES)
def test_searched_students_and_added_datasets_apply_the_same_rule(name):
    from medkd_bench.nas.spec_files import check_name as student_name
    from medkd_bench.specs import NAME_RULE, check_name
    from medkd_bench.testing import NAME_PATTERN

    allowed = NAMES.index(name) < 5
    assert NAME_PATTERN is NAME_RULE
    for check in (lambda: student_name(name), lambda: check_name("dataset", name)):
        if allowed:
            assert check() == name
        else:
            with pytest.raises(MedkdError, match="is not allowed"):
                check()


def test_datasets_add_refuses_a_name_in_one_line_before_reading_anything(run_cli, tmp_path):
    result = run_cli(["datasets", "add", "chest_xray", "--folder", str(tmp_path / "missing"),
                      "--work-dir", str(tmp_path / "w")])
    assert result.exit_code == 2 and len(result.err.strip().splitlines()) == 1
    assert "dataset name 'chest_xray' is not allowed (names are lowercase slugs" in result.err
    assert not (tmp_path / "w").exists()


# ---- method search spaces in the conformance kit ---------------------------------------------------


def _kd_like(**changes) -> MethodSpec:
    fields = dict(name="my-kd", build=lambda ctx: nn.Identity(), citation="Hinton et al., 2015",
                  options={"temperature": 4.0, "alpha": 0.5, "layer": "target"},
                  option_ranges={"temperature": (0.01, 100.0), "alpha": (0.0, 1.0)},
                  search_space={"temperature": LogUniform(1.0, 16.0), "alpha": Uniform(0.0, 0.9)})
    return MethodSpec(**{**fields, **changes})


@pytest.mark.parametrize(("changes", "message"), [
    ({"search_space": {"temperature": LogUniform(8.0, 16.0)}}, "does not contain the default 4.0"),
    ({"search_space": {"temperature": LogUniform(16.0, 1.0)}}, "needs finite low < high"),
    ({"search_space": {"temperature": LogUniform(0.0, 16.0)}}, "its low end must be > 0"),
    ({"search_space": {"alpha": Uniform(0.0, 2.0)}}, "'alpha' reaches 2.0, outside the option's range 0 .. 1"),
    ({"search_space": {"alpha": Choice(())}}, "'alpha' offers no values"),
    ({"search_space": {"beta": Uniform(0.0, 1.0)}}, "'beta' is not one of its options"),
    ({"layer_options": {"student": "nope"}}, "layer option 'nope' (student) must be one of its options"),
    ({"needs": ("logits",)}, "needs 'logits'"),
])
def test_the_conformance_kit_checks_a_methods_declared_search_space_and_layer_options(changes, message):
    """What registration refuses, the kit refuses too (before building any model), naming the method."""
    from medkd_bench.testing import check_method_spec

    with pytest.raises(AssertionError) as exc:
        check_method_spec(_kd_like(**changes))
    assert "method 'my-kd'" in str(exc.value) and message in str(exc.value)


def test_every_builtin_methods_declaration_passes_the_kits_checks():
    from medkd_bench.registry import check_method_declaration

    for spec in [*load_registry().methods.values(), _kd_like()]:
        check_method_declaration(spec)
