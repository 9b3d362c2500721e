"""MAM-E training samples from the prepared-data cache (MAM-E §3.2, §3.5).

Images: the prepared image (breast on the left, padded square) resized to image_size and repeated in 3 channels,
values in [-1, 1]. Captions: `MammoSynthLogic.prompts.build_prompt` from the metadata (vendor, view, density) and
the breast area fraction of the source frame; laterality is not in the caption, preparation flips every breast to
the left. Inpainting: the lesion boxes / mask of the metadata when present (`lesion_boxes` as [x0, y0, x1, y1] in
source pixels, `lesion_mask` an image in the source frame, path absolute or relative to the cache), else a random
box inside the breast mask with sides drawn in [sd.box_min, sd.box_max] × image side; masked image = image with the
box set to 0, the prompt is "a mammogram with a lesion". MAM-E trains on whole images; with `sd.crop_margin` set,
each sample is instead the square crop around the mask that the engine inpaints (`pipelines.inpaint.crop_box`: the
mask's extent plus the margin on each side, at least the model size in native pixels), cut from the image at
data.full_size and resized to image_size, so that training and use see lesions at the same scale (the VAE stage
then trains on half crops, half whole images).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from MammoSynthLogic.breast_mask import breast_area_fraction
from MammoSynthLogic.pipelines.inpaint import crop_box
from MammoSynthLogic.preparation import PrepareTransform, resize
from MammoSynthLogic.prompts import INPAINT_PROMPT, VIEWS, area_phrase, build_prompt
from PIL import Image

from .cache import Unit, derived, open_array, selected_entries
from .config import TrainConfig
from .datasets import global_image, jitter_intensity, read_unit, resize_square, working_image


@dataclass
class SDItem:
    """One cached image: its caption and where its arrays at the item's working size are (read per sample, so
    memory does not grow with the data set)."""

    image: Path  # the prepared image: image_size, or data.full_size for inpainting crops (float32 or uint16 .npy)
    mask: Path  # bool breast mask, same size
    caption: str
    view: str
    lesion_mask: Path | None = None  # bool, same size, if annotated
    min_crop: int = 0  # inpainting crops: the model size in native pixels, at the working size (as the engine)

    @property
    def pixels(self) -> np.ndarray:
        return read_unit(self.image)

    @property
    def breast(self) -> np.ndarray:
        return np.load(self.mask)

    @property
    def lesion(self) -> np.ndarray | None:
        return None if self.lesion_mask is None else np.load(self.lesion_mask)


def caption_for(meta: dict, area_fraction: float) -> str:
    """MAM-E prompt of a cached image: vendor, view (CC / MLO), breast area, density, as far as known."""
    view = str(meta.get("view") or "").upper()
    return build_prompt(vendor=meta.get("vendor"), view=view if view in VIEWS else None,
                        area=area_phrase(area_fraction), density=meta.get("density"))


def _annotated(meta: dict) -> bool:
    """The entry has a lesion mask or boxes and the transform that maps them into the prepared frame."""
    return bool(meta.get("transform") and (meta.get("lesion_boxes") or meta.get("lesion_mask")))


def _lesion(meta: dict, root: Path, size: int) -> np.ndarray:
    """The annotated lesion region at size × size (prepared frame)."""
    transform = PrepareTransform.from_json(json.dumps(meta["transform"]))
    if meta.get("lesion_mask"):
        path = Path(meta["lesion_mask"])
        source = np.asarray(Image.open(path if path.is_absolute() else root / path).convert("L")) > 0
    else:
        source = np.zeros(transform.source_shape, dtype=bool)
        for x0, y0, x1, y1 in meta["lesion_boxes"]:
            source[int(y0):int(np.ceil(y1)), int(x0):int(np.ceil(x1))] = True
    return resize(transform.to_prepared(source, fill=False), (size, size))


def uses_crops(config: TrainConfig) -> bool:
    """Inpainting samples are crops around the mask (sd.crop_margin set); the VAE stage then sees half crops too."""
    return config.sd.crop_margin is not None and config.role in ("mame-inpaint", "mame-vae")


def load_items(config: TrainConfig) -> list[SDItem]:
    """The cached images config.data selects, with captions and lesion masks, at image_size (or, for inpainting
    crops, at data.full_size; None = native); the arrays at that size are derived once into the cache."""
    d, s = config.data, config.image_size
    crops = uses_crops(config)
    root = Path(d.cache)
    items = []
    for meta in selected_entries(root, d.views, d.healthy_only):
        native = open_array(root / meta["image"]).shape[0]
        side = (d.full_size or native) if crops else s

        def area(meta=meta) -> np.ndarray:
            full = Unit(open_array(root / meta["image"]))
            rows, cols = meta["transform"]["source_shape"] if meta.get("transform") else full.shape
            source = full[:rows, :cols]
            return np.float32(breast_area_fraction(source, source > 0))

        image = working_image(root, meta, side) if crops else global_image(root, meta, side)
        mask = derived(root, f"mask-{side}", meta,
                       lambda meta=meta: resize(np.asarray(Image.open(root / meta["mask"])) > 0, (side, side)))
        lesion = derived(root, f"lesion-{side}", meta, lambda meta=meta: _lesion(meta, root, side)) \
            if _annotated(meta) else None
        items.append(SDItem(image, mask, caption_for(meta, float(np.load(derived(root, "area", meta, area)))),
                            str(meta.get("view") or "").upper(), lesion, round(s * side / native)))
    return items


def random_box(breast: np.ndarray, rng: np.random.Generator, box_min: float, box_max: float) -> np.ndarray:
    """A rectangle (bool mask) centred on a random breast pixel, sides in [box_min, box_max] × the image side."""
    s = breast.shape[0]
    inside = np.flatnonzero(breast)
    cy, cx = divmod(int(inside[rng.integers(inside.size)]) if inside.size else s * s // 2 + s // 2, s)
    h, w = np.maximum(1, np.round(rng.uniform(box_min, box_max, size=2) * s)).astype(int)
    box = np.zeros_like(breast, dtype=bool)
    box[max(0, cy - h // 2):cy - h // 2 + h, max(0, cx - w // 2):cx - w // 2 + w] = True
    return box


class SDDataset(torch.utils.data.Dataset):
    """Endless samples, a deterministic function of (seed, i) as in MamboDataset; no input_ids without a tokenizer."""

    def __init__(self, items: list[SDItem], config: TrainConfig, tokenizer=None):
        self.items, self.seed, self.inpaint = items, config.seed, config.role == "mame-inpaint"
        self.size, self.crops = config.image_size, uses_crops(config)
        self.sd, self.jitter, self.vflip_cc = config.sd, config.data.intensity_jitter, config.data.vflip_cc
        captions = {"", INPAINT_PROMPT} | {item.caption for item in items}
        self.tokens = {c: tokenizer(c, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                                    return_tensors="pt").input_ids[0] for c in captions} if tokenizer else {}

    def __len__(self) -> int:
        return 2 ** 31 - 1

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        rng = np.random.default_rng([self.seed, index])
        item = self.items[rng.integers(len(self.items))]
        pixels, hole = item.pixels, None
        if self.inpaint or self.crops:
            hole = item.lesion
            if hole is None:
                hole = random_box(item.breast, rng, self.sd.box_min, self.sd.box_max)
        if self.crops and (self.inpaint or rng.random() < 0.5):  # the engine's crop around the mask, resized
            window = crop_box(hole, self.sd.crop_margin, item.min_crop).slices
            pixels, hole = pixels[window], hole[window]
        if hole is not None:
            hole = resize(hole.astype(np.float32), (self.size, self.size)) > 0 if self.inpaint else None
        pixels = resize_square(pixels, self.size)
        pixels = jitter_intensity(pixels, rng, self.jitter)
        caption = INPAINT_PROMPT if self.inpaint else item.caption
        if rng.random() < self.sd.caption_dropout:
            caption = ""
        if item.view == "CC" and rng.random() < self.vflip_cc:
            pixels, hole = pixels[::-1], None if hole is None else hole[::-1]
        image = torch.from_numpy(np.ascontiguousarray(pixels) * 2 - 1).expand(3, -1, -1).contiguous()
        sample = {"pixel_values": image, "index": index}
        if self.tokens:
            sample["input_ids"] = self.tokens[caption]
        if hole is not None:
            sample["mask"] = torch.from_numpy(np.ascontiguousarray(hole[None], dtype=np.float32))
            sample["masked_pixel_values"] = image * (1 - sample["mask"])  # masked pixels set to 0 (MAM-E §3.5)
        return sample
