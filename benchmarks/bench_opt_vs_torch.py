"""Training-step throughput of our OPT (JAX/XLA) vs Hugging Face OPTForCausalLM (PyTorch), same CPU.

Same model for both: d=256, 4 layers, 4 heads, FFN 1024, byte-level vocab 256, seq 256, batch 16,
dropout 0, float32, AdamW (lr 1e-3, betas (0.9, 0.95), wd 0.1). Repetitions are interleaved
(JAX, torch, JAX, ...) so load drift hits both alike; the median of each side is reported.

    python benchmarks/bench_opt_vs_torch.py [--reps 5] [--steps 5] [--normalizer softmax]
    taskset -c 0 python benchmarks/bench_opt_vs_torch.py ...   (one core, one thread each side)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo, as a fallback: PYTHONPATH / an install win

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from outeffhop_jax.models import OPT, OPTConfig  # noqa: E402

D, LAYERS, HEADS, FFN, VOCAB, SEQ, BATCH = 256, 4, 4, 1024, 256, 256, 16


def jax_trainer(normalizer="softmax", gate="none", attention_impl="reference"):
  """Returns step() -> loss for our OPT: one jitted, donated, pure (params, opt_state) update."""
  cfg = OPTConfig.from_preset("tiny", vocab_size=VOCAB, max_len=SEQ, d_model=D, num_layers=LAYERS,
                              num_heads=HEADS, d_ff=FFN, normalizer=normalizer, gate=gate,
                              attention_impl=attention_impl)
  model = OPT(cfg, rngs=nnx.Rngs(0))
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  tx = optax.adamw(1e-3, b1=0.9, b2=0.95, weight_decay=0.1)
  opt_state = tx.init(params)

  def loss_fn(params, ids):
    logits = nnx.merge(graphdef, params, rest)(ids[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, ids[:, 1:]).mean()

  def train_step(params, opt_state, ids):
    loss, grads = jax.value_and_grad(loss_fn)(params, ids)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  train_step = jax.jit(train_step, donate_argnums=(0, 1))
  ids = jnp.asarray(np.random.RandomState(0).randint(0, VOCAB, (BATCH, SEQ + 1)), jnp.int32)
  state = {"params": params, "opt": opt_state}

  def step():
    state["params"], state["opt"], loss = train_step(state["params"], state["opt"], ids)
    return loss

  # The optimized HLO of the step (for benchmarks/profile_opt_vs_torch.py: thunk name -> op).
  step.hlo_text = lambda: train_step.lower(state["params"], state["opt"], ids).compile().as_text()
  return step


def torch_trainer():
  import torch
  import transformers
  torch.manual_seed(0)
  cfg = transformers.OPTConfig(vocab_size=VOCAB, hidden_size=D, num_hidden_layers=LAYERS,
                               num_attention_heads=HEADS, ffn_dim=FFN, max_position_embeddings=SEQ,
                               dropout=0.0, attention_dropout=0.0, word_embed_proj_dim=D)
  model = transformers.OPTForCausalLM(cfg).train()
  opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
  ids = torch.tensor(np.random.RandomState(0).randint(0, VOCAB, (BATCH, SEQ + 1)))

  def step():
    opt.zero_grad(set_to_none=True)
    logits = model(ids[:, :-1]).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    loss.backward()
    opt.step()
    return loss

  return step


def time_steps(step, n, block):
  t0 = time.perf_counter()
  for _ in range(n):
    out = step()
  block(out)
  return (time.perf_counter() - t0) / n


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--reps", type=int, default=5)
  ap.add_argument("--steps", type=int, default=5)
  ap.add_argument("--normalizer", default="softmax")
  args = ap.parse_args()
  import torch
  # The cores this process may use (`taskset -c 0 python ...` runs both sides on one core; XLA's
  # thread pool follows the affinity too).
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  jstep, tstep = jax_trainer(args.normalizer), torch_trainer()
  jblock, tblock = (lambda x: x.block_until_ready()), (lambda x: x.detach().item())
  time_steps(jstep, 2, jblock)  # compile + warm-up
  time_steps(tstep, 2, tblock)
  jt, tt = [], []
  for _ in range(args.reps):
    jt.append(time_steps(jstep, args.steps, jblock))
    tt.append(time_steps(tstep, args.steps, tblock))
  tokens = BATCH * SEQ
  j, t = statistics.median(jt), statistics.median(tt)
  print(f"devices: jax {jax.devices()[0].platform} x{len(os.sched_getaffinity(0))} cores, torch threads "
        f"{torch.get_num_threads()}")
  print(f"JAX  (ours, {args.normalizer}): {j * 1e3:8.1f} ms/step  {tokens / j:9.0f} tokens/s")
  print(f"torch (HF OPTForCausalLM):   {t * 1e3:8.1f} ms/step  {tokens / t:9.0f} tokens/s")
  print(f"ratio ours / torch (tokens/s): {t / j:.3f}")


if __name__ == "__main__":
  main()
