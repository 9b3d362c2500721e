"""Export a checkpoint's EMA weights as an engine bundle (`MammoSynthLogic.bundles.save_bundle`)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .config import TrainConfig, load_config

CONDITIONING = {
    "mambo-global": [],
    "mambo-local": ["global shifted so the tile centre is at the image centre (empty area = image minimum)",
                    "global"],
    "mambo-patch": ["local context: k*s full-resolution region centred on the patch, resized to s", "global"],
    "dualview": [],
}


def manifest_for(config: TrainConfig, step: int, loss: float | None, minutes: float | None,
                 data_description: str) -> dict[str, Any]:
    """The bundle manifest of a model trained with config (keys the engine's bundles and pipelines read)."""
    from . import __version__

    return {
        "role": config.role,
        "image_size": config.image_size,
        "k": config.k,
        "full_size": config.data.full_size,
        "channels": config.in_channels,
        "conditioning": CONDITIONING[config.role] + (
            ["coarser stage under the tile (global for local tiles, mid-resolution for patches), resized to s"]
            if config.aligned_context and config.role in ("mambo-local", "mambo-patch") else []),
        "aligned_context": bool(config.aligned_context and config.role in ("mambo-local", "mambo-patch")),
        "noised_channels": list(range(config.noised_channels)),
        "pixel_range": [-1.0, 1.0],
        "version": __version__,
        "training_data": data_description,
        "config": config.to_dict(),
        "step": step,
        "final_loss": loss,
        "training_minutes": None if minutes is None else round(minutes, 1),
        "trainer": f"mammosynth-training {__version__}",
    }


def export_bundle(checkpoint: str | Path, out_dir: str | Path, *, minutes: float | None = None,
                  config: TrainConfig | None = None) -> Path:
    """Write the bundle for checkpoint (a `checkpoints/step-N` folder of a run) to out_dir; return out_dir."""
    from diffusers import UNet2DModel

    from MammoSynthLogic.bundles import save_bundle

    from .cache import read_metadata
    from .checkpoints import EMA_DIR, STATE_FILE
    from .models import build_noise_scheduler

    checkpoint = Path(checkpoint)
    config = config or load_config(checkpoint.parent.parent / "config.yaml")
    state = json.loads((checkpoint / STATE_FILE).read_text())
    unet = UNet2DModel.from_pretrained(checkpoint / EMA_DIR)
    description = config.data_description
    if not description:
        try:
            description = read_metadata(config.data.cache)["description"]
        except FileNotFoundError:
            description = f"prepared cache {config.data.cache}"
    manifest = manifest_for(config, state["step"], state.get("loss"), minutes, description)
    save_bundle(Path(out_dir), unet, build_noise_scheduler(config), manifest)
    return Path(out_dir)
