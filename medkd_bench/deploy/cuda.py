"""Batch-1 latency on a GPU as a deployment would run the model, with the method written beside it.

The eager figure (:func:`medkd_bench.evaluate.cost.measure_latency`) is what
training's autocast costs per call; on a GPU it is launch-bound (issue 20:
OFA-595 took 21 ms per image on an H200, slower than on 2 CPU cores). A
deployment converts the weights to half precision, fixes the input shape and
replays a captured CUDA graph, so that is what is timed here: a deep copy in
eval mode, its weights in the spec's ``gpu_deploy_dtype``, channels-last if the
spec trains so, TF32 as the runtime sets it, one static input, and PyTorch's
CUDA-graph recipe (warm-up on a side stream, capture, replay). Each timed call
serves one request: a float32 image already on the GPU is copied (and cast)
into the static input and the graph replayed, synchronised around each call. A model that cannot be captured (a host sync in its
forward, say) is timed eagerly in the same dtype and the method says why.

A number is only published for a conversion that keeps the model's answers:
the captured forward must give the float32 model's argmax on a fixed, seeded
batch of :data:`CHECK_INPUTS` inputs, one at a time through the very graph
that is timed. Only an input on which the float32 model itself barely
separates the two classes (:data:`NEAR_TIE`) may differ. A half-precision
conversion that fails the check is timed again in float32, and the method says
so with a ⚠; if float32 fails too, no number is stored. On CPU the deployment
figure is ONNX Runtime's (:mod:`medkd_bench.deploy.onnx`), so nothing is timed here.

Every part but :func:`capture_cuda_graph` and the device guard runs on CPU,
and the capture step is a parameter, so CPU tests cover the conversion, the
check, the fallback and the method string.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from medkd_bench.errors import one_line
from medkd_bench.evaluate.timing import median_iqr, timed_calls_ms
from medkd_bench.messages import warn
from medkd_bench.runtime.device import Runtime, gpu_deploy_dtype, tf32_enabled
from medkd_bench.specs import ModelSpec

#: Inputs of the argmax check: a fixed, seeded batch, each sent through the timed forward alone.
CHECK_INPUTS = 16
#: A differing argmax is excused where the float32 model's own logits for the two classes are
#: within this share of its largest |logit| on that input: any rounding (TF32 too) may flip such a
#: near tie. Everything else must agree, and the logits must be finite (fp16 overflows to inf).
NEAR_TIE = 0.02
#: Untimed replays before timing (allocator, clocks).
WARMUP = 10
#: Marks a method whose figure is not the spec's choice or is missing; the leaderboard shows it as is.
WARNING = "⚠"

#: ``(module, static_input) -> replay``: a forward made ready to call again on the same input tensor.
Capture = Callable[[nn.Module, torch.Tensor], Callable[[], torch.Tensor]]

_DTYPE_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def capture_cuda_graph(module: nn.Module, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    """PyTorch's documented recipe: warm up on a side stream, capture one forward of ``x``, replay it.

    The warm-up runs lazy initialisation (cuDNN plans, workspace allocation)
    outside the capture, where it is not allowed; the replay reads ``x`` in place.
    """
    stream = torch.cuda.Stream(x.device)
    stream.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(stream):
        for _ in range(3):
            module(x)
    torch.cuda.current_stream(x.device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = module(x)

    def replay() -> torch.Tensor:
        graph.replay()
        return out

    return replay


def deployed_latency(model: nn.Module, spec: ModelSpec, img_size: int, runtime: Runtime, runs: int = 50,
                     min_seconds: float = 1.0) -> dict[str, Any]:
    """``latency_deployed_ms``, ``_iqr_ms``, ``_method`` (and check figures) on CUDA; ``{}`` elsewhere.

    A failure here (out of memory, a model that will not convert) is named in a warning and
    in the method string, never raised: the cell's training and scores stand without it.
    """
    if runtime.device.type != "cuda":
        return {}
    dtype = gpu_deploy_dtype(spec, runtime.bf16_supported)
    try:
        with torch.cuda.device(runtime.device):
            return measure_deployed(model, img_size, runtime, dtype, spec.gpu_channels_last, runs, min_seconds,
                                    capture=capture_cuda_graph)
    except Exception as exc:  # a cost figure must not fail a trained cell
        warn(f"{spec.name}: latency as deployed not measured ({one_line(exc)})")
        return {"latency_deployed_method": f"not measured: {one_line(exc)} {WARNING}"}


def measure_deployed(model: nn.Module, img_size: int, runtime: Runtime, dtype: torch.dtype, channels_last: bool,
                     runs: int, min_seconds: float, capture: Capture) -> dict[str, Any]:
    """Convert, check and time ``model`` as deployed; see the module's docstring for the rules."""
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper: deploy the module itself
    inputs = check_inputs(img_size, runtime.device)
    reference = reference_logits(model, inputs, runtime.device)
    rejected: list[str] = []
    for candidate in dict.fromkeys((dtype, torch.float32)):
        with torch.no_grad(), runtime.numerics():
            deployed = Deployed.build(model, candidate, channels_last, img_size, runtime.device, capture)
            check = compare_argmax(reference, deployed.logits(inputs))
            if not check.ok:
                rejected.append(check.problem(_DTYPE_NAMES[candidate]))
                continue
            request = torch.randn(1, 3, img_size, img_size, device=runtime.device)
            times = timed_calls_ms(partial(deployed.serve, request), runtime.synchronize, WARMUP, runs, min_seconds)
        median, iqr = median_iqr(times)
        return {"latency_deployed_ms": median, "latency_deployed_iqr_ms": iqr, "latency_deployed_runs": len(times),
                "latency_deployed_method": deployed.method(rejected),
                "latency_deployed_agree": check.agree, "latency_deployed_checked": check.n,
                "latency_deployed_max_abs_logit_diff": check.max_abs_diff}
    return {"latency_deployed_method": f"not published: {'; '.join(rejected)} {WARNING}"}


def check_inputs(img_size: int, device: torch.device, n: int = CHECK_INPUTS) -> torch.Tensor:
    """The argmax check's batch: standard-normal images (the scale of normalised ones), seeded."""
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, img_size, img_size, generator=generator).to(device)


@torch.no_grad()
def reference_logits(model: nn.Module, inputs: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The eager float32 model's logits (TF32 off on CUDA: float32 throughout), in float32."""
    was_training = model.training
    model.eval()
    try:
        with tf32_enabled(False) if device.type == "cuda" else contextlib.nullcontext():
            return model(inputs).float()
    finally:
        model.train(was_training)


def deployed_copy(model: nn.Module, dtype: torch.dtype, channels_last: bool, device: torch.device) -> nn.Module:
    """A deep copy in eval mode with its weights in ``dtype`` (and channels-last): the original is untouched."""
    module = copy.deepcopy(model).eval().to(device=device, dtype=dtype)
    return module.to(memory_format=torch.channels_last) if channels_last else module


@dataclass
class Deployed:
    """A converted model's forward on one static batch-1 input, captured as a graph or eager."""

    forward: Callable[[], torch.Tensor]
    x: torch.Tensor
    dtype: torch.dtype
    channels_last: bool
    graph: bool
    #: Why capture failed (one line), when ``graph`` is false.
    failure: str | None = None

    @classmethod
    def build(cls, model: nn.Module, dtype: torch.dtype, channels_last: bool, img_size: int,
              device: torch.device, capture: Capture) -> Deployed:
        """Convert ``model`` and capture its forward; on failure, the same converted model eager."""
        module = deployed_copy(model, dtype, channels_last, device)
        x = torch.randn(1, 3, img_size, img_size, device=device, dtype=dtype)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        try:
            return cls(capture(module, x), x, dtype, channels_last, graph=True)
        except Exception as exc:
            if device.type == "cuda":  # let the failed capture's stream finish before running eager
                torch.cuda.synchronize(device)
            return cls(lambda: module(x), x, dtype, channels_last, graph=False, failure=one_line(exc))

    def serve(self, image: torch.Tensor) -> torch.Tensor:
        """One request: ``image`` (float32, batch 1) copied and cast into the static input, then the forward."""
        self.x.copy_(image)
        return self.forward()

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """Each input served alone, through exactly what is timed, as float32 logits."""
        return torch.cat([self.serve(inputs[i:i + 1]).float().clone() for i in range(len(inputs))])

    def method(self, rejected: Sequence[str] = ()) -> str:
        """``CUDA graph, fp16, channels-last``, or the eager fallback and any rejected dtype, said plainly."""
        text = ", ".join(["CUDA graph" if self.graph else "eager", _DTYPE_NAMES[self.dtype]]
                         + (["channels-last"] if self.channels_last else []))
        notes = ([f"graph capture failed: {self.failure}"] if self.failure else []) + list(rejected)
        return text + (f" ({'; '.join(notes)}{f' {WARNING}' if rejected else ''})" if notes else "")


@dataclass(frozen=True)
class ArgmaxCheck:
    """The deployed model's argmax against the float32 model's, on :func:`check_inputs`."""

    n: int
    agree: int
    #: Differing argmaxes where the float32 model's two logits are within :data:`NEAR_TIE`.
    ties: int
    finite: bool
    max_abs_diff: float

    @property
    def ok(self) -> bool:
        return self.finite and self.agree + self.ties == self.n

    def problem(self, dtype_name: str) -> str:
        if not self.finite:
            return f"{dtype_name} gave non-finite logits"
        return f"{dtype_name} changed the argmax on {self.n - self.agree - self.ties}/{self.n} inputs"


def compare_argmax(reference: torch.Tensor, deployed: torch.Tensor) -> ArgmaxCheck:
    """Argmax agreement of two ``(N, classes)`` logit tensors, near ties of ``reference`` excused."""
    reference, deployed = reference.double().cpu(), deployed.double().cpu()
    finite = bool(torch.isfinite(deployed).all())
    ref_top, dep_top = reference.argmax(1), deployed.argmax(1)
    differ = ref_top != dep_top
    margin = reference.gather(1, ref_top[:, None]) - reference.gather(1, dep_top[:, None])
    tie = margin[:, 0] <= NEAR_TIE * reference.abs().amax(1)
    diff = (deployed - reference).abs().max().item() if finite else float("inf")
    return ArgmaxCheck(len(reference), int((~differ).sum()), int((differ & tie).sum()), finite, float(diff))
