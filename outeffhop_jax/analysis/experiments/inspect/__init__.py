"""Inspect a pretrained checkpoint (the packaged MiniLM today): `run` (CLI, results), `plots`."""
