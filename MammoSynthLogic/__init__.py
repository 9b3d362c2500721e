"""SlicerMammoSynth engine: DICOM in/out, image preparation, diffusion pipelines, command line.

No Slicer import anywhere in this package: it runs in plain Python and inside Slicer alike.
"""
__version__ = "0.1.0"
