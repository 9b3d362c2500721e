"""Large buffers kept by name from one image to the next, so that a pipeline run many times does not allocate them
again each time.

A GPU's caching allocator hands device memory back without cost; on the CPU a freed buffer of tens of MB goes back
to the OS, and its next allocation comes back through page faults and kernel zeroing (about a tenth of the host
time of a 3840² MAMBO image, `Testing/benchmarks/bench_overhead.py`). A workspace serves one owner on one device
and holds what it asked for until it releases it or asks for another shape under the same name: the memory stays
at the peak of one image, between images too.
"""
from __future__ import annotations

import torch


class Workspace:
    def __init__(self):
        self.buffers: dict[str, torch.Tensor] = {}

    def empty(self, name: str, shape: tuple[int, ...], device: torch.device | str,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """An uninitialised buffer: the one held under `name` if it has this shape and dtype, else a new one (the
        old one freed first)."""
        held = self.buffers.pop(name, None)
        if held is None or held.shape != tuple(shape) or held.dtype != dtype:
            del held  # the old one is freed before the new one exists
            held = torch.empty(tuple(shape), dtype=dtype, device=device)
        self.buffers[name] = held
        return held

    def release(self, prefix: str = "") -> None:
        """Free the buffers whose names start with `prefix` (all by default)."""
        for name in [n for n in self.buffers if n.startswith(prefix)]:
            del self.buffers[name]
