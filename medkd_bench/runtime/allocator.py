"""Process-wide memory allocator settings for CPU training; imports nothing heavy."""

from __future__ import annotations

import os
import sys


def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the OS after every use.

    By default glibc serves blocks above a (dynamic, at most 32 MB) threshold
    with fresh ``mmap`` calls and unmaps them on free, so every training step
    pays page faults to re-zero its activations, gradients and optimiser
    buffers. Raising the mmap threshold to 1 GB and the trim threshold to 2 GB
    keeps freed memory in the heap for reuse. Measured on a 2-core CPU: VGG19
    training 23 -> 30 images/s and Score-CAM on VGG19 1.2x faster, for about
    1.5 GB more resident memory. A no-op off glibc; ``MEDKD_KEEP_FREED_MEMORY=0``
    turns it off. Returns whether the setting took.
    """
    import ctypes
    import ctypes.util

    if os.environ.get("MEDKD_KEEP_FREED_MEMORY", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, ctypes.c_int(1 << 30)) and mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1)))
