"""`mammosynth`: one command line for every pipeline.

Each sub-command lives in its own module under `MammoSynthLogic/commands/` and exposes
`register(subparsers, parents)`; the parser it adds sets `func=run(args, reporter) -> int`.
Heavy imports (torch, diffusers) happen inside `run`, so `info` and `--help` stay fast.
"""
from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys
import threading
from typing import Optional, Sequence

from MammoSynthLogic import __version__
from MammoSynthLogic.errors import Cancelled, MammoSynthError
from MammoSynthLogic.progress import JsonLinesProgress, Reporter, TqdmProgress


def common_options() -> argparse.ArgumentParser:
    """Options every sub-command takes."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("common options")
    g.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="where models run (default: auto = cuda, then mps, then cpu)")
    g.add_argument("--progress-json", action="store_true",
                   help="print progress as JSON lines on stdout instead of a progress bar")
    g.add_argument("--quiet", action="store_true", help="no progress bar")
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mammosynth",
        description="Diffusion-based mammography synthesis: inspect and prepare DICOM mammograms, "
        "generate full-resolution synthetic mammograms, anomaly maps, CC/MLO pairs, reader studies.",
    )
    parser.add_argument("--version", action="version", version=f"mammosynth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    parents = [common_options()]
    import MammoSynthLogic.commands as commands

    modules = [importlib.import_module(f"{commands.__name__}.{m.name}")
               for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    for module in sorted(modules, key=lambda m: (getattr(m, "ORDER", 100), m.__name__)):
        module.register(sub, parents)
    return parser


def _reporter(args: argparse.Namespace, cancel: threading.Event) -> Reporter:
    if getattr(args, "progress_json", False):
        return Reporter(JsonLinesProgress(), cancel)
    return Reporter(TqdmProgress(disable=getattr(args, "quiet", False) or not sys.stderr.isatty()), cancel)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    cancel = threading.Event()

    def _on_signal(signum, frame):  # the next progress update raises Cancelled
        cancel.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    reporter = _reporter(args, cancel)
    try:
        return int(args.func(args, reporter) or 0)
    except MammoSynthError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Cancelled:
        print("error: cancelled: no output written", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("error: interrupted: no output written", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless debugging
        if os.environ.get("MAMMOSYNTH_DEBUG"):
            raise
        print(f"error: {type(e).__name__}: {e} (set MAMMOSYNTH_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1
    finally:
        callback = reporter.callback
        if hasattr(callback, "close"):
            callback.close()


if __name__ == "__main__":
    raise SystemExit(main())
