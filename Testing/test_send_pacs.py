"""Results sent to a real PACS (Orthanc on localhost): every output kind via STOW-RS and C-STORE, read back over REST."""
from __future__ import annotations

import io
import json

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import read_mammogram, write_segmentation, write_synthetic_dicom
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.reader_study.blinded import write_blinded_dicom
from MammoSynthLogic.send import parse_destination, send_files
from orthanc_fixture import orthanc  # noqa: F401  (the session fixture)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory) -> dict[str, object]:
    """One file of every DICOM kind the commands write, made by the writers the commands use."""
    folder = tmp_path_factory.mktemp("outputs")
    source_path = save(mammogram_dataset((synthetic_breast(256, 192) >> 4).astype(np.uint16), BitsStored=12,
                                         HighBit=11, PhotometricInterpretation="MONOCHROME2",
                                         BurnedInAnnotation="NO"), folder / "source" / "src.dcm")
    source = read_mammogram(source_path, keep_stored=True)
    pixels = synthetic_breast(256, 256).astype(np.float32) / 65535
    mask = np.zeros((256, 192), bool)
    mask[100:130, 30:60] = True
    return {
        "generate / upscale / batch-generate / text2mammo (synthetic SC, 16-bit)":
            write_synthetic_dicom(folder / "generated.dcm", pixels, provenance={"seed": 1}, view="CC", laterality="L",
                                  attributes={"ViewPosition": "CC"}),
        "inpaint (synthetic SC in the source's 12-bit encoding)":
            write_synthetic_dicom(folder / "inpainted.dcm", source.stored_pixels, provenance={"seed": 2},
                                  source=source, stored_like=source),
        "dualview --copy-known (de-identified real copy)":
            write_synthetic_dicom(folder / "known.dcm", source.stored_pixels, provenance={"seed": 3}, source=source,
                                  stored_like=source, synthetic=False, series_description="DE-IDENTIFIED real LCC"),
        "anomaly (DICOM SEG)": write_segmentation(folder / "seg.dcm", mask, source),
        "reader-study prepare (blinded copy)":
            write_blinded_dicom(folder / "case-0001.dcm", (synthetic_breast(256, 192) >> 4).astype(np.uint16),
                                bits=12, case_number=1, secret="s", clean_pixels=True),
    }


def _read_back(orthanc, path) -> tuple[dict, bytes | None]:
    """Orthanc's tags of the stored copy of `path`, and its PNG preview (None where Orthanc renders none)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    instance = orthanc.instance(str(ds.SOPInstanceUID))
    assert instance is not None, f"{path.name} is not in Orthanc"
    tags = json.loads(orthanc.get(f"/instances/{instance}/simplified-tags"))
    if ds.SOPClassUID == pydicom.uid.SegmentationStorage:
        return tags, None
    return tags, orthanc.get(f"/instances/{instance}/preview")


@pytest.mark.parametrize("route", ["stow", "c_store"])
def test_every_output_kind_is_stored_and_reads_back(orthanc, outputs, route):
    orthanc.delete_all()
    url = getattr(orthanc, route)
    results = send_files(list(outputs.values()), url)
    assert [r.path for r in results] == list(outputs.values())
    assert all(r.stored for r in results), [(r.path.name, r.answer) for r in results]
    for kind, path in outputs.items():
        ds = pydicom.dcmread(path)
        tags, preview = _read_back(orthanc, path)
        for keyword in ("PatientID", "StudyInstanceUID", "SOPClassUID", "Modality"):
            assert tags[keyword] == str(ds.get(keyword, "")), (kind, keyword)
        if preview is not None:  # Orthanc decodes the pixels: the preview has the image's size and its content
            shown = np.asarray(Image.open(io.BytesIO(preview)).convert("L"), dtype=np.float32)
            assert shown.shape == (ds.Rows, ds.Columns), kind
            inside = ds.pixel_array > ds.pixel_array.mean()
            assert shown[inside].mean() > shown[~inside].mean() + 50, kind  # bright breast on a dark background


def test_send_option_of_a_command_and_the_send_command(orthanc, tmp_path, capsys):
    from tiny_bundles import make_tiny_mambo_set

    orthanc.delete_all()
    bundles = make_tiny_mambo_set(tmp_path / "bundles", size=32, k=3)
    out = tmp_path / "g.dcm"
    assert main(["generate", "--model", str(bundles), "--size", "64", "--steps", "2", "--overlap", "8", "--seed", "1",
                 "--out", str(out), "--quiet", "--device", "cpu", "--send", orthanc.stow]) == 0
    tags, _ = _read_back(orthanc, out)
    assert tags["PatientID"] == pydicom.dcmread(out).PatientID
    orthanc.delete_all()
    capsys.readouterr()
    assert main(["send", str(tmp_path), "--to", orthanc.c_store]) == 0  # a folder: every DICOM file in it
    answers = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(a["file"], a["stored"], a["answer"]) for a in answers] == [(str(out), True, "C-STORE status 0x0000 (success)")]
    assert orthanc.instance(str(pydicom.dcmread(out).SOPInstanceUID)) is not None


@pytest.mark.parametrize("to", ["dicom://NOBODY@127.0.0.1:{closed}", "{http}/no-such-root"])
def test_a_failed_send_names_the_files_and_keeps_them(orthanc, outputs, capsys, to):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    url = to.format(closed=closed, http=orthanc.http)
    path = next(iter(outputs.values()))
    before = path.read_bytes()
    assert main(["send", str(path), "--to", url, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"error: {url}: 1 of 1 files not stored: {path.name} (")
    assert path.read_bytes() == before


@pytest.mark.parametrize("url", ["ftp://host/x", "dicom://host:104", "dicom://AET@host", "http://"])
def test_bad_destinations_are_one_line_errors(url):
    with pytest.raises(MammoSynthError, match="http"):
        parse_destination(url)
