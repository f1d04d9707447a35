"""Outlier repair of the pretrained encoder: `run` (CLI, fine-tune loop), `loss`, `report`."""
