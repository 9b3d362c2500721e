"""`mammosynth-train`: prepare-data, fit, export."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from . import __version__, dualview_fit, fit
from .adapters import FORMATS
from .checkpoints import checkpoint_dirs


def _csv_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mammosynth-train", description="Train the MammoSynth models (MAMBO global, local, patch; dual-view).")
    parser.add_argument("--version", action="version", version=f"mammosynth-train {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("prepare-data", help="a data set (CBIS-DDSM, VinDr-Mammo, INbreast, DICOM folders + CSV) -> "
                                            "cache of prepared 16-bit images, masks and labels")
    p.add_argument("dicom_dirs", nargs="+", type=Path, metavar="DICOM_DIR")
    p.add_argument("--format", dest="fmt", default="auto", choices=("auto",) + FORMATS,
                   help="data set layout (default: detected from the folders)")
    p.add_argument("--csv", type=Path, help="csv format: metadata CSV (path or sop_uid, laterality, view, density, "
                                             "vendor, healthy, lesion_boxes (JSON), lesion_mask, pathology, "
                                             "abnormality, split); cbis-ddsm: folder of the description CSVs; "
                                             "inbreast: INbreast.xls or INbreast.csv (';')")
    p.add_argument("--out", type=Path, required=True, help="cache folder to write")
    p.add_argument("--healthy-only", action="store_true", help="keep only images the labels mark healthy")
    p.add_argument("--views", type=_csv_list, default=(), help="e.g. CC,MLO (default: all)")
    p.add_argument("--vendors", type=_csv_list, default=(), help="comma-separated manufacturer names (default: all)")
    p.add_argument("--multiple", type=int, default=256, help="pad the square side to a multiple of this")
    p.set_defaults(func=_prepare)

    p = sub.add_parser("fit", help="train one model (also: accelerate launch / torchrun -m mammosynth_training.fit)")
    fit.add_arguments(p)
    p.set_defaults(func=fit.run)

    p = sub.add_parser("dualview-fit", help="train the dual-view CC/MLO model (also: torchrun -m "
                                            "mammosynth_training.dualview_fit)")
    fit.add_arguments(p)
    p.set_defaults(func=dualview_fit.run)

    p = sub.add_parser("mame-fit", help="train a MAM-E model: mame-vae, mame-text or mame-inpaint (also: torchrun -m "
                                        "mammosynth_training.sd_fit)")
    fit.add_arguments(p)
    p.set_defaults(func=_mame_fit)

    p = sub.add_parser("mame-export", help="EMA weights of a MAM-E checkpoint -> SD bundle (or the VAE stage's folder)")
    p.add_argument("run_or_checkpoint", type=Path, help="a run's output_dir (newest checkpoint) or a checkpoint dir")
    p.add_argument("--out", type=Path, required=True, help="folder to write")
    p.set_defaults(func=_mame_export)

    p = sub.add_parser("export", help="EMA weights of a checkpoint -> model bundle")
    p.add_argument("run_or_checkpoint", type=Path, help="a run's output_dir (newest checkpoint) or a checkpoint dir")
    p.add_argument("--out", type=Path, required=True, help="bundle folder to write")
    p.set_defaults(func=_export)

    p = sub.add_parser("sheet", help="preview sheet of a MAMBO bundle set: global, mid and full image per seed")
    p.add_argument("model_dir", type=Path, help="folder holding mambo-global, mambo-local and mambo-patch bundles")
    p.add_argument("--out", type=Path, required=True, help="PNG to write")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--size", type=int, help="full-resolution side (default: from the bundles)")
    p.set_defaults(func=_sheet)
    return parser


def _prepare(args: argparse.Namespace) -> int:
    from .prepare_data import prepare_data

    entries = prepare_data(args.dicom_dirs, args.out, csv_path=args.csv, fmt=args.fmt,
                           healthy_only=args.healthy_only, views=args.views, vendors=args.vendors,
                           multiple=args.multiple)
    print(f"{len(entries)} images cached in {args.out}")
    return 0 if entries else 1


def _sheet(args: argparse.Namespace) -> int:
    from .sheet import sample_sheet

    print(sample_sheet(args.model_dir, args.out, args.seeds, args.size))
    return 0


def _mame_fit(args: argparse.Namespace) -> int:
    from . import sd_fit

    return sd_fit.run(args)


def _mame_export(args: argparse.Namespace) -> int:
    from .sd_fit import export_run

    found = checkpoint_dirs(args.run_or_checkpoint)
    print(f"exported {export_run(found[-1] if found else args.run_or_checkpoint, args.out)}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .export import export_bundle

    found = checkpoint_dirs(args.run_or_checkpoint)
    checkpoint = found[-1] if found else args.run_or_checkpoint
    print(f"exported {export_bundle(checkpoint, args.out)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:
        from MammoSynthLogic.errors import MammoSynthError

        if isinstance(e, MammoSynthError):
            print(f"error: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    raise SystemExit(main())
