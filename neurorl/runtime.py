"""Process-wide settings for training: torch CPU threads, the linear backend and how freed CPU memory is kept.

Freed memory: glibc's malloc serves blocks above its mmap threshold (128 KiB at start, raised
dynamically up to 32 MiB) with fresh mmap'd pages and returns freed heap tops to the kernel. A
training step allocates and frees many tensors of 0.25-5 MiB (a PopSAN layer at batch 256 and
T = 5 is 1.3 MiB), so nearly every new buffer was zero-filled by the kernel page by page: about
2,500 page faults per PopSAN forward+backward on a 2-core x86_64 VM. With :func:`retain_freed_memory`
the freed blocks stay in the heap and are reused, which cut that step from about 24 ms to 16 ms
(``python tools/bench_memory.py``). The process then keeps its peak heap until it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch

from neurorl.snn import linear

# mallopt parameters from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's largest mmap threshold on 64-bit machines (DEFAULT_MMAP_THRESHOLD_MAX: 4 MiB · sizeof(long)).
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024
# mallopt takes a C int, so the heap is trimmed only past 2 GiB of free space at its top.
TRIM_THRESHOLD = 2**31 - 1


def configure(threads: int, retain_memory: bool, linear_backend: str = "auto") -> bool:
    """Set torch's CPU threads, where large linear products run (:func:`neurorl.snn.linear.set_backend`)
    and, if ``retain_memory``, keep freed memory in the process.

    Returns whether freed memory is now retained (False where the C library is not glibc).
    """
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise ValueError(f"threads={threads!r}: expected a positive integer such as 1")
    linear.set_backend(linear_backend)
    torch.set_num_threads(threads)
    return retain_freed_memory() if retain_memory else False


@functools.cache
def retain_freed_memory() -> bool:
    """Keep freed blocks below 32 MiB in the heap, trimmed only past 2 GiB. Return False without glibc.

    Applies to the whole process and cannot be undone, so it is done once.
    """
    libc = _glibc()
    if libc is None:
        return False
    mmap_ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX) == 1
    trim_ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return mmap_ok and trim_ok


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return None
    return libc
