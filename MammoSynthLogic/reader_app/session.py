"""What the reader app knows, without Qt: the cases of one reader folder and one reader's answers.

It only ever looks at the reader folder (`study/reader/`, or the folder given when it has no `reader/` inside) and the
responses folder; it never lists the study folder itself, so an answer key stored beside the reader copies is never
opened, listed or shown.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.reader_study.responses import Answer, ReaderResponses, check_reader_id, load_responses, now_utc

CASE_GLOB = "case-*.dcm"


def images_folder(study: str | os.PathLike) -> Path:
    """`study/reader` when it exists, else the folder itself (a reader given only the reader copies)."""
    study = Path(study)
    if not study.is_dir():
        raise MammoSynthError(study, "no such study folder; pass the folder `reader-study prepare` wrote")
    inner = study / "reader"
    return inner if inner.is_dir() else study


class ReaderSession:
    """The cases in order, one reader's answers, the current position; every change is saved at once."""

    def __init__(self, study: str | os.PathLike, reader: str, responses: Optional[str | os.PathLike] = None):
        self.images = images_folder(study)
        self.cases = sorted(self.images.glob(CASE_GLOB))
        if not self.cases:
            raise MammoSynthError(self.images, "no case-*.dcm images here; pass the study folder `reader-study "
                                               "prepare` wrote (or its reader/ folder)")
        self.responses_dir = Path(responses) if responses is not None else Path(study) / "responses"
        self.reader = check_reader_id(reader)
        path = self.responses_dir / f"{self.reader}.json"
        self.responses = load_responses(path) if path.exists() else ReaderResponses(reader=self.reader)
        unknown = sorted(set(self.responses.answers) - {self.name(i) for i in range(len(self.cases))})
        if unknown:
            raise MammoSynthError(path, f"answers for cases not in this study ({', '.join(unknown[:3])}); "
                                        "pass the study these answers belong to, or another --reader")
        self.index = self.resume_index()
        self._shown_at = time.monotonic()

    def name(self, index: int) -> str:
        return self.cases[index].stem

    @property
    def current(self) -> str:
        return self.name(self.index)

    @property
    def answered(self) -> int:
        return len(self.responses.answers)

    def resume_index(self) -> int:
        """The first unanswered case; when all are answered, the case the reader last answered."""
        for i in range(len(self.cases)):
            if self.name(i) not in self.responses.answers:
                return i
        names = [self.name(i) for i in range(len(self.cases))]
        return names.index(self.responses.last_case) if self.responses.last_case in names else 0

    def answer(self, index: Optional[int] = None) -> Optional[Answer]:
        return self.responses.answers.get(self.name(self.index if index is None else index))

    def go(self, index: int) -> None:
        self.index = max(0, min(len(self.cases) - 1, index))
        self._shown_at = time.monotonic()

    def record(self, rating: Optional[int] = None, **findings) -> Optional[Answer]:
        """Set the rating and/or findings of the current case and save; findings wait for a rating."""
        old = self.answer()
        if old is None and rating is None:
            return None
        spent = time.monotonic() - self._shown_at
        self._shown_at = time.monotonic()
        fields = {"mass": False, "calcification": False, "birads": None} if old is None else {
            "mass": old.mass, "calcification": old.calcification, "birads": old.birads}
        fields.update(findings)
        answer = Answer(rating=old.rating if rating is None else rating, seconds=(old.seconds if old else 0.0) + spent,
                        answered_utc=now_utc(), **fields)
        self.responses.answers[self.current] = answer
        self.responses.last_case = self.current
        self.responses.save(self.responses_dir)
        return answer
