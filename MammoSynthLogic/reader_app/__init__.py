"""`mammosynth-reader STUDY`: the desktop app readers use to rate the blinded images of a reader study.

Needs the `reader` extra (qtpy + PySide6). It opens only the study's reader copies and the reader's own answer
file; the answer key is never read.
"""
from __future__ import annotations

import argparse
import getpass
import re
import sys
from pathlib import Path
from typing import Optional, Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammosynth-reader",
        description="Rate the images of a reader study one at a time: 0 definitely real ... 4 definitely synthetic, "
        "with optional findings. Every answer is saved at once to STUDY/responses/READER.json (and .csv); "
        "starting again resumes at the first unanswered case.")
    parser.add_argument("study", type=Path, metavar="STUDY", help="the study folder (or its reader/ folder)")
    parser.add_argument("--reader", help="your reader name (letters, digits, . _ -); asked for when left out")
    parser.add_argument("--responses", type=Path, metavar="DIR", help="where answers go (default STUDY/responses)")
    return parser


def _ask_reader(default: str) -> Optional[str]:
    from qtpy import QtWidgets

    name, ok = QtWidgets.QInputDialog.getText(None, "Reader study", "Your reader name:", text=default)
    return name.strip() if ok and name.strip() else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Start the app; returns the Qt exit code (2 with one `error:` line on bad input)."""
    args = build_parser().parse_args(argv)
    try:
        from qtpy import QtWidgets
    except Exception as e:  # qtpy raises its own error types when no binding is installed
        print(f"error: mammosynth-reader: needs Qt ({e}); pip install 'mammosynth[reader]'", file=sys.stderr)
        return 2
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.reader_app.session import ReaderSession
    from MammoSynthLogic.reader_app.window import ReaderWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    reader = args.reader or _ask_reader(re.sub(r"[^A-Za-z0-9_.-]", "", getpass.getuser()) or "reader1")
    if reader is None:
        return 1
    try:
        session = ReaderSession(args.study, reader, args.responses)
    except MammoSynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    window = ReaderWindow(session)
    window.resize(1400, 900)
    window.show()
    return app.exec()


__all__ = ["main"]
