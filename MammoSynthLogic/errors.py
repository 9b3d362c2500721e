"""The one error type users see: `error: <what>: <why>` on one line."""
from __future__ import annotations

import os


class MammoSynthError(Exception):
    """A failure caused by the input or the environment, reported without a traceback."""

    def __init__(self, what: str | os.PathLike, why: str):
        self.what = str(what)
        self.why = why
        super().__init__(f"{self.what}: {why}")


class Cancelled(Exception):
    """Raised inside a pipeline when the user cancels; no output is written."""
