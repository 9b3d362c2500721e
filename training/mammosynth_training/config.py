"""Training configuration: one dataclass, read from and written to YAML; defaults are MAMBO's (suppl. §8)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

OPTIMIZERS = ("adam", "adamw", "adam8bit", "adamw8bit")
ROLES = ("mambo-global", "mambo-local", "mambo-patch", "dualview", "mame-vae", "mame-text", "mame-inpaint")


@dataclass
class ModelConfig:
    """diffusers UNet2DModel layout; the default is MAMBO's 78M U-Net."""

    block_out_channels: tuple[int, ...] = (128, 128, 256, 256, 512, 512)
    layers_per_block: int = 1
    down_block_types: tuple[str, ...] = ("DownBlock2D",) * 4 + ("AttnDownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "AttnUpBlock2D") + ("UpBlock2D",) * 4
    norm_num_groups: int = 32
    attention_head_dim: int = 8


@dataclass
class DataConfig:
    """Where the prepared cache is and how samples are cut from it (MAMBO §3.2.1, suppl. §8)."""

    cache: str = ""
    full_size: int | None = None  # resize prepared images to this side first; None = native resolution
    views: tuple[str, ...] = ()  # empty = all
    healthy_only: bool = False
    intensity_jitter: float = 0.05  # gamma and gain within 1 ± this, inside the breast only
    vflip_cc: float = 0.0  # probability of a vertical flip, CC views only (never MLO, never horizontal)
    num_workers: int = 0
    # dual-view role only (mammosynth_training.dualview_fit): where the CC/MLO pairs are, the third channel
    dicom_dirs: tuple[str, ...] = ()
    pairs_csv: str = ""
    blue_channel: str = "diff"  # diff | sum | zero (MammoSynthLogic.dualview.BLUE_MODES)


@dataclass
class SDConfig:
    """MAM-E (Stable Diffusion) roles: sizes of from-scratch components, frozen VAE, captions, inpainting boxes."""

    vae_from: str = ""  # from scratch: the mame-vae stage's export folder; empty = the VAE of init_from
    vae_block_out_channels: tuple[int, ...] = (32, 64, 64)  # scale factor 2**(len - 1)
    vae_layers_per_block: int = 1
    latent_channels: int = 4
    kl_weight: float = 1e-6
    text_hidden_size: int = 64  # also the U-Net's cross_attention_dim
    text_layers: int = 2
    text_heads: int = 4
    max_length: int = 32  # tokens
    train_text_encoder: bool = True  # MAM-E trains the U-Net and the CLIP text encoder
    caption_dropout: float = 0.1  # share of empty captions (classifier-free guidance)
    box_min: float = 0.05  # random inpainting boxes: side as a share of the image side, drawn in [min, max]
    box_max: float = 0.15
    crop_margin: float | None = None  # inpainting: None = whole images (MAM-E); else the engine's crops around the box
    guidance_scale: float = 5.0  # previews
    preview_prompts: tuple[str, ...] = ()  # text role; empty = the first training captions


@dataclass
class TrainConfig:
    """Everything `fit` needs; YAML files under training/configs/ set a subset of it."""

    role: str = "mambo-global"
    image_size: int = 256  # s
    k: int = 3
    aligned_context: bool = False  # local/patch: add the coarser stage's pixels under the tile as a 4th channel
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sd: SDConfig = field(default_factory=SDConfig)
    output_dir: str = "runs/mambo-global"
    seed: int = 0
    # optimisation (MAMBO: Adam, 5e-5, batch 8)
    learning_rate: float = 5e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_weight_decay: float = 0.0
    optimizer: str = "adam"  # adam | adamw (the dual-view papers use AdamW) | adam8bit | adamw8bit (bitsandbytes)
    init_from: str = ""  # start from a bundle / diffusers UNet folder / hub id instead of random weights
    max_grad_norm: float = 1.0
    batch_size: int = 8  # per process
    gradient_accumulation_steps: int = 1
    max_steps: int = 124_500
    max_minutes: float | None = None  # stop early (and save) after this wall time
    lr_scheduler: str = "constant_with_warmup"  # any diffusers.optimization scheduler name
    lr_warmup_steps: int = 500
    mixed_precision: str = "no"  # no | fp16 | bf16 (bf16 autocast also runs on CPU)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass: less memory, ~30 % slower
    compile: str = "no"  # torch.compile backend through accelerate: no | inductor (CUDA) | eager (tests) | ...
    cpu: bool = False
    num_threads: int | None = None  # torch.set_num_threads on CPU runs
    # diffusion (MAMBO: linear betas 1e-4..0.02, T=1000)
    num_train_timesteps: int = 1000
    beta_start: float = 1e-4
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    # EMA
    ema_decay: float = 0.9999
    ema_warmup: bool = True  # decay ramps up as in diffusers' EMAModel (use_ema_warmup)
    ema_power: float = 2 / 3
    # bookkeeping
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    preview_every: int = 5000
    preview_count: int = 4
    preview_steps: int = 50
    log_every: int = 50
    log_sample_ids: bool = False  # write the sample indices each rank drew (tests of data sharding)
    export_dir: str | None = None  # export the EMA bundle here when training ends
    data_description: str = ""

    @property
    def in_channels(self) -> int:
        """1 for the global model, 3 for the local-context and patch models (4 with the aligned context)."""
        return 1 if self.role == "mambo-global" else 3 + (self.aligned_context and self.role != "dualview")

    @property
    def noised_channels(self) -> int:
        """Channels that are noised and carry the loss: all of a dual-view image, channel 0 of a MAMBO one."""
        return self.in_channels if self.role == "dualview" else 1

    def validate(self) -> "TrainConfig":
        """Raise ValueError on settings that cannot work."""
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, not {self.role!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {self.optimizer!r}")
        if self.image_size % 2 ** (len(self.model.block_out_channels) - 1):
            raise ValueError("image_size must be divisible by 2**(number of U-Net levels - 1)")
        if self.k < 1:
            raise ValueError("k must be >= 1")
        if len(self.model.down_block_types) != len(self.model.block_out_channels):
            raise ValueError("model.down_block_types needs one entry per block_out_channels entry")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (tuples as lists) for YAML and the bundle manifest."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, values: dict[str, Any]) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(values) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {sorted(unknown)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value or {})
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def from_dict(values: dict[str, Any]) -> TrainConfig:
    """Build a validated config from a (YAML) dict; unknown keys are errors."""
    return _build(TrainConfig, values).validate()


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, then apply `key.sub=value` overrides (values parsed as YAML)."""
    values = yaml.safe_load(Path(path).read_text()) or {}
    for item in overrides or []:
        key, _, raw = item.partition("=")
        node = values
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw)
    return from_dict(values)


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the full config (every field) as YAML."""
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
