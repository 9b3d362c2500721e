"""Diffusion pipelines, one file each (diffusers style): `mambo` = MAMBO full-resolution synthesis."""
