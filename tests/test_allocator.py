"""The glibc allocator setting the CLI applies before any training."""

import sys

import pytest

from medkd_bench.runtime.allocator import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_keeps_freed_memory_on_linux(monkeypatch):
    monkeypatch.delenv("MEDKD_KEEP_FREED_MEMORY", raising=False)
    assert keep_freed_memory() is True


def test_can_be_turned_off(monkeypatch):
    monkeypatch.setenv("MEDKD_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
