"""What the machine can do: device, autocast precision, matmul peak, and model FLOPs per token.

MFU is reported against a peak *measured in the same process* (a large matmul in the training
precision), not a datasheet number: on shared CPU machines the datasheet is fiction, and the
ratio is what tells whether the loop wastes the hardware.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import ctypes.util
import functools
import sys
import time
from collections.abc import Iterator

import torch


def pick_device(local_rank: int = 0) -> torch.device:
    """The GPU of this process (one per process under torchrun), or the CPU."""
    return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")


def bf16_supported(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    check = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return bool((check and check()) or (amx and amx()))


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """None means plain fp32. `auto` picks bf16 where the hardware runs it natively."""
    if precision == "fp32":
        return None
    if precision == "bf16" or bf16_supported(device):
        return torch.bfloat16
    return None


def compiler_missing(device: torch.device) -> str | None:
    """Why `torch.compile` cannot run here, or None. On the CPU, inductor writes C++ and builds it
    with `$CXX` or g++; without one the first step would fail deep inside torch."""
    if device.type != "cpu":
        return None
    compiler = os.environ.get("CXX") or "g++"
    return None if shutil.which(compiler) else f"no C++ compiler ({compiler}) was found to build the CPU kernels"


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def flops_per_token(n_params: int, layers: int, hidden: int, seq_len: int) -> float:
    """Training FLOPs per token: 6·N (forward + backward matmuls) + 12·L·d·T (attention scores)."""
    return 6.0 * n_params + 12.0 * layers * hidden * seq_len


@functools.lru_cache(maxsize=4)
def measured_matmul_peak(device: torch.device, dtype: torch.dtype | None) -> float:
    """`measure_matmul_peak` once per process and precision: a resumed or repeated run reuses it."""
    return measure_matmul_peak(device, dtype, seconds=0.5)


def measure_matmul_peak(device: torch.device, dtype: torch.dtype | None, seconds: float = 1.0) -> float:
    """FLOP/s of a square matmul in the training precision, best of a short burst."""
    n = 4096 if device.type == "cuda" else 2048
    dt = dtype or torch.float32
    gen = torch.Generator(device=device).manual_seed(0)  # private: must not move the training RNG
    a = torch.randn(n, n, device=device, dtype=dt, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dt, generator=gen)
    best = 0.0
    deadline = time.perf_counter() + seconds
    (a @ b).sum().item()  # warm up
    while time.perf_counter() < deadline:
        reps = 4
        t0 = time.perf_counter()
        for _ in range(reps):
            c = a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        else:
            c.sum().item()
        best = max(best, reps * 2 * n**3 / (time.perf_counter() - t0))
    return best


# glibc mallopt parameters (malloc.h) and their defaults, to put back after training.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_GLIBC_DEFAULTS = {_M_TRIM_THRESHOLD: 128 * 1024, _M_TOP_PAD: 128 * 1024, _M_MMAP_MAX: 65536}
_KEEP_FREED = {_M_TRIM_THRESHOLD: 2**31 - 1, _M_TOP_PAD: 64 << 20, _M_MMAP_MAX: 0}  # mmap off, trim deferred


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt  # noqa: B018 - musl and other libcs have no mallopt
        libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def reuse_freed_memory(device: torch.device, enabled: bool = True) -> Iterator[bool]:
    """While training on the CPU, large tensors are served from memory freed a moment ago.

    Every step allocates and frees the same large buffers (logits, attention, activations:
    tens of MB each). glibc hands allocations above ~32 MB to mmap and gives them back with
    munmap, so every step page-faults the same memory in again and the kernel zeroes it: on a
    2-core machine that was a quarter of a tiny model's step (bench/train_throughput.py, 11.3k →
    13.9k tokens/s). With mmap off and trimming deferred, freed blocks stay in the heap and the
    next step reuses them. The settings are put back afterwards and the kept memory is returned
    (malloc_trim), so later stages of the same process see the usual allocator. Yields whether
    the setting took effect (False off glibc, on a GPU where this does not matter, or when not
    `enabled`).

    The price is memory: the kept heap fragments. On SmolLM2-135M at 8×512 (compiled) a step's
    peak RSS is 6.2 GB this way against 5.5 GB with glibc's defaults, for 750 against 630
    tokens/s. With activation checkpointing the speed is the same either way (480 tokens/s)
    and the peak 5.0 against 4.7 GB, so the memory-saving mode passes `enabled=False`.
    """
    libc = _glibc() if device.type == "cpu" and enabled else None
    if libc is None:
        yield False
        return
    for param, value in _KEEP_FREED.items():
        libc.mallopt(param, ctypes.c_int(value))
    try:
        yield True
    finally:
        for param, value in _GLIBC_DEFAULTS.items():
            libc.mallopt(param, ctypes.c_int(value))
        libc.malloc_trim(ctypes.c_size_t(0))
