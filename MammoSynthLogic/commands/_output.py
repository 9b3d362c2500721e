"""Options shared by the commands that write DICOM: the synthetic identity they get, and where they are sent."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Optional


def output_options(p: argparse.ArgumentParser, identity: bool = True) -> None:
    """--patient-id and --study-uid (with `identity`) and --send."""
    g = p.add_argument_group("identity and delivery")
    if identity:
        g.add_argument("--patient-id", metavar="ID", help="synthetic patient ID of the outputs (default: a new, "
                       "unique patient for every run; the seed only sets the pixels)")
        g.add_argument("--study-uid", metavar="UID", help="StudyInstanceUID the outputs join (default: a new study "
                       "for every run); without --patient-id the patient is derived from it, the same every time")
    g.add_argument("--send", metavar="URL", help="also store the DICOM outputs in a PACS: http(s)://HOST/dicom-web "
                   "(DICOMweb STOW-RS) or dicom://AET@HOST:PORT (DIMSE C-STORE); see `mammosynth send`")


def new_study(args: argparse.Namespace):
    """The synthetic patient and study for this run's outputs: new and unique unless pinned."""
    from MammoSynthLogic.dicom_io import SyntheticStudy

    return SyntheticStudy.new(getattr(args, "patient_id", None), getattr(args, "study_uid", None))


def check_send(args: argparse.Namespace) -> None:
    """Fail before any work on a --send URL that cannot be a destination."""
    if getattr(args, "send", None):
        from MammoSynthLogic.send import parse_destination

        parse_destination(args.send)


def deliver(args: argparse.Namespace, paths: Iterable[Path], reporter) -> None:
    """With --send, store the DICOM files among `paths` in the PACS; the local files stay whatever happens."""
    url: Optional[str] = getattr(args, "send", None)
    if not url:
        return
    from MammoSynthLogic.send import check_all_stored, send_files

    dicoms = [Path(p) for p in paths if Path(p).suffix.lower() in (".dcm", ".dicom")]
    results = send_files(dicoms, url, reporter)
    for sent in results:
        reporter.log(f"{'sent' if sent.stored else 'NOT sent'} {sent.path} to {url}: {sent.answer}")
    check_all_stored(results, url)


def finish(args: argparse.Namespace, paths: list[Path], seed: int, reporter, **extra) -> int:
    """Log the outputs, send them with --send, and with --progress-json print the final result line."""
    from MammoSynthLogic.progress import emit_result

    for path in paths:
        reporter.log(f"wrote {path}")
    deliver(args, paths, reporter)
    if args.progress_json:
        emit_result({"outputs": [str(p) for p in paths], "seed": seed, **extra})
    return 0
