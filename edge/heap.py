"""Freed memory goes back to the system, so a large image decoded once is not held for the life of
a server (glibc kept 611-770 MB after four concurrent uploads: each request thread has its malloc
arena, and glibc raises its threshold for allocating large blocks apart from them each time one is freed)."""
from __future__ import annotations

import ctypes
import ctypes.util

M_MMAP_THRESHOLD = -3
"""glibc's mallopt parameter: allocations from this size up are mapped apart and unmapped when freed."""
MMAP_THRESHOLD = 1 << 20


def return_freed_memory() -> bool:
    """Fix glibc's threshold at 1 MiB (setting it also stops it from rising), so that every large
    block (a decoded image, a band of it) is returned to the system when freed. True if applied;
    False where the C library is not glibc (nothing to do there). Call it before any thread starts."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False
