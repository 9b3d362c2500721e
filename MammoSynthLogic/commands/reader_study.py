"""`mammosynth reader-study prepare|score`: blinded study export with an answer key, and scoring of the readers."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

ORDER = 90


def _dims(text: str) -> int:
    value = int(text)
    if value < 64:
        raise argparse.ArgumentTypeError("must be at least 64 pixels")
    return value


def register(sub, parents) -> None:
    p = sub.add_parser("reader-study", help="blinded reader-study export, and scoring of the readers' answers",
                       description="Reader studies as MAMBO (Table 2) and MAM-E (0-4 ratings, ROC) ran them by hand.")
    steps = p.add_subparsers(dest="step", metavar="STEP")
    steps.required = True

    q = steps.add_parser("prepare", parents=parents, help="pick, de-identify, blind and shuffle the images; write the key",
                         description="Pick real and synthetic mammograms, re-write every one from its pixels through "
                         "one neutral DICOM writer (same tags, matrix, bit depth and transfer syntax for all; real "
                         "patients' identity removed as in DICOM PS3.15's basic profile), name them case-0001.dcm... "
                         "in a random order under OUT/reader/, and write the answer key and a manifest with file "
                         "hashes to OUT/_key/ (or --key-out). Real and synthetic images are cleaned alike (outside "
                         "the breast set to black), cropped to the breast and fitted to one canvas, chest wall on the "
                         "side the laterality says, and brought to one noise floor. The manifest and the last "
                         "output line say how well a trivial classifier (intensity outside the breast, filled size, noise floor, "
                         "chest-wall side) tells real from synthetic in the export: 0.5 is chance; each telling "
                         "feature is named with what to do. Give readers OUT/reader/ only.")
    q.add_argument("--real", nargs="+", required=True, type=Path, metavar="DIR", help="real mammograms (files or folders)")
    q.add_argument("--synthetic", nargs="+", required=True, type=Path, metavar="DIR", help="synthetic mammograms")
    q.add_argument("--out", required=True, type=Path, metavar="DIR", help="study folder (reader/ and _key/ inside)")
    q.add_argument("--n-real", type=int, metavar="N", help="how many real images to pick at random (default all)")
    q.add_argument("--n-synthetic", type=int, metavar="M", help="how many synthetic images to pick (default all)")
    q.add_argument("--seed", type=int, help="seed of the pick and the order (default random; recorded in the key)")
    q.add_argument("--rows", type=_dims,
                   help="canvas height; each breast is cropped and fitted into the canvas, aspect kept (default 2048)")
    q.add_argument("--allow-upscale", action="store_true",
                   help="allow enlarging a breast more than 2x to fit the canvas (default: refused, naming the file)")
    q.add_argument("--columns", type=_dims,
                   help="canvas width (default 0.8 x rows, the 24 x 30 cm film and detector format)")
    q.add_argument("--bits", type=int, choices=range(8, 17), metavar="8..16",
                   help="common bit depth (default: the lowest of the picked images)")
    q.add_argument("--keep-background", action="store_true",
                   help="keep pixels outside the breast (default: zeroed, which removes burned-in film labels)")
    q.add_argument("--keep-noise", action="store_true",
                   help="keep each copy's own noise floor (default: Gaussian grain is added to the copies smoother "
                        "than the set's grainiest, real or synthetic alike, so the noise floor does not tell)")
    q.add_argument("--key-out", type=Path, metavar="DIR", help="write the key here instead of OUT/_key/")
    q.set_defaults(func=run_prepare)

    s = steps.add_parser("score", parents=parents, help="precision, recall, F1, accuracy, ROC/AUC per reader and overall",
                         description="Score the answers of every reader (the JSON files mammosynth-reader writes) "
                         "against the key: MAMBO Table 2 metrics for spotting synthetic images, per reader and "
                         "mean ± sd, and ROC curves with AUC from the 0-4 ratings (MAM-E Fig. 17). Writes report.md, "
                         "report.html, metrics.csv, summary.json, roc.png and ratings.png.")
    s.add_argument("--key", required=True, type=Path, metavar="KEY_CSV")
    s.add_argument("--responses", required=True, type=Path, metavar="DIR")
    s.add_argument("--out", required=True, type=Path, metavar="DIR")
    s.add_argument("--synthetic-from", type=int, default=3, choices=range(1, 5), metavar="1..4",
                   help="ratings from this up count as 'spotted as synthetic' (default 3: probably synthetic)")
    s.set_defaults(func=run_score)


def _result(args: argparse.Namespace, paths: dict) -> None:
    from MammoSynthLogic.progress import emit_result

    emit_result(paths) if args.progress_json else print(json.dumps(paths))


def run_prepare(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.reader_study.prepare import prepare_study

    paths = prepare_study(args.real, args.synthetic, args.out, n_real=args.n_real, n_synthetic=args.n_synthetic,
                          seed=args.seed, rows=args.rows, columns=args.columns, bits=args.bits,
                          zero_background=not args.keep_background, equalise_noise=not args.keep_noise,
                          key_out=args.key_out,
                          allow_upscale=args.allow_upscale, reporter=reporter)
    told = paths.telltales
    reporter.log(f"trivial classifier ({told['most_telling']}): AUC {told['best_auc']} for "
                 f"{told['n_real']} real vs {told['n_synthetic']} synthetic (0.5 = chance)"
                 + "".join(f"; {name} AUC {told['auc'][name]} tells: {why}" for name, why in told["telling"].items()))
    _result(args, {"reader": str(paths.reader), "key": str(paths.key), "manifest": str(paths.manifest),
                   "telltales": told})
    return 0


def run_score(args: argparse.Namespace, reporter) -> int:
    from MammoSynthLogic.reader_study.report import write_report
    from MammoSynthLogic.reader_study.responses import load_folder
    from MammoSynthLogic.reader_study.scoring import load_key, score_study

    key = load_key(args.key)
    readers = load_folder(args.responses)
    reporter.update("score", 0, 1)
    score = score_study(key, readers, synthetic_from=args.synthetic_from)
    written = write_report(score, key, readers, args.out)
    reporter.update("score", 1, 1)
    _result(args, {k: str(v) for k, v in written.items()})
    return 0
