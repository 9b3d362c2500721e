"""Stable Diffusion bundles for MAM-E: a diffusers pipeline folder (+ our manifest.json when we made it).

A bundle is what `StableDiffusionPipeline.save_pretrained` / `StableDiffusionInpaintPipeline.save_pretrained`
writes (`model_index.json`, `unet/`, `vae/`, `text_encoder/`, `tokenizer/`, `scheduler/`), safetensors only.
Bundles made by `save_sd_bundle` also carry `manifest.json` (role `mame-text` or `mame-inpaint`, image size,
training data, checksums), which is verified on load. Published MAM-E pipelines and any Stable Diffusion 1.5 /
2-base fine-tune in diffusers format load too: without a manifest the role comes from the U-Net's input
channels (4 = text-to-image, 9 = inpainting).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from MammoSynthLogic.bundles import (MANIFEST, ManifestBundle, _refuse_pickle, default_bundle_dir, read_manifest,
                                     resolve_bundle_path, schedule_fields, verify_bundle, write_bundle)
from MammoSynthLogic.errors import MammoSynthError

SD_ROLES = ("mame-text", "mame-inpaint")
UNET_IN_CHANNELS = {"mame-text": 4, "mame-inpaint": 9}
SD_HUB_PATTERNS = ["model_index.json", MANIFEST, "*/*.json", "*/*.safetensors", "*/*.txt"]


@dataclasses.dataclass
class SDBundle(ManifestBundle):
    """A loaded Stable Diffusion pipeline with its manifest (synthesised for folders without one)."""

    pipeline: Any = None


def default_sd_bundle(role: str) -> Path:
    """The embedded bundle for a role: `Resources/models/<role>/`."""
    return default_bundle_dir() / role


def pipeline_image_size(pipeline) -> int:
    """Pixel side the pipeline was trained at: U-Net sample size × VAE scale factor."""
    size = pipeline.unet.config.sample_size
    return int(size if isinstance(size, int) else size[0]) * int(pipeline.vae_scale_factor)


def save_sd_bundle(directory: str | os.PathLike, pipeline, manifest: dict) -> Path:
    """Write a Stable Diffusion pipeline + manifest atomically (role, size, channels, schedule, checksums)."""
    unet = pipeline.unet
    fields = {"image_size": pipeline_image_size(pipeline), "in_channels": int(unet.config.in_channels),
              "out_channels": int(unet.config.out_channels), "schedule": schedule_fields(pipeline.scheduler),
              "pipeline": type(pipeline).__name__}
    return write_bundle(directory, lambda tmp: pipeline.save_pretrained(tmp, safe_serialization=True),
                        {**fields, **manifest})


@contextlib.contextmanager
def _quiet_loading():
    """No diffusers/transformers progress bars or info/warning lines (e.g. torchvision fallbacks) while loading."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    saved = [(m, m.get_verbosity(), m.is_progress_bar_enabled()) for m in (diffusers_logging, transformers_logging)]
    for module, _, _ in saved:
        module.set_verbosity_error()
        module.disable_progress_bar()
    try:
        yield
    finally:
        for module, verbosity, bar in saved:
            module.set_verbosity(verbosity)
            (module.enable_progress_bar if bar else module.disable_progress_bar)()


def _pipeline_class(role: str):
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    return StableDiffusionInpaintPipeline if role == "mame-inpaint" else StableDiffusionPipeline


def _published_manifest(folder: Path, ref: str) -> dict:
    """Role from the U-Net's input channels for a pipeline folder without our manifest."""
    try:
        cin = int(json.loads((folder / "unet" / "config.json").read_text())["in_channels"])
    except (OSError, ValueError, KeyError) as e:
        raise MammoSynthError(folder / "unet" / "config.json", f"not a Stable Diffusion U-Net config ({e}); "
                                                               "pass a diffusers pipeline folder") from None
    role = {4: "mame-text", 9: "mame-inpaint"}.get(cin)
    if role is None:
        raise MammoSynthError(folder, f"U-Net takes {cin} input channels; expected 4 (text-to-image) "
                                      "or 9 (inpainting)")
    return {"role": role, "source": ref, "in_channels": cin}


def load_sd_bundle(ref: str | os.PathLike | None, role: str, device: str = "cpu", verify: bool = True) -> SDBundle:
    """Load a text-to-image or inpainting pipeline from a folder or hub id (None = the embedded bundle)."""
    if role not in SD_ROLES:
        raise ValueError(f"role must be one of {SD_ROLES}")
    if ref is None:
        ref = default_sd_bundle(role)
        if not (ref / MANIFEST).is_file():
            raise MammoSynthError(ref, f"the embedded {role} bundle is not installed; pass --model DIR "
                                       "(a diffusers Stable Diffusion folder) or train one with mammosynth-train")
    folder = resolve_bundle_path(ref, SD_HUB_PATTERNS)
    if not (folder / "model_index.json").is_file():
        raise MammoSynthError(folder, "not a diffusers pipeline folder (no model_index.json); pass a Stable "
                                      "Diffusion pipeline saved with save_pretrained")
    if (folder / MANIFEST).is_file():
        manifest = read_manifest(folder)
        if verify:
            verify_bundle(folder, manifest)
    else:
        _refuse_pickle(folder)
        manifest = _published_manifest(folder, str(ref))
    if manifest["role"] != role:
        raise MammoSynthError(folder, f"expected a {role} model, found {manifest['role']} "
                                      f"(U-Net with {manifest['in_channels']} input channels)")
    try:
        with _quiet_loading():
            pipeline = _pipeline_class(role).from_pretrained(folder, use_safetensors=True, safety_checker=None,
                                                              feature_extractor=None, requires_safety_checker=False)
    except (OSError, ValueError, RuntimeError, EnvironmentError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise MammoSynthError(folder, f"cannot load the pipeline ({reason}); it must be a diffusers folder with "
                                      "safetensors weights (convert .bin files with save_pretrained("
                                      "safe_serialization=True))") from None
    pipeline.to(device)
    pipeline.set_progress_bar_config(disable=True)
    manifest.setdefault("image_size", pipeline_image_size(pipeline))
    return SDBundle(pipeline=pipeline, manifest=manifest, path=folder)
