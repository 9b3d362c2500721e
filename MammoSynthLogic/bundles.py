"""Model bundles: one folder per trained model = `manifest.json` + diffusers components (safetensors only).

Layout of a bundle folder::

    manifest.json                 role, image size s, k, channels, conditioning, schedule, version,
                                  training data, training config, step, sha256 of every file
    unet/config.json              written by UNet2DModel.save_pretrained(safe_serialization=True)
    unet/diffusion_pytorch_model.safetensors
    scheduler/scheduler_config.json

A folder may also hold several bundles as sub-folders (e.g. `mambo-global/`, `mambo-local/`,
`mambo-patch/`); `find_bundles` finds them by the role in their manifests.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

from MammoSynthLogic.errors import MammoSynthError

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
MAMBO_ROLES = ("mambo-global", "mambo-local", "mambo-patch")
KNOWN_ROLES = MAMBO_ROLES + ("mambo-anomaly", "dualview", "mame-text", "mame-inpaint")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
HUB_PATTERNS = [MANIFEST, "*/" + MANIFEST, "**/*.safetensors", "**/*.json", "*.json", "*.safetensors"]
GET_WEIGHTS = ("download the bundle on a connected machine with "
               "`huggingface-cli download {id} --local-dir DIR` and pass `--model DIR`")


@dataclasses.dataclass
class ManifestBundle:
    """What every loaded bundle has: its manifest and folder; role, size and provenance come from the manifest."""

    manifest: dict
    path: Path

    @property
    def role(self) -> str:
        return self.manifest["role"]

    @property
    def image_size(self) -> int:
        return int(self.manifest["image_size"])

    def describe(self) -> dict:
        """Provenance entry: what model produced an output."""
        m = self.manifest
        return {"role": m["role"], "version": m.get("version"), "step": m.get("step"), "path": str(self.path),
                "weights_sha256": {k: v for k, v in m.get("files", {}).items() if k.endswith(".safetensors")}}


@dataclasses.dataclass
class Bundle(ManifestBundle):
    """A loaded model bundle: the U-Net (eval mode, on its device), its scheduler config and manifest."""

    unet: Any = None
    scheduler_config: dict = dataclasses.field(default_factory=dict)

    @property
    def k(self) -> int | None:
        return self.manifest.get("k")

    @property
    def aligned_context(self) -> bool:
        """Local/patch model trained with a 4th channel: the coarser stage's pixels under the tile."""
        return bool(self.manifest.get("aligned_context", False))


def default_bundle_dir() -> Path:
    """The embedded bundles shipped with the extension: `Resources/models/`."""
    return Path(__file__).resolve().parent.parent / "Resources" / "models"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _checksums(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha256_file(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}


def _refuse_pickle(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix.lower() in PICKLE_SUFFIXES:
            raise MammoSynthError(p, "pickle weight files are refused (they can run code); "
                                     "convert the model to safetensors with save_pretrained(safe_serialization=True)")


def save_bundle(directory: str | os.PathLike, unet, scheduler, manifest: dict) -> Path:
    """Write a MAMBO/dual-view bundle atomically; fills channels, size, schedule and checksums."""
    cfg = unet.config

    def write(tmp: Path) -> None:
        unet.save_pretrained(tmp / "unet", safe_serialization=True)
        scheduler.save_pretrained(tmp / "scheduler")

    fields = {"image_size": int(cfg.sample_size if isinstance(cfg.sample_size, int) else cfg.sample_size[0]),
              "in_channels": int(cfg.in_channels), "out_channels": int(cfg.out_channels),
              "schedule": schedule_fields(scheduler)}
    return write_bundle(directory, write, {**fields, **manifest})


def schedule_fields(scheduler) -> dict:
    """The manifest's `schedule` entry: scheduler class and the training schedule it carries."""
    keys = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type")
    return {"class": type(scheduler).__name__, **{k: scheduler.config[k] for k in keys if k in scheduler.config}}


def write_bundle(directory: str | os.PathLike, write: Callable[[Path], None], manifest: dict) -> Path:
    """Run `write(tmp_folder)`, add manifest.json with checksums, then move the folder into place at once."""
    target = Path(directory)
    role = manifest.get("role")
    if role not in KNOWN_ROLES:
        raise MammoSynthError(target, f"manifest role {role!r} is not one of {', '.join(KNOWN_ROLES)}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    try:
        write(tmp)
        full = {"format_version": FORMAT_VERSION, **manifest}
        full["files"] = _checksums(tmp)
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True, default=str) + "\n")
        old = None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def read_manifest(folder: Path) -> dict:
    """The manifest of a bundle folder, checked for the fields every bundle has."""
    path = folder / MANIFEST
    if not path.is_file():
        raise MammoSynthError(folder, f"not a model bundle: no {MANIFEST} (expected a folder made by save_bundle)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MammoSynthError(path, f"unreadable manifest ({e}); re-download or re-export the bundle")
    missing = [k for k in ("format_version", "role", "image_size", "in_channels", "out_channels", "files")
               if k not in manifest]
    if missing:
        raise MammoSynthError(path, f"manifest lacks {', '.join(missing)}; re-export the bundle with save_bundle")
    if int(manifest["format_version"]) > FORMAT_VERSION:
        raise MammoSynthError(path, f"bundle format {manifest['format_version']} is newer than this "
                                    f"mammosynth understands ({FORMAT_VERSION}); update mammosynth")
    return manifest


def verify_bundle(folder: Path, manifest: dict) -> None:
    """Refuse pickle files and any file whose sha256 differs from the manifest (or is missing)."""
    _refuse_pickle(folder)
    files = manifest["files"]
    if not any(name.endswith(".safetensors") for name in files):
        raise MammoSynthError(folder, "manifest lists no .safetensors weights; re-export the bundle with save_bundle")
    for name, expected in files.items():
        p = folder / name
        if not p.is_file():
            raise MammoSynthError(p, "file listed in the manifest is missing; re-download the bundle")
        if sha256_file(p) != expected:
            raise MammoSynthError(p, "sha256 checksum does not match the manifest (corrupt or modified); "
                                     "re-download the bundle")


def _looks_like_hub_id(ref: str) -> bool:
    parts = ref.split("/")
    return len(parts) == 2 and all(parts) and not ref.startswith((".", "/", "~")) and "\\" not in ref


def resolve_bundle_path(ref: str | os.PathLike, patterns: list[str] = HUB_PATTERNS) -> Path:
    """A local folder as is; an `owner/name` hub id downloaded (files matching `patterns` only) when online."""
    path = Path(ref).expanduser()
    if path.exists():
        return path
    ref = str(ref)
    if not _looks_like_hub_id(ref):
        raise MammoSynthError(ref, "no such model folder; pass a bundle folder or a Hugging Face hub id owner/name")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id=ref, allow_patterns=patterns))
    except Exception as e:  # offline, unknown repo, gated: all end the same way for the user
        raise MammoSynthError(ref, f"cannot fetch from the Hugging Face hub ({type(e).__name__}); "
                                   + GET_WEIGHTS.format(id=ref)) from None


def load_bundle(ref: str | os.PathLike, device: str = "cpu", verify: bool = True) -> Bundle:
    """Load one bundle from a folder or hub id: checksums verified, U-Net in eval mode on `device`."""
    from diffusers import UNet2DModel

    folder = resolve_bundle_path(ref)
    manifest = read_manifest(folder)
    if verify:
        verify_bundle(folder, manifest)
    sched_path = folder / "scheduler" / "scheduler_config.json"
    if not sched_path.is_file():
        raise MammoSynthError(folder, "bundle has no scheduler/scheduler_config.json; re-export it with save_bundle")
    try:
        unet = UNet2DModel.from_pretrained(folder / "unet", use_safetensors=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise MammoSynthError(folder / "unet", f"cannot load the U-Net ({e}); re-download the bundle") from None
    unet.eval().requires_grad_(False).to(device)
    if unet.config.in_channels != manifest["in_channels"] or unet.config.out_channels != manifest["out_channels"]:
        raise MammoSynthError(folder, "U-Net channels disagree with the manifest; re-export the bundle")
    return Bundle(unet=unet, scheduler_config=json.loads(sched_path.read_text()), manifest=manifest, path=folder)


def find_bundles(ref: str | os.PathLike) -> dict[str, Path]:
    """Role -> bundle folder for a bundle folder itself or a folder (or hub repo) holding bundle sub-folders."""
    folder = resolve_bundle_path(ref)
    if (folder / MANIFEST).is_file():
        return {read_manifest(folder)["role"]: folder}
    found: dict[str, Path] = {}
    for sub in sorted(p for p in folder.iterdir() if (p / MANIFEST).is_file()):
        found.setdefault(read_manifest(sub)["role"], sub)
    if not found:
        raise MammoSynthError(folder, "no model bundle here (no manifest.json in it or its sub-folders)")
    return found


def check_mambo_set(global_: Bundle, local: Bundle, patch: Bundle) -> None:
    """The three MAMBO bundles must have the right roles and channels and agree on s and k."""
    for bundle, role, cin in ((global_, "mambo-global", 1), (local, "mambo-local", 3 + local.aligned_context),
                              (patch, "mambo-patch", 3 + patch.aligned_context)):
        if bundle.role != role:
            raise MammoSynthError(bundle.path, f"expected a {role} bundle, found role {bundle.role!r}")
        if bundle.manifest["in_channels"] != cin or bundle.manifest["out_channels"] not in (1, cin):
            raise MammoSynthError(bundle.path, f"a {role} model takes {cin} channel(s) in and gives 1 (or {cin}, "
                                               "of which channel 0 is used) out")
    sizes = {b.image_size for b in (global_, local, patch)}
    if len(sizes) != 1:
        raise MammoSynthError(patch.path, f"the three MAMBO bundles disagree on the image size s ({sorted(sizes)}); "
                                          "use bundles trained together")
    ks = {b.k for b in (local, patch)} | ({global_.k} if global_.k is not None else set())
    if len(ks) != 1 or None in ks:
        raise MammoSynthError(patch.path, f"the MAMBO bundles disagree on k ({sorted(map(str, ks))}); "
                                          "use bundles trained together")


def load_mambo_set(refs: list[str] | None, device: str = "cpu") -> tuple[Bundle, Bundle, Bundle]:
    """The (global, local, patch) bundles from one folder/hub id holding all three, three refs, or the defaults."""
    if not refs:
        default = default_bundle_dir()
        if not all((default / r / MANIFEST).is_file() for r in MAMBO_ROLES):
            raise MammoSynthError(default, "the embedded MAMBO bundles are not installed; pass --model DIR "
                                           "(a folder with mambo-global, mambo-local, mambo-patch) or train them "
                                           "with mammosynth-train")
        refs = [str(default)]
    roles: dict[str, Path] = {}
    for ref in refs:
        for role, path in find_bundles(ref).items():
            roles.setdefault(role, path)
    missing = [r for r in MAMBO_ROLES if r not in roles]
    if missing:
        raise MammoSynthError(", ".join(map(str, refs)), f"missing MAMBO bundle(s) {', '.join(missing)}; "
                                                         "pass a folder holding all three or three bundle folders")
    bundles = tuple(load_bundle(roles[r], device=device) for r in MAMBO_ROLES)
    check_mambo_set(*bundles)
    return bundles
