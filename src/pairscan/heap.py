"""The ``pairscan`` process's C heap: memory freed is kept for the next allocation.

A page of memory costs the process that touches it for the first time about as much
as the products computed on it (the kernel zeroes it and maps it in, ~1.7 ms per MB),
and glibc's allocator gives large blocks back to the kernel as soon as they are freed
(those above a threshold are mapped apart; free space at the top of the heap is trimmed),
so a task's temporaries of the same size are paid for again, block after block. A
command is a process of its own, run once: there freed memory stays with the process
and the next temporaries reuse it, pages the load has already touched among them. What
is kept was in use before: the peak stays within a few percent (docs/performance.md).

Only the command line asks this (:func:`keep_freed_memory` in ``pairscan.cli.entry``);
the library leaves a caller's process as it is. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit
KEEP = 2**30  # free memory at the top of the heap kept rather than given back


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse in this process: blocks up to
    32 MiB come from the heap rather than mappings of their own, up to 1 GiB of free heap
    is kept, and threads share one heap (so a task's thread reuses what the load freed).
    True where it was applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    done = [mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX), mallopt(M_TRIM_THRESHOLD, KEEP),
            mallopt(M_ARENA_MAX, 1)]
    return all(done)
