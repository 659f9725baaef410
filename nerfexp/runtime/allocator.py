"""Keep freed memory in the process heap on glibc.

A NeRF step allocates and frees tensors of tens of MB. glibc serves those with fresh ``mmap`` pages and returns
them on free, so every step page-faults through its whole working set: elementwise kernels then run ~5x slower
and matmuls ~1.5x slower on CPU. Turning off mmap for large blocks and never trimming the heap makes the
allocator reuse the same pages step after step. Harmless where glibc is absent (macOS, Windows): nothing happens.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
_done = False


def keep_freed_memory() -> bool:
    """Configure glibc malloc to reuse freed large blocks; returns True when it was applied."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _done = ok
    return ok
