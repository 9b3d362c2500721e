"""Dual-view (MammoRGB) encoding, completion by channel replacement, consistency metrics, the CC/MLO DICOM pair."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import torch

from dicom_factory import dciodvfy_errors, synthetic_breast
from MammoSynthLogic import dualview, dualview_metrics
from MammoSynthLogic.bundles import load_bundle
from MammoSynthLogic.cli import main
from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.pipelines.dualview import DualViewPipeline, DualViewSettings
from MammoSynthLogic.sampling import make_scheduler
from tiny_bundles import tiny_dualview_bundle

torch.set_num_threads(1)
S = 64  # the smallest side read_mammogram accepts, so written pairs can be read back


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return tiny_dualview_bundle(tmp_path_factory.mktemp("dualview") / "bundle")


@pytest.fixture(scope="module")
def pipe(bundle_dir):
    return DualViewPipeline(load_bundle(bundle_dir))


def half_disc(size: int, side: str = "left", value: float = 0.7) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    x0 = 0 if side == "left" else size
    return np.where((yy - size / 2) ** 2 + (xx - x0) ** 2 < (0.4 * size) ** 2, value, 0.0).astype(np.float32)


# ------------------------------------------------------------------ encoding


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    cc, mlo = rng.random((2, 32, 32), dtype=np.float32)
    rgb = dualview.encode(cc, mlo)
    assert rgb.shape == (3, 32, 32)
    np.testing.assert_array_equal(rgb[0], cc)
    np.testing.assert_array_equal(rgb[1], mlo)
    np.testing.assert_allclose(rgb[2], np.abs(cc - mlo))
    views = dualview.decode(rgb, laterality="L", clip=False)
    np.testing.assert_array_equal(views["CC"], cc)
    np.testing.assert_array_equal(views["MLO"], mlo)
    np.testing.assert_allclose(dualview.encode(cc, mlo, "sum")[2], (cc + mlo) / 2, rtol=1e-6)
    assert not dualview.encode(cc, mlo, "zero")[2].any()
    with pytest.raises(MammoSynthError):
        dualview.encode(cc, mlo, "product")


def test_consistent_blue_recomputed_from_views():
    rgb = np.random.default_rng(1).random((3, 16, 16), dtype=np.float32)
    fixed = dualview.with_consistent_blue(rgb)
    np.testing.assert_allclose(fixed[2], np.abs(rgb[0] - rgb[1]))
    np.testing.assert_array_equal(fixed[:2], rgb[:2])


def test_percentile_clipping_removes_the_extremes():
    rng = np.random.default_rng(2)
    view = rng.normal(0.5, 0.1, (100, 100)).astype(np.float32)
    view[0, :20] = 50.0  # 0.2 % hot pixels
    view[1, :20] = -50.0
    clipped = dualview.clip_percentiles(view)
    assert clipped.min() == 0.0 and clipped.max() == 1.0
    assert 0.4 < float(np.median(clipped)) < 0.6  # outliers no longer squash the tissue range
    assert np.mean(clipped >= 1.0) == pytest.approx(0.005, abs=0.002)
    assert np.mean(clipped <= 0.0) == pytest.approx(0.005, abs=0.002)
    assert not dualview.clip_percentiles(np.full((8, 8), 0.3)).any()  # flat image: no division by zero


def test_laterality_restored_on_decode():
    cc, mlo = half_disc(32), half_disc(32, value=0.5)
    rgb = dualview.encode(cc, mlo)
    left, right = dualview.decode(rgb, "L", clip=False), dualview.decode(rgb, "R", clip=False)
    np.testing.assert_array_equal(right["CC"], left["CC"][:, ::-1])
    assert right["CC"][:, -4:].sum() > 0 and right["CC"][:, :4].sum() == 0  # chest wall back on the right


def test_views_flipped_to_one_side_before_encoding():
    right_breast = synthetic_breast(rows=256, cols=192, side="right") / np.float32(65535)
    left_breast = synthetic_breast(rows=256, cols=192, side="left") / np.float32(65535)
    for pixels in (right_breast, left_breast):
        encoded = dualview.encode_view(pixels, 32).pixels
        assert encoded.shape == (32, 32)
        assert encoded[:, :8].sum() > encoded[:, -8:].sum()  # chest wall on the left in the encoding frame
    rgb = dualview.encode_images(right_breast, left_breast, 32)
    assert rgb.shape == (3, 32, 32) and rgb[0, :, :8].sum() > 0 and rgb[1, :, :8].sum() > 0


# ------------------------------------------------------------------ sampling and completion


def test_generation_is_seeded_and_blue_consistent(pipe):
    settings = DualViewSettings.preset("fast", steps=3)
    a, b = pipe(7, settings), pipe(7, settings)
    np.testing.assert_array_equal(a.rgb, b.rgb)
    assert a.rgb.shape == (3, S, S) and 0 <= a.rgb.min() and a.rgb.max() <= 1
    np.testing.assert_allclose(a.rgb[2], np.abs(a.rgb[0] - a.rgb[1]), atol=1e-6)
    assert not np.array_equal(pipe(8, settings).rgb, a.rgb)


def _recording(pipe, monkeypatch):
    calls = []
    original = pipe.predict

    def predict(x, t):
        calls.append((int(t), x.detach().clone()))
        return original(x, t)

    monkeypatch.setattr(pipe, "predict", predict)
    return calls


@pytest.mark.parametrize("sampler,steps,resample", [("dpm++", 6, 1), ("ddpm", 5, 2)])
def test_completion_keeps_the_known_view(pipe, monkeypatch, sampler, steps, resample):
    known = half_disc(S, value=0.8)
    calls = _recording(pipe, monkeypatch)
    settings = DualViewSettings.preset("fast", sampler=sampler, steps=steps, resample=resample)
    result = pipe.complete(known, "CC", seed=3, settings=settings)
    assert len(calls) == steps * resample
    acp = make_scheduler(sampler, pipe.bundle.scheduler_config).alphas_cumprod
    known_model = torch.from_numpy(dualview.to_model(known))
    for t, x in calls:  # the CC channel the U-Net sees is the real CC re-noised to t: residual ~ N(0, 1 - ᾱ_t)
        residual = x[0, 0] - acp[t].sqrt() * known_model
        expected_std = float((1 - acp[t]).sqrt())
        assert float(residual.std()) == pytest.approx(expected_std, rel=0.15, abs=0.01)
        assert abs(float(residual.mean())) < 0.1 * expected_std + 0.01
    np.testing.assert_array_equal(result.rgb[0], known)  # the real view comes back untouched
    np.testing.assert_allclose(result.rgb[2], np.abs(result.rgb[0] - result.rgb[1]), atol=1e-6)
    assert result.known == "CC" and not np.allclose(result.rgb[1], known)


def test_resampling_needs_a_single_step_sampler():
    with pytest.raises(MammoSynthError, match="ddpm or ddim"):
        DualViewSettings.preset("fast", sampler="dpm++", resample=3)


# ------------------------------------------------------------------ metrics


def test_iou_and_dice_of_known_masks():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[:10, :10] = True
    b[:10, 5:15] = True
    assert dualview_metrics.iou(a, b) == pytest.approx(50 / 150)
    assert dualview_metrics.dice(a, b) == pytest.approx(0.5)
    assert dualview_metrics.iou(a, a) == 1.0 and dualview_metrics.dice(a, ~a) == 0.0
    empty = np.zeros_like(a)
    assert dualview_metrics.iou(empty, empty) == 0.0


def test_otsu_masks_of_a_pair():
    cc = half_disc(64, value=0.8)
    mlo = np.zeros_like(cc)
    mlo[:32, :20] = 0.6
    overlap = dualview_metrics.pair_overlap(cc, mlo)
    a, b = cc > 0, mlo > 0
    assert overlap["IoU"] == pytest.approx((a & b).sum() / (a | b).sum())
    assert overlap["DSC"] == pytest.approx(2 * overlap["IoU"] / (1 + overlap["IoU"]))


def test_distribution_comparison():
    real = [0.5, 0.6, 0.7, 0.8]
    same = dualview_metrics.compare(real, real)
    assert same["emd"] == 0 and same["ks_d"] == 0 and same["ks_p"] == 1
    shifted = dualview_metrics.compare(real, [v + 0.1 for v in real])
    assert shifted["emd"] == pytest.approx(0.1) and shifted["mean_difference"] == pytest.approx(0.1)
    stats = dualview_metrics.summary(real)
    assert stats["median"] == pytest.approx(0.65) and stats["iqr"] == pytest.approx(0.15)
    assert stats["min"] == 0.5 and stats["max"] == 0.8


# ------------------------------------------------------------------ command line and DICOM


def test_pair_is_one_synthetic_study_and_valid(bundle_dir, tmp_path, capsys):
    out = tmp_path / "pair"
    rc = main(["dualview", "--model", str(bundle_dir), "--out", str(out), "--seed", "5", "--steps", "3",
               "--laterality", "R", "--progress-json", "--device", "cpu"])
    assert rc == 0
    result = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"result"' in line][-1]
    assert set(result["views"]) == {"CC", "MLO"}
    cc, mlo = (pydicom.dcmread(result["views"][v]) for v in ("CC", "MLO"))
    assert cc.StudyInstanceUID == mlo.StudyInstanceUID and cc.PatientID == mlo.PatientID
    assert cc.PatientID.startswith("SYN-") and cc.SeriesInstanceUID != mlo.SeriesInstanceUID
    assert cc.Laterality == mlo.Laterality == "R"
    assert cc.ViewCodeSequence[0].CodeValue == "399162004" and mlo.ViewCodeSequence[0].CodeValue == "399368009"
    assert json.loads(cc.ImageComments.split("provenance ", 1)[1])["seed"] == 5
    for path in result["views"].values():
        assert dciodvfy_errors(path) == []
    # the metrics command reads such folders back as pairs
    rc = main(["dualview", "--model", str(bundle_dir), "--out", str(tmp_path / "pair2"), "--seed", "6", "--steps",
               "3", "--quiet", "--device", "cpu"])
    assert rc == 0
    report_dir = tmp_path / "report"
    rc = main(["evaluate", "dualview", "--real", str(tmp_path / "pair"), str(tmp_path / "pair2"), "--synthetic",
               str(tmp_path / "pair"), str(tmp_path / "pair2"), "--work-size", "64", "--out", str(report_dir),
               "--quiet"])
    assert rc == 0
    report = json.loads((report_dir / "dualview.json").read_text())
    assert report["n_real"] == report["n_synthetic"] == 2 and report["table2"]["IoU"]["emd"] == 0
    assert (report_dir / "dualview-violin.png").stat().st_size > 1000 and (report_dir / "dualview.md").exists()


def test_completion_writes_only_a_synthetic_view(bundle_dir, tmp_path):
    from dicom_factory import mammogram_dataset, save

    real = save(mammogram_dataset(synthetic_breast(rows=256, cols=192, side="right"), ImageLaterality="R",
                                  ViewPosition="CC", PatientID="REAL-PATIENT-7", PatientName="Real^Person"),
                tmp_path / "real_cc.dcm")
    out = tmp_path / "done"
    assert main(["dualview", "--complete", str(real), "--model", str(bundle_dir), "--out", str(out), "--seed", "1",
                 "--steps", "3", "--quiet", "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["MLO.dcm"]
    mlo = pydicom.dcmread(out / "MLO.dcm")
    assert mlo.PatientID.startswith("SYN-") and "REAL" not in str(mlo.PatientName).upper()
    assert mlo.Laterality == "R" and mlo.ViewCodeSequence[0].CodeValue == "399368009"
    assert dciodvfy_errors(out / "MLO.dcm") == []
    assert main(["dualview", "--complete", str(real), "--model", str(bundle_dir), "--out", str(out), "--seed", "1",
                 "--steps", "3", "--quiet", "--copy-known", "--keep-identity", "--device", "cpu"]) == 0
    assert (out / "CC.dcm").read_bytes() == real.read_bytes()
    assert pydicom.dcmread(out / "MLO.dcm").PatientID == "REAL-PATIENT-7"


def test_missing_model_is_one_line_error(tmp_path, capsys):
    assert main(["dualview", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")


def test_full_resolution_through_the_mambo_stages(bundle_dir, tmp_path):
    from tiny_bundles import make_tiny_mambo_set

    mambo = make_tiny_mambo_set(tmp_path / "mambo", size=32, k=3)
    out = tmp_path / "big"
    assert main(["dualview", "--model", str(bundle_dir), "--mambo-model", str(mambo), "--out", str(out), "--seed",
                 "2", "--steps", "2", "--size", "96", "--quiet", "--device", "cpu"]) == 0
    cc = pydicom.dcmread(out / "CC.dcm")
    assert (cc.Rows, cc.Columns) == (96, 96)
    provenance = json.loads(cc.ImageComments.split("provenance ", 1)[1])
    assert [m["role"] for m in provenance["upscaled_with"]] == ["mambo-global", "mambo-local", "mambo-patch"]


def test_views_reach_the_mambo_stages_on_a_zero_background():
    """A generated view with a grey noise floor: the context handed to MAMBO keeps the breast, zeroes the rest."""
    from scipy import ndimage

    from MammoSynthLogic.pipelines.dualview import upscale_views
    from MammoSynthLogic.progress import Reporter

    class Recorder:
        def __init__(self):
            self.contexts = []

        def upscale(self, context, seed, settings, reporter):
            self.contexts.append(context)
            return type("Result", (), {"image": context})()

    rng = np.random.default_rng(0)
    disc = half_disc(S)
    view = np.clip(disc + 0.05 + 0.02 * rng.standard_normal((S, S)), 0, 1).astype(np.float32)
    mambo = Recorder()
    upscale_views({"CC": view}, S, mambo, 0, None, Reporter())
    (context,) = mambo.contexts
    inside, outside = disc > 0, ~ndimage.binary_dilation(disc > 0, iterations=4)  # the region keeps a margin
    assert view[outside].mean() > 0.04 and (context[outside] == 0).mean() > 0.99  # a few noise specks may stay
    assert np.array_equal(context[inside], view[inside])
