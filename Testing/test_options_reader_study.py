"""`reader-study prepare` and `reader-study score` options through the command, each with an effect known in advance.

Inputs are small: three 'real' films from dicom_factory (a textured half-ellipse on a grey film base) and three
synthetic images written as the pipelines write them, exported onto a 128-row canvas.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_factory import mammogram_dataset, save, synthetic_breast
from MammoSynthLogic.cli import main
from test_reader_study import make_synthetic

FILM_BASE = 0.02  # synthetic_breast's background: the grey of a film outside the breast


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reader-inputs")
    for i in range(3):
        side = "right" if i % 2 else "left"
        save(mammogram_dataset(synthetic_breast(320, 240, side=side, seed=i), ImageLaterality=side[0].upper()),
             root / "real" / f"film{i}.dcm")
    make_synthetic(root / "synthetic", n=3)
    return root


def prepare(inputs: Path, out: Path, *extra: str) -> Path:
    assert main(["reader-study", "prepare", "--real", str(inputs / "real"), "--synthetic", str(inputs / "synthetic"),
                 "--out", str(out), "--rows", "128", "--quiet", *extra]) == 0
    return out


def key_rows(key_dir: Path) -> list[dict]:
    with open(key_dir / "key.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_prepare_seed_fixes_the_order_and_key_out_moves_the_key(inputs, tmp_path):
    """--seed 5 twice: the same cases in the same order (and the seed in the manifest); --seed 6: another order.
    --key-out: key and manifest there, nothing under OUT/_key, the reader folder unchanged."""
    first = prepare(inputs, tmp_path / "a", "--seed", "5")
    again = prepare(inputs, tmp_path / "b", "--seed", "5", "--key-out", str(tmp_path / "key-b"))
    other = prepare(inputs, tmp_path / "c", "--seed", "6")
    order = {name: [(r["truth"], Path(r["source"]).name) for r in key_rows(folder)]
             for name, folder in (("a", first / "_key"), ("b", tmp_path / "key-b"), ("c", other / "_key"))}
    assert order["a"] == order["b"] and order["a"] != order["c"]
    assert json.loads((first / "_key" / "manifest.json").read_text())["seed"] == 5
    assert json.loads((tmp_path / "key-b" / "manifest.json").read_text())["seed"] == 5
    assert not (again / "_key").exists() and len(list((again / "reader").glob("case-*.dcm"))) == 6


def test_prepare_n_synthetic_columns_and_bits(inputs, tmp_path):
    """--n-synthetic 2 of 3 (all 3 real kept), --rows 128 (default 2048), --columns 96 (default 0.8 x 128 = 102),
    --bits 10 (default: the inputs' 16): every exported file has that matrix and bit depth, its pixels in 10 bits."""
    out = prepare(inputs, tmp_path / "s", "--seed", "1", "--n-synthetic", "2", "--columns", "96", "--bits", "10")
    truths = sorted(r["truth"] for r in key_rows(out / "_key"))
    assert truths == ["real"] * 3 + ["synthetic"] * 2
    for path in sorted((out / "reader").glob("case-*.dcm")):
        ds = pydicom.dcmread(path)
        assert (ds.Rows, ds.Columns, ds.BitsStored) == (128, 96, 10), path
        assert 0 < ds.pixel_array.max() < 1024


def test_prepare_allow_upscale_lets_a_large_canvas_through(inputs, tmp_path, capsys):
    """The 320-row films' breasts on a 1024-row canvas are enlarged more than 2x: refused with a one-line error
    naming --allow-upscale, written at 1024 rows with it."""
    call = ["reader-study", "prepare", "--real", str(inputs / "real"), "--synthetic", str(inputs / "synthetic"),
            "--n-real", "1", "--n-synthetic", "1", "--seed", "1", "--rows", "1024", "--quiet"]
    capsys.readouterr()
    assert main(call + ["--out", str(tmp_path / "refused")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--allow-upscale" in err and not (tmp_path / "refused").exists()
    assert main(call + ["--allow-upscale", "--out", str(tmp_path / "allowed")]) == 0
    files = sorted((tmp_path / "allowed" / "reader").glob("case-*.dcm"))
    assert len(files) == 2 and all(pydicom.dcmread(f, stop_before_pixels=True).Rows == 1024 for f in files)


def background_fraction(path: Path) -> float:
    """Share of the canvas at the film base's grey (±1 % of full scale) in an exported file."""
    ds = pydicom.dcmread(path)
    scaled = ds.pixel_array.astype(np.float64) / (2 ** ds.BitsStored - 1)
    return float((np.abs(scaled - FILM_BASE) < 0.01).mean())


def test_prepare_keep_background_keeps_the_film_base(inputs, tmp_path):
    """The films' grey base beside the breast is zeroed by default and kept with --keep-background."""
    fractions = {}
    for name, extra in (("zeroed", ()), ("kept", ("--keep-background",))):
        out = prepare(inputs, tmp_path / name, "--seed", "1", "--n-synthetic", "1", *extra)
        fractions[name] = [background_fraction(out / "reader" / r["file"]) for r in key_rows(out / "_key")
                           if r["truth"] == "real"]
    assert max(fractions["zeroed"]) < 0.01, fractions
    assert min(fractions["kept"]) > 0.1, fractions


# ------------------------------------------------------------------ score


def test_score_synthetic_from_sets_what_counts_as_spotted(tmp_path):
    """Ratings 4, 3, 2 on the synthetic cases and 0, 2, 3 on the real ones: 'spotted as synthetic' from 2, 3 (the
    default) or 4 gives the confusion counts worked out by hand; the AUC (from the ratings) does not change."""
    from MammoSynthLogic.reader_study.responses import Answer, ReaderResponses

    cases = [f"case-{i:04d}" for i in range(1, 7)]
    truth = ["synthetic"] * 3 + ["real"] * 3
    key = tmp_path / "key.csv"
    key.write_text("case,file,truth\n" + "".join(f"{c},{c}.dcm,{t}\n" for c, t in zip(cases, truth)))
    ReaderResponses(reader="alice", answers={c: Answer(rating=r) for c, r in zip(cases, [4, 3, 2, 0, 2, 3])}).save(
        tmp_path / "responses")
    expected = {"2": (3 / 5, 3 / 3), None: (2 / 3, 2 / 3), "4": (1 / 1, 1 / 3)}  # (precision, recall)
    for threshold, (precision, recall) in expected.items():
        out = tmp_path / f"report-{threshold}"
        extra = [] if threshold is None else ["--synthetic-from", threshold]
        assert main(["reader-study", "score", "--key", str(key), "--responses", str(tmp_path / "responses"),
                     "--out", str(out), "--quiet", *extra]) == 0
        alice = json.loads((out / "summary.json").read_text())["readers"]["alice"]
        assert (alice["precision"], alice["recall"]) == pytest.approx((precision, recall)), threshold
        assert alice["auc"] == pytest.approx(7 / 9)
