"""What the machine can do: device, autocast precision, matmul peak, and model FLOPs per token.

MFU is reported against a peak *measured in the same process* (a large matmul in the training
precision), not a datasheet number: on shared CPU machines the datasheet is fiction, and the
ratio is what tells whether the loop wastes the hardware.
"""

from __future__ import annotations

import contextlib
import functools
import time

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
