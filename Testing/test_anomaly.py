"""Anomaly maps end to end: alignment with the source pixels, outputs, DICOM SEG, native tiles, the embedded model."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_factory import dciodvfy_errors
from tiny_bundles import make_tiny_mambo_set
from MammoSynthLogic.anomaly import AnomalySettings, insert_mass, iou
from MammoSynthLogic.breast_mask import breast_mask
from MammoSynthLogic.bundles import load_bundle
from MammoSynthLogic.dicom_io import read_mammogram
from MammoSynthLogic.pipelines.anomaly import AnomalyPipeline
from MammoSynthLogic.preparation import prepare, resize


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny_mambo_set(tmp_path_factory.mktemp("tiny"), size=32, k=3)


@pytest.fixture(scope="module")
def right_breast(real_dicoms):
    return read_mammogram(real_dicoms[2])  # stored with the chest wall on the right: flipped when prepared


def _mass_image(image, radius_fraction=0.08):
    inner = breast_mask(image.pixels)
    ys, xs = np.nonzero(inner[::16, ::16])
    y, x = int(np.median(ys)) * 16, int(np.median(xs)) * 16
    return insert_mass(image.pixels, (y, x), radius_fraction * max(image.rows, image.columns), 0.3)


def test_map_lands_on_the_source_pixels_after_unflip_and_unpad(tiny, right_breast, monkeypatch):
    """A reconstruction that lacks exactly the inserted mass must give a label map on the mass, in source pixels."""
    pipe = AnomalyPipeline(load_bundle(tiny / "mambo-global"))
    clean = prepare(right_breast)
    with_mass, truth = _mass_image(right_breast)
    masked = prepare(dataclasses.replace(right_breast, pixels=with_mass))
    monkeypatch.setattr(AnomalyPipeline, "reconstruct_global",
                        lambda self, working, settings, seed, reporter: _working(clean.pixels, working.shape))
    result = pipe(masked, AnomalySettings(), 0)
    assert result.heat.shape == truth.shape and result.labels.shape == truth.shape
    assert iou(result.labels, truth) > 0.4
    ys, xs = np.nonzero(result.labels)
    ty, tx = np.nonzero(truth)
    assert abs(ys.mean() - ty.mean()) < 0.02 * truth.shape[0] and abs(xs.mean() - tx.mean()) < 0.02 * truth.shape[1]


def _working(pixels, shape):
    return resize(pixels, shape)


def test_native_level_reconstructs_only_tiles_inside_the_breast(tiny, right_breast):
    pipe = AnomalyPipeline(load_bundle(tiny / "mambo-global"), load_bundle(tiny / "mambo-patch"))
    prepared = prepare(right_breast)
    result = pipe(prepared, AnomalySettings(level="native", steps=3), 0)
    assert result.heat.shape == (right_breast.rows, right_breast.columns)
    mask = resize(prepared.mask, result.working.shape)
    # far from the breast (no tile touches it) the reconstruction is the original itself
    far = np.zeros_like(mask)
    far[:, -result.working.shape[1] // 4:] = True
    assert np.allclose(result.reconstruction[far], result.working[far], atol=1e-6)
    assert not np.allclose(result.reconstruction[mask], result.working[mask], atol=1e-3)


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "MammoSynthLogic", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_command_writes_every_output_in_the_source_grid(tiny, real_dicoms, tmp_path):
    src = real_dicoms[0]
    proc = _run("anomaly", src, "--out", tmp_path / "a", "--model", tiny, "--steps", "4", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["anomaly.json", "heat.nrrd", "labels.nrrd", "labels.png", "overlay.png", "seg.dcm"]
    import nrrd

    source = read_mammogram(src)
    heat, _ = nrrd.read(str(tmp_path / "a" / "heat.nrrd"))
    assert heat.T.shape == (source.rows, source.columns) and heat.dtype == np.float32
    assert dciodvfy_errors(tmp_path / "a" / "seg.dcm") == []
    seg = pydicom.dcmread(tmp_path / "a" / "seg.dcm")
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.sop_uid
    record = json.loads((tmp_path / "a" / "anomaly.json").read_text())
    assert record["seed"] == 3 and record["settings"]["lam"] == 700


def test_folder_input_writes_a_summary(tiny, real_dicoms, tmp_path):
    folder = real_dicoms[0].parent
    proc = _run("anomaly", folder, "--out", tmp_path / "f", "--model", tiny, "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "f" / "summary.csv").read_text().splitlines()
    assert len(lines) == 1 + 4 and lines[0].startswith("source,")
    assert sorted(p.name for p in (tmp_path / "f").iterdir() if p.is_dir()) == sorted(p.stem for p in folder.glob("*.dcm"))


def test_bad_lambda_and_missing_model_are_one_line_errors(real_dicoms, tmp_path):
    proc = _run("anomaly", real_dicoms[0], "--out", tmp_path / "x", "--lambda", "1000", "--model", tmp_path)
    assert proc.returncode != 0 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    proc = _run("anomaly", real_dicoms[0], "--out", tmp_path / "x", "--model", tmp_path)
    assert proc.returncode != 0 and "no model bundle" in proc.stderr and proc.stderr.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def embedded_global():
    from MammoSynthLogic.bundles import default_bundle_dir

    return load_bundle(default_bundle_dir() / "mambo-global")


def _embedded_settings(bundle) -> AnomalySettings:
    measured = bundle.manifest["anomaly"]  # the embedded bundle's card measured its best λ and floor
    return AnomalySettings(lam=measured["lambda"], min_difference=measured["min_difference"], steps=25)


@pytest.mark.parametrize("index", [0, 2])  # LCC and RCC: both were training images of the embedded model
def test_embedded_model_a_training_image_gives_a_near_empty_map(embedded_global, real_dicoms, index):
    image = read_mammogram(real_dicoms[index])
    result = AnomalyPipeline(embedded_global)(prepare(image), _embedded_settings(embedded_global), 1)
    assert result.labels[breast_mask(image.pixels)].mean() < 0.03


@pytest.mark.parametrize("index", [0, 2])
def test_embedded_model_an_inserted_bright_mass_is_detected(embedded_global, real_dicoms, index):
    image = read_mammogram(real_dicoms[index])
    with_mass, truth = _mass_image(image, radius_fraction=0.06)
    result = AnomalyPipeline(embedded_global)(prepare(dataclasses.replace(image, pixels=with_mass)),
                                              _embedded_settings(embedded_global), 1)
    assert iou(result.labels, truth) > 0.4
    assert (result.labels & truth).sum() > 0.5 * truth.sum()
