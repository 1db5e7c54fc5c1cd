"""The CPU allocator setting a run may ask for: glibc's mmap threshold, fixed.

Under glibc's defaults a search's resident set sits well above its live tensors: the bridge
allocates many short-lived per-head copies of the residual stream (tens of MB each) and the holes
they leave grow the heap (GPT-2-small shape, EP at batch 32: 6.8-6.9 GB resident for about 1.9 GB
of live heap; docs/engine-at-scale.md). With the mmap threshold fixed at 128 KB every larger
tensor is mapped and unmapped on its own, so the resident set follows live tensors (3.9 GB), at
the price of faulting fresh pages on every step (about 1.75x the step time on our 2-core VM). That
trade is the user's: `--compact-memory` asks for it, nothing sets it by default. Setting it with
`mallopt` at start-up is what the environment variable MALLOC_MMAP_THRESHOLD_ does before the
first allocation; allocations made before the call keep their place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

from hap.errors import ConfigError

M_MMAP_THRESHOLD = -3  # glibc's malloc.h
COMPACT_THRESHOLD = 131072  # bytes: the largest threshold that brought the CLI within 4 GB
_applied = False


def compact() -> None:
    """Fix glibc's mmap threshold at COMPACT_THRESHOLD for the rest of this process. Raises
    ConfigError where the C library is not glibc (macOS, musl): the setting does not exist
    there."""
    global _applied
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        mallopt = None
    if mallopt is None or os.uname().sysname != "Linux":
        raise ConfigError(
            "--compact-memory needs glibc's allocator (Linux); on this system leave it off"
        )
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    if mallopt(M_MMAP_THRESHOLD, COMPACT_THRESHOLD) != 1:
        raise ConfigError("--compact-memory: glibc refused the mmap threshold; leave it off")
    _applied = True


def setting() -> str:
    """The allocator this process runs under, as recorded with its results: "compact" when
    `compact()` ran or MALLOC_MMAP_THRESHOLD_ is set in the environment, else "default"."""
    if _applied:
        return "compact"
    threshold = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    return f"mmap threshold {threshold}" if threshold else "default"
