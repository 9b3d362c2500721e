"""Data-set adapters on small trees laid out as CBIS-DDSM, VinDr-Mammo and INbreast ship (dataset_trees.py): which
images are cached, and that lesion masks / boxes, density, healthy, pathology and split reach the right images."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dataset_trees import (CBIS_CASES, cbis_subject, cbis_tree, inbreast_tree, inbreast_xls_tree, mammogram_key,
                           vindr_tree)
from PIL import Image
from training_helpers import subprocess_env

from MammoSynthLogic.dicom_io import read_mammogram
from MammoSynthLogic.preparation import PrepareTransform, prepare, resize
from mammosynth_training.adapters import _rows, _xls_rows, detect_format, sources
from mammosynth_training.cache import Unit, open_array, selected_entries
from mammosynth_training.config import TrainConfig
from mammosynth_training.prepare_data import prepare_data
from mammosynth_training.sd_data import caption_for, load_items


def _prepared(tmp_path_factory, name: str, build, smalls):
    root = tmp_path_factory.mktemp(name)
    built = build(root, smalls)
    data = built[0] if isinstance(built, tuple) else root / "CBIS-DDSM"
    log: list[str] = []
    entries = prepare_data([data], root / "cache", log=log.append)
    return root / "cache", built, entries, log


@pytest.fixture(scope="module")
def cbis(tmp_path_factory, smalls):
    return _prepared(tmp_path_factory, "cbis", cbis_tree, smalls)


@pytest.fixture(scope="module")
def vindr(tmp_path_factory, smalls):
    return _prepared(tmp_path_factory, "vindr", vindr_tree, smalls)


@pytest.fixture(scope="module", params=["INbreast.csv", "INbreast.xls"])
def inbreast(request, tmp_path_factory, smalls):
    build = inbreast_xls_tree if request.param.endswith(".xls") else inbreast_tree
    return request.param, *_prepared(tmp_path_factory, "inbreast", build, smalls)


def _lesion_png(cache: Path, entry: dict) -> np.ndarray:
    return np.asarray(Image.open(cache / entry["lesion_mask"])) > 0


def test_cbis_ddsm_caches_full_mammograms_with_their_roi_masks(cbis, smalls):
    cache, expected, entries, log = cbis
    assert "format: cbis-ddsm" in log
    assert len(entries) == 8 and all("full mammogram images" in e["source"] for e in entries)  # no ROI / crop
    assert sum("not a training image" in line for line in log) == 12  # 6 abnormalities: mask + cropped each
    assert sum("(ROI mask of" in line for line in log) == 6  # told apart by content, whatever the 1-1/1-2 order
    assert sum("not cached twice" in line for line in log) == 1  # small 4: its Calc-Test copy
    assert any("not found: MASS-TEST_P_09999_LEFT_CC" in line for line in log)
    by_key = {mammogram_key(Path(e["source"]).parts[-4]): e for e in entries}
    cases: dict[str, list] = {}
    for i, prefix, ids, kind, pathology, density in CBIS_CASES:
        cases.setdefault(mammogram_key(cbis_subject(smalls[i], prefix)), []).append((kind, pathology, density))
    for key, entry in by_key.items():
        assert entry["split"] == "test" and entry["view"] == key.split("_")[-1]
        assert entry["laterality"] == key.split("_")[-2][0]
        if key not in cases:
            assert entry["lesion_mask"] is None and entry["healthy"] is None and entry["density"] is None
            continue
        kinds, pathologies, densities = zip(*cases[key])
        np.testing.assert_array_equal(_lesion_png(cache, entry), expected[key])  # every abnormality's mask
        assert entry["abnormality"] == ",".join(sorted(set(kinds))) and entry["healthy"] is False
        assert entry["pathology"] == ("MALIGNANT" if "MALIGNANT" in pathologies else pathologies[0])  # the worst
        assert entry["density"] == "ABCD"[densities[0] - 1]  # the calc CSV's "breast density" read too
    assert len(cases) == 4 and set(cases) <= set(by_key)
    assert by_key["P_00820_LEFT_CC"]["abnormality"] == "calcification,mass"


def test_cbis_lesions_and_density_reach_mam_e(cbis):
    cache, expected, entries, _ = cbis
    config = TrainConfig(role="mame-inpaint", image_size=64)
    config.data.cache = str(cache)
    items = load_items(config)
    for entry, item in zip(selected_entries(cache), items):
        if entry["lesion_mask"] is None:
            assert item.lesion is None
            continue
        transform = PrepareTransform.from_json(json.dumps(entry["transform"]))
        want = resize(transform.to_prepared(expected[mammogram_key(Path(entry["source"]).parts[-4])], fill=False),
                      (64, 64))
        np.testing.assert_array_equal(item.lesion, want)  # inpainting masks come from the real lesion
        words = {"A": "very low", "B": "low", "C": "high", "D": "very high"}[entry["density"]]
        assert item.caption.endswith(f"{words} density"), item.caption


def test_vindr_mammo_boxes_density_healthy_split_and_monochrome1(vindr, smalls):
    cache, (root, truth), entries, log = vindr
    assert "format: vindr-mammo" in log and any("orphan.dicom" in line and "no row" in line for line in log)
    assert len(entries) == 8
    for entry in entries:
        want = truth[Path(entry["source"]).stem]
        assert (entry["density"], entry["healthy"], entry["split"]) == (want["density"], want["healthy"], want["split"])
        assert (entry["view"], entry["laterality"], entry["vendor"]) == (want["view"], want["laterality"], "SIEMENS")
        assert (entry["lesion_boxes"] or []) == want["boxes"]
        assert "siemens mammogram" in caption_for(entry, 0.3)
    assert [e["abnormality"] for e in entries[:2]] == ["mass", "mass,suspicious calcification"]
    healthy = {Path(e["source"]).stem for e in selected_entries(cache, healthy_only=True)}
    assert healthy == {k for k, v in truth.items() if v["healthy"]} and len(healthy) == 5  # --healthy-only
    # image 2 is stored MONOCHROME1 (65535 - value): it must be cached as its MONOCHROME2 original prepares
    mono1 = next(e for e in entries if e["source"].endswith("image2.dicom"))
    cached = Unit(open_array(cache / mono1["image"]))[:]
    reference = prepare(read_mammogram(smalls[2].path)).pixels
    both = (cached > 0) & (reference > 0)
    assert both.sum() > 0.99 * max((cached > 0).sum(), (reference > 0).sum())  # same breast region
    # 1 - (65535 - v)/65535 and v/65535 round differently in float32, then to 16 bits: within 2 steps
    assert np.abs(cached[both] - reference[both]).max() <= 2 / 65535


def test_inbreast_xml_rois_density_and_birads(inbreast):
    sheet, cache, (root, truth), entries, log = inbreast
    assert "format: inbreast" in log and len(entries) == 8
    assert f"spreadsheet: {root / sheet}" in log and not any("not found" in line for line in log)
    for entry in entries:
        want = truth[Path(entry["source"]).name.split("_")[0]]
        assert (entry["density"], entry["healthy"], entry["birads"]) == (want["density"], want["healthy"],
                                                                          want["birads"])
        assert (entry["view"], entry["laterality"]) == (want["view"], want["laterality"])  # file name says ML
        if not want["mask"].any():
            assert entry["lesion_mask"] is None and entry["abnormality"] is None
            continue
        mask = _lesion_png(cache, entry)
        assert mask[want["mask"]].all()  # the contour filled, the calcification point covered
        assert mask.sum() < want["mask"].sum() * 1.3 + 40  # and not much more (edge rows, a 3 px disc)
    assert sorted(e["abnormality"] for e in entries if e["abnormality"]) == ["calcification,mass", "mass"]


def test_inbreast_xls_holds_the_csv_table_with_numbers_read_as_written(tmp_path, smalls):
    data, _ = inbreast_xls_tree(tmp_path, smalls)
    written = _rows(tmp_path / "INbreast.csv", delimiter=";")
    read = _xls_rows(data / "INbreast.xls")
    assert read[:len(written)] == written and written[0]["file name"] == "20586900"  # a number cell, not 20586900.0
    assert written[0]["bi-rads"] == "4a" and not any(row.get("file name") for row in read[len(written):])


def test_a_broken_inbreast_xls_is_a_one_line_error(tmp_path):
    (tmp_path / "INbreast.xls").write_text("File Name;ACR\n")  # a CSV saved under the .xls name
    with pytest.raises(ValueError, match=r"INbreast.xls: not an Excel 97-2003 workbook .*save it as INbreast.csv"):
        sources("inbreast", [tmp_path], log=lambda line: None)


def test_ambiguous_or_incomplete_layouts_are_one_line_errors(tmp_path):
    (tmp_path / "breast-level_annotations.csv").write_text("study_id\n")
    (tmp_path / "INbreast.csv").write_text("File Name\n")
    with pytest.raises(ValueError, match="inbreast and vindr-mammo; choose one with --format"):
        detect_format([tmp_path])
    tree = tmp_path / "cbis" / "Mass-Training_P_00001_LEFT_CC"
    tree.mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "mammosynth_training.cli", "prepare-data", str(tmp_path / "cbis"),
                           "--out", str(tmp_path / "cache")], capture_output=True, text=True, env=subprocess_env(),
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith("error: ") and "no CBIS-DDSM description CSVs" in proc.stderr
    assert not (tmp_path / "cache").exists()  # nothing written
