"""Opt-in local weights, read safely from files the tests write."""

import pytest
import torch
from safetensors.torch import save_file

from medkd_bench import MedkdError
from medkd_bench.models.weights import load_weights_file
from medkd_bench.registry import load_registry
from medkd_bench.run.store import Store
from tests.helpers import QUICK


@pytest.fixture(scope="module")
def ofa_spec():
    return load_registry().students["ofa-595"]


def _same(a: torch.nn.Module, b: torch.nn.Module, skip: str = "classifier") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith(skip))


def test_safetensors_file_loads_and_head_of_other_size_is_kept_fresh(tmp_path, ofa_spec):
    source = ofa_spec.build(1000, 64)  # an "ImageNet" checkpoint
    path = tmp_path / "ofa.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    target = ofa_spec.build(3, 64)
    report = load_weights_file(target, path)
    assert _same(source, target)
    assert report.skipped_shape == ["classifier.linear.bias", "classifier.linear.weight"]


def test_torch_checkpoint_nested_state_dict_loads_with_weights_only(tmp_path, ofa_spec):
    source = ofa_spec.build(3, 64)
    path = tmp_path / "ofa.pth"
    torch.save({"epoch": 7, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = ofa_spec.build(3, 64)
    load_weights_file(target, path)
    assert _same(source, target, skip="\0")


def test_pickled_code_is_refused(tmp_path, ofa_spec):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": ofa_spec.build(3, 64).state_dict(), "hook": print}, path)
    with pytest.raises(MedkdError, match=r"evil.pth: holds Python objects besides tensors"):
        load_weights_file(ofa_spec.build(3, 64), path)


def test_weights_for_another_architecture_are_refused(tmp_path, ofa_spec):
    path = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(8, 3, 3, 3)}, str(path))
    with pytest.raises(MedkdError, match="other.safetensors: only 0% of the model's values match"):
        load_weights_file(ofa_spec.build(3, 64), path)


def test_run_with_weights_starts_from_the_file_and_changes_the_hash(run_cli, dirs, quick_run, ofa_spec):
    path = quick_run / "ofa.safetensors"
    save_file({k: v.contiguous() for k, v in ofa_spec.build(3, 32).state_dict().items()}, str(path))
    result = run_cli([*QUICK, *dirs, "--weights", f"ofa-595={path}", "--explainers", "grad-cam"])
    assert result.exit_code == 0
    assert "2 trained, 1 already done" in result.out
    with Store(quick_run / "work" / "runs.sqlite") as store:
        inits = {c.config["model"]["init"] for c in store.cells() if c.method != "teacher"}
    assert "random" in inits and any(i.startswith("file:") for i in inits)
