"""Where the time of the OPT train step of `bench_opt_vs_torch.py` goes, ours (XLA:CPU) and PyTorch's.

JAX: a `jax.profiler` trace of a few steps; each XLA:CPU thunk (a fusion, a YNNPACK matmul, a copy)
is matched to its instruction in the optimized HLO and put into a category by the instruction's
op_name (forward / backward by `transpose(jvp(...))`). Thunks may run concurrently, so the table
gives each category's share of the summed thunk time, not of wall time.
torch: `torch.profiler`, the top ops by self CPU time.

    python benchmarks/profile_opt_vs_torch.py [--steps 3] [--top 12] [--side jax|torch|both]
        [--detail 'elementwise fwd']   (also list that category's top thunks)
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_opt_vs_torch as bench  # noqa: E402

# [B, N, T, S] (or [B, K, G, T, S]) scores and probabilities, and their [.., T, 1] row reductions.
ATTN_SHAPE = re.compile(rf"\[{bench.BATCH},{bench.HEADS},(1,)?{bench.SEQ},({bench.SEQ}|1)\]")


def _entry_instructions(hlo_text):
  """name -> (shape, opcode, op_name metadata) for the ENTRY computation's instructions (the thunks)."""
  # Fused computations that hold a dot: a fusion calling one is a matmul whatever its op_name says
  # (a weight gradient's dot carries the op_name of the transpose that follows it).
  with_dot, current = set(), None
  for line in hlo_text.splitlines():
    head = re.match(r"%?([\w.\-]+) \(", line)
    if head and not line.startswith(" "):
      current = head.group(1)
    elif current and " dot(" in line:
      with_dot.add(current)
  entry = hlo_text[hlo_text.index("\nENTRY"):]
  out = {}
  for line in entry.splitlines():
    m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) ([\w\-]+)\(", line)
    if m:
      op = re.search(r'op_name="([^"]*)"', line)
      calls = re.search(r"calls=%?([\w.\-]+)", line)
      opcode = "ynn_dot" if calls and calls.group(1) in with_dot else m.group(3)
      out[m.group(1)] = (m.group(2), opcode, op.group(1) if op else "")
  return out


def _category(name, shape, opcode, op):
  d = "bwd" if "transpose(jvp" in op else "fwd"
  if "jvp" not in op:
    return "optimizer update (AdamW) and other"
  if opcode == "dot":  # not a YNNPACK fusion: XLA:CPU's generic dot
    return f"generic (non-YNNPACK) dots {d}"
  heads_major = re.search(rf"\[{bench.BATCH},{bench.HEADS},", shape)  # [B, N (or K), ...] output
  if ("dot_general" in op or opcode == "ynn_dot") and (re.search(r"bkgts|btkgh|bkgth", op)
                                                       or heads_major):
    return f"attention matmuls (QK^T, PV) {d}"
  if "dot_general" in op or opcode == "ynn_dot":
    return f"dense matmuls (qkv/out/fc1/fc2/LM head) {d}"
  if ATTN_SHAPE.search(shape):
    return f"attention softmax + causal mask [B,N,T,S] {d}"
  if "copy" in name or "transpose" in name:
    return f"copies / transposes {d}"
  return f"LayerNorm, bias, ReLU, residual, CE, other elementwise {d}"


def profile_jax(steps, detail=None, top=12):
  import jax
  step = bench.jax_trainer()
  for _ in range(2):
    step().block_until_ready()
  inst = _entry_instructions(step.hlo_text())
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d, create_perfetto_trace=True):
      for _ in range(steps):
        step().block_until_ready()
    (path,) = glob.glob(os.path.join(d, "**", "*.trace.json.gz"), recursive=True)
    trace = json.load(gzip.open(path))
  events = trace["traceEvents"] if isinstance(trace, dict) else trace
  cat_us, unmatched, thunk_us = collections.Counter(), 0.0, collections.Counter()
  for e in events:
    if e.get("ph") != "X" or e["name"] not in inst:
      unmatched += e.get("dur", 0) if e.get("ph") == "X" and "fusion" in e["name"] else 0
      continue
    shape, opcode, op = inst[e["name"]]
    cat = _category(e["name"], shape, opcode, op)
    cat_us[cat] += e.get("dur", 0) / steps
    if detail and detail in cat:
      thunk_us[(e["name"], shape, op)] += e.get("dur", 0) / steps
  total = sum(cat_us.values())
  print(f"JAX (XLA:CPU) summed thunk time per step: {total / 1e3:.0f} ms"
        + (f" (unmatched fusion thunks {unmatched / steps / 1e3:.0f} ms)" if unmatched else ""))
  for c, us in cat_us.most_common():
    print(f"  {100 * us / total:5.1f} %  {us / 1e3:8.1f} ms  {c}")
  for (name, shape, op), us in thunk_us.most_common(top):
    print(f"    {us / 1e3:7.1f} ms  {name:30s} {shape:32s} {op[-70:]}")


def profile_torch(steps, top):
  import torch
  from torch.profiler import ProfilerActivity, profile
  torch.set_num_threads(os.cpu_count())
  step = bench.torch_trainer()
  for _ in range(2):
    step().item()
  with profile(activities=[ProfilerActivity.CPU]) as prof:
    for _ in range(steps):
      step().item()
  rows = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
  total = sum(e.self_cpu_time_total for e in rows)
  print(f"torch self CPU time per step: {total / steps / 1e3:.0f} ms (all threads' op time)")
  for e in rows[:top]:
    print(f"  {100 * e.self_cpu_time_total / total:5.1f} %  {e.self_cpu_time_total / steps / 1e3:8.1f} ms"
          f"  {e.key} ({e.count // steps} calls/step)")


def main():
  ap = argparse.ArgumentParser()
  ap.add_argument("--steps", type=int, default=3)
  ap.add_argument("--top", type=int, default=12)
  ap.add_argument("--side", choices=("jax", "torch", "both"), default="both")
  ap.add_argument("--detail", default=None, help="list the top thunks of the categories containing this")
  args = ap.parse_args()
  if args.side in ("jax", "both"):
    profile_jax(args.steps, args.detail, args.top)
  if args.side in ("torch", "both"):
    profile_torch(args.steps, args.top)


if __name__ == "__main__":
  main()
