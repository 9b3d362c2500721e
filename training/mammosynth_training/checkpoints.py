"""Where a run keeps its checkpoints (shared by the training loop and the exporters)."""
from __future__ import annotations

from pathlib import Path

CHECKPOINTS = "checkpoints"
STATE_FILE = "trainer_state.json"
EMA_DIR = "ema_unet"


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """Finished checkpoints of a run, oldest first."""
    root = Path(output_dir) / CHECKPOINTS
    return sorted(p for p in root.glob("step-*") if (p / STATE_FILE).is_file()) if root.is_dir() else []
