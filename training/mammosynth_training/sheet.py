"""A preview sheet of a MAMBO bundle set: per seed the global image, the mid-resolution and the full image."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image


def sample_sheet(model_dir: str | Path, out: str | Path, seeds: list[int], size: int | None = None,
                 panel: int = 384, log=print) -> dict:
    """Generate with the engine's MAMBO pipeline (fast preset) and write one 8-bit PNG row per seed."""
    import torch

    from MammoSynthLogic.bundles import load_mambo_set
    from MammoSynthLogic.pipelines.mambo import MamboPipeline, MamboSettings
    from MammoSynthLogic.preparation import resize

    torch.set_grad_enabled(False)
    pipe = MamboPipeline(*load_mambo_set([str(model_dir)], device="cpu"), device="cpu")
    size = size or pipe.default_size()
    rows, seconds = [], []
    for seed in seeds:
        start = time.time()
        result = pipe(size, seed, MamboSettings.preset("fast"))
        seconds.append(time.time() - start)
        log(f"seed {seed}: {size}² in {seconds[-1]:.1f} s")
        panels = [resize(result.global_image, (panel, panel)), resize(result.mid, (panel, panel)),
                  resize(result.image, (panel, panel)),
                  result.image[size // 4: size // 4 + panel, : panel]]  # a native-resolution crop
        rows.append(np.concatenate([np.pad(p, 2) for p in panels], axis=1))
    sheet = np.concatenate(rows, axis=0)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(np.clip(sheet, 0, 1) * 255).astype(np.uint8)).save(out)
    return {"size": size, "seconds": seconds, "out": str(out)}
