"""Every DICOM SEG the engine writes opens in dcmqi (Slicer's SEG reader) on the source image's pixel grid."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom

from dicom_factory import dciodvfy_errors, mammogram_dataset, save, synthetic_breast
from dicom_factory import segimage2itkimage
from tiny_bundles import make_tiny_mambo_set
from MammoSynthLogic.dicom_io import read_mammogram, write_segmentation


def read_with_dcmqi(seg: Path, out: Path) -> tuple[np.ndarray, dict, dict]:
    """dcmqi's label volume as (rows, columns), its NRRD header and its segment metadata."""
    import nrrd

    out.mkdir()
    proc = subprocess.run([segimage2itkimage(), "--inputDICOM", str(seg), "--outputDirectory", str(out),
                           "--outputType", "nrrd"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    volumes = sorted(out.glob("*.nrrd"))
    assert len(volumes) == 1, volumes
    data, header = nrrd.read(str(volumes[0]))
    assert data.shape[2] == 1, "a mammogram SEG is one plane"
    return data[:, :, 0].T, header, json.loads((out / "meta.json").read_text())


def _asymmetric_mask(rows: int, cols: int) -> np.ndarray:
    """An L shape near the top-left corner: any flip or transpose moves it."""
    mask = np.zeros((rows, cols), bool)
    mask[rows // 10: rows // 3, cols // 12: cols // 5] = True
    mask[rows // 10: rows // 10 + 4, cols // 5: cols // 2] = True
    return mask


def _laterality(meta: dict) -> str:
    return meta["segmentAttributes"][0][0]["AnatomicRegionModifierSequence"]["CodeMeaning"]


def test_plain_segmentation_reads_back_pixel_for_pixel_with_spacing_and_laterality(tmp_path):
    source = read_mammogram(save(mammogram_dataset(synthetic_breast(96, 64), PixelSpacing=[0.1, 0.2]),
                                 tmp_path / "src.dcm"))
    mask = _asymmetric_mask(96, 64)
    seg_path = write_segmentation(tmp_path / "seg.dcm", mask, source)
    assert dciodvfy_errors(seg_path) == []
    labels, header, meta = read_with_dcmqi(seg_path, tmp_path / "dcmqi")
    assert labels.shape == mask.shape and np.array_equal(labels > 0, mask)
    # dcmqi's x axis runs along a row (column spacing 0.2), its y axis down the columns (row spacing 0.1)
    assert np.allclose(np.diag(header["space directions"])[:2], [0.2, 0.1])
    assert np.allclose(header["space origin"], 0)
    assert _laterality(meta) == "Left"
    again = write_segmentation(tmp_path / "again.dcm", mask, source)
    assert pydicom.dcmread(again).FrameOfReferenceUID == pydicom.dcmread(seg_path).FrameOfReferenceUID


def test_segmentation_of_a_right_breast_with_imager_spacing_only(tmp_path):
    ds = mammogram_dataset(synthetic_breast(80, 72, side="right"), ImageLaterality="R", ImagerPixelSpacing=[0.07, 0.07])
    del ds.PixelSpacing
    source = read_mammogram(save(ds, tmp_path / "right.dcm"))
    mask = _asymmetric_mask(80, 72)[:, ::-1].copy()
    seg_path = write_segmentation(tmp_path / "seg.dcm", mask, source)
    assert dciodvfy_errors(seg_path) == []
    labels, header, meta = read_with_dcmqi(seg_path, tmp_path / "dcmqi")
    assert np.array_equal(labels > 0, mask)
    assert np.allclose(np.diag(header["space directions"])[:2], [0.07, 0.07])
    assert _laterality(meta) == "Right"


def test_anomaly_command_seg_matches_its_label_map(tmp_path):
    """The SEG of `mammosynth anomaly` (tiny random bundles: a large, lopsided map) against its own labels.nrrd."""
    import nrrd

    src = save(mammogram_dataset(synthetic_breast(256, 192, side="right"), ImageLaterality="R"), tmp_path / "r.dcm")
    tiny = make_tiny_mambo_set(tmp_path / "tiny", size=32, k=3)
    out = tmp_path / "anomaly"
    proc = subprocess.run([sys.executable, "-m", "MammoSynthLogic", "anomaly", str(src), "--out", str(out),
                           "--model", str(tiny), "--steps", "2", "--seed", "3"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    own = nrrd.read(str(out / "labels.nrrd"))[0].T > 0
    # the oracle only checks orientation if the map is not symmetric
    assert own.any() and not np.array_equal(own, own[::-1]) and not np.array_equal(own, own[:, ::-1])
    assert dciodvfy_errors(out / "seg.dcm") == []
    labels, _, meta = read_with_dcmqi(out / "seg.dcm", tmp_path / "dcmqi")
    assert np.array_equal(labels > 0, own)
    assert _laterality(meta) == "Right"
