"""Progress bars for long work (a sweep, a search), off unless a caller switches them on.

The library stays quiet by default; the command line switches bars on (`--quiet` keeps them
off) with `progress_bars(True)`, and tqdm itself keeps them off when stderr is not a terminal, so
logs and CI output carry no bar.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from tqdm.auto import tqdm

_ENABLED: ContextVar[bool] = ContextVar("hap_progress", default=False)


@contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Show bars inside this block when `enabled` (and stderr is a terminal)."""
    token = _ENABLED.set(enabled)
    try:
        yield
    finally:
        _ENABLED.reset(token)


def bar(total: int | None = None, desc: str = "", leave: bool = True) -> tqdm:
    """A tqdm bar that is disabled unless bars are on; None lets tqdm check for a terminal."""
    return tqdm(total=total, desc=desc, leave=leave, disable=True if not _ENABLED.get() else None)
