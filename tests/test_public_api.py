"""The public API (``medkd_bench/__init__.py``): every name resolves, lazily, to what type checkers see."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import medkd_bench

INIT = Path(medkd_bench.__file__)


def _type_checking_imports() -> dict[str, str]:
    """name -> module, from the ``if TYPE_CHECKING:`` block that type checkers and IDEs read."""
    tree = ast.parse(INIT.read_text())
    block = next(node for node in tree.body if isinstance(node, ast.If)
                 and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
    return {alias.name: node.module for node in block.body if isinstance(node, ast.ImportFrom)
            for alias in node.names}


def test_the_names_type_checkers_see_are_the_names_imported_at_run_time():
    assert _type_checking_imports() == medkd_bench._MODULE_OF
    assert sorted(medkd_bench.__all__) == sorted(medkd_bench._MODULE_OF)


@pytest.mark.parametrize("name", sorted(medkd_bench._MODULE_OF))
def test_every_public_name_is_its_module_s_object(name):
    module = importlib.import_module(medkd_bench._MODULE_OF[name])
    assert getattr(medkd_bench, name) is getattr(module, name)
    assert name in dir(medkd_bench)


def test_an_unknown_name_is_an_attribute_error_naming_it():
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        medkd_bench.no_such_name  # noqa: B018
    with pytest.raises(ImportError, match="no_such_name"):
        exec("from medkd_bench import no_such_name", {})


def test_importing_the_package_or_the_console_entry_does_not_import_torch():
    """Why the names are imported on first use: ``medkd_bench.entry`` installs the Ctrl-C handler
    before the seconds torch takes to import (tests/test_interrupts.py has the signal test)."""
    code = "import sys, medkd_bench.entry; print(sorted(m for m in ('torch', 'numpy', 'click') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
