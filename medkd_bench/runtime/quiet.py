"""Output hygiene shared by the CLI process and its worker processes (which start with fresh filters)."""

from __future__ import annotations

import logging
import warnings


def quiet_dependency_warnings() -> None:
    """Deprecation chatter from dependencies (e.g. ofa's ``torch.jit.script``) is not the user's concern."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    # torch.compile's C++ toolchain lookup logs "No CUDA runtime is found" on every CPU-only machine.
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
