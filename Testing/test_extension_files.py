"""The Slicer extension build ships every file it needs: each .py file of the module and of the engine package,
and each resource (UI, icons, model bundles) is listed explicitly in SlicerMammoSynth/CMakeLists.txt.

The lists are read by configuring the real CMake files against a stub Slicer (the macros record what they are
given), so the check sees what a Slicer build would see.
"""
from __future__ import annotations

import ast
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = "SlicerMammoSynth"

STUB_SLICER = textwrap.dedent("""
    set(Slicer_FOUND TRUE)
    set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/UseSlicer.cmake")
    set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
    set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
""")
STUB_USE = textwrap.dedent("""
    set(Slicer_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer/qt-scripted-modules)
    set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR lib/Slicer/qt-scripted-modules)
    set(RECORD "${CMAKE_BINARY_DIR}/record.txt")
    file(WRITE ${RECORD} "")
    macro(slicerMacroBuildScriptedModule)
      cmake_parse_arguments(S "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
      foreach(f IN LISTS S_SCRIPTS)
        file(APPEND ${RECORD} "module-script ${CMAKE_CURRENT_SOURCE_DIR}/${f} ${f}\\n")
      endforeach()
      foreach(f IN LISTS S_RESOURCES)
        file(APPEND ${RECORD} "module-resource ${CMAKE_CURRENT_SOURCE_DIR}/${f} ${f}\\n")
      endforeach()
    endmacro()
    macro(ctkMacroCompilePythonScript)
      cmake_parse_arguments(C "NO_INSTALL_SUBDIR;GLOBAL_TARGET" "TARGET_NAME;SOURCE_DIR;DESTINATION_DIR;INSTALL_DIR"
                            "SCRIPTS;RESOURCES" ${ARGN})
      foreach(f IN LISTS C_SCRIPTS)
        file(APPEND ${RECORD} "ctk-script ${C_SOURCE_DIR}/${f} ${f}\\n")
      endforeach()
      foreach(f IN LISTS C_RESOURCES)
        file(APPEND ${RECORD} "ctk-resource ${C_SOURCE_DIR}/${f} ${f}\\n")
      endforeach()
    endmacro()
    function(slicer_add_python_unittest)
      cmake_parse_arguments(T "" "SCRIPT" "SLICER_ARGS" ${ARGN})
      file(APPEND ${RECORD} "unittest ${CMAKE_CURRENT_SOURCE_DIR}/${T_SCRIPT} ${T_SCRIPT}\\n")
    endfunction()
""")


def _ignored(path: Path) -> bool:
    return any(part.startswith(".") or part == "__pycache__" for part in path.parts) or path.suffix == ".pyc"


def shipped_files(root: Path) -> dict[str, set[Path]]:
    """What the extension must ship, found by walking the tree."""
    def walk(folder: str, pattern: str) -> set[Path]:
        base = root / folder
        return {p.resolve() for p in base.rglob(pattern) if p.is_file() and not _ignored(p.relative_to(root))}
    return {"module": walk(MODULE, "*.py"), "engine": walk("MammoSynthLogic", "*.py"), "resources": walk("Resources", "*")}


def configure(root: Path, work: Path) -> list[tuple[str, Path, str]]:
    """Configure the project's CMake files against the stub Slicer; (kind, absolute source, listed name) entries."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    stub = work / "stub"
    stub.mkdir(parents=True, exist_ok=True)
    (stub / "SlicerConfig.cmake").write_text(STUB_SLICER)
    (stub / "UseSlicer.cmake").write_text(STUB_USE)
    (stub / "empty.cmake").write_text("")
    build = work / "build"
    proc = subprocess.run([cmake, "-S", str(root), "-B", str(build), f"-DSlicer_DIR={stub}", "-DBUILD_TESTING=ON"],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise AssertionError(f"cmake configure failed:\n{proc.stdout}\n{proc.stderr}")
    entries = []
    for line in (build / "record.txt").read_text().splitlines():
        kind, source, name = line.split(" ", 2)
        entries.append((kind, Path(source).resolve(), name))
    return entries


def problems(root: Path, work: Path) -> list[str]:
    """Every difference between what is shipped and what the CMake lists name."""
    entries = configure(root, work)
    listed = {
        "module": {s for k, s, _ in entries if k == "module-script"},
        "engine": {s for k, s, _ in entries if k == "ctk-script"},
        "resources": {s for k, s, _ in entries if k in ("ctk-resource", "module-resource")},
    }
    found = shipped_files(root)
    out = []
    for group in found:
        out += [f"{group}: not listed in CMake: {p.relative_to(root)}" for p in sorted(found[group] - listed[group])]
        out += [f"{group}: listed but missing: {p}" for p in sorted(listed[group] - found[group])]
    for kind, source, name in entries:
        if kind.startswith("ctk-") and not name.startswith(("MammoSynthLogic/", "Resources/")):
            out.append(f"{name}: would not install beside the module under MammoSynthLogic/ or Resources/")
    if ("unittest", (root / MODULE / f"{MODULE}.py").resolve(), f"{MODULE}.py") not in entries:
        out.append("slicer_add_python_unittest(SCRIPT SlicerMammoSynth.py) is missing")
    return out


def test_every_shipped_file_is_listed(tmp_path):
    assert problems(ROOT, tmp_path) == []


def test_an_unlisted_or_removed_file_is_caught(tmp_path):
    """Same check on a copy of the tree with a new engine module and model file added, and one file removed."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("CMakeLists.txt", MODULE, "MammoSynthLogic", "Resources"):
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.safetensors"))
        else:
            shutil.copy(source, copy / name)
    for weights in (ROOT / "Resources").rglob("*.safetensors"):  # large files: an empty stand-in is enough
        target = copy / weights.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.touch()
    (copy / "MammoSynthLogic" / "commands" / "new_command.py").write_text("")
    (copy / "Resources" / "models" / "extra" / "manifest.json").parent.mkdir(parents=True, exist_ok=True)
    (copy / "Resources" / "models" / "extra" / "manifest.json").write_text("{}")
    (copy / MODULE / "SlicerMammoSynthLib" / "runner.py").unlink()
    found = problems(copy, tmp_path / "work")
    assert "engine: not listed in CMake: MammoSynthLogic/commands/new_command.py" in found
    assert "resources: not listed in CMake: Resources/models/extra/manifest.json" in found
    assert any(p.startswith("module: listed but missing") and p.endswith("runner.py") for p in found)


def _extension_metadata() -> tuple[str, dict[str, str]]:
    """(project name, EXTENSION_* values) of the top-level CMakeLists.txt."""
    text = (ROOT / "CMakeLists.txt").read_text()
    return re.search(r"^project\((\w+)\)", text, re.MULTILINE).group(1), \
        dict(re.findall(r'set\((EXTENSION_\w+) "([^"]*)"\)', text))


def test_extension_metadata():
    text = (ROOT / "CMakeLists.txt").read_text()
    _, values = _extension_metadata()
    for key in ("HOMEPAGE", "CATEGORY", "CONTRIBUTORS", "DESCRIPTION", "ICONURL", "SCREENSHOTURLS", "DEPENDS"):
        assert values.get(f"EXTENSION_{key}"), f"EXTENSION_{key} is not set"
    assert values["EXTENSION_DEPENDS"] == "PyTorch"
    assert "Requires 3D Slicer 5.10 or newer" in values["EXTENSION_DESCRIPTION"]
    assert "add_subdirectory(SlicerMammoSynth)" in text
    for url in [values["EXTENSION_ICONURL"], *values["EXTENSION_SCREENSHOTURLS"].split()]:
        # raw download URLs of files in this repository, as the index's checker fetches them
        prefix = "https://raw.githubusercontent.com/SlicerMammoSynth/SlicerMammoSynth/main/"
        assert url.startswith(prefix) and url.endswith(".png"), url
        assert (ROOT / url[len(prefix):]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", url


# Slicer/ExtensionsIndex: schemas/slicer-extension-catalog-entry-schema-v1.0.2.json (its required keys and
# properties) and scripts/check_description_files.py (name, category, scm_url, CMakeLists.txt consistency).
INDEX_SCHEMA = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
INDEX_REQUIRED = {"$schema", "category", "scm_url"}
INDEX_PROPERTIES = INDEX_REQUIRED | {"scm_revision", "scm_type", "build_dependencies", "dicom_support_rule",
                                     "build_subdirectory", "enabled", "tier"}


def test_extensions_index_entry():
    import json

    project, values = _extension_metadata()
    path = ROOT / f"{project}.json"  # the index names an extension by its file, which must match the project
    assert path.is_file() and not (ROOT / "SlicerMammoSynth.json").exists()
    raw = path.read_bytes()
    assert b"\r" not in raw, "LF line endings only"
    entry = json.loads(raw)
    assert INDEX_REQUIRED <= set(entry) <= INDEX_PROPERTIES
    assert entry["$schema"] == INDEX_SCHEMA
    assert not project.lower().startswith("slicer"), "the index refuses extension names that start with Slicer"
    assert re.fullmatch(r"https://github\.com/SlicerMammoSynth/Slicer\w+\.git", entry["scm_url"]), \
        "https, and a repository name that starts with Slicer"
    assert entry["category"] == values["EXTENSION_CATEGORY"] == "Image Synthesis"  # one of the index's categories
    assert entry["build_dependencies"] == values["EXTENSION_DEPENDS"].split()
    assert isinstance(entry["tier"], int) and 1 <= entry["tier"] <= 5
    assert entry["scm_revision"] == "main" and entry["build_subdirectory"] == "."
    assert values["EXTENSION_ICONURL"].split("/main/")[0].endswith(entry["scm_url"].rsplit("/", 1)[1][:-4])


def test_module_installs_the_engines_requirements():
    """The module's first-use installer asks for exactly the engine's dependencies (torch through PyTorchUtils,
    SimpleITK ships with Slicer)."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    tree = ast.parse((ROOT / MODULE / f"{MODULE}Lib" / "dependencies.py").read_text())
    constants = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
                 if isinstance(t, ast.Name)}
    module_requirements = ast.literal_eval(constants["READ_REQUIREMENTS"]) + ast.literal_eval(
        constants["JOB_REQUIREMENTS"])
    torch = ast.literal_eval(constants["TORCH_REQUIREMENT"])
    expected = [r for r in declared if re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0].lower() not in ("torch", "simpleitk")]
    assert sorted(module_requirements) == sorted(expected)
    assert f"torch{torch}" in declared
