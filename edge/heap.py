"""Freed memory goes back to the system, so a large image decoded once is not held for the life of
a server (glibc kept 611-770 MB after four concurrent uploads: each request thread has its malloc
arena, and glibc raises its threshold for allocating large blocks apart from them each time one is freed)."""
from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
"""glibc's mallopt parameters: free memory at the top of a heap above the first is given back;
allocations from the second up are mapped apart and unmapped when freed."""
MMAP_THRESHOLD = 4 << 20
"""A decoded image (Pillow allocates it in blocks of up to 16 MiB) is above it; a converted tile is below."""
TRIM_THRESHOLD = 32 << 20
"""glibc's default (128 KiB) would give back and fault in again the memory of every small image."""


def return_freed_memory() -> bool:
    """Fix glibc's thresholds (:data:`MMAP_THRESHOLD`, :data:`TRIM_THRESHOLD`; fixing them also
    stops them from rising), so that every large block is returned to the system when freed. True if
    applied; False where the C library is not glibc (nothing to do there). Call it before any thread
    starts."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                           TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False
