"""`mammosynth send`: store DICOM files in a PACS (DICOMweb STOW-RS or DIMSE C-STORE), one answer per file."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ORDER = 95


def register(sub, parents) -> None:
    p = sub.add_parser("send", parents=parents, help="store DICOM files in a PACS (STOW-RS or C-STORE)",
                       description="Send DICOM files (and every DICOM file found in given folders) to a PACS and "
                       "print what the server answered for each: DICOMweb STOW-RS to http(s)://HOST[:PORT]/dicom-web "
                       "(e.g. Orthanc's http://localhost:8042/dicom-web) or DIMSE C-STORE to dicom://AET@HOST:PORT "
                       "(e.g. dicom://ORTHANC@localhost:4242; this tool calls as AE title MAMMOSYNTH). Local files "
                       "are never changed; exit 2 names the files that were not stored.")
    p.add_argument("paths", nargs="+", type=Path, metavar="FILE_OR_DIR")
    p.add_argument("--to", required=True, metavar="URL", help="http(s)://HOST/dicom-web or dicom://AET@HOST:PORT")
    p.set_defaults(func=run)


def run(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.dicom_io import find_dicoms
    from MammoSynthLogic.errors import MammoSynthError
    from MammoSynthLogic.progress import emit_result
    from MammoSynthLogic.send import parse_destination, check_all_stored, send_files

    parse_destination(args.to)
    files, errors = find_dicoms(args.paths)
    missing = [p for p in files if not p.is_file()]
    if errors or missing:
        raise errors[0] if errors else MammoSynthError(missing[0], "no such file; nothing was sent")
    results = send_files(files, args.to, reporter)
    answers = [{"file": str(s.path), "stored": s.stored, "answer": s.answer} for s in results]
    if args.progress_json:
        emit_result({"to": args.to, "files": answers})
    else:
        for answer in answers:
            print(json.dumps(answer), file=sys.stdout)
    check_all_stored(results, args.to)
    return 0
