"""Property-based tests (hypothesis) of the geometry everything rests on: the prepared frame and its inverse, tile
grids, blending weights, crops and shifts at the borders."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from MammoSynthLogic import tiling
from MammoSynthLogic.pipelines.inpaint import crop_box
from MammoSynthLogic.pipelines.mambo import aligned_context, crop_padded
from MammoSynthLogic.preparation import PrepareTransform, padded_side

FEW = settings(max_examples=40, deadline=None, derandomize=True, database=None)  # suite time; the same examples every run

sides = st.integers(1, 300)
multiples = st.sampled_from([16, 32, 64, 256])


@FEW
@given(rows=sides, cols=sides, flipped=st.booleans(), multiple=multiples, channels=st.sampled_from([(), (3,)]),
       seed=st.integers(0, 2 ** 16))
def test_prepare_transform_round_trips_any_shape_side_and_padding(rows, cols, flipped, multiple, channels, seed):
    source = np.random.default_rng(seed).random((rows, cols) + channels).astype(np.float32)
    size = padded_side((rows, cols), multiple)
    assert size % multiple == 0 and max(rows, cols) <= size < max(rows, cols) + multiple
    t = PrepareTransform(source_shape=(rows, cols), flipped=flipped, size=size)
    prepared = t.to_prepared(source, fill=-1)
    assert prepared.shape == (size, size) + channels
    np.testing.assert_array_equal(prepared[:rows, :cols], source[:, ::-1] if flipped else source)
    assert (prepared[rows:] == -1).all() and (prepared[:, cols:] == -1).all()  # padding bottom/right only
    np.testing.assert_array_equal(t.to_source(prepared), source)
    assert PrepareTransform.from_json(t.to_json()) == t


@FEW
@given(rows=st.integers(8, 300), cols=st.integers(8, 300), flipped=st.booleans())
def test_a_column_marked_in_the_source_comes_back_to_that_column_from_any_resolution(rows, cols, flipped):
    """A result at a model's lower resolution maps back with the flip undone: the chest-wall column stays put."""
    size = padded_side((rows, cols), 64)
    t = PrepareTransform(source_shape=(rows, cols), flipped=flipped, size=size)
    source = np.zeros((rows, cols), np.float32)
    wall = cols - 1 if flipped else 0
    source[:, wall] = 1.0
    prepared = t.to_prepared(source)
    assert prepared[:rows, 0].min() == 1.0  # the chest wall is on the left in the prepared frame
    back = t.to_source(prepared.reshape(size // 2, 2, size // 2, 2).mean(axis=(1, 3)))
    assert back.shape == (rows, cols) and int(np.argmax(back[rows // 2])) in (wall, wall - 1 if flipped else 1)


@st.composite
def grids(draw):
    size = draw(st.integers(2, 64))
    overlap = draw(st.integers(0, size - 1))
    return draw(st.integers(1, 300)), draw(st.integers(1, 300)), size, overlap


@FEW
@given(grid=grids())
def test_tile_grids_cover_the_canvas_exactly(grid):
    height, width, size, overlap = grid
    tiles = tiling.grid(height, width, size, overlap)
    count = np.zeros((max(height, size), max(width, size)), np.int32)
    for t in tiles:
        assert t.y >= 0 and t.x >= 0
        count[t.slices] += 1
    assert (count[:height, :width] > 0).all()  # every pixel covered
    assert count[height:].sum() == 0 or height < size  # nothing beyond the canvas unless it is smaller than a tile
    assert count[:, width:].sum() == 0 or width < size
    for length, starts in ((height, tiling.positions(height, size, overlap)),
                           (width, tiling.positions(width, size, overlap))):
        assert starts[0] == 0 and starts[-1] == max(0, length - size) and starts == sorted(set(starts))
        assert all(b - a <= size - overlap for a, b in zip(starts, starts[1:]))  # at least the overlap shared
    assert sorted(t.index for t in tiles) == list(range(len(tiles)))
    waves = tiling.wavefronts(tiles)
    assert sorted(t.index for w in waves for t in w) == list(range(len(tiles)))
    assert [w[0].row + w[0].col for w in waves] == sorted({t.row + t.col for t in tiles})


@FEW
@given(grid=grids(), keep=st.lists(st.booleans(), min_size=1, max_size=200))
def test_blend_weights_sum_to_one_where_covered_and_are_zero_elsewhere(grid, keep):
    height, width, size, overlap = grid
    height, width = max(height, size), max(width, size)
    tiles = tiling.grid(height, width, size, overlap)
    # any non-empty subset, as background skip makes (callers never blend zero tiles)
    active = [t for t, k in zip(tiles, keep + [True] * len(tiles)) if k] or tiles[:1]
    weights, inv = tiling.blend_weights(active, (height, width), overlap)
    assert weights.min() > 0 and weights.max() <= 1
    total = np.zeros((height, width), np.float64)
    covered = np.zeros((height, width), bool)
    for t in active:
        total[t.slices] += weights * inv[t.slices]
        covered[t.slices] = True
    np.testing.assert_allclose(total[covered], 1.0, rtol=1e-5)
    assert (inv[~covered] == 0).all()


@FEW
@given(h=st.integers(1, 40), w=st.integers(1, 40), top=st.integers(-60, 60), left=st.integers(-60, 60),
       size=st.integers(1, 40), seed=st.integers(0, 2 ** 16))
def test_crops_near_and_beyond_the_borders_are_the_padded_image(h, w, top, left, size, seed):
    image = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    pad = 100
    reference = np.pad(image, pad, constant_values=-1.0)[top + pad:top + pad + size, left + pad:left + pad + size]
    np.testing.assert_array_equal(crop_padded(image, top, left, size, fill=-1.0), reference)


@FEW
@given(n=st.integers(4, 40), top=st.integers(-20, 40), left=st.integers(-20, 40), size=st.integers(1, 20),
       seed=st.integers(0, 2 ** 16))
def test_aligned_context_at_the_same_scale_is_the_crop_under_the_tile(n, top, left, size, seed):
    """Coarse and fine canvases of one size: the context under a tile is that tile's pixels, fill outside."""
    coarse = np.random.default_rng(seed).random((n, n)).astype(np.float32)
    np.testing.assert_allclose(aligned_context(coarse, top, left, size, n, fill=-1.0),
                               crop_padded(coarse, top, left, size, fill=-1.0), atol=1e-6)


@FEW
@given(rows=st.integers(1, 200), cols=st.integers(1, 200), data=st.data(), margin=st.floats(0, 2),
       min_side=st.integers(0, 256), pad=st.integers(0, 20))
def test_crop_box_holds_the_mask_inside_the_image(rows, cols, data, margin, min_side, pad):
    r0 = data.draw(st.integers(0, rows - 1))
    c0 = data.draw(st.integers(0, cols - 1))
    r1 = data.draw(st.integers(r0 + 1, rows))
    c1 = data.draw(st.integers(c0 + 1, cols))
    mask = np.zeros((rows, cols), bool)
    mask[r0:r1, c0:c1] = True
    box = crop_box(mask, margin, min_side, pad)
    assert 0 <= box.top and box.top + box.height <= rows and 0 <= box.left and box.left + box.width <= cols
    assert mask[box.slices].sum() == mask.sum()  # the whole mask is inside
    side = max(r1 - r0, c1 - c0)
    assert box.height == min(rows, max(box.height, min_side, side + 2 * pad))
    assert box.width == min(cols, max(box.width, min_side, side + 2 * pad))
    if box.height < rows and box.width < cols:
        assert box.height == box.width  # square unless the image is too small


@FEW
@given(size=st.integers(2, 64), data=st.data())
def test_ramps_of_neighbouring_tiles_are_complementary(size, data):
    """The raised-cosine edges are sin² and cos² of one angle: across an overlap two neighbours' windows sum to
    one before any normalising, so a blend is an exact cross-fade."""
    overlap = data.draw(st.integers(1, size // 2))
    w = tiling.ramp_weights(size, overlap)
    assert w.dtype == np.float32
    line = np.sqrt(np.diag(w))  # the window is separable: w = line ⊗ line
    np.testing.assert_allclose(line[:overlap] + line[size - overlap:], 1.0, atol=1e-6)
    assert np.all(np.diff(line[:overlap]) > 0) and np.allclose(line[overlap:size - overlap], 1.0)


@FEW
@given(items=st.lists(st.integers(), max_size=30), n=st.integers(-2, 10))
def test_chunks_split_a_list_in_order(items, n):
    parts = list(tiling.chunks(items, n))
    assert [x for p in parts for x in p] == items and all(0 < len(p) <= max(1, n) for p in parts)


@FEW
@given(values=st.lists(st.floats(0, 1), min_size=4, max_size=4), ys=st.integers(0, 7))
def test_seam_metric_of_a_piecewise_constant_image(values, ys):
    """Four 8 px tiles, each one value: across the tile borders the squared steps are known; across their middle
    lines (`inside`) there are none; a mask keeps only the pixel pairs it holds both of."""
    v = np.array(values, np.float32).reshape(2, 2)
    image = np.kron(v, np.ones((8, 8), np.float32))
    tiles = tiling.grid(16, 16, 8, 0)
    steps = [(v[0, 0] - v[1, 0]) ** 2] * 8 + [(v[0, 1] - v[1, 1]) ** 2] * 8 \
        + [(v[0, 0] - v[0, 1]) ** 2] * 8 + [(v[1, 0] - v[1, 1]) ** 2] * 8
    assert abs(tiling.seam_mse(image, tiles) - float(np.mean(steps))) < 1e-6
    assert tiling.seam_mse(image, tiles, inside=True) == 0.0
    mask = np.zeros((16, 16), bool)
    mask[:8, ys:ys + 9] = True  # the top row of tiles only: the horizontal border is out, part of the vertical one in
    expected = [(v[0, 0] - v[0, 1]) ** 2] * 8 if ys <= 7 < ys + 9 else []
    assert abs(tiling.seam_mse(image, tiles, mask=mask) - (float(np.mean(expected)) if expected else 0.0)) < 1e-6


@FEW
@given(seed=st.integers(0, 2 ** 16))
def test_seam_metric_compares_the_pixel_pairs_across_the_named_lines(seed):
    """16² canvas of four 8 px tiles: the borders are between rows 7|8 and columns 7|8, the middle lines between
    3|4 and 11|12; only pairs with both pixels in the mask count."""
    rng = np.random.default_rng(seed)
    image = rng.random((16, 16)).astype(np.float32)
    mask = rng.random((16, 16)) > 0.3
    tiles = tiling.grid(16, 16, 8, 0)

    def expected(lines: list[int]) -> float:
        pairs = [(image[r - 1] - image[r])[mask[r - 1] & mask[r]] for r in lines]
        pairs += [(image[:, c - 1] - image[:, c])[mask[:, c - 1] & mask[:, c]] for c in lines]
        return float(np.mean(np.concatenate(pairs) ** 2))

    assert abs(tiling.seam_mse(image, tiles, mask=mask) - expected([8])) < 1e-6
    assert abs(tiling.seam_mse(image, tiles, inside=True, mask=mask) - expected([4, 12])) < 1e-6
    assert tiling.seam_mse(image, tiles, mask=np.zeros_like(mask)) == 0.0


@FEW
@given(rows=st.integers(64, 160), cols=st.integers(64, 160), side=st.sampled_from(["left", "right"]),
       multiple=multiples)
def test_prepare_puts_any_breast_chest_wall_left_in_a_padded_square(rows, cols, side, multiple):
    from dicom_factory import synthetic_breast
    from MammoSynthLogic.preparation import prepare

    pixels = synthetic_breast(rows, cols, side=side).astype(np.float32) / 65535
    prepared = prepare(pixels, multiple=multiple)
    size = padded_side((rows, cols), multiple)
    assert prepared.pixels.shape == prepared.region.shape == prepared.mask.shape == (size, size)
    assert prepared.pixels.dtype == np.float32 and prepared.region.dtype == bool and prepared.mask.dtype == bool
    assert prepared.breast_side == side and prepared.transform.flipped == (side == "right")
    assert prepared.region[:rows, :3].mean() > 0.5 and not prepared.region[:, cols:].any()
    assert (prepared.pixels[~prepared.region] == 0).all() and not (prepared.mask & ~prepared.region).any()
    inside = prepared.transform.to_source(prepared.region)
    np.testing.assert_array_equal(prepared.transform.to_source(prepared.pixels)[inside], pixels[inside])


@FEW
@given(h=st.integers(2, 40), w=st.integers(2, 40), seed=st.integers(0, 2 ** 16))
def test_resize_shrinks_by_area_and_keeps_masks_and_labels_exact(h, w, seed):
    from MammoSynthLogic.preparation import resize

    rng = np.random.default_rng(seed)
    image = rng.random((2 * h, 2 * w)).astype(np.float32)
    np.testing.assert_allclose(resize(image, (h, w)), image.reshape(h, 2, w, 2).mean(axis=(1, 3)), atol=1e-6)
    assert resize(image, (h, w)).dtype == np.float32 and resize(image, (4 * h, 4 * w)).shape == (4 * h, 4 * w)
    flat = np.full((h, w), 0.3, np.float32)
    np.testing.assert_allclose(resize(flat, (3 * h, 2 * w)), 0.3, atol=1e-6)  # bilinear up keeps a constant
    mask = rng.random((h, w)) > 0.5
    up = resize(mask, (2 * h, 2 * w))
    assert up.dtype == bool and np.array_equal(up[::2, ::2], mask) and np.array_equal(resize(up, (h, w)), mask)
    labels = rng.integers(0, 5, (h, w)).astype(np.uint8)
    up = resize(labels, (3 * h, 3 * w))
    assert up.dtype == np.uint8 and np.array_equal(up[1::3, 1::3], labels)
    assert resize(image, image.shape) is image


@FEW
@given(seed=st.integers(0, 2 ** 16))
def test_histogram_match_leaves_its_inputs_and_the_outside_alone(seed):
    from MammoSynthLogic.preparation import histogram_match

    rng = np.random.default_rng(seed)
    image, reference = rng.random((2, 24, 24)).astype(np.float32)
    reference = reference * 0.5 + 0.25
    mask = rng.random((24, 24)) > 0.4
    before = image.copy()
    out = histogram_match(image, reference, mask)
    np.testing.assert_array_equal(image, before)
    assert out.dtype == np.float32 and np.array_equal(out[~mask], image[~mask])
    # the matched values follow the reference's distribution (skimage interpolates quantiles: not value for value)
    ref, got = reference[mask], out[mask]
    assert ref.min() - 1e-6 <= got.min() and got.max() <= ref.max() + 1e-6
    assert abs(float(got.mean() - ref.mean())) < 0.01 and abs(float(got.std() - ref.std())) < 0.01


def test_transform_json_says_what_it_does():
    t = PrepareTransform(source_shape=(300, 200), flipped=True, size=512)
    assert json.loads(t.to_json()) == {"source_shape": [300, 200], "flipped": True, "size": 512,
                                                      "padding": "bottom/right with zeros",
                                                      "flip": "horizontal, before padding"}


def _nearest(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Distance from every pixel to the nearest of `points` (N, 2) by brute force (inf where there are none)."""
    if not len(points):
        return np.full(shape, np.inf)
    yy, xx = np.indices(shape)
    d2 = (yy[..., None] - points[:, 0]) ** 2 + (xx[..., None] - points[:, 1]) ** 2
    return np.sqrt(d2.min(axis=-1).astype(np.float64))


@given(rows=st.integers(1, 24), cols=st.integers(1, 24), fill=st.floats(0, 1), seed=st.integers(0, 2 ** 16),
       radius=st.one_of(st.integers(0, 30).map(float), st.floats(0.1, 12), st.sampled_from([2 ** 0.5, 5 ** 0.5])))
def test_disk_erosion_and_dilation_are_the_brute_force_distance_tests(rows, cols, fill, seed, radius):
    """Erosion keeps the pixels farther than r from all background (outside the image is not background); dilation
    reaches every pixel within r of the mask; hole filling leaves only background that touches the border."""
    from scipy import ndimage

    from MammoSynthLogic.breast_mask import _dilate_disk, _erode_disk, _fill_holes

    mask = np.random.default_rng(seed).random((rows, cols)) < fill
    np.testing.assert_array_equal(_erode_disk(mask, radius), _nearest(np.argwhere(~mask), mask.shape) > radius)
    np.testing.assert_array_equal(_dilate_disk(mask, radius), _nearest(np.argwhere(mask), mask.shape) <= radius)
    np.testing.assert_array_equal(_fill_holes(mask), ndimage.binary_fill_holes(mask))
