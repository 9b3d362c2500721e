"""The answer file of one reader: what the reader app writes after every answer and what `score` reads.

`responses/<reader>.json` holds every answer; `responses/<reader>.csv` is the same as a table. Both are written
atomically. A rating is MAM-E's 0–4 scale; the binary call ("spotted as synthetic") is rating >= 3 by default.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import os
import re
from pathlib import Path
from typing import Optional

from MammoSynthLogic import __version__
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.fileio import write_text_atomic

RATINGS = {0: "definitely real", 1: "probably real", 2: "not sure", 3: "probably synthetic", 4: "definitely synthetic"}
SYNTHETIC_FROM = 3  # ratings from here up count as "spotted as synthetic"
BIRADS = ("0", "1", "2", "3", "4", "5", "6")
ANSWER_COLUMNS = ("case", "rating", "call", "mass", "calcification", "birads", "seconds", "answered_utc")
_READER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclasses.dataclass
class Answer:
    """One reader's answer on one case."""

    rating: int
    mass: bool = False
    calcification: bool = False
    birads: Optional[str] = None
    seconds: float = 0.0
    answered_utc: str = ""

    def __post_init__(self) -> None:
        if self.rating not in RATINGS:
            raise ValueError(f"rating must be 0..4, got {self.rating!r}")
        if self.birads is not None and self.birads not in BIRADS:
            raise ValueError(f"BI-RADS must be one of {', '.join(BIRADS)}, got {self.birads!r}")

    @property
    def call(self) -> str:
        return "synthetic" if self.rating >= SYNTHETIC_FROM else "real"


def check_reader_id(reader: str) -> str:
    if not _READER_ID.match(reader or ""):
        raise MammoSynthError(reader or "reader", "reader name must be 1-64 letters, digits, '.', '_' or '-'")
    return reader


@dataclasses.dataclass
class ReaderResponses:
    """Every answer of one reader, by case name (e.g. "case-0001")."""

    reader: str
    answers: dict[str, Answer] = dataclasses.field(default_factory=dict)
    last_case: Optional[str] = None

    def to_json(self) -> str:
        return json.dumps({
            "format": "mammosynth-reader-responses/1", "reader": self.reader, "app_version": __version__,
            "saved_utc": now_utc(), "last_case": self.last_case,
            "answers": {case: {"call": a.call, **dataclasses.asdict(a)} for case, a in sorted(self.answers.items())},
        }, indent=2)

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(ANSWER_COLUMNS)
        for case, a in sorted(self.answers.items()):
            writer.writerow([case, a.rating, a.call, int(a.mass), int(a.calcification), a.birads or "",
                             f"{a.seconds:.1f}", a.answered_utc])
        return buffer.getvalue()

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `<reader>.json` and `<reader>.csv` atomically; returns the JSON path."""
        folder = Path(folder)
        path = folder / f"{self.reader}.json"
        write_text_atomic(path, self.to_json())
        write_text_atomic(folder / f"{self.reader}.csv", self.to_csv())
        return path


def now_utc() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def load_responses(path: str | os.PathLike) -> ReaderResponses:
    """Read one reader's JSON answer file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        answers = {case: Answer(rating=int(a["rating"]), mass=bool(a.get("mass", False)),
                                calcification=bool(a.get("calcification", False)), birads=a.get("birads"),
                                seconds=float(a.get("seconds", 0.0)), answered_utc=str(a.get("answered_utc", "")))
                   for case, a in data["answers"].items()}
        return ReaderResponses(reader=check_reader_id(str(data["reader"])), answers=answers,
                               last_case=data.get("last_case"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise MammoSynthError(path, f"not a reader answer file ({type(e).__name__}: {e}); "
                                    "pass the responses folder the reader app wrote") from None


def load_folder(folder: str | os.PathLike) -> list[ReaderResponses]:
    """Every reader's answers in a responses folder (`*.json`), sorted by reader name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MammoSynthError(folder, "no such responses folder")
    readers = [load_responses(p) for p in sorted(folder.glob("*.json"))]
    if not readers:
        raise MammoSynthError(folder, "no reader answer files (*.json) in this folder")
    return readers
