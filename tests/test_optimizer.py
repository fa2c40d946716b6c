"""The fused AdamW the harness uses is the same update rule as the per-tensor one."""

import torch
from torch import nn

from medkd_bench.train.optim import (
    adamw_implementation,
    clipped_step,
    grad_norm_implementation,
    make_adamw,
    total_grad_norm,
)


def _train(optimizer_factory) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 3))
    optimizer = optimizer_factory(model.parameters())
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))
    for _ in range(20):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_fused_adamw_matches_the_reference_update():
    cpu = torch.device("cpu")
    assert adamw_implementation(cpu) == "fused"
    fused = _train(lambda p: make_adamw(p, 1e-2, cpu))
    reference = _train(lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False))
    moved = _train(lambda p: torch.optim.AdamW(p, lr=1e-2))
    for a, b, c in zip(fused, reference, moved, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert torch.equal(b, c) or torch.allclose(b, c)
    # and training actually changed the weights, so the comparison means something
    torch.manual_seed(0)
    initial = [p.detach() for p in nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(),
                                                 nn.Linear(8 * 6 * 6, 3)).parameters()]
    assert max(float((a - b).abs().max()) for a, b in zip(fused, initial, strict=True)) > 1e-2


def test_other_devices_fall_back_to_foreach():
    assert adamw_implementation(torch.device("meta")) == "foreach"


def _clip_train(fused: bool, ours: bool, max_norm: float | None = 0.1) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 6 * 6, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=fused, foreach=None if fused else True)
    x, y = torch.randn(16, 3, 8, 8) * 30, torch.randint(0, 3, (16,))  # large inputs: norms well above 0.1
    for _ in range(10):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        if ours:
            clipped_step(optimizer, max_norm)
        else:
            if max_norm:
                nn.utils.clip_grad_norm_(model.parameters(), max_norm)
            optimizer.step()
    return [p.detach().clone() for p in model.parameters()]


def test_clipped_step_equals_clip_grad_norm_then_step():
    reference = _clip_train(fused=False, ours=False)
    unclipped = _clip_train(fused=False, ours=False, max_norm=None)
    for fused in (True, False):
        for a, b in zip(_clip_train(fused=fused, ours=True), reference, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert not all(torch.allclose(a, b) for a, b in zip(reference, unclipped, strict=True))  # clipping mattered
    for a, b in zip(_clip_train(fused=True, ours=True, max_norm=None), unclipped, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_total_grad_norm_is_clip_grad_norms_norm_for_every_layout():
    assert grad_norm_implementation(torch.device("cpu")) == "dot-nhwc"
    torch.manual_seed(0)
    grads = [torch.randn(64, 32, 3, 3), torch.randn(1000) * 1e-3,
             torch.randn(8, 16, 5, 5).contiguous(memory_format=torch.channels_last), torch.randn(300, 7).t(),
             torch.randn(50).bfloat16()]
    assert not grads[2].is_contiguous() and not grads[3].is_contiguous()
    reference = nn.utils.get_total_norm([g.float() for g in grads], foreach=True)
    torch.testing.assert_close(total_grad_norm(grads), reference, rtol=1e-6, atol=0)
    assert float(total_grad_norm([])) == 0.0


def _conv_model(channels_last: bool) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    return model.to(memory_format=torch.channels_last) if channels_last else model


def test_fused_adamw_updates_channels_last_weights_in_place_as_contiguous_ones():
    cpu = torch.device("cpu")
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))
    results = {}
    for layout in ("contiguous", "channels_last"):
        model = _conv_model(layout == "channels_last")
        optimizer = make_adamw(model.parameters(), 1e-2, cpu)
        params = list(model.parameters())
        for _ in range(5):
            inputs = x.contiguous(memory_format=torch.channels_last) if layout == "channels_last" else x
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(inputs), y).backward()
            clipped_step(optimizer, 0.1)
        # the very same parameter tensors were updated, still in their layout
        assert [p.data_ptr() for p in model.parameters()] == [p.data_ptr() for p in params]
        assert model[0].weight.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
        state = optimizer.state[model[0].weight]
        assert state["exp_avg"].stride() == model[0].weight.stride()
        results[layout] = [p.detach().contiguous() for p in model.parameters()]
    for a, b in zip(results["contiguous"], results["channels_last"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(results["contiguous"][0], _conv_model(False)[0].weight)  # training moved them


def test_fused_adamw_hands_channels_last_tensors_to_its_kernel_without_copies():
    model = _conv_model(True)
    optimizer = make_adamw(model.parameters(), 1e-2, torch.device("cpu"))
    nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 0])).backward()
    optimizer.step()  # creates the moments
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        optimizer.step()
    names = {e.key for e in prof.key_averages()}
    assert "aten::_fused_adamw_" in names
    assert "aten::clone" not in names and "aten::contiguous" not in names, names
    plain = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    plain.step()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        plain.step()
    assert "aten::clone" in {e.key for e in prof.key_averages()}  # what the views save
