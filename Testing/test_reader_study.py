"""Reader study: blinded export (no identity, nothing tells real from synthetic, key matches) and scoring."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_factory import dciodvfy_errors
from MammoSynthLogic.cli import main
from MammoSynthLogic.dicom_io import write_synthetic_dicom
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.reader_study.canvas import Canvas, Crop, common_canvas
from MammoSynthLogic.reader_study.prepare import prepare_study
from MammoSynthLogic.reader_study.telltales import WHY, features, telltales
from MammoSynthLogic.reader_study.responses import Answer, ReaderResponses
from MammoSynthLogic.reader_study.scoring import auc, binary_metrics, load_key, roc_curve, score_study

VARYING = {"SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "MediaStorageSOPInstanceUID", "PatientName",
           "PatientID", "PixelData"}  # per case, never per class: compared by length only


def make_synthetic(folder, n=3, seed=0):
    """Synthetic mammograms as the pipelines write them: 16-bit, marked synthetic, with provenance and spacing."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:640, 0:400]
    paths = []
    for i in range(n):
        inside = (xx / 380) ** 2 + ((yy - 320) / 300) ** 2 <= 1
        pixels = np.where(inside, 0.35 + 0.3 * rng.random((640, 400)), 0.0).astype(np.float32)
        paths.append(write_synthetic_dicom(folder / f"syn{i}.dcm", pixels, provenance={"model": "test", "seed": i},
                                           view="MLO", laterality="R", spacing_mm=(0.07, 0.07)))
    return paths


@pytest.fixture(scope="module")
def study(tmp_path_factory, real_dicoms):
    root = tmp_path_factory.mktemp("study")
    make_synthetic(root / "synthetic")
    code = main(["reader-study", "prepare", "--real", *map(str, real_dicoms), "--synthetic", str(root / "synthetic"),
                 "--out", str(root / "study"), "--seed", "11", "--rows", "256", "--quiet"])
    assert code == 0
    return root / "study"


def reader_files(study):
    return sorted((study / "reader").glob("case-*.dcm"))


def identity_strings(path) -> set[str]:
    """Every name, ID, date, time and UID in a real file's header (and private values), at least 4 characters."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    found = {str(ds.file_meta.MediaStorageSOPInstanceUID)}
    for element in ds.iterall():
        if element.VR in ("PN", "LO", "SH", "DA", "TM", "DT", "UI", "UN", "AS") and element.value not in (None, ""):
            value = element.value.decode("latin-1") if isinstance(element.value, bytes) else str(element.value)
            if element.VR == "UI" and element.keyword == "SOPClassUID":
                continue  # the SOP class (Secondary Capture) names a kind of object, not a patient
            found.update(v.strip() for v in value.split("\\"))
    return {s for s in found if len(s) >= 4}


def test_no_byte_of_a_real_identity_survives(study, real_dicoms):
    secrets = set().union(*(identity_strings(p) for p in real_dicoms))
    patient_ids = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientID) for p in real_dicoms}
    assert any("P_00" in s for s in secrets) and any(s.startswith("1.3.6.1.4.1.9590") for s in secrets)
    secrets |= {pid.split("_")[1] + "_" + pid.split("_")[2] for pid in patient_ids}  # e.g. P_00173 inside the name
    files = reader_files(study) + [study / "reader" / "README.txt"]
    assert len(files) == 12
    for path in files:
        data = path.read_bytes()
        leaked = [s for s in secrets if s.encode("latin-1") in data]
        assert leaked == [], f"{path.name} carries {leaked}"
        ds = pydicom.dcmread(path) if path.suffix == ".dcm" else None
        if ds is not None:
            assert ds.PatientIdentityRemoved == "YES" and ds.StudyDate == "" and "PatientBirthDate" in ds
            assert [c.CodeValue for c in ds.DeidentificationMethodCodeSequence][0] == "113100"


def signature(path) -> list[tuple]:
    """(tag, VR, value) of every element and of the file meta; varying per-case values by length only."""
    ds = pydicom.dcmread(path)
    out = []
    for element in [*ds.file_meta, *ds.iterall()]:
        value = element.value
        shown = len(value) if element.keyword in VARYING else (None if element.VR == "SQ" else str(value))
        out.append((element.tag, element.VR, shown))
    return out


def test_nothing_in_the_metadata_tells_real_from_synthetic(study):
    key = load_key(study / "_key" / "key.csv")
    files = reader_files(study)
    assert sorted(key.values()).count("synthetic") == 3 and sorted(key.values()).count("real") == 8
    signatures = {path.stem: signature(path) for path in files}
    first = signatures[files[0].stem]
    for case, sig in signatures.items():
        assert sig == first, f"{case} ({key[case]}) differs from {files[0].stem} ({key[files[0].stem]})"
    assert len({path.stat().st_size for path in files}) == 1
    assert len({path.stat().st_mtime for path in files}) == 1  # write times would tell slow (large) reads apart
    ds = pydicom.dcmread(files[0])
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert (ds.Rows, ds.BitsAllocated, ds.BitsStored) == (256, 16, 16) and "PixelSpacing" not in ds
    raw = b"".join(path.read_bytes() for path in files).upper()
    assert b"SYN-" not in raw and b"PROVENANCE" not in raw and b"SYNTHETIC^" not in raw
    for truth in ("real", "synthetic"):  # one copy of each class passes the validator
        case = next(c for c, t in key.items() if t == truth)
        assert dciodvfy_errors(study / "reader" / f"{case}.dcm") == []


def test_key_and_manifest_match_the_files(study, real_dicoms):
    with open(study / "_key" / "key.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    manifest = json.loads((study / "_key" / "manifest.json").read_text())
    files = reader_files(study)
    assert [r["file"] for r in rows] == [p.name for p in files]
    for row, path in zip(rows, files):
        assert hashlib.sha256(path.read_bytes()).hexdigest() == row["reader_sha256"] == manifest["files"][path.name]
        source = open(row["source"], "rb").read()
        assert hashlib.sha256(source).hexdigest() == row["source_sha256"]
    assert {r["source"] for r in rows if r["truth"] == "real"} == {str(p.resolve()) for p in real_dicoms}
    assert manifest["seed"] == 11 and manifest["counts"] == {"real": 8, "synthetic": 3, "total": 11}
    assert manifest["contains_synthetic_images"] is True
    assert not any(p.name in ("key.csv", "manifest.json") for p in (study / "reader").iterdir())
    order = [r["truth"] for r in rows]
    assert order != sorted(order) and order != sorted(order, reverse=True)  # shuffled, not grouped by class


def test_same_seed_same_pick_and_order_and_key_out(tmp_path, real_dicoms):
    syn = make_synthetic(tmp_path / "syn", n=3, seed=1)
    picks = []
    for run, seed in enumerate((5, 5, 6)):
        paths = prepare_study(real_dicoms, syn, tmp_path / f"s{run}", n_real=2, n_synthetic=2, seed=seed, rows=128,
                              key_out=tmp_path / f"k{run}")
        assert paths.key.parent == tmp_path / f"k{run}" and not (tmp_path / f"s{run}" / "_key").exists()
        with open(paths.key, newline="") as f:
            picks.append([(r["truth"], r["source"]) for r in csv.DictReader(f)])
    assert picks[0] == picks[1] and picks[0] != picks[2]
    assert sorted(t for t, _ in picks[0]) == ["real", "real", "synthetic", "synthetic"]


def test_prepare_errors_are_one_line(tmp_path, real_dicoms, capsys):
    syn = make_synthetic(tmp_path / "syn", n=1)
    code = main(["reader-study", "prepare", "--real", str(real_dicoms[0]), "--synthetic", str(syn[0]),
                 "--n-real", "5", "--out", str(tmp_path / "s"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: real:") and "--n-real" in err and "\n" not in err
    (tmp_path / "busy" / "reader").mkdir(parents=True)
    (tmp_path / "busy" / "reader" / "x.txt").write_text("x")
    code = main(["reader-study", "prepare", "--real", str(real_dicoms[0]), "--synthetic", str(syn[0]),
                 "--out", str(tmp_path / "busy"), "--rows", "512", "--quiet"])
    assert code == 2 and "not empty" in capsys.readouterr().err


def test_default_size_is_fixed_and_a_large_enlargement_is_refused(tmp_path, real_dicoms, capsys):
    crops = {Path("film.dcm"): Crop(0, 4000, 0, 1500, False, "left"),
             Path("syn.dcm"): Crop(0, 1100, 0, 1000, False, "left")}
    assert common_canvas(crops, 12) == Canvas(rows=2048, columns=1638, bits=12)  # 0.8 x 2048, whatever the mix
    assert common_canvas(crops, 16, rows=1024, columns=1024) == Canvas(rows=1024, columns=1024, bits=16)
    small = make_synthetic(tmp_path / "syn", n=1)[0]  # a 601 x 381 half ellipse: ~625 rows with its 2 % margins
    code = main(["reader-study", "prepare", "--real", str(real_dicoms[0]), "--synthetic", str(small),
                 "--out", str(tmp_path / "s"), "--quiet"])
    err = capsys.readouterr().err.strip()
    spans = re.match(rf"error: {re.escape(str(small))}: its breast spans (\d+)x(\d+) pixels: .* enlarges it ([\d.]+)x",
                     err)
    assert code == 2 and spans and 600 <= int(spans[1]) <= 640 and 381 <= int(spans[2]) <= 410
    assert float(spans[3]) == round(2048 / int(spans[1]), 1) and "--allow-upscale" in err
    assert "\n" not in err and not (tmp_path / "s").exists()
    mix = {Path("a.dcm"): Crop(0, 700, 0, 300, False, "left"), Path("b.dcm"): Crop(0, 600, 0, 300, False, "right")}
    limit = r"b.dcm: .* 3.4x .*; 1 other image\(s\) too\); lower --rows to at most 1200,"
    with pytest.raises(MammoSynthError, match=limit):
        common_canvas(mix, 16)  # the most enlarged one is named: its limit suits the whole mix
    tiny = {small: Crop(0, 640, 0, 400, False, "left")}
    assert common_canvas(tiny, 16, allow_upscale=True).rows == 2048
    assert common_canvas(tiny, 16, rows=1280) == Canvas(rows=1280, columns=1024, bits=16)  # 2x exactly: allowed


def test_trivial_classifier_sees_film_base_that_cleaning_removes(tmp_path, real_dicoms, study):
    told = json.loads((study / "_key" / "manifest.json").read_text())["telltales"]
    assert (told["n_real"], told["n_synthetic"]) == (8, 3)
    assert told["auc"]["mean_outside_breast"] == 0.5 and told["auc"]["std_outside_breast"] == 0.5  # all black
    syn = make_synthetic(tmp_path / "syn", n=3)
    kept = prepare_study(real_dicoms[:3], syn, tmp_path / "kept", rows=256, seed=1, zero_background=False)
    # the crop leaves few label pixels, but the film base kept beside the breast has grain; synthetic air has none
    assert kept.telltales["auc"]["std_outside_breast"] == 1.0 and not kept.telltales["blinded"]


def test_telltales_of_known_features():
    rng = np.random.default_rng(0)
    flat = np.zeros((256, 192), np.uint16)
    flat[40:216, :120] = 2000
    noisy = [(flat + rng.integers(0, 400, flat.shape) * (flat > 0)).astype(np.uint16) for _ in range(3)]
    rows = [features(image, 12) for image in [flat, flat, flat, *noisy]]
    told = telltales(rows, [False] * 3 + [True] * 3)
    assert told["auc"]["noise_floor"] == 1.0 and told["most_telling"] == "noise_floor" and not told["blinded"]
    assert told["auc"]["filled_height"] == told["auc"]["mean_outside_breast"] == 0.5
    assert (rows[0]["filled_height"], rows[0]["filled_width"]) == (round(176 / 256, 3), round(120 / 192, 3))
    assert "noise_floor" in told["telling"] and "chest_wall_right" not in told["telling"]
    sides = [features(image, 12)["chest_wall_right"] for image in [flat, flat, flat[:, ::-1], flat[:, ::-1]]]
    assert sides == [0.0, 0.0, 1.0, 1.0]
    mixed_sides = telltales([{"chest_wall_right": side} for side in sides], [False, True, False, True])
    one_sided = telltales([{"chest_wall_right": side} for side in sides], [True, True, False, False])
    assert (mixed_sides["auc"]["chest_wall_right"], one_sided["auc"]["chest_wall_right"]) == (0.5, 1.0)
    assert one_sided["telling"] == {"chest_wall_right": WHY["chest_wall_right"]} and not one_sided["blinded"]


# ---------------------------------------------------------------- scoring


def constructed_reader(name, tp, fp, tn, fn, real_cases, synthetic_cases):
    """Answers with the given confusion counts (rating 4 = called synthetic, 1 = called real)."""
    answers = {}
    for i, case in enumerate(synthetic_cases):
        answers[case] = Answer(rating=4 if i < tp else 1)
    for i, case in enumerate(real_cases):
        answers[case] = Answer(rating=3 if i < fp else 0)
    assert (tp + fn, fp + tn) == (len(synthetic_cases), len(real_cases))
    return ReaderResponses(reader=name, answers=answers)


def test_binary_metrics_reproduce_mambo_expert_rows():
    key = {f"case-{i:04d}": ("synthetic" if i < 30 else "real") for i in range(50)}
    syn = [c for c, t in key.items() if t == "synthetic"]
    real = [c for c, t in key.items() if t == "real"]
    # MAMBO Table 2, experts 1 and 5: 30 synthetic, 20 real.
    readers = [constructed_reader("expert1", 15, 9, 11, 15, real, syn), constructed_reader("expert5", 21, 11, 9, 9, real, syn)]
    score = score_study(key, readers)
    e1, e5 = (s.metrics for s in score.readers)
    assert (round(e1["precision"], 3), round(e1["recall"], 3), round(e1["f1"], 3), round(e1["accuracy"], 3)) == \
        (0.625, 0.5, 0.556, 0.52)
    assert (round(e5["precision"], 3), round(e5["recall"], 3), round(e5["f1"], 3), round(e5["accuracy"], 3)) == \
        (0.656, 0.7, 0.677, 0.6)
    assert score.overall_mean["accuracy"] == pytest.approx(0.56)
    assert score.overall_sd["accuracy"] == pytest.approx(np.std([0.52, 0.6], ddof=1))
    assert score.pooled.answered == 100


def test_auc_and_roc_from_ratings():
    y = np.array([1, 1, 1, 0, 0, 0], bool)
    ratings = np.array([4, 3, 2, 0, 2, 3])
    # pairs (synthetic, real): 4 beats all 3; 3 beats 0 and 2, ties 3; 2 beats 0, ties 2 -> (3 + 2.5 + 1.5) / 9
    assert auc(y, ratings) == pytest.approx(7 / 9)
    fpr, tpr = roc_curve(y, ratings)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    area = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    assert area == pytest.approx(7 / 9)  # the trapezoids under the plotted curve give the same area
    assert auc(y, np.where(y, 4, 0)) == 1.0 and auc(y, np.full(6, 2)) == 0.5
    assert math.isnan(binary_metrics(y, np.zeros(6, bool))["precision"])


def test_score_command_writes_the_report(tmp_path, capsys):
    cases = [f"case-{i:04d}" for i in range(1, 7)]
    truth = ["synthetic", "synthetic", "synthetic", "real", "real", "real"]
    (tmp_path / "key.csv").write_text("case,file,truth\n" + "".join(f"{c},{c}.dcm,{t}\n" for c, t in zip(cases, truth)))
    responses = tmp_path / "responses"
    ratings = {"alice": [4, 3, 2, 0, 2, 3], "bob": [4, 4, 3, 1, 0, 0]}
    for name, values in ratings.items():
        ReaderResponses(reader=name, answers={c: Answer(rating=r, mass=(r == 4), birads="4" if r == 4 else None)
                                              for c, r in zip(cases, values)}).save(responses)
    code = main(["reader-study", "score", "--key", str(tmp_path / "key.csv"), "--responses", str(responses),
                 "--out", str(tmp_path / "report"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["readers"]["alice"]["auc"] == pytest.approx(7 / 9) and summary["readers"]["bob"]["auc"] == 1.0
    # alice: calls >= 3 -> synthetic: TP 2 (4, 3), FP 1 (3), so precision 2/3, recall 2/3
    assert summary["readers"]["alice"]["precision"] == pytest.approx(2 / 3)
    assert summary["readers"]["bob"]["f1"] == 1.0 and summary["overall_mean"]["auc"] == pytest.approx((7 / 9 + 1) / 2)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| alice | 0.667 | 0.667 | 0.667 | 0.667 | 0.778 | 6 |" in md and "Overall (mean ± sd)" in md
    from PIL import Image
    for name in ("roc.png", "ratings.png"):
        with Image.open(tmp_path / "report" / name) as im:
            assert im.format == "PNG" and min(im.size) > 200
    assert "<table>" in (tmp_path / "report" / "report.html").read_text()
    (responses / "carol.json").write_text(json.dumps({"reader": "carol", "answers": {"case-9999": {"rating": 2}}}))
    code = main(["reader-study", "score", "--key", str(tmp_path / "key.csv"), "--responses", str(responses),
                 "--out", str(tmp_path / "report2"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: carol:") and "another study" in err
