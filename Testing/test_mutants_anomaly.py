"""Anomaly recipe: the behaviour that mutation testing (scripts/mutation.sh) found unchecked — where the cuts fall
exactly, the blur width, the order of findings, the overlap score and the drawn mass — each with a known answer."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from MammoSynthLogic.anomaly import (AnomalySettings, difference_map, drop_weak, findings, heat_map, insert_mass, iou,
                                     label_map, positive_difference)


def test_a_value_at_the_cut_or_the_floor_is_kept_and_the_map_is_a_copy():
    diff = np.array([[0.25, 0.24, 1.0, 0.5]], np.float32)  # 0.25 and 0.5 are exact in binary
    out = drop_weak(diff, cut=0.25)
    np.testing.assert_array_equal(out, np.array([[0.25, 0, 1.0, 0.5]], np.float32))
    assert diff[0, 1] == np.float32(0.24)  # the input is left alone
    np.testing.assert_array_equal(drop_weak(diff, cut=0.0, min_difference=0.5), [[0, 0, 1.0, 0.5]])


def test_positive_difference_is_float32_and_zero_outside_the_mask():
    original = np.array([[0.9, 0.2], [0.7, 0.7]])
    recon = np.array([[0.5, 0.5], [0.1, 0.9]])
    mask = np.array([[True, True], [False, True]])
    out = positive_difference(original, recon, mask)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.4, 0], [0, 0]], atol=1e-7)
    np.testing.assert_allclose(positive_difference(original, recon, mask, invert=True), [[0, 0.3], [0, 0.2]],
                               atol=1e-7)


def test_the_heat_map_is_the_difference_blurred_by_a_fraction_of_the_side():
    texture = np.random.default_rng(0).uniform(0.3, 0.6, (64, 48)).astype(np.float32)
    original = texture.copy()
    original[28:33, 18:23] += 0.3  # a bright square the reconstruction lacks
    mask = np.ones(original.shape, bool)
    diff = difference_map(original, texture, mask)
    assert diff[30, 20] > 0.2
    heat = heat_map(original, texture, mask, AnomalySettings(sigma_fraction=1 / 16))  # sigma 64 / 16 = 4 px
    assert heat.dtype == np.float32
    np.testing.assert_allclose(heat, ndimage.gaussian_filter(diff, 4.0), atol=1e-6)
    tiny = heat_map(original, texture, mask, AnomalySettings(sigma_fraction=0.0))  # at least half a pixel
    np.testing.assert_allclose(tiny, ndimage.gaussian_filter(diff, 0.5), atol=1e-6)


def test_label_map_threshold_and_floor_are_inclusive_and_an_empty_heat_map_has_no_labels():
    heat = np.array([[0.0, 0.24, 0.25, 1.0]], np.float32)
    np.testing.assert_array_equal(label_map(heat, 0.25), [[False, False, True, True]])
    np.testing.assert_array_equal(label_map(heat, 0.0, min_difference=0.25), [[False, False, True, True]])
    np.testing.assert_array_equal(label_map(heat, 0.0), [[False, True, True, True]])  # never the zeros
    labels = label_map(np.zeros((3, 3), np.float32), 0.3)
    assert labels.dtype == bool and not labels.any()
    assert not label_map(np.full((2, 2), -1.0, np.float32), 0.3).any()


def test_findings_are_the_connected_parts_largest_first():
    labels = np.zeros((10, 10), bool)
    labels[0:2, 0:2] = True  # 4 pixels
    labels[5:8, 5:8] = True  # 9 pixels
    labels[0, 9] = True  # 1 pixel
    parts = findings(labels)
    assert [int(p.sum()) for p in parts] == [9, 4, 1] and parts[0][6, 6] and parts[2][0, 9]
    assert findings(np.zeros((3, 3), bool)) == []


def test_iou_of_known_overlaps():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    assert iou(a, b) == 1.0  # two empty maps agree
    a[0, :] = True
    b[0, :2] = True
    b[1, :2] = True
    assert iou(a, b) == 2 / 6 and iou(a, ~a) == 0.0


def test_the_drawn_mass_peaks_at_its_contrast_in_the_centre_and_is_clipped_to_one():
    image = np.full((60, 60), 0.2, np.float32)
    out, truth = insert_mass(image, (30, 25), radius=8, contrast=0.5)
    assert out[30, 25] == pytest.approx(0.7) and truth[30, 25] and out.dtype == np.float32
    assert (out[~truth] <= 0.2 + 1e-6).all() and not truth[30, 25 + 12] and not truth[30 + 12, 25]
    bright, _ = insert_mass(np.full((60, 60), 0.9, np.float32), (30, 25), radius=8, contrast=0.5)
    assert bright.max() == 1.0
    same = insert_mass(image, (30, 25), 8, 0.5, rng=np.random.default_rng(0))[0]
    np.testing.assert_array_equal(out, same)  # no generator given: the lobes of seed 0


def boundary_radii(mask: np.ndarray, centre: tuple[int, int], angles: np.ndarray) -> np.ndarray:
    """How far each ray from `centre` stays inside the mask (in pixels, to 0.25 px)."""
    steps = np.arange(0, max(mask.shape), 0.25)
    ys = np.rint(centre[0] + np.sin(angles)[:, None] * steps).astype(int)
    xs = np.rint(centre[1] + np.cos(angles)[:, None] * steps).astype(int)
    inside = mask[ys.clip(0, mask.shape[0] - 1), xs.clip(0, mask.shape[1] - 1)]
    return steps[np.argmin(inside, axis=1)]


ANGLES = np.linspace(0, 2 * np.pi, 256, endpoint=False)


def lobe_spectrum(seed: int, radius: float = 40.0) -> np.ndarray:
    """Complex Fourier coefficients (per unit radius) of a drawn mass's outline around its centre."""
    _, truth = insert_mass(np.zeros((200, 200), np.float32), (100, 90), radius, 0.5, rng=np.random.default_rng(seed))
    return np.fft.rfft(boundary_radii(truth, (100, 90), ANGLES)) / len(ANGLES) / radius


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_mass_outline_has_three_and_five_lobes_around_its_centre(seed):
    """The outline is radius·(1 + 0.15 sin(3θ + φ1) + 0.08 sin(5θ + φ2)), θ the angle about the centre: its Fourier
    series around the centre has amplitude 0.15 at three lobes, 0.08 at five, and next to nothing elsewhere."""
    amplitude = 2 * np.abs(lobe_spectrum(seed))
    assert amplitude[0] / 2 == pytest.approx(1.0, abs=0.03)  # the mean radius
    assert amplitude[3] == pytest.approx(0.15, abs=0.02) and amplitude[5] == pytest.approx(0.08, abs=0.02)
    assert max(amplitude[k] for k in (1, 2, 4, 6, 7)) < 0.03


def test_the_lobes_turn_to_any_orientation_from_one_draw_to_the_next():
    """φ1 and φ2 are uniform over a full turn: over 24 masses the lobes' phases fill the circle (each of six
    sectors holds some), not a slice of it."""
    spectra = [lobe_spectrum(seed, radius=30.0) for seed in range(24)]
    for k in (3, 5):
        sectors = {int(np.angle(s[k]) % (2 * np.pi) // (np.pi / 3)) for s in spectra}
        assert sectors == set(range(6)), (k, sectors)


def test_the_mass_adds_two_thirds_of_its_contrast_on_average_and_a_dark_one_stops_at_zero():
    """The profile is contrast·√(1 − r²), r the radius relative to the outline at that angle: averaged over the
    mass, 2∫₀¹ u√(1 − u²) du = 2/3 of the contrast, whatever the lobes. A negative contrast (a dark mass) on a dark
    image is clipped at 0."""
    image = np.full((200, 200), 0.3, np.float32)
    out, truth = insert_mass(image, (100, 90), 40.0, 0.5)
    added = (out - image)[truth]
    assert added.mean() / 0.5 == pytest.approx(2 / 3, abs=0.01)
    dark, truth = insert_mass(np.full((80, 80), 0.1, np.float32), (40, 40), 15.0, -0.5)
    assert dark.min() == 0.0 and (dark[truth] >= 0).all() and dark[40, 40] == 0.0


def test_the_settings_cut_and_floor_reach_the_difference_and_the_heat_map():
    """difference_map and heat_map pass `cut` and `min_difference` on: on a ramp (what histogram matching keeps in
    place) with two brighter squares (+0.5 and +0.2), a 0.5 cut removes the weaker square that the default 0.3
    keeps, and a floor of 0.3 removes it while no relative cut would."""
    yy, xx = np.mgrid[:40, :40]
    recon = (0.2 + 0.3 * xx / 40).astype(np.float32)
    original = recon.copy()
    original[5:10, 5:10] += 0.5
    original[25:30, 25:30] += 0.2
    mask = np.ones(original.shape, bool)
    assert difference_map(original, recon, mask)[27, 27] > 0.15
    assert difference_map(original, recon, mask, cut=0.5)[27, 27] == 0
    floor = difference_map(original, recon, mask, cut=0.0, min_difference=0.3)
    assert floor[27, 27] == 0 and floor[7, 7] > 0.4
    sharp = dict(sigma_fraction=1 / 400)  # sigma 0.5 px: the squares stay apart
    assert heat_map(original, recon, mask, AnomalySettings(**sharp))[27, 27] > 0.1
    assert heat_map(original, recon, mask, AnomalySettings(cut=0.5, **sharp))[27, 27] < 1e-3
    assert heat_map(original, recon, mask, AnomalySettings(cut=0.0, min_difference=0.3, **sharp))[27, 27] < 1e-3


def test_the_default_cut_and_label_threshold_are_mambos_30_percent():
    diff = np.array([[1.0, 0.31, 0.29, 0.0]], np.float32)
    np.testing.assert_array_equal(drop_weak(diff), np.array([[1.0, 0.31, 0, 0]], np.float32))
    np.testing.assert_array_equal(label_map(diff), [[True, True, False, False]])
