"""Distillation methods: each built-in loss against an independent formulation, the host's taps, bad input.

Every loss is checked against its paper's formula computed another way (by
hand, element by element) and, where torchdistill implements it (KD, AT),
against torchdistill's own loss module on random inputs.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medkd_bench.distill.taps import head_at_locations, head_split
from medkd_bench.registry import load_registry
from medkd_bench.specs import MethodContext, ModelOutputs
from medkd_bench.testing import check_method_spec
from tests.helpers import TINY_DATA, assert_one_line_error, plugin_fixture

REGISTRY = load_registry()
BUILTIN = ("at", "cat-kd", "dkd", "fitnet", "kd")


def _loss(name: str, **context) -> torch.nn.Module:
    spec = REGISTRY.methods[name]
    ctx = MethodContext(options=dict(spec.options), num_classes=context.pop("num_classes", 5), epochs=4,
                        steps_per_epoch=10, **context)
    return spec.build(ctx)


def _random(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_the_five_builtin_methods_are_registered():
    assert set(BUILTIN) <= set(REGISTRY.methods)
    for name in BUILTIN:
        assert REGISTRY.methods[name].citation


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_method_passes_the_conformance_kit(name):
    check_method_spec(REGISTRY.methods[name])


def test_kd_equals_torchdistill_kdloss():
    from torchdistill.losses.mid_level import KDLoss

    s, t, y = _random(0, 16, 5), _random(1, 16, 5), torch.arange(16) % 5
    ours = _loss("kd")(ModelOutputs(s), ModelOutputs(t), y, 0.0)
    theirs = KDLoss("fc", "output", "fc", "output", temperature=4.0, alpha=0.5)(
        {"fc": {"output": s}}, {"fc": {"output": t}}, y)
    torch.testing.assert_close(ours, theirs)


def test_at_equals_torchdistill_atloss_plus_cross_entropy():
    from torchdistill.losses.mid_level import ATLoss

    fs, ft = _random(2, 4, 8, 4, 4), _random(3, 4, 16, 4, 4)
    logits, y = _random(4, 4, 5), torch.tensor([0, 1, 2, 3])
    ours = _loss("at")(ModelOutputs(logits, (fs,)), ModelOutputs(logits, (ft,)), y, 0.0)
    pairs = {"p": {"student": {"path": "l", "io": "output"}, "teacher": {"path": "l", "io": "output"}, "weight": 1}}
    at = ATLoss(pairs, mode="code")({"l": {"output": fs}}, {"l": {"output": ft}})
    torch.testing.assert_close(ours, F.cross_entropy(logits, y) + 1000.0 * at)


def _at_with(**options) -> torch.nn.Module:
    spec = REGISTRY.methods["at"]
    return spec.build(MethodContext(options={**spec.options, **options}, num_classes=5, epochs=4, steps_per_epoch=10))


@pytest.mark.parametrize("p", [3.0, 1.5, 1.0])
def test_at_takes_the_absolute_value_on_signed_maps(p):
    """The paper's F^p_sum = sum_i |A_i|^p, by hand in float64: f^p would cancel (p = 3) or be NaN (p = 1.5)."""
    fs, ft = _random(20, 2, 3, 2, 2), _random(21, 2, 4, 2, 2)  # signed, like token maps and pre-ReLU blocks
    logits, y = _random(22, 2, 5), torch.tensor([1, 3])

    def unit_map(f: torch.Tensor) -> list[list[float]]:
        rows = []
        for sample in f.double().tolist():
            cells = [sum(abs(ch[i][j]) ** p for ch in sample) / len(sample) for i in range(2) for j in range(2)]
            norm = math.sqrt(sum(v * v for v in cells))
            rows.append([v / norm for v in cells])
        return rows

    diffs = [(a - b) ** 2 for rs, rt in zip(unit_map(fs), unit_map(ft), strict=True)
             for a, b in zip(rs, rt, strict=True)]
    expected = F.cross_entropy(logits, y).item() + 1000.0 * sum(diffs) / len(diffs)
    got = _at_with(p=p)(ModelOutputs(logits, (fs,)), ModelOutputs(logits, (ft,)), y, 0.0)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_at_is_finite_for_large_p_on_large_and_small_activations():
    """p = 8: 1e6^8 overflows float32 and 1e-6^8 falls below F.normalize's epsilon; the map is scale-free."""
    fs, ft = _random(23, 2, 3, 4, 4), _random(24, 2, 5, 4, 4)
    logits, y = _random(25, 2, 5), torch.tensor([0, 4])
    loss = _at_with(p=8.0)
    reference = loss(ModelOutputs(logits, (fs,)), ModelOutputs(logits, (ft,)), y, 0.0)
    for scale in (1e6, 1e-6):
        fs_scaled = (fs * scale).requires_grad_()
        got = loss(ModelOutputs(logits, (fs_scaled,)), ModelOutputs(logits, (ft * scale,)), y, 0.0)
        torch.testing.assert_close(got, reference)
        got.backward()
        assert torch.isfinite(fs_scaled.grad).all()


def test_at_p_below_one_is_refused_where_its_gradient_would_be_nan():
    """|f|^p with p < 1 has an infinite slope at f = 0 (every post-ReLU zero): NaN gradients; p = 1 is fine."""
    from medkd_bench.errors import MedkdError
    from medkd_bench_plugins.methods.at import attention_map

    relu_map = torch.relu(_random(26, 1, 2, 2, 2)).requires_grad_()
    assert (relu_map == 0).any()
    attention_map(relu_map, 1.0).sum().backward()
    assert torch.isfinite(relu_map.grad).all()
    relu_map.grad = None
    attention_map(relu_map, 0.5).sum().backward()
    assert torch.isnan(relu_map.grad).any()
    with pytest.raises(MedkdError, match=r"^method 'at': option p = 0.5 is out of range \(1 \.\. 8\)"):
        _at_with(p=0.5)


def _kl(p: list[float], q: list[float]) -> float:
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def test_dkd_equals_the_papers_formula_by_hand():
    """Zhao et al. (2022) Eq. 1-7: TCKD = KL(b_t || b_s), NCKD = KL(p^_t || p^_s) over non-target classes."""
    s, t, y = _random(5, 6, 4), _random(6, 6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    temp, alpha, beta = 4.0, 1.0, 8.0
    total = 0.0
    for row_s, row_t, target in zip(s.tolist(), t.tolist(), y.tolist(), strict=True):
        ps = [math.exp(v / temp) for v in row_s]
        pt = [math.exp(v / temp) for v in row_t]
        ps, pt = [v / sum(ps) for v in ps], [v / sum(pt) for v in pt]
        b_s, b_t = [ps[target], 1 - ps[target]], [pt[target], 1 - pt[target]]
        hat_s = [v / (1 - ps[target]) for k, v in enumerate(ps) if k != target]
        hat_t = [v / (1 - pt[target]) for k, v in enumerate(pt) if k != target]
        total += alpha * _kl(b_t, b_s) + beta * _kl(hat_t, hat_s)
    dkd = temp * temp * total / len(y)
    ce = F.cross_entropy(s, y)
    loss = _loss("dkd", num_classes=4)
    # Past the warm-up (1 epoch) the KD term has full weight; halfway through it, half.
    torch.testing.assert_close(loss(ModelOutputs(s), ModelOutputs(t), y, 2.0), ce + dkd)
    torch.testing.assert_close(loss(ModelOutputs(s), ModelOutputs(t), y, 0.5), ce + 0.5 * dkd)


def test_dkd_warm_up_rises_per_optimiser_step_from_zero():
    """Bound as a cell binds it: step 0 carries no DKD term, half the warm-up half, its end and after, all of it."""
    from torch import nn

    from medkd_bench.distill.method import bind_method
    from medkd_bench.runtime.device import Runtime
    from medkd_bench.testing.methods import _probe_data
    from medkd_bench_plugins.methods.dkd import dkd_loss

    data = _probe_data(3, 32)
    teacher_logits = _random(30, 2, 8, 3)
    spec = REGISTRY.methods["dkd"]
    assert spec.options["warmup_epochs"] == 1.0
    distill = bind_method(spec, spec.options, teacher_logits=teacher_logits, data=data,
                          student_runtime=Runtime(torch.device("cpu")), epochs=2, steps_per_epoch=4)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 3))
    idx, flipped = torch.arange(4), torch.zeros(4, dtype=torch.bool)
    images = data.splits["train"].images[idx]
    x, y = data.normalise(images), data.splits["train"].labels[idx]
    with torch.no_grad():
        logits = model(x)
        ce = F.cross_entropy(logits, y)
        dkd = dkd_loss(logits, teacher_logits[0, idx], y, 1.0, 8.0, 4.0)
        for step, weight in ((0, 0.0), (1, 0.25), (2, 0.5), (4, 1.0), (7, 1.0)):
            torch.testing.assert_close(distill.loss(model, x, y, idx, flipped, images, step=step), ce + weight * dkd)


def test_dkd_stays_finite_for_extreme_logits():
    s = torch.tensor([[80.0, -80.0, 0.0]])
    t = torch.tensor([[-90.0, 90.0, 0.0]])
    loss = _loss("dkd", num_classes=3)(ModelOutputs(s), ModelOutputs(t), torch.tensor([0]), 3.0)
    assert torch.isfinite(loss)


def test_fitnet_is_the_regressed_hint_mse_by_hand():
    loss = _loss("fitnet", student_features=((3, 2, 2),), teacher_features=((2, 2, 2),))
    (reg,) = loss.regressors
    with torch.no_grad():
        reg.weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, -1.0, 0.0]]).view(2, 3, 1, 1))
        reg.bias.copy_(torch.tensor([0.5, 0.0]))
    fs, ft = _random(7, 2, 3, 2, 2), _random(8, 2, 2, 2, 2)
    logits, y = _random(9, 2, 5), torch.tensor([1, 4])
    regressed = torch.stack([fs[:, 0] + 2 * fs[:, 2] + 0.5, -fs[:, 1]], dim=1)
    expected = F.cross_entropy(logits, y) + 100.0 * ((regressed - ft) ** 2).mean()
    torch.testing.assert_close(loss(ModelOutputs(logits, (fs,)), ModelOutputs(logits, (ft,)), y, 0.0), expected)


def test_cat_kd_is_the_pooled_normalised_class_map_mse_by_hand():
    ms, mt = _random(10, 2, 3, 4, 4), _random(11, 2, 3, 4, 4)
    logits, y = _random(12, 2, 3), torch.tensor([0, 2])

    def pooled_unit(maps: torch.Tensor) -> torch.Tensor:  # 2x2 block means, then each class map scaled to norm 1
        blocks = maps.reshape(2, 3, 2, 2, 2, 2).mean(dim=(3, 5))
        return blocks / blocks.pow(2).sum(dim=(2, 3), keepdim=True).sqrt()

    # 40, 2x2, normalised: CAT-KD's configs/cifar100/CAT_KD/res50_mv2.yaml (lines 22, 24, 29).
    expected = F.cross_entropy(logits, y) + 40.0 * ((pooled_unit(ms) - pooled_unit(mt)) ** 2).mean()
    got = _loss("cat-kd", num_classes=3)(ModelOutputs(logits, class_maps=ms), ModelOutputs(logits, class_maps=mt),
                                          y, 0.0)
    torch.testing.assert_close(got, expected)


def test_class_maps_of_a_linear_head_average_to_the_logits_without_the_bias():
    """Visformer's head is pooling then linear: the per-location maps are the CAM, whose mean is logits - bias."""
    spec = REGISTRY.teachers["visformer-s"]
    torch.manual_seed(0)
    model = spec.build(3, 32).eval()
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([2.0, -1.0, 0.5]))  # timm starts it at 0, which would hide it
    x = torch.randn(2, 3, 32, 32)
    forward_features, forward_head = head_split(model, spec, "test")
    with torch.no_grad():
        maps = head_at_locations(forward_head, forward_features(x), channels_last=False)
        torch.testing.assert_close(maps.mean(dim=(2, 3)), model(x) - model.head.bias, rtol=1e-4, atol=1e-5)


def test_class_maps_are_the_authors_bias_free_cam():
    """CAT-KD's code: a 1x1 conv with bias=False holding fc.weight, on the last feature map (resnet.py, train.py)."""
    from medkd_bench.distill.taps import OutputTaps
    from medkd_bench.specs import StudentSpec
    from medkd_bench.testing.methods import _probe_spec

    spec = _probe_spec(StudentSpec, "resnet10t", "layer3")
    torch.manual_seed(0)
    model = spec.build(3, 32).train()  # training mode, as the student's maps are taken
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([1.0, -2.0, 3.0]))
    x = torch.randn(2, 3, 32, 32)
    outputs = OutputTaps(model, spec, ("class_maps",), "target", "test")(x)
    conv_test = F.conv2d(model.forward_features(x), model.fc.weight[:, :, None, None])
    torch.testing.assert_close(outputs.class_maps, conv_test, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(outputs.logits, conv_test.mean(dim=(2, 3)) + model.fc.bias, rtol=1e-5, atol=1e-5)


def test_ofa_head_split_composes_to_the_models_forward():
    spec = REGISTRY.students["ofa-595"]
    torch.manual_seed(0)
    model = spec.build(3, 32).eval()
    x = torch.randn(2, 3, 32, 32)
    forward_features, forward_head = head_split(model, spec, "test")
    with torch.no_grad():
        features = forward_features(x)
        torch.testing.assert_close(forward_head(features), model(x))
        assert head_at_locations(forward_head, features, channels_last=False).shape == (2, 3, *features.shape[2:])


@pytest.mark.parametrize("args, named", [
    (["--methods", "nope"], "unknown method(s) 'nope' in --methods"),
    (["--method-option", "dkd.gamma=1"], "--method-option dkd.gamma=1: method 'dkd' has no option 'gamma'"),
    (["--method-option", "dkd.beta=abc"], "--method-option dkd.beta=abc: expected a number"),
    (["--method-option", "nope.beta=1"], "--method-option nope.beta=1: unknown method 'nope'"),
    (["--method-option", "kd.alpha=2"], "--method-option kd.alpha=2: 2 is out of range"),
    (["--method-option", "at.p=0.5"], "--method-option at.p=0.5: 0.5 is out of range (allowed: 1 .. 8)"),
    (["--method-option", "at.p=-2"], "--method-option at.p=-2: -2 is out of range (allowed: 1 .. 8)"),
    (["--methods", "fitnet", "--method-option", "fitnet.student_layer=blocks.99"],
     "--method-option fitnet.student_layer=blocks.99: 'ofa-595' has no layer 'blocks.99'"),
    # An option for a method the run does not train would change nothing: refused, not ignored.
    (["--methods", "kd", "--method-option", "dkd.beta=2"],
     "--method-option dkd.beta=2: method 'dkd' is not in this run (its methods: kd); add it to --methods"),
    (["--method-option", "dkd.beta=2"], "method 'dkd' is not in this run (its methods: kd)"),  # quick: kd alone
    (["--methods", "dkd", "--temperature", "2"], "--temperature: method 'kd' is not in this run (its methods: dkd)"),
])
def test_bad_method_input_is_a_one_line_error_and_writes_nothing(run_cli, tmp_path, args, named):
    work = tmp_path / "work"
    result = run_cli(["run", "--matrix", "quick", "--teachers", "visformer-s", *TINY_DATA, "--work-dir", str(work),
                      "--leaderboard-dir", str(tmp_path / "boards"), *args])
    assert_one_line_error(result, named)
    assert not work.exists() and not (tmp_path / "boards").exists()


def test_a_method_may_not_take_a_base_cell_name(run_cli, tmp_path):
    plugin = tmp_path / "label_only_method.py"
    plugin.write_text("from medkd_bench import MethodSpec, hookimpl\n\n@hookimpl\ndef register_methods(register):\n"
                      "    register(MethodSpec(name='label-only', build=lambda ctx: None))\n")
    result = run_cli(["plugins", "--plugin", str(plugin)])
    assert_one_line_error(result, "method name 'label-only' is reserved")


@pytest.mark.slow
def test_quick_matrix_with_every_method_and_a_nan_one(run_cli, tmp_path):
    """`run --matrix quick --methods all`: one cell per method, the method summary, explanations by method.

    A NaN-loss method (a plugin file) fails its own cell only; every other cell finishes.
    """
    from medkd_bench.run.store import Store

    dirs = ["--work-dir", str(tmp_path / "work"), "--leaderboard-dir", str(tmp_path / "boards")]
    result = run_cli(["run", "--matrix", "quick", "--teachers", "visformer-s", "--methods", "all",
                      "--plugin", plugin_fixture("nan_method"), "--method-option", "dkd.beta=6", "--explainers",
                      "grad-cam", *TINY_DATA, *dirs])
    assert result.exit_code == 1, result.err
    with Store(tmp_path / "work" / "runs.sqlite", readonly=True) as store:
        cells = {c.method: c for c in store.cells()}
    assert cells["nan-loss"].status == "failed" and cells["nan-loss"].error.startswith("training loss is nan")
    assert {m: c.status for m, c in cells.items() if m != "nan-loss"} == {
        m: "done" for m in ("teacher", "label-only", *BUILTIN)}
    board = (tmp_path / "boards" / "synthetic-cxr.md").read_text()
    assert "## Failed cells" in board and "visformer-s -> ofa-595 (nan-loss), seed 0" in board
    summary = board.split("## Methods: ofa-595")[1].split("##")[0]
    for name in BUILTIN:
        assert f"| {name} |" in summary
        assert f"panels/synthetic-cxr/grad-cam/visformer-s__ofa-595__{name}__{cells[name].hash}-2.png" in board
    assert "- `dkd` (revision 1): alpha = 1.0, beta = 6.0" in board
    assert "--methods at,cat-kd,dkd,fitnet,kd" in board and "--method-option dkd.beta=6.0" in board
    by_method = board.split("| method | Spearman vs teacher |")[1].split("\n\n")[0]
    assert all(f"| {name} |" in by_method for name in (*BUILTIN, "label-only"))


def test_a_methods_own_modules_train_with_the_student():
    """FitNets' regressor is in the optimiser: one epoch of fit moves its weights (and the student's)."""
    from medkd_bench.distill.method import bind_method
    from medkd_bench.runtime.device import Runtime
    from medkd_bench.specs import StudentSpec, TeacherSpec, TrainSettings
    from medkd_bench.testing.methods import METHOD_PROBE_MODELS, _probe_data, _probe_spec
    from medkd_bench.train.loop import fit
    from medkd_bench.train.predict import teacher_soft_targets

    runtime, data = Runtime(torch.device("cpu")), _probe_data(3, 32, n=16)
    (s_name, s_layer), (t_name, t_layer) = METHOD_PROBE_MODELS
    student_spec, teacher_spec = _probe_spec(StudentSpec, s_name, s_layer), _probe_spec(TeacherSpec, t_name, t_layer)
    torch.manual_seed(0)
    teacher, student = teacher_spec.build(3, 32).eval(), student_spec.build(3, 32)
    spec = REGISTRY.methods["fitnet"]
    distill = bind_method(spec, spec.options, teacher_logits=teacher_soft_targets(teacher, data, runtime), data=data,
                          student_runtime=runtime, epochs=1, steps_per_epoch=2, student=student,
                          student_spec=student_spec, teacher=teacher, teacher_spec=teacher_spec)
    regressor = distill.loss_module.regressors[0].weight.detach().clone()
    fit(student, data, TrainSettings(epochs=1, batch_size=8, warmup_epochs=0.0), runtime, seed=0, distill=distill)
    assert float((distill.loss_module.regressors[0].weight - regressor).abs().max()) > 0


@pytest.mark.parametrize("build, message", [
    (lambda ctx: 1 / 0, "method 'broken': build() failed: ZeroDivisionError: division by zero"),
    (lambda ctx: "not a module", "method 'broken': build() returned str, expected torch.nn.Module"),
])
def test_a_broken_method_build_is_named(build, message):
    from medkd_bench.distill.method import bind_method
    from medkd_bench.errors import MedkdError
    from medkd_bench.runtime.device import Runtime
    from medkd_bench.specs import MethodSpec
    from medkd_bench.testing.methods import _probe_data

    data = _probe_data(3, 32)
    with pytest.raises(MedkdError) as raised:
        bind_method(MethodSpec(name="broken", build=build), {}, teacher_logits=torch.zeros(2, 8, 3), data=data,
                    student_runtime=Runtime(torch.device("cpu")), epochs=1, steps_per_epoch=1)
    assert str(raised.value) == message


def test_a_loss_that_is_not_a_scalar_is_named():
    from torch import nn

    from medkd_bench.distill.method import bind_method
    from medkd_bench.errors import MedkdError
    from medkd_bench.runtime.device import Runtime
    from medkd_bench.specs import MethodSpec
    from medkd_bench.testing.methods import _probe_data

    class PerSample(nn.Module):
        def forward(self, student, teacher, targets, epoch):
            return F.cross_entropy(student.logits, targets, reduction="none")

    data = _probe_data(3, 32)
    distill = bind_method(MethodSpec(name="per-sample", build=lambda ctx: PerSample()), {},
                          teacher_logits=torch.zeros(2, 8, 3), data=data, student_runtime=Runtime(torch.device("cpu")),
                          epochs=1, steps_per_epoch=1)
    model = nn.Sequential(nn.Flatten(), nn.LazyLinear(3))
    idx, flipped = torch.arange(4), torch.zeros(4, dtype=torch.bool)
    images = data.splits["train"].images[idx]
    with pytest.raises(MedkdError, match=r"method 'per-sample': the loss module returned \(4,\), expected a scalar"):
        distill.loss(model, data.normalise(images), data.splits["train"].labels[idx], idx, flipped, images, step=0)
