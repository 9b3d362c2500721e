"""Offline evaluation metrics: FID/KID on local feature weights, LPIPS, MS-SSIM diversity, KS, patch-level FID.

Weights are only ever read from local safetensors files (`weights.py`); any `torch.nn.Module` can stand in for the
feature extractor. `generation.evaluate_generation` is what `mammosynth evaluate generation` runs.
"""
