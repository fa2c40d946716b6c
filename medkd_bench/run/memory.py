"""Out-of-memory errors as one line naming the cell and its batch size, on any device.

A cell that runs out of memory fails alone (the device's cache freed for the
next cells), with a message that says what to change instead of an allocator's
internal error.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch

from medkd_bench.errors import MedkdError
from medkd_bench.run.cells import Cell
from medkd_bench.runtime.device import Runtime
from medkd_bench.specs import TrainSettings

#: How PyTorch's CPU allocator refuses (Linux, then Windows); it raises a plain RuntimeError, not
#: torch.OutOfMemoryError: ``[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory:
#: you tried to allocate 2147483648 bytes. Error code 12 (Cannot allocate memory)``.
_CPU_ALLOCATOR = re.compile(r"DefaultCPUAllocator: ((?:can't allocate memory|not enough memory).*)", re.DOTALL)


def out_of_memory_reason(exc: BaseException) -> str | None:
    """The allocator's own words if ``exc`` is an out-of-memory error (CUDA's, the CPU allocator's, Python's)."""
    if isinstance(exc, torch.OutOfMemoryError):
        return (str(exc).splitlines() or [""])[0]
    if isinstance(exc, MemoryError):
        return str(exc) or "MemoryError"
    found = _CPU_ALLOCATOR.search(str(exc)) if isinstance(exc, RuntimeError) else None
    return found.group(1).splitlines()[0] if found else None


@contextlib.contextmanager
def out_of_memory_named(cell: Cell, settings: TrainSettings, runtime: Runtime, doing: str = "training") -> Iterator[None]:
    """An out-of-memory error as one line naming the cell and the batch size; the device's cache freed.

    The cell fails alone: the freed cache lets the next cells run. On a CPU the
    allocator raises a plain RuntimeError, recognised by its words, so its
    message reads as CUDA's does instead of as an internal enforce failure.
    """
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        reason = out_of_memory_reason(exc)
        if reason is None:
            raise
        if runtime.device.type == "cuda":
            torch.cuda.empty_cache()
        raise MedkdError(f"out of {runtime.device.type.upper()} memory {doing} {cell.label()} at batch size "
                         f"{settings.batch_size} ({reason[:120]}); try a smaller --img-size") from None
