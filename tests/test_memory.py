"""The engine's memory across search steps of different widths (hap.engine.patching._Stream).

A task's batches are padded to their own longest prompt, so consecutive search steps differ in
width. The mixing's two buffers (deltas and their gradients, hundreds of MB each at GPT-2-small
size) must be reused across those steps, and never held beside fresh ones: see
`benchmarks/cli_memory.py` for what this costs a `hap discover` run.
"""

from __future__ import annotations

import pytest
import torch

from hap.engine import metrics, patching
from hap.engine.ablation import fixed_references
from hap.engine.patching import EdgeMaskedForward


class _Watched(patching._Stream):
    """A stream that records, as each buffer is taken, which storage it lies in and how many
    buffers the engine holds at that moment (its spare list plus this stream's)."""

    taken: list[tuple[int, int]] = []  # (storage address, buffers held), in order taken

    def _held(self) -> int:
        return len(self.spare) + sum(t is not None for t in (self.deltas, self.grads))

    def buffer(self, like, width):
        fresh = self.deltas is None
        out = super().buffer(like, width)
        if fresh:
            self.taken.append((out.untyped_storage().data_ptr(), self._held()))
        return out

    def grad_buffer(self):
        fresh = self.grads is None
        out = super().grad_buffer()
        if fresh:
            self.taken.append((out.untyped_storage().data_ptr(), self._held()))
        return out


@pytest.fixture
def widths(ioi):
    """(wide, narrow): two train batches of 8 prompts, the narrow one shorter."""
    order = ioi.train.position.argsort(descending=True)
    wide, narrow = ioi.train.subset(order[:8]), ioi.train.subset(order[-8:])
    assert wide.clean.shape[1] > narrow.clean.shape[1]
    return wide, narrow


def _step(forward: EdgeMaskedForward, batch, baseline, mask: torch.Tensor) -> None:
    logits = metrics.at_position(forward(batch.clean, mask, baseline), batch.position)
    logits.logsumexp(-1).sum().backward()


def test_steps_of_alternating_width_reuse_the_first_steps_buffers(
    model, graph, widths, monkeypatch
):
    """Wide, narrow, wide, narrow: every step after the first takes both buffers from the spare
    list (a narrow step a prefix of the wide buffers), so only two storages are ever used, and
    the spare list never holds more than two."""
    monkeypatch.setattr(patching, "_Stream", _Watched)
    monkeypatch.setattr(_Watched, "taken", [])
    forward = EdgeMaskedForward(model, graph)
    mask = torch.full((graph.n_edges,), 0.5, requires_grad=True)
    references = [fixed_references(model, graph, b, "corrupted", b)[1] for b in widths]
    for step in range(4):
        _step(forward, widths[step % 2], references[step % 2], mask)
        assert len(forward._spare) <= 2
    storages = [address for address, _ in _Watched.taken]
    assert len(storages) == 8
    assert set(storages[2:]) == set(storages[:2])


def test_a_wider_step_does_not_hold_the_narrower_buffers(model, graph, widths, monkeypatch):
    """Narrow, then wide: the narrow step's buffers are too small, so the wide step allocates
    its own, after dropping them: the engine holds two buffers at every moment, not four."""
    monkeypatch.setattr(patching, "_Stream", _Watched)
    monkeypatch.setattr(_Watched, "taken", [])
    forward = EdgeMaskedForward(model, graph)
    mask = torch.full((graph.n_edges,), 0.5, requires_grad=True)
    references = [fixed_references(model, graph, b, "corrupted", b)[1] for b in widths]
    for step in (1, 0, 1, 0):
        _step(forward, widths[step], references[step], mask)
    assert max(held for _, held in _Watched.taken) == 2
    assert len(forward._spare) == 2


ALLOCATION_PROBE = """
import ctypes, json, sys
import torch
from hap import allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "compact":
    allocator.compact()
before = libc.mallinfo2().hblkhd  # bytes mapped on their own (importing torch maps some)
first = torch.ones(1 << 20)  # 4 MB: above glibc's initial 128 KB threshold, mapped on its own
del first  # freeing a mapped chunk raises glibc's dynamic threshold to its size (4 MB)
second = torch.ones(1 << 20)
print(json.dumps({"mapped": libc.mallinfo2().hblkhd - before, "setting": allocator.setting()}))
"""


def test_compact_memory_maps_large_tensors_on_their_own_and_is_recorded(tmp_path):
    """glibc's default raises its mmap threshold after a large free, so the next tensor of that
    size lands on the heap, where its hole stays resident; `allocator.compact` fixes the
    threshold, so the second tensor is mapped (and unmapped when freed). Each case runs in a
    fresh interpreter: the setting is process-wide. The CLI flag records its allocator."""
    import json
    import subprocess
    import sys

    def probe(mode: str) -> dict:
        out = subprocess.run(
            [sys.executable, "-c", ALLOCATION_PROBE, mode],
            capture_output=True,
            text=True,
            check=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    default, compact = probe("default"), probe("compact")
    assert default == {"mapped": 0, "setting": "default"}
    assert compact["mapped"] >= 4 * 2**20 and compact["setting"] == "compact"

    run = subprocess.run(
        [sys.executable, "-m", "hap.cli", "discover", "--method", "eap", "--compact-memory"]
        + ["--n-test", "16", "--json", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(run.stdout.strip().splitlines()[-1])["allocator"] == "compact"
