"""Channel layouts of the MAMBO training samples (MAMBO §3.2.1, suppl. §8), cache and prepare-data."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from training_helpers import disc_image, subprocess_env, write_cache

from mammosynth_training.cache import Unit, open_array, read_metadata, selected_entries
from mammosynth_training.datasets import MamboDataset, StepSampler, crop_centered, resize_square


def _marker_image(n: int, cy: int, cx: int, half: int) -> np.ndarray:
    """Black image with one bright square marker centred on pixel edge (cy, cx): the only breast (non-zero) pixels,
    so every crop centre falls on the marker."""
    img = np.zeros((n, n), np.float32)
    img[cy - half:cy + half, cx - half:cx + half] = 1.0
    return img


def _dataset(tmp_path, img: np.ndarray, role: str, s: int, k: int, view="MLO", **kw) -> MamboDataset:
    return MamboDataset(write_cache(tmp_path / "cache", [img], views=[view]), role, s, k, **kw)


def _bright_centroid(channel: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(channel > 0.8 * channel.max())
    return ys.mean() + 0.5, xs.mean() + 0.5


def test_global_sample_is_the_whole_image_resized(tmp_path):
    img = _marker_image(128, 40, 30, 4)
    x = _dataset(tmp_path, img, "mambo-global", 32, 2)[0]["pixel_values"].numpy()
    assert x.shape == (1, 32, 32)
    np.testing.assert_allclose(x[0], resize_square(img, 32) * 2 - 1, atol=1e-6)


def test_local_sample_layout_crop_shifted_global_global(tmp_path):
    n, s, k, cy, cx = 256, 32, 2, 96, 60
    img = _marker_image(n, cy, cx, 8)
    sample = _dataset(tmp_path, img, "mambo-local", s, k)[0]
    x, (y, c) = (sample["pixel_values"].numpy() + 1) / 2, sample["centre"].tolist()
    assert x.shape == (3, s, s) and cy - 8 <= y < cy + 8 and cx - 8 <= c < cx + 8  # centre on a breast pixel
    # channel 0: the k·s full-resolution region centred on the pixel, resized to s: marker where the centre says
    np.testing.assert_allclose(x[0], resize_square(crop_centered(img, y, c, k * s), s), atol=1e-4)
    np.testing.assert_allclose(_bright_centroid(x[0]), (s / 2 + (cy - y) / k, s / 2 + (cx - c) / k), atol=0.6)
    # channel 1: the global image shifted so the crop centre is the image centre; empty area = minimum (0)
    np.testing.assert_allclose(_bright_centroid(x[1]), (s / 2 + (cy - y) * s / n, s / 2 + (cx - c) * s / n), atol=0.6)
    g = resize_square(img, s)
    np.testing.assert_allclose(_bright_centroid(g), (cy * s / n, cx * s / n), atol=0.6)
    assert x[1][-1, :].max() == 0 and x[1][:, -1].max() == 0  # shifted down/right: filled with the minimum
    # channel 2: the unshifted global image
    np.testing.assert_allclose(x[2], g, atol=1e-6)


def test_patch_sample_layout_patch_local_global(tmp_path):
    n, s, k, cy, cx = 256, 32, 3, 20, 100  # near the top edge: the local crop leaves the image
    img = _marker_image(n, cy, cx, 4)
    sample = _dataset(tmp_path, img, "mambo-patch", s, k)[0]
    x, (y, c) = (sample["pixel_values"].numpy() + 1) / 2, sample["centre"].tolist()
    assert x.shape == (3, s, s) and img[y, c] > 0
    np.testing.assert_allclose(x[0], img[y - s // 2:y + s // 2, c - s // 2:c + s // 2], atol=1e-4)
    local = resize_square(crop_centered(img, y, c, k * s), s)
    np.testing.assert_allclose(x[1], local, atol=1e-4)
    assert x[1][0].max() == 0  # rows above the image: filled with the minimum
    np.testing.assert_allclose(_bright_centroid(x[1]), (s / 2 + (cy - y) / k, s / 2 + (cx - c) / k), atol=0.6)
    np.testing.assert_allclose(x[2], resize_square(img, s), atol=1e-6)


def test_crop_centres_are_uniform_over_breast_pixels(tmp_path):
    img = np.zeros((128, 128), np.float32)
    img[10:20, 10:20] = 0.5  # 100 px
    img[60:120, 70:80] = 0.7  # 600 px: six times as many centres, none on the zero pixels between
    ds = _dataset(tmp_path, img, "mambo-patch", 16, 2)
    centres = np.array([ds[i]["centre"].tolist() for i in range(700)])
    assert np.all(img[centres[:, 0], centres[:, 1]] > 0)
    big = np.mean(centres[:, 0] >= 60)
    assert abs(big - 6 / 7) < 0.05, big  # binomial sd 0.013 at n = 700


def test_each_epoch_visits_every_image_once_and_ranks_share_it(tmp_path):
    images = [disc_image(64, 10 + i, 32, 20) for i in range(6)]
    ds = MamboDataset(write_cache(tmp_path / "cache", images), "mambo-global", 16, 2)
    for epoch in range(3):
        order = [ds.image_of(epoch * 6 + i) for i in range(6)]
        assert sorted(order) == list(range(6))
        rank0, rank1 = set(order[0::2]), set(order[1::2])  # StepSampler interleaving for 2 ranks
        assert not rank0 & rank1 and len(rank0) == len(rank1) == 3
    assert [ds.image_of(i) for i in range(6)] != [ds.image_of(i) for i in range(6, 12)]  # reshuffled per epoch


def test_samples_are_deterministic_and_full_size_resizes(tmp_path):
    img = disc_image(256, 60, 128, 80)
    ds = _dataset(tmp_path, img, "mambo-patch", 16, 2, view="CC", full_size=64, intensity_jitter=0.1)
    assert np.load(ds.items[0].full).shape == (64, 64)
    assert ds.items[0].box == (17, 5, 47, 35)  # the disc's box at 1/4 scale
    a, b, c = ds[5]["pixel_values"], ds[5]["pixel_values"], ds[6]["pixel_values"]
    assert np.array_equal(a.numpy(), b.numpy()) and not np.array_equal(a.numpy(), c.numpy())


def test_augmentations_keep_anatomy(tmp_path):
    n, s = 64, 32
    img = _marker_image(n, 16, 12, 2)
    img[30:50, 5:20] = 0.3
    mlo = _dataset(tmp_path / "mlo", img, "mambo-global", s, 2, view="MLO", vflip_cc=1.0, intensity_jitter=0.1)
    cc = _dataset(tmp_path / "cc", img, "mambo-global", s, 2, view="CC", vflip_cc=1.0)
    g = resize_square(img, s)
    for i in range(20):
        x = (mlo[i]["pixel_values"].numpy()[0] + 1) / 2
        assert np.all(x[g == 0] == 0)  # background stays black under intensity jitter
        np.testing.assert_allclose(_bright_centroid(x), _bright_centroid(g), atol=1e-6)  # never flipped
        assert abs(x[g > 0].mean() / g[g > 0].mean() - 1) < 0.25  # jitter is small
    flipped = (cc[0]["pixel_values"].numpy()[0] + 1) / 2
    np.testing.assert_allclose(flipped, g[::-1], atol=1e-5)  # CC: vertical flip only (1e-5: uint16 storage)


def test_cache_round_trip_and_filters(tmp_path):
    x = np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64)
    root = write_cache(tmp_path / "cache", [x, x], views=["CC", "MLO"])
    entries = read_metadata(root)["images"]
    stored = Unit(open_array(root / entries[0]["image"]))
    assert np.abs(stored[:] - x).max() <= 0.5 / 65535 + 1e-7
    assert isinstance(stored.array, np.memmap)  # read through a memory map, not loaded
    assert [e["view"] for e in selected_entries(root, views=("MLO",))] == ["MLO"]
    with pytest.raises(ValueError, match="no cached image"):
        selected_entries(root, views=("XCCL",))
    with pytest.raises(ValueError, match="prepare-data"):
        open_array(tmp_path / "old.png")


def test_prepare_data_cli_csv_format(tmp_path, smalls):
    dicoms = tmp_path / "dicoms"
    dicoms.mkdir()
    for small in smalls[:2]:  # LCC and LMLO of one patient
        (dicoms / small.path.name).symlink_to(small.path)
    meta = tmp_path / "meta.csv"
    with open(meta, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "healthy", "density", "pathology", "split"])
        w.writerow([f"dicoms/{smalls[0].path.name}", "1", "2", "", "train"])  # relative to the CSV
        w.writerow([str(dicoms / smalls[1].path.name), "0", "C", "BENIGN", "test"])
    out = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "mammosynth_training.cli", "prepare-data", str(dicoms),
                           "--csv", str(meta), "--out", str(out), "--healthy-only"],
                          capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    entries = json.loads((out / "metadata.json").read_text())["images"]
    assert len(entries) == 1 and entries[0]["healthy"] is True and entries[0]["density"] == "B"  # 2 = B
    assert (entries[0]["split"], entries[0]["pathology"]) == ("train", None)
    pixels = Unit(open_array(out / entries[0]["image"]))[:]
    mask = np.asarray(Image.open(out / entries[0]["mask"])) > 0
    assert pixels.shape[0] == pixels.shape[1] and pixels.shape[0] % 256 == 0
    assert mask.shape == pixels.shape and 0.05 < mask.mean() < 0.9
    assert pixels[~mask].mean() < pixels[mask].mean()
    cols = pixels.shape[1]
    assert pixels[:, : cols // 4].sum() > pixels[:, -cols // 4:].sum()  # breast on the left


def test_loader_workers_read_the_rank_s_own_samples(tmp_path):
    images = [disc_image(64, 10 + i, 32, 20) for i in range(4)]
    ds = MamboDataset(write_cache(tmp_path / "cache", images), "mambo-patch", 16, 2)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, sampler=StepSampler(start=2, rank=1,
                                                                                               world_size=2))
    batch = next(iter(loader))
    assert batch["index"].tolist() == [5, 7, 9, 11]  # rank 1 of 2, from its 3rd sample on
    for i, index in enumerate(batch["index"].tolist()):  # a worker process computes what this one does
        np.testing.assert_allclose(batch["pixel_values"][i].numpy(), ds[index]["pixel_values"].numpy(), atol=1e-6)
