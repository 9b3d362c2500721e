"""Dual-view training data: CC/MLO pairs of one breast, RGB-encoded as MammoRGB does (MammoSynthLogic.dualview).

Pairs come from DICOM folders (grouped by patient, study and laterality with `dicom_io.group_by_breast`) or from a
CSV with columns `cc` and `mlo` (file paths, relative to the CSV) and optionally `laterality`.
Each pair is read, prepared (chest wall on the left, square) and resized to s×s once, into an .npy file of the run
(`output_dir/pairs/`); samples read it and encode it (R = CC, G = MLO, B from them).
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from MammoSynthLogic.dualview import encode, encode_view

from .cache import save_array
from .datasets import jitter_intensity


@dataclass(frozen=True)
class Pair:
    """One breast: its (patient, study, laterality) key and the CC and MLO files."""

    key: tuple[str, str, str]
    cc: Path
    mlo: Path


def pairs_from_dicoms(dirs: list[str | Path], log=print) -> list[Pair]:
    """Every breast with both a CC and an MLO under `dirs`; breasts with several of a view use the first by path."""
    from MammoSynthLogic.dicom_io import find_dicoms, group_by_breast, read_mammogram
    from MammoSynthLogic.errors import MammoSynthError

    paths, errors = find_dicoms(dirs)
    for error in errors:
        log(f"skipped: {error}")
    images = []
    for path in paths:
        try:
            images.append(read_mammogram(path, max_side=64))  # headers are what matter here
        except MammoSynthError as e:
            log(f"skipped: {e}")
    pairs = []
    for key, group in sorted(group_by_breast(images).items()):
        by_view = {v: sorted(im.path for im in group if im.view == v) for v in ("CC", "MLO")}
        if by_view["CC"] and by_view["MLO"]:
            pairs.append(Pair(key, by_view["CC"][0], by_view["MLO"][0]))
        else:
            log(f"skipped breast {key}: no {'CC' if not by_view['CC'] else 'MLO'} view")
    return pairs


def pairs_from_csv(path: str | Path) -> list[Pair]:
    """Pairs listed in a CSV (columns cc, mlo, optional laterality/patient_id/study; paths relative to the CSV)."""
    path = Path(path)
    pairs = []
    with open(path, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            if not row.get("cc") or not row.get("mlo"):
                raise ValueError(f"{path}:{n}: every row needs a cc and an mlo path")
            cc, mlo = (Path(row[c]) if Path(row[c]).is_absolute() else path.parent / row[c] for c in ("cc", "mlo"))
            key = (row.get("patient_id", f"row{n}"), row.get("study", ""), row.get("laterality", "?").upper())
            pairs.append(Pair(key, cc, mlo))
    return pairs


def find_pairs(dicom_dirs: list[str] | tuple[str, ...] = (), pairs_csv: str | None = None, log=print) -> list[Pair]:
    """Pairs from the CSV if given, else from the DICOM folders; ValueError when none are found."""
    pairs = pairs_from_csv(pairs_csv) if pairs_csv else pairs_from_dicoms(list(dicom_dirs), log)
    if not pairs:
        raise ValueError("no CC/MLO pairs found: give dualview.dicom_dirs with both views of some breasts, "
                         "or dualview.pairs_csv with cc,mlo columns")
    return pairs


def view_pair(pair: Pair, size: int) -> np.ndarray:
    """(2, size, size) [0, 1]: the pair's CC and MLO, each prepared with its chest wall on the left and resized."""
    from MammoSynthLogic.dicom_io import read_mammogram

    return np.stack([encode_view(read_mammogram(p), size).pixels for p in (pair.cc, pair.mlo)])


class DualViewDataset(torch.utils.data.Dataset):
    """Endless samples; sample `i` is a deterministic function of (seed, i) (same contract as MamboDataset). Each
    pair's two views are read per sample from an .npy file written once, so memory does not grow with the pairs."""

    def __init__(self, views: list[Path], *, blue: str = "diff", seed: int = 0, intensity_jitter: float = 0.0):
        self.views, self.blue, self.seed, self.intensity_jitter = views, blue, seed, intensity_jitter

    @classmethod
    def from_pairs(cls, pairs: list[Pair], size: int, folder: str | Path, **kwargs) -> "DualViewDataset":
        """Views of every pair at size, written once into folder (named by the pair's files and the size)."""
        paths = []
        for pair in pairs:
            path = Path(folder) / f"{hashlib.sha1(f'{pair.cc}|{pair.mlo}|{size}'.encode()).hexdigest()[:16]}.npy"
            if not path.is_file():
                save_array(path, view_pair(pair, size))
            paths.append(path)
        return cls(paths, **kwargs)

    def __len__(self) -> int:
        return 2 ** 31 - 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        rng = np.random.default_rng([self.seed, index])
        views = np.load(self.views[rng.integers(len(self.views))])
        views = jitter_intensity(views, rng, self.intensity_jitter)  # one gamma/gain for both views
        rgb = encode(views[0], views[1], self.blue)
        return {"pixel_values": torch.from_numpy(rgb * 2 - 1), "index": index}
