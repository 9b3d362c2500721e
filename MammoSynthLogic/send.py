"""Store DICOM files in a PACS: DICOMweb STOW-RS (dicomweb-client) or DIMSE C-STORE (pynetdicom).

Files are sent one by one and each gets the server's own answer (STOW-RS: the HTTP status and the Referenced / Failed
SOP Sequence; C-STORE: the DIMSE status). Nothing local is changed: a failure says which files were not stored.
"""
from __future__ import annotations

import dataclasses
import re
import warnings
from pathlib import Path
from typing import Optional, Sequence
from urllib.parse import urlsplit

import pydicom

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.progress import Reporter

LOCAL_AET = "MAMMOSYNTH"
TIMEOUT_S = 30.0
_DIMSE = re.compile(r"^dicom://(?P<aet>[^@/]{1,16})@(?P<host>[^:/]+):(?P<port>\d{1,5})/?$")
_HOW = "use http(s)://HOST[:PORT]/dicom-web (STOW-RS) or dicom://AET@HOST:PORT (C-STORE)"


@dataclasses.dataclass(frozen=True)
class Destination:
    """Where files go: a STOW-RS base URL, or a C-STORE peer."""

    url: str
    kind: str  # "stow" or "c-store"
    aet: str = ""
    host: str = ""
    port: int = 0


@dataclasses.dataclass(frozen=True)
class Sent:
    """One file and what the server answered."""

    path: Path
    stored: bool
    answer: str


def parse_destination(url: str) -> Destination:
    """A Destination from a URL, or a one-line error naming it."""
    if url.startswith(("http://", "https://")):
        if not urlsplit(url).hostname:
            raise MammoSynthError(url, f"no host in the URL; {_HOW}")
        return Destination(url.rstrip("/"), "stow")
    match = _DIMSE.match(url)
    if match and 0 < int(match["port"]) < 65536:
        return Destination(url, "c-store", match["aet"], match["host"], int(match["port"]))
    raise MammoSynthError(url, f"not a PACS address; {_HOW}")


def _read(path: Path) -> pydicom.Dataset:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return pydicom.dcmread(path)
    except Exception as e:  # pydicom raises many types on bad files
        raise MammoSynthError(path, f"not a readable DICOM file ({type(e).__name__}); cannot send it") from None


def _stow_answer(response: pydicom.Dataset, sop_uid: str) -> tuple[bool, str]:
    """Stored or not, from the STOW-RS response body (PS3.18 Table 10.5.3-1)."""
    failed = [item for item in response.get("FailedSOPSequence", []) if item.get("ReferencedSOPInstanceUID") == sop_uid]
    if failed:
        return False, f"failed, reason {int(failed[0].get('FailureReason', 0)):#06x}"
    if any(item.get("ReferencedSOPInstanceUID") == sop_uid for item in response.get("ReferencedSOPSequence", [])):
        return True, "stored (STOW-RS, referenced in the response)"
    return True, "stored (STOW-RS, HTTP 200)"


def _send_stow(paths: Sequence[Path], dest: Destination, reporter: Reporter) -> list[Sent]:
    import requests
    from dicomweb_client.api import DICOMwebClient

    client = DICOMwebClient(url=dest.url)
    results = []
    for i, path in enumerate(paths):
        reporter.update("sending", i, len(paths))
        ds = _read(path)
        try:
            stored, answer = _stow_answer(client.store_instances([ds]), str(ds.SOPInstanceUID))
        except requests.HTTPError as e:
            stored, answer = False, f"HTTP {e.response.status_code if e.response is not None else '?'}"
        except requests.RequestException as e:
            stored, answer = False, f"no answer ({type(e).__name__})"
        results.append(Sent(path, stored, answer))
    return results


def _send_c_store(paths: Sequence[Path], dest: Destination, reporter: Reporter) -> list[Sent]:
    from pynetdicom import AE

    datasets = [(path, _read(path)) for path in paths]
    ae = AE(ae_title=LOCAL_AET)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = TIMEOUT_S
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets})
    for sop_class in sorted({c for c, _ in contexts}):
        syntaxes = sorted({t for c, t in contexts if c == sop_class} | {pydicom.uid.ExplicitVRLittleEndian})
        ae.add_requested_context(sop_class, syntaxes)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.aet)
    if not assoc.is_established:
        why = "rejected" if assoc.is_rejected else "no association (server down or wrong host/port)"
        return [Sent(path, False, f"not sent: {why}") for path, _ in datasets]
    results = []
    try:
        for i, (path, ds) in enumerate(datasets):
            reporter.update("sending", i, len(datasets))
            status = assoc.send_c_store(ds)
            code = int(status.Status) if "Status" in status else None
            if code is None:
                results.append(Sent(path, False, "no answer (association lost or timed out)"))
            else:
                results.append(Sent(path, code in (0x0000, 0xB000, 0xB006, 0xB007),
                                    f"C-STORE status {code:#06x}" + (" (success)" if code == 0 else "")))
    finally:
        assoc.release()
    return results


def send_files(paths: Sequence[str | Path], url: str, reporter: Optional[Reporter] = None) -> list[Sent]:
    """Send every file to the PACS at `url`; one `Sent` per file, in order."""
    dest = parse_destination(url)
    paths = [Path(p) for p in paths]
    reporter = reporter or Reporter()
    results = (_send_stow if dest.kind == "stow" else _send_c_store)(paths, dest, reporter)
    reporter.update("sending", len(paths), len(paths))
    return results


def check_all_stored(results: Sequence[Sent], url: str) -> None:
    """Raise one line naming the files the server did not store."""
    failed = [s for s in results if not s.stored]
    if failed:
        names = ", ".join(f"{s.path.name} ({s.answer})" for s in failed[:5]) + (" ..." if len(failed) > 5 else "")
        raise MammoSynthError(url, f"{len(failed)} of {len(results)} files not stored: {names}; the local files "
                                   "are kept, send them again with `mammosynth send`")
