"""What the module needs from Slicer's Python: its version, the packages to read a study and to run jobs, what is
missing, and which already imported modules an installation replaced (they stay stale until Slicer restarts).

Standard library only (and `packaging`, which Slicer's pip brings), so that it works in any Slicer.
"""
from __future__ import annotations

import sys
from importlib import metadata
from typing import Sequence

MINIMUM_PYTHON = (3, 10)
MINIMUM_SLICER = "5.10"  # the first release with Python >= 3.10 (5.6 and 5.8 run 3.9)
TORCH_REQUIREMENT = ">=2.1"
# Reading a study (folder, database, results, anomaly maps): the engine's DICOM reader and NRRD files, no torch.
READ_REQUIREMENTS = [
    "numpy>=1.24", "scipy>=1.10", "pydicom>=3.0", "pylibjpeg>=2.0", "pylibjpeg-rle>=2.0", "pylibjpeg-openjpeg>=2.0",
    "pynrrd>=1.0",
]
# The rest of the engine's requirements (pyproject.toml), torch aside; SimpleITK ships with Slicer.
JOB_REQUIREMENTS = [
    "highdicom>=0.23", "scikit-image>=0.22", "pillow>=10", "diffusers>=0.30", "transformers>=4.40", "safetensors>=0.4",
    "huggingface-hub>=0.20", "tqdm>=4.60", "pyyaml>=6", "torchmetrics>=1.4", "matplotlib>=3.7", "psutil>=5.9",
    "pynetdicom>=2.1", "dicomweb-client>=0.59",
]


def python_version() -> tuple[int, int]:
    return sys.version_info[0], sys.version_info[1]


def unsupported_python() -> str:
    """Why this Slicer cannot run the module and what to do, or "" when its Python is recent enough."""
    version = python_version()
    if version >= MINIMUM_PYTHON:
        return ""
    return (f"MammoSynth needs 3D Slicer {MINIMUM_SLICER} or newer (Python {MINIMUM_PYTHON[0]}.{MINIMUM_PYTHON[1]} "
            f"or newer); this Slicer runs Python {version[0]}.{version[1]}. Nothing was downloaded. Install 3D Slicer "
            f"{MINIMUM_SLICER} or newer from https://download.slicer.org and add the MammoSynth extension there.")


def requirement_name(text: str) -> str:
    from packaging.requirements import Requirement  # shipped with Slicer's Python (pip depends on it)

    return Requirement(text).name


def missing(requirements: Sequence[str]) -> list[str]:
    """The requirements that are not installed or too old."""
    from packaging.requirements import Requirement

    out = []
    for text in requirements:
        requirement = Requirement(text)
        try:
            installed = metadata.version(requirement.name)
        except metadata.PackageNotFoundError:
            out.append(text)
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            out.append(text)
    return out


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-")


def imported_modules_of(requirements: Sequence[str]) -> list[str]:
    """Top-level modules already imported in this process that belong to these requirements' distributions:
    installing a new version replaces their files under a running Slicer, which keeps the old code loaded."""
    wanted = {_normalized(requirement_name(text)) for text in requirements}
    return sorted(module for module, distributions in metadata.packages_distributions().items()
                  if module in sys.modules and wanted & {_normalized(d) for d in distributions})
