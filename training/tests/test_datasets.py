"""Channel layouts of the MAMBO training samples (MAMBO §3.2.1, suppl. §8), cache and prepare-data."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
from training_helpers import disc_image, real_mammogram_paths, subprocess_env, write_cache

from mammosynth_training.cache import CachedImage, load_images, read_png16, write_png16
from mammosynth_training.datasets import MamboDataset, crop_centered, resize_square


def _marker_image(n: int, cy: int, cx: int, half: int) -> np.ndarray:
    """Dim uniform breast-like block with one bright square marker centred on pixel edge (cy, cx)."""
    img = np.zeros((n, n), np.float32)
    img[: n * 3 // 4, : n // 2] = 0.3
    img[cy - half:cy + half, cx - half:cx + half] = 1.0
    return img


def _dataset(img: np.ndarray, role: str, s: int, k: int, centre: tuple[int, int], view="MLO", **kw) -> MamboDataset:
    mask = np.zeros(img.shape, bool)
    mask[centre] = True  # the only breast pixel: every sample is centred on it
    return MamboDataset([CachedImage(img, mask, {"view": view})], role, s, k, **kw)


def _bright_centroid(channel: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(channel > 0.8 * channel.max())
    return ys.mean() + 0.5, xs.mean() + 0.5


def test_global_sample_is_the_whole_image_resized():
    img = _marker_image(128, 40, 30, 4)
    x = _dataset(img, "mambo-global", 32, 2, (40, 30))[0]["pixel_values"].numpy()
    assert x.shape == (1, 32, 32)
    np.testing.assert_allclose(x[0], resize_square(img, 32) * 2 - 1, atol=1e-6)


def test_local_sample_layout_crop_shifted_global_global():
    n, s, k, cy, cx = 256, 32, 2, 96, 60
    img = _marker_image(n, cy, cx, 8)
    x = (_dataset(img, "mambo-local", s, k, (cy, cx))[0]["pixel_values"].numpy() + 1) / 2
    assert x.shape == (3, s, s)
    # channel 0: the k·s full-resolution region centred on the pixel, resized to s: marker at the centre
    np.testing.assert_allclose(x[0], resize_square(crop_centered(img, cy, cx, k * s), s), atol=1e-5)
    np.testing.assert_allclose(_bright_centroid(x[0]), (s / 2, s / 2), atol=0.6)
    # channel 1: the global image shifted so the crop centre is the image centre; empty area = minimum (0)
    np.testing.assert_allclose(_bright_centroid(x[1]), (s / 2, s / 2), atol=0.6)
    g = resize_square(img, s)
    np.testing.assert_allclose(_bright_centroid(g), (cy * s / n, cx * s / n), atol=0.6)
    assert x[1][-1, :].max() == 0 and x[1][:, -1].max() == 0  # shifted down/right: filled with the minimum
    # channel 2: the unshifted global image
    np.testing.assert_allclose(x[2], g, atol=1e-6)


def test_patch_sample_layout_patch_local_global():
    n, s, k, cy, cx = 256, 32, 3, 20, 100  # near the top edge: the local crop leaves the image
    img = _marker_image(n, cy, cx, 4)
    x = (_dataset(img, "mambo-patch", s, k, (cy, cx))[0]["pixel_values"].numpy() + 1) / 2
    assert x.shape == (3, s, s)
    np.testing.assert_allclose(x[0], img[cy - s // 2:cy + s // 2, cx - s // 2:cx + s // 2], atol=1e-4)
    local = resize_square(crop_centered(img, cy, cx, k * s), s)
    np.testing.assert_allclose(x[1], local, atol=1e-5)
    assert x[1][0].max() == 0  # rows above the image: filled with the minimum
    np.testing.assert_allclose(_bright_centroid(x[1]), (s / 2, s / 2), atol=0.6)
    np.testing.assert_allclose(x[2], resize_square(img, s), atol=1e-6)


def test_samples_are_deterministic_and_full_size_resizes():
    img = disc_image(256, 60, 128, 80)
    ds = MamboDataset([CachedImage(img, img > 0, {"view": "CC"})], "mambo-patch", 16, 2, full_size=64,
                      intensity_jitter=0.1)
    assert ds.items[0].full.shape == (64, 64)
    a, b, c = ds[5]["pixel_values"], ds[5]["pixel_values"], ds[6]["pixel_values"]
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), c.numpy())


def test_augmentations_keep_anatomy():
    n, s = 64, 32
    img = _marker_image(n, 16, 12, 2)
    mlo = _dataset(img, "mambo-global", s, 2, (16, 12), view="MLO", vflip_cc=1.0, intensity_jitter=0.1)
    cc = _dataset(img, "mambo-global", s, 2, (16, 12), view="CC", vflip_cc=1.0)
    g = resize_square(img, s)
    for i in range(20):
        x = (mlo[i]["pixel_values"].numpy()[0] + 1) / 2
        assert np.all(x[g == 0] == 0)  # background stays black under intensity jitter
        np.testing.assert_allclose(_bright_centroid(x), _bright_centroid(g), atol=1e-6)  # never flipped
        assert abs(x[g > 0].mean() / g[g > 0].mean() - 1) < 0.25  # jitter is small
    flipped = (cc[0]["pixel_values"].numpy()[0] + 1) / 2
    np.testing.assert_allclose(flipped, g[::-1], atol=1e-6)  # CC: vertical flip only, breast stays left


def test_png16_cache_round_trip(tmp_path):
    x = np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64)
    write_png16(tmp_path / "a.png", x)
    assert np.abs(read_png16(tmp_path / "a.png") - x).max() <= 0.5 / 65535 + 1e-7
    root = write_cache(tmp_path / "cache", [x, x], views=["CC", "MLO"])
    assert [im.meta["view"] for im in load_images(root, views=("MLO",))] == ["MLO"]
    with pytest.raises(ValueError):
        load_images(root, views=("XCCL",))


def test_prepare_data_cli_on_real_dicoms(tmp_path):
    paths = real_mammogram_paths()[:2]  # LCC and LMLO of one patient
    dicoms = tmp_path / "dicoms"
    dicoms.mkdir()
    for p in paths:
        (dicoms / p.name).symlink_to(p)
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "healthy", "density"])
        w.writerow([str(dicoms / paths[0].name), "1", "B"])
        w.writerow([str(dicoms / paths[1].name), "0", "C"])
    out = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "mammosynth_training.cli", "prepare-data", str(dicoms),
                           "--csv", str(meta), "--out", str(out), "--healthy-only"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads((out / "metadata.json").read_text())["images"]
    assert len(entries) == 1 and entries[0]["healthy"] is True and entries[0]["density"] == "B"
    (image,) = load_images(out)
    assert image.pixels.shape[0] == image.pixels.shape[1] and image.pixels.shape[0] % 256 == 0
    assert image.mask.shape == image.pixels.shape and 0.05 < image.mask.mean() < 0.9
    assert image.pixels[~image.mask].mean() < image.pixels[image.mask].mean()
    cols = image.pixels.shape[1]
    assert image.pixels[:, : cols // 4].sum() > image.pixels[:, -cols // 4:].sum()  # breast on the left
