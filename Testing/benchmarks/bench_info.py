"""Benchmark: `info` on the 8 real CBIS-DDSM images vs a plain pydicom decode of the same files, and prepare time.

Prints one JSON object. Goal (issue 3): info ≤ 1.5× the plain decode. Run: python Testing/benchmarks/bench_info.py
"""
from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import real_mammogram_paths  # noqa: E402

from MammoSynthLogic.commands.info import info_record  # noqa: E402
from MammoSynthLogic.dicom_io import read_mammogram  # noqa: E402
from MammoSynthLogic.preparation import prepare  # noqa: E402


def timed(fn, repeats: int) -> float:
    """Median wall time of `repeats` runs."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(repeats: int = 5) -> dict:
    paths = real_mammogram_paths()
    decode = timed(lambda: [pydicom.dcmread(p).pixel_array for p in paths], repeats)
    info = timed(lambda: [info_record(p) for p in paths], repeats)
    images = [read_mammogram(p) for p in paths]
    prep = [timed(lambda im=im: prepare(im), 3) for im in images]
    read_full = timed(lambda: [read_mammogram(p) for p in paths], repeats)
    result = {
        "images": len(paths),
        "pydicom_decode_s": round(decode, 3),
        "info_s": round(info, 3),
        "info_over_decode": round(info / decode, 2),
        "goal_info_over_decode": 1.5,
        "full_read_s": round(read_full, 3),
        "prepare_s_per_image_median": round(statistics.median(prep), 3),
        "prepare_s_per_image_max": round(max(prep), 3),
        "image_size": f"{images[0].rows}x{images[0].columns}",
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
