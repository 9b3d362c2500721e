"""Train the dual-view (MammoRGB) model with the shared training loop (`fit.train`).

    python -m mammosynth_training.dualview_fit --config training/configs/dualview-paper.yaml \
        --set data.dicom_dirs=[/data/dicoms] --set init_from=google/ddpm-celebahq-256

The config is an ordinary training config with `role: dualview`: `data.dicom_dirs` (pairs grouped by patient, study
and laterality) or `data.pairs_csv` (columns cc, mlo), `data.blue_channel` (diff | sum | zero) and `init_from` (a
bundle, a diffusers UNet folder or a hub id, with 3 channels, or 1 (a grey model, e.g. a MAMBO global bundle, whose
weights are inflated to 3 channels); empty = from scratch). All three channels are noised and carry the loss.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .config import TrainConfig
from .dualview_data import DualViewDataset, find_pairs
from .models import grey_to_rgb, load_base_unet

MODEL_FIELDS = ("block_out_channels", "layers_per_block", "down_block_types", "up_block_types", "norm_num_groups",
                "attention_head_dim")


def base_model(config: TrainConfig):
    """The U-Net to fine-tune (config.init_from), its layout copied into config.model; None = from scratch."""
    if not config.init_from:
        return None
    unet = load_base_unet(config.init_from)
    c = unet.config
    size = c.sample_size if isinstance(c.sample_size, int) else c.sample_size[0]
    if (c.in_channels, c.out_channels) == (1, 1):  # a grey mammography model, e.g. a MAMBO global bundle
        unet = grey_to_rgb(unet)
    elif (c.in_channels, c.out_channels) != (3, 3):
        raise ValueError(f"{config.init_from}: a dual-view model starts from a model with 3 channels in and out "
                         f"(or a grey one with 1), this one has {c.in_channels}/{c.out_channels}")
    if size != config.image_size:
        raise ValueError(f"{config.init_from}: trained at {size} px, the config says image_size {config.image_size}")
    for name in MODEL_FIELDS:
        value = getattr(c, name)
        if value is not None:
            setattr(config.model, name, tuple(value) if isinstance(value, (list, tuple)) else value)
    return unet


def build_dataset(config: TrainConfig, log=print) -> DualViewDataset:
    """The pairs of config.data (DICOM folders or CSV) at config.image_size, views kept in output_dir/pairs."""
    d = config.data
    pairs = find_pairs(d.dicom_dirs, d.pairs_csv or None, log)
    log(f"{len(pairs)} CC/MLO pairs: " + ", ".join("/".join(p.key) for p in pairs[:8])
        + (" ..." if len(pairs) > 8 else ""))
    from accelerate import PartialState

    with PartialState(cpu=config.cpu).main_process_first():  # the main process writes the views, the others read
        return DualViewDataset.from_pairs(pairs, config.image_size, Path(config.output_dir) / "pairs",
                                          blue=d.blue_channel, seed=config.seed, intensity_jitter=d.intensity_jitter)


def train_dualview(config: TrainConfig, resume: str | None = "latest") -> dict:
    """fit.train with the dual-view dataset and (optionally) a pretrained U-Net; previews off (3-channel samples
    are made with `mammosynth dualview` instead)."""
    from .fit import train

    if config.role != "dualview":
        raise ValueError(f"role must be dualview for dual-view training, not {config.role!r}")
    config.preview_every = 0
    model = base_model(config)
    return train(config, resume=resume, dataset=build_dataset(config), model=model)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m mammosynth_training.dualview_fit` (also under accelerate launch / torchrun)."""
    from .fit import add_arguments

    parser = argparse.ArgumentParser(prog="python -m mammosynth_training.dualview_fit",
                                     description="Train the dual-view CC/MLO model (MammoRGB encoding).")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """`mammosynth-train dualview-fit` and `python -m mammosynth_training.dualview_fit`."""
    from .fit import run as run_training

    return run_training(args, train_dualview)


if __name__ == "__main__":
    raise SystemExit(main())
