"""Whether ``torch.compile`` can run here, asked once before a ``--compile`` run does any work.

Inductor needs a C++ compiler for CPU kernels and Triton for GPU kernels; when
either is missing, the first compiled call fails deep inside a training step
with pages of output. Compiling a two-operation function on the run's device
finds that out in seconds and says it in one line.
"""

from __future__ import annotations

import torch

from medkd_bench.errors import MedkdError, one_line
from medkd_bench.runtime.device import Runtime


def require_compiler(runtime: Runtime, mode: str) -> None:
    """Raise a one-line :class:`MedkdError` naming ``--compile`` when a small function fails to compile."""
    def probe(x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x) * 2.0 + 1.0

    try:
        fn = torch.compile(probe, mode=mode, fullgraph=True)
        out = fn(torch.arange(-4.0, 4.0, device=runtime.device))
        runtime.synchronize()
        expected = torch.relu(torch.arange(-4.0, 4.0)) * 2.0 + 1.0
        if not torch.equal(out.cpu(), expected):
            raise RuntimeError("the compiled probe computed a wrong result")
    except Exception as exc:
        raise MedkdError(f"--compile {mode}: torch.compile cannot run on {runtime.device.type} here: "
                         f"{one_line(exc)[:200]}") from None
