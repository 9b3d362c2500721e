"""`mammosynth info` and `prepare` as a user runs them, and the bad inputs they must refuse cleanly."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dicom_factory import bad_inputs, mammogram_dataset, save, synthetic_breast

INFO_KEYS = {"path", "modality", "rows", "columns", "pixel_spacing_mm", "photometric", "bits_stored",
             "transfer_syntax", "view", "laterality", "laterality_source", "breast_side", "breast_area_fraction"}


def mammosynth(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    return subprocess.run([sys.executable, "-m", "MammoSynthLogic", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def test_info_on_the_real_folder(real_dicoms):
    proc = mammosynth("info", real_dicoms[0].parent.parent, "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(records) == 8
    for r in records:
        assert INFO_KEYS <= r.keys()
        assert r["modality"] == "MG" and r["view"] in ("CC", "MLO") and r["laterality"] in ("L", "R")
        assert r["breast_side"] == ("left" if r["laterality"] == "L" else "right")
        assert 0.1 < r["breast_area_fraction"] < 0.6
        assert r["laterality_source"] == "Laterality" and r["transfer_syntax"] == "RLE Lossless"


def test_prepare_writes_every_output_and_a_usable_transform(real_dicoms, tmp_path):
    from PIL import Image

    from MammoSynthLogic.preparation import PrepareTransform

    src = real_dicoms[2]  # a right breast: it gets flipped
    before = hashlib.sha256(src.read_bytes()).hexdigest()
    proc = mammosynth("prepare", src, "--out", tmp_path / "p")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "p").iterdir())
    assert names == ["mask.nrrd", "mask.png", "prepared.nrrd", "prepared.png", "region.png", "transform.json"]
    prepared = np.asarray(Image.open(tmp_path / "p" / "prepared.png"))
    assert prepared.dtype == np.uint16 and prepared.shape[0] == prepared.shape[1] and prepared.shape[0] % 256 == 0
    transform = PrepareTransform.from_json((tmp_path / "p" / "transform.json").read_text())
    assert transform.flipped
    from MammoSynthLogic.dicom_io import read_mammogram

    source = read_mammogram(src)
    assert transform.to_source(prepared).shape == (source.rows, source.columns)
    assert hashlib.sha256(src.read_bytes()).hexdigest() == before


def test_every_bad_input_gives_one_error_line_and_writes_nothing(tmp_path, real_dicom):
    cases = bad_inputs(tmp_path / "bad", real=real_dicom)
    assert len(cases) >= 10
    hashes = {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in cases.items() if p.is_file()}
    for kind, path in cases.items():
        for command in (["info", path], ["prepare", path, "--out", tmp_path / f"out_{kind}"]):
            proc = mammosynth(*command)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode != 0, (kind, command[0])
            assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), (kind, proc.stderr)
            assert "Traceback" not in proc.stderr
            assert not (tmp_path / f"out_{kind}").exists() or not any((tmp_path / f"out_{kind}").iterdir())
    for kind, digest in hashes.items():
        assert hashlib.sha256(cases[kind].read_bytes()).hexdigest() == digest, f"{kind} was modified"


def test_a_folder_reports_bad_files_and_still_processes_the_good_ones(tmp_path, real_dicom):
    folder = tmp_path / "mixed"
    bad_inputs(folder / "bad", real=real_dicom)
    save(mammogram_dataset(synthetic_breast(side="right")), folder / "good" / "ok.dcm")
    proc = mammosynth("info", folder)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["path"]).name for r in records] == ["ok.dcm"]
    assert records[0]["breast_side"] == "right"
    errors = proc.stderr.strip().splitlines()
    assert len(errors) >= 8 and all(line.startswith("error: ") for line in errors)
    assert proc.returncode == 1


def test_help_lists_the_commands():
    proc = mammosynth("--help")
    assert proc.returncode == 0 and "info" in proc.stdout and "prepare" in proc.stdout
    proc = mammosynth("info", "--help")
    assert "--device" in proc.stdout and "--progress-json" in proc.stdout


def test_progress_json_lines(real_dicoms, tmp_path):
    proc = mammosynth("prepare", real_dicoms[0], "--out", tmp_path / "p", "--progress-json")
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [e["type"] for e in events][-1] == "result"
    assert any(e["type"] == "progress" and e["done"] == e["total"] for e in events)
    assert Path(events[-1]["prepared_png"]).exists()


def test_every_info_field_and_pairs_on_files_with_known_answers(tmp_path, capsys):
    """Three constructed files whose every header fact is known; `--pairs` groups the CC and MLO of one breast."""
    from MammoSynthLogic.cli import main

    left = synthetic_breast(256, 192, side="left")
    save(mammogram_dataset(left, PatientID="P1", StudyInstanceUID="1.2.3", PixelSpacing=[0.07, 0.08]),
         tmp_path / "a_lcc.dcm")
    mlo = mammogram_dataset(left, PatientID="P1", StudyInstanceUID="1.2.3", ViewPosition="MLO")
    del mlo.ImageLaterality
    mlo.Laterality = "L"
    save(mlo, tmp_path / "b_lmlo.dcm")
    inverted = (4095 - (synthetic_breast(256, 192, side="right") >> 4)).astype(np.uint16)  # tissue shown bright
    right = mammogram_dataset(inverted, PatientID="P1",
                              StudyInstanceUID="1.2.3", BitsStored=12, HighBit=11, WindowCenter=2048,
                              WindowWidth=4096, PhotometricInterpretation="MONOCHROME1", PatientOrientation=["A", "L"])
    del right.ImageLaterality, right.ViewPosition, right.PixelSpacing
    save(right, tmp_path / "c_r.dcm")
    assert main(["info", str(tmp_path), "--pairs"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    records, groups = lines[:3], lines[3:]
    half_ellipse = np.pi * 0.6 * 0.42 / 2  # synthetic_breast: half an ellipse of semi-axes 0.6·cols and 0.42·rows
    common = {"modality": "MG", "rows": 256, "columns": 192, "transfer_syntax": "Explicit VR Little Endian"}
    expected = [
        {**common, "path": str(tmp_path / "a_lcc.dcm"), "pixel_spacing_mm": [0.07, 0.08], "photometric": "MONOCHROME2",
         "bits_stored": 16, "view": "CC", "view_source": "ViewPosition", "laterality": "L",
         "laterality_source": "ImageLaterality", "breast_side": "left", "voi": None, "breast_group": "P1|1.2.3|L"},
        {**common, "path": str(tmp_path / "b_lmlo.dcm"), "pixel_spacing_mm": [0.1, 0.1], "photometric": "MONOCHROME2",
         "bits_stored": 16, "view": "MLO", "view_source": "ViewPosition", "laterality": "L",
         "laterality_source": "Laterality", "breast_side": "left", "voi": None, "breast_group": "P1|1.2.3|L"},
        {**common, "path": str(tmp_path / "c_r.dcm"), "pixel_spacing_mm": None, "photometric": "MONOCHROME1",
         "bits_stored": 12, "view": None, "view_source": None, "laterality": "R",
         "laterality_source": "PatientOrientation", "breast_side": "right", "voi": "window",
         "breast_group": "P1|1.2.3|R"},
    ]
    for record, want in zip(records, expected):
        assert set(record) == set(want) | {"breast_area_fraction"}  # a new field needs a known answer here
        assert {k: record[k] for k in want} == want
        assert record["breast_area_fraction"] == pytest.approx(half_ellipse, abs=0.03)
    assert groups == [{"breast_group": "P1|1.2.3|L", "images": [f"CC:{tmp_path / 'a_lcc.dcm'}",
                                                                f"MLO:{tmp_path / 'b_lmlo.dcm'}"]},
                      {"breast_group": "P1|1.2.3|R", "images": [f"None:{tmp_path / 'c_r.dcm'}"]}]


def test_prepared_image_is_the_mirrored_source_and_multiple_sets_its_side(tmp_path):
    """A right breast comes out chest wall left, pixel for pixel the mirror of the source inside the breast, padded
    to the next multiple of --multiple."""
    from PIL import Image

    from MammoSynthLogic.cli import main
    from MammoSynthLogic.dicom_io import read_mammogram

    src = save(mammogram_dataset(synthetic_breast(300, 200, side="right")), tmp_path / "r.dcm")
    for multiple, side in ((256, 512), (128, 384)):
        out = tmp_path / f"p{multiple}"
        assert main(["prepare", str(src), "--out", str(out), "--multiple", str(multiple), "--quiet"]) == 0
        prepared = np.asarray(Image.open(out / "prepared.png")).astype(np.float64) / 65535
        region = np.asarray(Image.open(out / "region.png")) > 0
        assert prepared.shape == (side, side)
        mirrored = read_mammogram(src).pixels[:, ::-1]
        inside = region[:300, :200]
        assert inside[:, :10].mean() > 0.8 and not region[:, 200:].any() and not region[300:].any()
        np.testing.assert_allclose(prepared[:300, :200][inside], mirrored[inside], atol=1 / 65535)
