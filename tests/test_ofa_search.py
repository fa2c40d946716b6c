"""Hardware-aware students: the OFA supernet search, its spec files and the ``ofa-search`` plugin.

Everything is real: the ofa supernet, fvcore counts, wall-clock timings on this machine, JSON files
on disk, and a tiny matrix run. Searches are tiny (a handful of subnets, 32 px) and share one
cost lookup table, so only the first one times and counts the supernet's parts.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from medkd_bench.errors import MedkdError
from medkd_bench.evaluate.cost import count_gmacs, measure_latency
from medkd_bench.nas.cost_table import LUT_FILE, CostTable
from medkd_bench.nas.evolution import Budget, SearchSettings, search
from medkd_bench.nas.space import SMALLEST, build_subnet, build_supernet
from medkd_bench.nas.spec_files import read_searched_student, spec_document, write_spec
from medkd_bench.registry import load_registry
from medkd_bench.runtime.device import resolve_runtime
from medkd_bench.testing import check_student_spec
from tests.helpers import TINY_DATA, assert_one_line_error, table_row

IMG = 32
TINY_SEARCH = SearchSettings(population=6, generations=2, verify_runs=7)
CPU = resolve_runtime("cpu", "off")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: on a shared two-core machine, two threads contend and timings balloon."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shared_lut(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("lut") / LUT_FILE


def _smallest_latency() -> float:
    return measure_latency(build_subnet(SMALLEST, 3), IMG, CPU, warmup=3, runs=7)["latency_ms"]


def _latency_search(shared_lut: Path):
    """A search under 3x the smallest subnet's latency (loose, but not "anything goes"), with its budget.

    Timed on a machine the other test process shares: session 32's CI measured the smallest subnet at
    about 5 ms, then at 15.35 ms inside the search a moment later, which the search rightly refused as
    a budget below its smallest subnet. That refusal is retried once with the budget measured again;
    any other failure, or a second refusal, fails the test.
    """
    for attempt in range(2):
        budget = Budget("latency_ms", 3.0 * _smallest_latency())
        try:
            return search(budget, CPU, IMG, lut_path=shared_lut, opts=TINY_SEARCH), budget
        except MedkdError as exc:
            if attempt or "even the smallest subnet" not in str(exc):
                raise
    raise AssertionError("unreachable")


def test_latency_search_meets_the_budget_and_reuses_the_table(shared_lut):
    result, budget = _latency_search(shared_lut)
    assert result.latency_ms <= budget.value and result.within_budget()
    assert result.parts_timed > 0 and shared_lut.is_file()
    # The result is what the supernet builds for those settings, and fvcore agrees with the table's sum.
    model = build_subnet(result.settings, 3)
    assert count_gmacs(model, IMG) == pytest.approx(result.gmacs, rel=1e-9)
    assert result.predicted.macs == pytest.approx(result.gmacs * 1e9, rel=1e-9)
    # The table on disk prices every part of the pick without timing anything again ...
    cached = CostTable(shared_lut, CPU, IMG)
    assert cached.predict(result.settings).latency_ms == pytest.approx(result.predicted.latency_ms)
    assert cached.measured == 0
    # ... so a second search times only parts it had not met (the calibration can move the frontier).
    again = search(budget, CPU, IMG, lut_path=shared_lut, opts=TINY_SEARCH)
    assert again.parts_timed < result.parts_timed and again.latency_ms <= budget.value
    table = json.loads(shared_lut.read_text())
    assert any(key.startswith(result.machine) for key in table["latency_ms"])


def test_gmacs_search_meets_the_budget_and_prefers_capacity(shared_lut):
    budget = Budget("gmacs", 0.012)
    result = search(budget, CPU, IMG, lut_path=shared_lut, opts=TINY_SEARCH)
    counted = count_gmacs(build_subnet(result.settings, 3), IMG)  # independent fvcore count
    assert counted <= budget.value and counted == pytest.approx(result.gmacs, rel=1e-9)
    smallest = count_gmacs(build_subnet(SMALLEST, 3), IMG)
    assert result.gmacs > smallest  # the objective is capacity: it does not settle for the smallest
    # A loose budget takes the whole supernet, which the evolution starts from when it fits.
    loose = search(Budget("gmacs", 1.0), CPU, IMG, lut_path=shared_lut, opts=TINY_SEARCH)
    assert set(loose.settings.d) == {4} and set(loose.settings.ks) == {7} and set(loose.settings.e) == {6}


def test_a_budget_below_the_smallest_subnet_is_one_clear_error(shared_lut):
    with pytest.raises(MedkdError, match=r"--gmacs 0.0001: even the smallest subnet .* measures"):
        search(Budget("gmacs", 0.0001), CPU, IMG, lut_path=shared_lut, opts=TINY_SEARCH)


def test_cost_table_parts_sum_to_the_whole_model(shared_lut):
    table = CostTable(shared_lut, CPU, IMG)
    for settings in (SMALLEST, SubnetLike.ofa_595()):
        model = build_subnet(settings, 3)
        predicted = table.predict(settings, latency=False)
        assert predicted.macs == pytest.approx(count_gmacs(model, IMG) * 1e9, rel=1e-9)
        assert predicted.params == sum(p.numel() for p in model.parameters())


class SubnetLike:
    """OFA-595's settings, which the plugin builds too: the searched space contains the paper's student."""

    @staticmethod
    def ofa_595():
        from medkd_bench.nas.space import SubnetSettings
        from medkd_bench_plugins.students import ofa_595

        return SubnetSettings(tuple(ofa_595.KERNEL_SIZES), tuple(ofa_595.EXPAND_RATIOS), tuple(ofa_595.DEPTHS))


def test_searched_space_contains_ofa_595():
    from medkd_bench_plugins.students import ofa_595

    ours = build_subnet(SubnetLike.ofa_595(), 3)
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in ofa_595.build_ofa_595(3, 64).parameters())


# ---- spec files and the plugin ------------------------------------------------------------------

def _search_cli(run_cli, work: Path, shared_lut: Path, *extra: str):
    work.mkdir(parents=True, exist_ok=True)
    if shared_lut.is_file():
        shutil.copy(shared_lut, work / LUT_FILE)
    return run_cli(["student", "search", "--gmacs", "0.012", "--img-size", str(IMG), "--population", "6",
                    "--generations", "2", "--repeats", "5", "--work-dir", str(work), *extra])


@pytest.mark.slow
def test_spec_file_round_trips_into_a_student_that_trains(run_cli, tmp_path, shared_lut):
    work = tmp_path / "work"
    result = _search_cli(run_cli, work, shared_lut)
    assert result.exit_code == 0, result.err
    spec_file = work / "students" / "ofa-12mmacs.json"
    doc = json.loads(spec_file.read_text())
    assert doc["budget"] == {"kind": "gmacs", "value": 0.012}
    assert doc["measured"]["gmacs"] <= 0.012 and doc["img_size"] == IMG and doc["machine"]
    assert len(doc["subnet"]["ks"]) == 20 and len(doc["subnet"]["d"]) == 5
    # Written into the work dir's students/: every command given that --work-dir registers it.
    assert f"registered as student ofa-12mmacs for commands given --work-dir {work}" in result.out
    assert "ofa-12mmacs" not in load_registry().students
    registry = load_registry(work_dir=work)
    spec = registry.students["ofa-12mmacs"]
    assert registry.owners[("student", "ofa-12mmacs")] == "ofa-search"
    assert "0.012 GMACs" in spec.description and "ofa-595" in registry.students
    model = spec.build(3, IMG)
    assert count_gmacs(model, IMG) == pytest.approx(doc["measured"]["gmacs"], rel=1e-9)
    check_student_spec(spec, num_classes=(3,), img_sizes=(IMG,))

    boards = tmp_path / "boards"
    run = run_cli(["run", "--matrix", "quick", "--teachers", "visformer-s", "--students", "ofa-12mmacs",
                   "--explainers", "grad-cam", *TINY_DATA, "--work-dir", str(work), "--leaderboard-dir", str(boards)])
    assert run.exit_code == 0, run.out + run.err
    assert "3 trained" in run.out
    board = (boards / "synthetic-cxr.md").read_text()
    assert table_row(board, "## Students", ["ofa-12mmacs", "visformer-s", "kd"]) is not None
    assert "**ofa-12mmacs**: OFA MobileNetV3 subnet searched for 0.012 GMACs" in board

    # Editing the file's settings changes the student's revision, so cells are not reused.
    doc["subnet"]["e"] = [6 if x == 3 else x for x in doc["subnet"]["e"]]
    spec_file.write_text(json.dumps(doc))
    assert load_registry(work_dir=work).students["ofa-12mmacs"].revision != spec.revision
    dry = run_cli(["run", "--matrix", "quick", "--teachers", "visformer-s", "--students", "ofa-12mmacs",
                   *TINY_DATA, "--work-dir", str(work), "--leaderboard-dir", str(boards), "--dry-run"])
    assert dry.out.count("new") == 2 and dry.out.count("done") == 1  # only the teacher is reused


def _doc(**changes):
    doc = {"format": "medkd-bench/ofa-student", "version": 1, "name": "ofa-test",
           "subnet": {"ks": [3] * 20, "e": [3] * 20, "d": [2] * 5, "width_mult": 1.2},
           "budget": {"kind": "latency_ms", "value": 5.0}, "img_size": 32,
           "measured": {"latency_ms": 4.0, "gmacs": 0.006, "params_m": 3.07, "num_classes": 3}}
    doc.update(changes)
    return doc


@pytest.mark.parametrize(("text", "match"), [
    ("{not json", "not valid JSON"),
    (json.dumps(_doc(format="something-else")), "not a medkd-bench OFA student"),
    (json.dumps(_doc(subnet={"ks": [9] * 20, "e": [3] * 20, "d": [2] * 5, "width_mult": 1.2})), "ks must be 20"),
    (json.dumps(_doc(subnet={"ks": [3] * 20, "e": [3] * 20, "width_mult": 1.2})), "subnet needs ks, e, d"),
    (json.dumps(_doc(name="Bad Name")), "student name 'Bad Name' is not allowed"),
    (json.dumps(_doc(budget={"kind": "watts", "value": 3})), "budget needs kind"),
])
def test_bad_spec_file_is_one_line_naming_it(run_cli, tmp_path, monkeypatch, text, match):
    bad = tmp_path / "students" / "broken.json"
    bad.parent.mkdir()
    bad.write_text(text)
    monkeypatch.setenv("MEDKD_STUDENTS", str(bad.parent))
    result = run_cli(["plugins"])
    assert_one_line_error(result, str(bad), match)


def test_two_files_with_one_name_and_missing_paths_are_errors(run_cli, tmp_path, monkeypatch):
    for stem in ("a", "b"):
        (tmp_path / f"{stem}.json").write_text(json.dumps(_doc()))
    monkeypatch.setenv("MEDKD_STUDENTS", str(tmp_path))
    with pytest.raises(MedkdError, match=r"a\.json and .*b\.json both name 'ofa-test'"):
        load_registry()
    monkeypatch.setenv("MEDKD_STUDENTS", str(tmp_path / "nowhere"))
    with pytest.raises(MedkdError, match=r"MEDKD_STUDENTS entry .*nowhere: no such file or folder"):
        load_registry()
    (tmp_path / "b.json").unlink()
    monkeypatch.setenv("MEDKD_STUDENTS", str(tmp_path / "a.json"))
    assert "ofa-test" in load_registry().students


def test_cli_rejects_bad_budgets_and_names(run_cli, tmp_path):
    work = ["--work-dir", str(tmp_path / "w")]
    both = run_cli(["student", "search", "--latency-ms", "5", "--gmacs", "0.1", *work])
    assert_one_line_error(both, "exactly one budget")
    neither = run_cli(["student", "search", *work])
    assert_one_line_error(neither, "exactly one budget")
    taken = run_cli(["student", "search", "--gmacs", "0.1", "--name", "ofa-595", *work])
    assert_one_line_error(taken, "already registered by plugin 'ofa-595'")
    bad = run_cli(["student", "search", "--gmacs", "0.1", "--name", "Big Net", *work])
    assert_one_line_error(bad, "--name: student name 'Big Net' is not allowed")
    negative = run_cli(["student", "search", "--latency-ms", "-1", *work])
    assert_one_line_error(negative, "--latency-ms must be positive")
    missing = run_cli(["student", "search", "--gmacs", "0.1", "--supernet-weights", str(tmp_path / "no.pt"), *work])
    assert_one_line_error(missing, "no.pt: no such file")


# ---- optional local supernet weights ---------------------------------------------------------------

def _assert_inherits(subnet: torch.nn.Module, supernet: torch.nn.Module, settings) -> None:
    """Each kept block's weights are the supernet's active slices (OFA's weight sharing)."""
    assert torch.equal(subnet.first_conv.conv.weight, supernet.first_conv.conv.weight)
    assert torch.equal(subnet.final_expand_layer.conv.weight, supernet.final_expand_layer.conv.weight)
    for position, index in enumerate(settings.active_blocks(), start=1):
        mine, big = subnet.blocks[position].conv, supernet.blocks[index + 1].conv
        in_ch = mine.inverted_bottleneck.conv.weight.shape[1]
        mid = mine.inverted_bottleneck.conv.weight.shape[0]
        out = mine.point_linear.conv.weight.shape[0]
        assert torch.equal(mine.inverted_bottleneck.conv.weight,
                           big.inverted_bottleneck.conv.conv.weight[:mid, :in_ch])
        assert torch.equal(mine.point_linear.conv.weight, big.point_linear.conv.conv.weight[:out, :mid])
        if settings.ks[index] == 7:  # the largest kernel is a plain slice (smaller ones are transformed)
            assert torch.equal(mine.depth_conv.conv.weight, big.depth_conv.conv.conv.weight[:mid])


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_supernet_weights_are_inherited_by_the_subnet(tmp_path, suffix):
    from medkd_bench.nas.space import SubnetSettings

    torch.manual_seed(1)
    trained = build_supernet(1000)  # an ImageNet-headed checkpoint, as OFA publishes them
    state = {k: v.contiguous() for k, v in trained.state_dict().items()}
    path = tmp_path / f"supernet{suffix}"
    if suffix == ".pt":
        torch.save({"state_dict": state}, path)
    else:
        from safetensors.torch import save_file

        save_file(state, str(path))
    settings = SubnetSettings((7, 5, 3, 7) * 5, (6, 4, 3, 3) * 5, (4, 3, 2, 3, 4))
    subnet = build_subnet(settings, 3, supernet_weights=path)
    _assert_inherits(subnet, trained, settings)
    assert subnet.classifier.linear.weight.shape[0] == 3  # the 1000-class head is left fresh
    fresh = build_subnet(settings, 3)
    assert not torch.equal(fresh.first_conv.conv.weight, subnet.first_conv.conv.weight)


def test_spec_file_with_weights_records_and_checks_them(tmp_path, monkeypatch, shared_lut):
    torch.manual_seed(2)
    trained = build_supernet(3)
    weights = tmp_path / "supernet.pt"
    torch.save(trained.state_dict(), weights)
    result = search(Budget("gmacs", 0.012), CPU, IMG, lut_path=shared_lut, opts=TINY_SEARCH)
    spec_file = write_spec(spec_document(result, "ofa-weighted", weights), tmp_path / "students" / "w.json")
    student = read_searched_student(spec_file)
    assert student.weights_path == weights.resolve() and student.weights_digest in student.revision
    _assert_inherits(student.build(3, IMG), trained, result.settings)
    torch.save(build_supernet(3).state_dict(), weights)  # the file changes after the search
    with pytest.raises(MedkdError, match=r"w\.json: supernet weights .* changed since the search"):
        student.build(3, IMG)
    wrong = tmp_path / "wrong.pt"
    torch.save({"x": torch.zeros(3)}, wrong)
    with pytest.raises(MedkdError, match="wrong.pt: only 0% of the model's values match"):
        build_subnet(SMALLEST, 3, supernet_weights=wrong)
