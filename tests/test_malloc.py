"""glibc malloc tuning: done on glibc unless the environment already chose."""

from __future__ import annotations

import platform
import sys

import pytest

from hub.tuning import malloc as _malloc

glibc = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
    reason="glibc only")


@glibc
def test_tuning_is_applied_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        monkeypatch.delenv(name, raising=False)
    assert _malloc.limit_arenas()
    assert _malloc.fix_mmap_threshold()
    _malloc.trim()  # returns whether pages were freed: either is right


@pytest.mark.parametrize("name, value", [
    ("MALLOC_MMAP_THRESHOLD_", "65536"),
    ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=65536"),
])
def test_environment_wins_for_the_mmap_threshold(monkeypatch: pytest.MonkeyPatch, name: str,
                                                 value: str) -> None:
    monkeypatch.setenv(name, value)
    assert not _malloc.fix_mmap_threshold()


def test_environment_wins_for_the_arenas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert not _malloc.limit_arenas()
