"""The CPU training allocator setting: large per-step buffers come from freed heap memory, not fresh mmaps."""

from __future__ import annotations

import ctypes
import sys

import pytest
import torch

from selfsup.train.hardware import reuse_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc settings")


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _mmapped_blocks_while_holding(megabytes: int) -> int:
    """glibc's count of mmap-served blocks while a tensor of that size is alive."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    tensor = torch.empty(megabytes << 20, dtype=torch.uint8)
    count = libc.mallinfo2().hblks
    del tensor
    return count


def test_large_buffers_come_from_the_heap_only_while_training():
    """Inside the setting a 64 MB buffer is not mmapped (so freeing and reallocating it each step costs
    no page faults); afterwards glibc's defaults are back and the same buffer is mmapped again."""
    before = _mmapped_blocks_while_holding(64)
    with reuse_freed_memory(torch.device("cpu")) as active:
        assert active
        during = _mmapped_blocks_while_holding(64)
    after = _mmapped_blocks_while_holding(64)
    assert during == before - 1, "a 64 MB tensor was mmapped while training"
    assert after == before, "the allocator settings were not put back"


def test_gpu_runs_leave_the_allocator_alone():
    """Off the CPU the setting does nothing (GPU memory has its own caching allocator)."""
    with reuse_freed_memory(torch.device("meta")) as active:
        assert not active
        assert _mmapped_blocks_while_holding(64) >= 1


def test_memory_saving_mode_leaves_the_allocator_alone():
    """Not enabled (activation checkpointing on), a 64 MB buffer is still mmapped and given back when freed:
    the kept heap would cost memory there and win no speed."""
    before = _mmapped_blocks_while_holding(64)
    with reuse_freed_memory(torch.device("cpu"), enabled=False) as active:
        assert not active
        assert _mmapped_blocks_while_holding(64) == before
