"""Progress reporting and cooperative cancellation shared by every long job."""
from __future__ import annotations

import json
import sys
import threading
from typing import Callable, Optional

from MammoSynthLogic.errors import Cancelled

ProgressCallback = Callable[[str, int, int], None]


class Reporter:
    """Pipelines call `update(stage, done, total)`; it forwards to a callback and raises `Cancelled`."""

    def __init__(self, callback: Optional[ProgressCallback] = None, cancel: Optional[threading.Event] = None):
        self.callback = callback
        self.cancel = cancel or threading.Event()

    def update(self, stage: str, done: int, total: int) -> None:
        if self.callback is not None:
            self.callback(stage, done, total)
        self.check()

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled("cancelled")

    def log(self, message: str) -> None:
        if self.callback is not None and hasattr(self.callback, "log"):
            self.callback.log(message)


class JsonLinesProgress:
    """Machine-readable progress: one JSON object per line on stdout (`--progress-json`)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.stream.write(json.dumps({"type": "progress", "stage": stage, "done": done, "total": total}) + "\n")
        self.stream.flush()

    def log(self, message: str) -> None:
        self.stream.write(json.dumps({"type": "log", "message": message}) + "\n")
        self.stream.flush()


class TqdmProgress:
    """Human progress: one tqdm bar per stage on stderr."""

    def __init__(self, disable: bool = False):
        self.disable = disable
        self._bar = None
        self._stage = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total, desc=stage, disable=self.disable, file=sys.stderr, leave=False)
        if self._bar is not None:
            self._bar.total = total
            self._bar.n = done
            self._bar.refresh()

    def log(self, message: str) -> None:
        if not self.disable:
            print(message, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def emit_result(payload: dict, stream=None) -> None:
    """Final machine-readable line of a `--progress-json` run (paths of what was written)."""
    stream = stream or sys.stdout
    stream.write(json.dumps({"type": "result", **payload}) + "\n")
    stream.flush()
