"""Render the Slicer panel pictures of the docs (docs/images/slicer-panel.png, docs/images/slicer-text-inpaint.png).

The pictures are what the panel tests render (the .ui in PySide6 with stand-ins for Slicer's widgets, button states
from the module's own Widget code); this runs those tests with their output directed to docs/images.
Usage: python scripts/make_slicer_screenshots.py [OUTPUT_DIR]
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["Testing/test_slicer_ui.py::test_the_panel_renders_with_every_section_in_view",
         "Testing/test_slicer_mame.py::test_the_panel_renders_with_the_text_and_inpaint_sections"]


def main(argv: list[str]) -> int:
    out = Path(argv[0]).resolve() if argv else ROOT / "docs" / "images"
    env = {**os.environ, "MAMMOSYNTH_SCREENSHOTS": str(out), "QT_QPA_PLATFORM": "offscreen"}
    code = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS], cwd=ROOT,
                          env=env).returncode
    if code == 0:
        print(f"wrote {out / 'slicer-panel.png'} and {out / 'slicer-text-inpaint.png'}")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
