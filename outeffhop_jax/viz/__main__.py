"""Entry point: `python -m outeffhop_jax.viz EXPERIMENT --out DIR` (see `cli`)."""
from outeffhop_jax.viz.cli import main

main()
