r"""Attention sinks on a CPU in minutes: study_opt_cpu's byte-level OPT on bigram-backcopy text.

On CPython text, byte-level OPTs of 64-128 wide trained to 20-25 M tokens grew no sink head
(horizon_opt_cpu, sinks_opt_cpu). Here the data is synthetic (`data/synthetic.py`): a fixed bigram
chain over 64 symbols in which, after one of 3 trigger symbols (~6 % of positions), the next symbol
copies the one before the trigger. Only those steps need attention; at every other position a head
has nothing to add, the situation in which softmax heads park their mass on the first token.
Same model and optimizer as study_opt_cpu (d=64, 4 heads, rows of 64, batch 32, AdamW 3e-3,
wd 0.1, beta2 0.95) with 2 layers, 2,000 steps x 32 x 64 = 4.1 M tokens; every 250-step
checkpoint is kept for `python -m outeffhop_jax.analysis horizon`.

  python -m outeffhop_jax.analysis study --preset sinks_bb_cpu \
      --variants vanilla,softmax1,gated,outgate --seeds 3 --out runs/sinks_bb
"""
from outeffhop_jax.train import config_lib


def get_config(arg=None):
  c = config_lib.sibling_config(__file__, "study_opt_cpu", arg)
  c.data.dataset = "bigram_backcopy"
  c.model.num_layers = 2
  c.train.num_steps = 2000
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 250
  c.train.keep_checkpoints = 0  # all: the horizon trace reads every one
  return c
