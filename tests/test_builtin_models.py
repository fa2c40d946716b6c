"""Every built-in teacher trains, is scored and explained end to end (tiny data, one epoch).

One dataset is enough here; synthetic-histo's own end-to-end run is in test_synthetic_histo.
The run starts from a copy of the session's finished quick matrix (visformer-s, the label-only
baseline and their KD cell, every explainer): the full matrix finds those three cells done by their
config hashes and trains the other four, so each built-in teacher is trained once per session.
"""

import numpy as np

from medkd_bench.run.store import Store
from tests.helpers import TINY_DATA


def test_full_matrix_over_every_builtin(run_cli, dirs, quick_run, tmp_path):
    # The gradient explainers on the new cells: Score-CAM costs one forward pass per target channel (512 for
    # VGG19) and was half of this test's time; tests/test_explainers.py runs it on every built-in model, and the
    # quick matrix's cells (every explainer) keep it on the run's path.
    gradient_cams = ("grad-cam", "grad-cam-plus-plus", "eigen-cam")
    result = run_cli(["run", "--matrix", "full", "--datasets", "synthetic-cxr", "--methods", "kd",
                      "--explainers", ",".join(gradient_cams), *TINY_DATA, *dirs])
    assert result.exit_code == 0, result.out + result.err
    # The quick matrix's three cells are the full matrix's own cells.
    assert "4 trained, 3 already done, 0 failed; explanations: 12 computed, 0 failed" in result.out
    with Store(tmp_path / "work" / "runs.sqlite") as store:
        cells = store.cells()
    assert len(cells) == 7
    maps_dir = tmp_path / "work" / "maps"
    for cell in cells:
        for explainer in gradient_cams:
            (path,) = maps_dir.glob(f"{cell.hash}-*-{explainer}-2.npy")  # named by hash and checkpoint digest
            maps = np.load(path)
            assert maps.shape == (2, 32, 32)
            assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1.0 + 1e-6
    gmacs = {c.teacher: c.metrics["gmacs"] for c in cells if c.method == "teacher"}
    assert gmacs["vgg19"] > gmacs["visformer-s"] > 0
    panels = sorted((tmp_path / "boards" / "panels" / "synthetic-cxr" / "grad-cam").glob("*.png"))
    kd_hashes = {c.teacher: c.hash for c in cells if c.method == "kd"}
    assert [p.name for p in panels] == [f"{t}__ofa-595__kd__{kd_hashes[t]}-2.png"
                                        for t in ("autoformer-v2-t", "vgg19", "visformer-s")]
    board = (tmp_path / "boards" / "synthetic-cxr.md").read_text()
    for explainer in ("score-cam", "grad-cam", "grad-cam-plus-plus", "eigen-cam"):
        assert f"## Explanations: {explainer}" in board


def test_vgg19s_head_runs_as_matrix_products_computing_timms_convolutions():
    """Revision 3 of the VGG19 teacher runs its head's one-position convolutions as ``F.linear``
    (7x faster on one CPU thread; ``benchmarks/bench_vgg_head.py``): the same function, parameters
    and state-dict names as timm's, and a map larger than the kernel still convolves."""
    import copy

    import torch

    from medkd_bench_plugins.teachers.vgg19 import WholeInputConv2d, build_vgg19

    torch.manual_seed(0)
    model = build_vgg19(3, 32)
    timm_head = copy.deepcopy(model)
    for conv in (timm_head.pre_logits.fc1, timm_head.pre_logits.fc2):
        assert type(conv) is WholeInputConv2d
        conv.__class__ = torch.nn.Conv2d
    assert list(model.state_dict()) == list(timm_head.state_dict())
    x = torch.randn(4, 3, 32, 32)
    ours, theirs = model(x), timm_head(x)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    ours.square().sum().backward()
    theirs.square().sum().backward()
    for (name, a), b in zip(model.named_parameters(), timm_head.parameters(), strict=True):
        assert (a.grad - b.grad).abs().max() <= 1e-4 * b.grad.abs().max(), name  # float32 rounding
    conv = model.pre_logits.fc1
    big = torch.randn(2, 512, 9, 8)  # a 224 px-and-up map: three by two output positions
    torch.testing.assert_close(conv(big), torch.nn.functional.conv2d(big, conv.weight, conv.bias))
