"""SlicerMammoSynth engine: DICOM in/out, image preparation, diffusion pipelines, command line.

No Slicer import anywhere in this package: it runs in plain Python and inside Slicer alike.
"""
import os

__version__ = "0.1.0"
# Canvas-sized tensors (59 MB at 3840²) on 2 MB transparent huge pages: a fresh one then costs about a quarter of
# the page-fault time (Linux). PyTorch reads this once, at its first allocation, so it takes effect where the engine
# is imported before torch (the `mammosynth` command, the Slicer module's worker process); elsewhere it is inert.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
