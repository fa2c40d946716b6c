"""Conformance kit: the checks a plugin's own tests call to prove it honours the contract.

The host only trusts what it can check: a spec that builds, runs forward at
the image sizes the benchmark uses, exposes a target layer a CAM can hook,
and can be costed by fvcore; a dataset whose splits are what the trainer
slices; an explainer whose maps the panels and agreement metrics can use; a
distillation method whose loss is finite and differentiable on both teacher paths.
Each check builds the real components (timm, grad-cam, fvcore) on tiny
inputs and fails with an :class:`AssertionError` that names the spec and the
broken rule, so a contributor sees what to fix before running the matrix.

Import it from ``medkd_bench.testing`` (it is deliberately not re-exported by
``medkd_bench``, so the CLI does not pay for it at start-up)::

    from medkd_bench.testing import check_teacher_spec, registry_of

    def test_conformance():
        check_teacher_spec(registry_of("plugins/teachers/my_teacher.py").teachers["my-teacher"])
"""

from medkd_bench.testing.common import NAME_PATTERN, installed_registry, registry_of
from medkd_bench.testing.datasets import check_dataset_spec
from medkd_bench.testing.explainers import check_explainer_spec
from medkd_bench.testing.methods import check_method_spec
from medkd_bench.testing.models import check_student_spec, check_teacher_spec

__all__ = [
    "NAME_PATTERN",
    "check_dataset_spec",
    "check_explainer_spec",
    "check_method_spec",
    "check_student_spec",
    "check_teacher_spec",
    "installed_registry",
    "registry_of",
]
