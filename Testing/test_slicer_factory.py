"""The module folder loads the way Slicer's scripted-module factory loads it (qSlicerScriptedLoadableModule::
setPythonSource): every `.py` file directly in the folder, in alphabetical order, is executed as a module named after
the file (put in sys.modules before it runs, so a failure leaves it half-imported) and must define a class of that
name, which is instantiated with the module's `parent`. The folder is appended to sys.path first
(ctkFactoryScriptedItem::load). Run in a fresh process where the engine is importable only through the path the
module itself adds, as when the module is added to Slicer from a source checkout."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTING = Path(__file__).resolve().parent

FACTORY = r"""
import importlib.util, json, sys, types
from pathlib import Path

folder, testing, root = (Path(a).resolve() for a in sys.argv[1:4])
# no editable install and no checkout on the path: the engine must come through the module
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in repr(f)]
sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != root]
sys.path.insert(0, str(testing))
from test_slicer_standins import standin_modules
sys.modules.update(standin_modules())
sys.path.remove(str(testing))
try:
    import MammoSynthLogic
    print(json.dumps({"engine importable before the module ran": MammoSynthLogic.__file__}))
    sys.exit(0)
except ImportError:
    pass
sys.path.append(str(folder))
results = {}
for path in sorted(folder.glob("*.py")):
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        getattr(module, name)(types.SimpleNamespace())
        results[name] = "ok"
    except Exception as error:
        results[name] = f"{type(error).__name__}: {error}"
# what the panel does next: the helpers and the engine's reader import cleanly
try:
    from SlicerMammoSynthLib import mrml, runner, study
    from MammoSynthLogic import dicom_io
    results["helpers"] = "ok"
except Exception as error:
    results["helpers"] = f"{type(error).__name__}: {error}"
print(json.dumps(results))
"""


def load_like_slicer(folder: Path, root: Path) -> dict[str, str]:
    proc = subprocess.run([sys.executable, "-c", FACTORY, str(folder), str(TESTING), str(root)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_module_folder_loads_like_slicers_factory_from_a_source_checkout():
    assert load_like_slicer(ROOT / "SlicerMammoSynth", ROOT) == {"SlicerMammoSynth": "ok", "helpers": "ok"}


def test_the_module_folder_loads_like_slicers_factory_when_installed(tmp_path):
    """The installed layout: engine and Resources/ beside the module file (qt-scripted-modules/)."""
    installed = tmp_path / "qt-scripted-modules"
    shutil.copytree(ROOT / "SlicerMammoSynth", installed, ignore=shutil.ignore_patterns("__pycache__", "CMakeLists.txt"))
    shutil.copytree(ROOT / "MammoSynthLogic", installed / "MammoSynthLogic", ignore=shutil.ignore_patterns("__pycache__"))
    for folder in ("UI", "Icons"):
        shutil.copytree(ROOT / "Resources" / folder, installed / "Resources" / folder)
    assert load_like_slicer(installed, ROOT) == {"SlicerMammoSynth": "ok", "helpers": "ok"}


def test_what_the_module_imports_when_it_loads_parses_as_python_3_9():
    """Slicer 5.6 and 5.8 run Python 3.9: the module must still load there to say, in one dialog, that it needs
    Slicer 5.10 (a syntax check of the files imported at load; the engine is imported only later)."""
    import ast

    folder = ROOT / "SlicerMammoSynth"
    for path in [folder / "SlicerMammoSynth.py", *sorted((folder / "SlicerMammoSynthLib").glob("*.py"))]:
        ast.parse(path.read_text(), str(path), feature_version=(3, 9))
