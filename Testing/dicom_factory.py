"""Small DICOM files built in tests: valid mammograms of any shape, and the bad inputs users send."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

MG_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"  # Digital Mammography X-Ray Image Storage - For Presentation


def mammogram_dataset(pixels: np.ndarray, **tags) -> Dataset:
    """A minimal MG dataset around `pixels` (uint16 2D, or uint8 H×W×3 for RGB); `tags` override anything."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MG_PRESENTATION
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MG_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.PatientID, ds.PatientName = "TEST123", "Doe^Jane"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate = "20200101"
    ds.ImageLaterality, ds.ViewPosition = "L", "CC"
    ds.PixelSpacing = [0.1, 0.1]
    rgb = pixels.ndim == 3
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel = 3 if rgb else 1
    ds.PhotometricInterpretation = "RGB" if rgb else "MONOCHROME2"
    if rgb:
        ds.PlanarConfiguration = 0
    bits = pixels.dtype.itemsize * 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    for key, value in tags.items():
        setattr(ds, key, value)
    return ds


def synthetic_breast(rows: int = 256, cols: int = 192, side: str = "left", seed: int = 0) -> np.ndarray:
    """A bright half-ellipse on the chest-wall side with texture, as uint16."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    xx = x if side == "left" else cols - 1 - x
    inside = (xx / (0.6 * cols)) ** 2 + ((y - rows / 2) / (0.42 * rows)) ** 2 < 1
    image = np.where(inside, 0.55 + 0.1 * rng.standard_normal((rows, cols)), 0.02)
    return (np.clip(image, 0, 1) * 65535).astype(np.uint16)


def save(ds: Dataset, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def bad_inputs(folder: Path, real: Optional[Path] = None) -> dict[str, Path]:
    """One file (or folder) per kind of bad input; `real` is a valid mammogram used to make broken copies."""
    folder.mkdir(parents=True, exist_ok=True)
    good = save(mammogram_dataset(synthetic_breast()), folder / "good_source.dcm")
    raw = good.read_bytes()
    cases: dict[str, Path] = {}

    def write(name: str, data: bytes) -> None:
        cases[name] = folder / f"{name}.dcm"
        cases[name].write_bytes(data)

    write("empty", b"")
    write("text", b"this is not a DICOM file\n" * 20)
    write("truncated_header", raw[:300])
    write("truncated_pixels", raw[: len(raw) // 2])
    write("garbage_after_preamble", b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    modality = raw.index(b"\x08\x00\x60\x00")  # (0008,0060) Modality, explicit VR: tag, VR, 2-byte length, value
    write("bad_vr", raw[:modality + 4] + b"ZZ" + raw[modality + 6:])
    write("runaway_length", raw[:modality + 6] + b"\xff\xff" + raw[modality + 8:])  # swallows the rest
    cases["ct_modality"] = save(mammogram_dataset(synthetic_breast(), Modality="CT"), folder / "ct_modality.dcm")
    cases["rgb"] = save(mammogram_dataset(np.zeros((128, 128, 3), np.uint8)), folder / "rgb.dcm")
    no_pixels = mammogram_dataset(synthetic_breast())
    del no_pixels.PixelData
    cases["no_pixel_data"] = save(no_pixels, folder / "no_pixel_data.dcm")
    cases["one_pixel"] = save(mammogram_dataset(np.array([[1000]], np.uint16)), folder / "one_pixel.dcm")
    frames = np.stack([synthetic_breast()] * 3)
    multi = mammogram_dataset(frames[0], NumberOfFrames=3)
    multi.PixelData = frames.tobytes()
    cases["multi_frame"] = save(multi, folder / "multi_frame.dcm")
    (folder / "no_dicom_folder").mkdir(exist_ok=True)
    (folder / "no_dicom_folder" / "notes.txt").write_text("nothing here")
    cases["no_dicom_folder"] = folder / "no_dicom_folder"
    cases["missing"] = folder / "does_not_exist.dcm"
    if real is not None:
        data = bytearray(Path(real).read_bytes())
        item = b"\xfe\xff\x00\xe0"
        first_fragment = data.index(item, data.index(item) + 4) + 8  # after the basic offset table
        data[first_fragment:first_fragment + 64] = bytes([0x0F, 0, 0, 0]) + bytes(range(196, 256))
        write("corrupt_rle", bytes(data))
    good.unlink()
    return cases


def dciodvfy_errors(path: Path) -> list[str]:
    """Error lines of Debian's DICOM validator (dicom3tools) for one file."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail("dciodvfy not found: install Debian's dicom3tools (scripts/setup.sh does)")
    proc = subprocess.run([exe, str(path)], capture_output=True, text=True)
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("Error")]


def segimage2itkimage() -> str:
    """dcmqi's SEG reader (the one Slicer uses), from the venv's bin or the PATH."""
    beside_python = Path(sys.executable).parent / "segimage2itkimage"
    exe = str(beside_python) if beside_python.exists() else shutil.which("segimage2itkimage")
    if exe is None:
        pytest.fail("segimage2itkimage not found: pip install dcmqi (scripts/setup.sh does)")
    return exe


def dcmqi_errors(seg: Path) -> list[str]:
    """Why dcmqi cannot read a DICOM SEG into a label volume (empty when it can)."""
    with tempfile.TemporaryDirectory() as out:
        proc = subprocess.run([segimage2itkimage(), "--inputDICOM", str(seg), "--outputDirectory", out,
                               "--outputType", "nrrd"], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            return [f"segimage2itkimage exit {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-300:]}"]
        if not list(Path(out).glob("*.nrrd")):
            return ["segimage2itkimage wrote no label volume"]
    return []
