"""Lesion masks for inpainting, read onto a source mammogram's pixel grid: NRRD label map, PNG, DICOM SEG.

NRRD follows `dicom_io.write_nrrd` and Slicer's label-map export: the fastest axis is the image columns, so a
C-order read gives (rows, columns), or (1, rows, columns) for a single-slice 3D label map.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Optional

import numpy as np

from MammoSynthLogic.dicom_io import MammogramImage
from MammoSynthLogic.errors import MammoSynthError

EMPTY = "mask is empty: paint a region first"


def _select(labels: np.ndarray, label: Optional[int], path: Path) -> np.ndarray:
    """Nonzero pixels, or the pixels equal to `label`."""
    if label is None:
        return labels != 0
    if not (labels == label).any():
        present = ", ".join(map(str, np.unique(labels[labels != 0])[:10])) or "none"
        raise MammoSynthError(path, f"label {label} is not in the mask (labels present: {present})")
    return labels == label


def _nrrd_labels(path: Path) -> np.ndarray:
    import nrrd

    data, _ = nrrd.read(str(path), index_order="C")
    while data.ndim > 2 and data.shape[0] == 1:  # a single-slice 3D label map (Slicer's export of a 2D image)
        data = data[0]
    if data.ndim != 2:
        raise MammoSynthError(path, f"label map of shape {data.shape}: expected a 2D or single-slice label map")
    return data


def _png_labels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        data = np.asarray(im)
    if data.ndim == 3:  # colour: a pixel is in the mask when any colour channel is nonzero (alpha ignored)
        data = data[..., :3].max(axis=-1) if data.shape[-1] >= 3 else data[..., 0]
    return data


def _segment_numbers(seg, segment: Optional[str], path: Path) -> list[int]:
    """All segments, or the one given by number or label."""
    if segment is None:
        return list(seg.segment_numbers)
    if segment.isdigit() and int(segment) in seg.segment_numbers:
        return [int(segment)]
    numbers = seg.get_segment_numbers(segment_label=segment)
    if not numbers:
        labels = [seg.get_segment_description(n).segment_label for n in seg.segment_numbers]
        raise MammoSynthError(path, f"no segment {segment!r} (segments: "
                                    + ", ".join(f"{n} {lab}" for n, lab in zip(seg.segment_numbers, labels)) + ")")
    return numbers


def _seg_mask(path: Path, image: MammogramImage, segment: Optional[str]) -> np.ndarray:
    """The chosen segments of a DICOM SEG over the source image (it should reference it; same size at least)."""
    import highdicom as hd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seg = hd.seg.segread(path)
    referenced = [uids[2] for uids in seg.get_source_image_uids()]
    if image.sop_uid in referenced:
        source_uid, spatial = image.sop_uid, False
    elif len(referenced) == 1:  # a SEG of another copy of this image: the size check below must hold
        source_uid, spatial = referenced[0], True
    else:
        raise MammoSynthError(path, "this segmentation does not reference the source image "
                                    f"(SOPInstanceUID {image.sop_uid}); export it from this image")
    pixels = seg.get_pixels_by_source_instance([source_uid], segment_numbers=_segment_numbers(seg, segment, path),
                                               combine_segments=False, ignore_spatial_locations=spatial)
    return pixels[0].any(axis=-1)


def _is_dicom(path: Path) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return len(head) == 132 and head[128:] == b"DICM"


def read_mask(path: str | os.PathLike, image: MammogramImage, *, label: Optional[int] = None,
              segment: Optional[str] = None) -> np.ndarray:
    """A bool mask of the image's shape from an NRRD label map, a PNG or a DICOM SEG; one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise MammoSynthError(path, "no such mask file")
    suffix = path.suffix.lower()
    if segment is not None and suffix in (".nrrd", ".nhdr", ".png"):
        raise MammoSynthError(path, "--segment is for DICOM SEG masks; choose a label with --label")
    try:
        if suffix in (".nrrd", ".nhdr"):
            mask = _select(_nrrd_labels(path), label, path)
        elif suffix == ".png":
            mask = _select(_png_labels(path), label, path)
        elif _is_dicom(path):
            if label is not None:
                raise MammoSynthError(path, "--label is for NRRD and PNG label maps; choose a DICOM SEG's segment "
                                            "with --segment")
            mask = _seg_mask(path, image, segment)
        else:
            raise MammoSynthError(path, "unknown mask type: use an NRRD label map, a PNG or a DICOM SEG")
    except MammoSynthError:
        raise
    except Exception as e:  # pynrrd, PIL and highdicom raise many types on bad files
        why = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        raise MammoSynthError(path, f"cannot read the mask ({why})") from None
    shape = (image.rows, image.columns)
    if mask.shape != shape:
        raise MammoSynthError(path, f"mask is {mask.shape[0]}x{mask.shape[1]} pixels but the image is "
                                    f"{shape[0]}x{shape[1]}; export the mask on the image's own grid")
    if not mask.any():
        raise MammoSynthError(path, EMPTY)
    return mask
