"""mammosynth-training: data preparation, datasets and the accelerate training loop for the MAMBO models."""
__version__ = "0.1.0"
