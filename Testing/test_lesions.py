"""Analytic lesion models: sizes in millimetres, BI-RADS shapes and margins, calcification clusters, insertion."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from skimage.measure import label, regionprops

from MammoSynthLogic.errors import MammoSynthError
from MammoSynthLogic.lesions import MASK_LEVEL, LesionSpec, draw, insert


def props(mask: np.ndarray):
    (p,) = regionprops(mask.astype(np.uint8))
    return p


@pytest.mark.parametrize("spacing", [0.05, 0.1, 0.2])
def test_round_mass_has_its_diameter_in_mm_at_any_spacing(spacing):
    _, mask = draw(LesionSpec(shape="round", margin="circumscribed", size_mm=10), spacing, seed=0)
    # The mask holds the profile above MASK_LEVEL of the sphere chord: radius R·sqrt(1 - level²).
    expected = np.pi * (5 / spacing * np.sqrt(1 - MASK_LEVEL ** 2)) ** 2
    assert mask.sum() == pytest.approx(expected, rel=0.04)
    assert props(mask).eccentricity < 0.15


def test_oval_is_elongated_and_irregular_is_not_convex():
    oval = props(draw(LesionSpec(shape="oval", size_mm=10), 0.1, seed=1)[1])
    assert 1.3 < oval.axis_major_length / oval.axis_minor_length < 1.9
    round_ = props(draw(LesionSpec(shape="round", size_mm=10), 0.1, seed=1)[1])
    solidities = [props(draw(LesionSpec(shape="irregular", size_mm=10), 0.1, seed=s)[1]).solidity for s in range(4)]
    assert round_.solidity > 0.98 and max(solidities) < round_.solidity - 0.02


def boundary_sharpness(profile: np.ndarray) -> float:
    """Largest gradient magnitude of the profile: high for a sharp edge."""
    return float(np.hypot(*np.gradient(profile)).max())


def test_margins_change_the_edge():
    spec = dict(shape="round", size_mm=10)
    sharp = draw(LesionSpec(margin="circumscribed", **spec), 0.1, seed=2)[0]
    obscured = draw(LesionSpec(margin="obscured", **spec), 0.1, seed=2)[0]
    indistinct = draw(LesionSpec(margin="indistinct", **spec), 0.1, seed=2)[0]
    assert boundary_sharpness(sharp) > boundary_sharpness(obscured) > boundary_sharpness(indistinct)
    micro = props(draw(LesionSpec(margin="microlobulated", **spec), 0.1, seed=2)[1])
    circ = props(draw(LesionSpec(margin="circumscribed", **spec), 0.1, seed=2)[1])
    # Lobules lengthen the outline at almost the same area.
    assert micro.perimeter / np.sqrt(micro.area) > 1.04 * circ.perimeter / np.sqrt(circ.area)


def test_spiculated_mass_reaches_beyond_its_core_with_thin_lines():
    profile, mask = draw(LesionSpec(shape="round", margin="spiculated", size_mm=10), 0.1, seed=3)
    centre = profile.shape[0] // 2
    yy, xx = np.mgrid[0:profile.shape[0], 0:profile.shape[1]] - centre
    distance = np.hypot(yy, xx)
    assert distance[mask].max() > 1.4 * 50, "spicules reach well past the 5 mm radius"
    ring = mask & (distance > 60) & (distance < 70)
    # Thin lines: in a ring outside the core only a small fraction of pixels is lesion, in several separate runs.
    assert 0 < ring.sum() < 0.15 * ((distance > 60) & (distance < 70)).sum()
    assert label(ring).max() >= 6


@pytest.mark.parametrize("form", ["punctate", "pleomorphic"])
def test_calcification_cluster_count_size_and_spread(form):
    spec = LesionSpec(kind="calcification", form=form, count=15, size_mm=0.4, spread_mm=8)
    profile, mask = draw(spec, 0.05, seed=4)
    labels = label(mask)
    assert labels.max() == 15, "every calcification separate"
    sizes = [p.equivalent_diameter_area * 0.05 for p in regionprops(labels)]
    assert 0.25 < np.median(sizes) < 0.55
    spread = np.ptp(np.argwhere(mask), axis=0).max() * 0.05
    assert spread <= 8 * 1.6 + 1.0  # the ellipse's long axis is at most sqrt(1.6) times the spread
    if form == "pleomorphic":
        assert np.std(sizes) > 0.03


def test_seed_reproduces_and_changes_the_lesion():
    spec = LesionSpec(shape="irregular", margin="spiculated", size_mm=8)
    a, b, c = (draw(spec, 0.1, seed=s)[0] for s in (5, 5, 6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_insert_places_the_lesion_at_the_centre_inside_the_breast_only():
    image = np.full((200, 300), 0.3, np.float32)
    region = np.zeros_like(image, dtype=bool)
    region[:, :150] = True
    profile, _ = draw(LesionSpec(shape="round", size_mm=4), 0.1, seed=0)
    out, mask = insert(image, profile, (100, 140), 0.2, region)
    assert not mask[:, 150:].any() and np.array_equal(out[:, 150:], image[:, 150:])
    centre = ndimage.center_of_mass(mask)
    assert centre[0] == pytest.approx(100, abs=0.5) and 125 < centre[1] < 141
    assert out[100, 140] == pytest.approx(0.3 + 0.2 * (1 - 0.15), abs=1e-4)
    assert np.all(out >= image) and out.max() <= 1.0


@pytest.mark.parametrize("field, value", [("kind", "cyst"), ("shape", "square"), ("margin", "fuzzy"),
                                          ("form", "linear"), ("size_mm", -1.0), ("contrast", 0.0)])
def test_bad_specs_are_one_line_errors(field, value):
    with pytest.raises(MammoSynthError) as e:
        LesionSpec(**{field: value})
    assert "\n" not in str(e.value)


def test_a_cluster_that_cannot_fit_is_refused():
    with pytest.raises(MammoSynthError, match="raise --spread-mm"):
        draw(LesionSpec(kind="calcification", count=200, size_mm=1.0, spread_mm=3), 0.1, seed=0)
