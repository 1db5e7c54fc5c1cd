"""Measuring one run: wall and CPU seconds, peak memory; CUDA work synchronised before reading."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import psutil
import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Measured:
    wall_s: float
    cpu_s: float
    peak_mem_mb: float  # CUDA: max_memory_allocated; CPU: peak resident set size during the run


_PROCESS = psutil.Process()


def rss_mb() -> float:
    """This process's resident set size now, in MB."""
    return _PROCESS.memory_info().rss / 2**20


class _RSSPeak:
    """Samples the resident set size every `interval` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak = interval, rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mb())

    def __enter__(self) -> _RSSPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure(fn: Callable[[], T], device: torch.device) -> tuple[T, Measured]:
    """Run `fn` once. On CUDA the clock is CUDA events around the call, after a synchronise."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        cpu = time.process_time()
        begin.record()
        out = fn()
        end.record()
        torch.cuda.synchronize(device)
        wall = begin.elapsed_time(end) / 1000
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        return out, Measured(wall, time.process_time() - cpu, peak)
    with _RSSPeak() as rss:
        cpu = time.process_time()
        start = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return out, Measured(wall, cpu, rss.peak)
