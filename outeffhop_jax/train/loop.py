"""`run(config, workdir)`: the training main, one linear function in sections.

Running it again on the same workdir resumes from the latest complete checkpoint: parameters,
optimizer state, step, base RNG key and each host's data-iterator position, so the resumed run is
the uninterrupted one. SIGTERM (preemption) saves a checkpoint and exits cleanly; a non-finite
loss or gradient stops the run before anything non-finite is checkpointed.
"""
from __future__ import annotations

import os
import signal
import time

import jax
import numpy as np

from outeffhop_jax.train import checkpoint as checkpoint_lib
from outeffhop_jax.train import checks, evaluation, resume
from outeffhop_jax.train import input as input_lib
from outeffhop_jax.train import metrics as metrics_lib
from outeffhop_jax.train import setup as setup_lib
from outeffhop_jax.train import sharding


class NonFiniteLossError(FloatingPointError):
  pass


def maybe_initialize_distributed(config):
  """jax.distributed.initialize(...) when config.distributed.initialize; call before any JAX op."""
  d = config.distributed
  if not d.initialize or jax.distributed.is_initialized():
    return
  kwargs = {}
  if d.coordinator_address:
    kwargs["coordinator_address"] = d.coordinator_address
  if d.num_processes is not None:
    kwargs["num_processes"] = int(d.num_processes)
  if d.process_id is not None:
    kwargs["process_id"] = int(d.process_id)
  if d.local_device_ids:
    kwargs["local_device_ids"] = [int(i) for i in str(d.local_device_ids).split(",")]
  jax.distributed.initialize(**kwargs)


class _Preemption:
  """SIGTERM sets a flag; the loop checkpoints and returns at the next step boundary."""

  def __init__(self):
    self.requested = False
    self._previous = None

  def __enter__(self):
    try:
      self._previous = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread: no handler, rely on orbax's multi-host sync
      self._previous = None
    return self

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def __exit__(self, *exc):
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
    return False


def describe(family: str, variant: str, model_cfg) -> str:
  """'opt/gated: normalizer softmax, gate linear (init 0.25), sinks none': what was built."""
  gate = model_cfg.gate if model_cfg.gate == "none" else \
      f"{model_cfg.gate} (init {model_cfg.gate_init})"
  return (f"{family}/{variant}: normalizer {model_cfg.normalizer}, gate {gate}, "
          f"sinks {model_cfg.sinks}")


def run(config, workdir: str, *, allow_config_change: bool = False) -> dict:
  """Trains (or resumes) the run described by `config` in `workdir`; returns final eval metrics.

  On a workdir that holds a run, a config that differs in fields that change the run (model,
  variant, data, optimizer) is refused before anything is written (resume.ConfigChangeError);
  allow_config_change=True continues with the new config and records the change in
  workdir/config_changes.jsonl.
  """
  # ---- Setup: distributed, validation, mesh; the resume check before any write ----------------
  maybe_initialize_distributed(config)
  checks.validate(config, jax.device_count(), jax.process_count())
  is_main = jax.process_index() == 0
  workdir = os.path.abspath(workdir)
  cfg_t = config.train
  num_steps = int(cfg_t.num_steps)
  setup = setup_lib.build(config)
  record = resume.record(config, setup.model_cfg)
  changes = resume.check_resume(workdir, record, allow_change=allow_config_change)
  os.makedirs(workdir, exist_ok=True)
  say = print if is_main else (lambda *a, **k: None)
  say(f"{describe(config.family, config.variant, setup.model_cfg)}; "
      f"{setup_lib.param_count(setup.abstract_params):,} "
      f"parameters on mesh {dict(setup.mesh.shape)} ({jax.process_count()} process(es)); "
      f"{sharding.shard_report(setup.unsplit)}", flush=True)

  # ---- State: restore the newest checkpoint that restores, or initialise ----------------------
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, "checkpoints"),
                                     save_every=cfg_t.checkpoint_every, keep=cfg_t.keep_checkpoints,
                                     async_save=cfg_t.async_checkpointing)
  train_ds = input_lib.train_dataset(config, setup.tokenizer)
  train_iter = iter(train_ds)
  if ckpt.all_steps():
    state, restored = ckpt.restore_step(setup.abstract_state, train_iter, set_aside=True)
    rest = setup_lib.fresh_rest(setup)
    say(f"resumed from the checkpoint at step {restored} in {ckpt.directory}", flush=True)
  else:
    state, rest = setup_lib.init_state(setup)
  start = int(jax.device_get(state["step"]))
  if is_main:  # written once the run is known to continue: a failed restore leaves the old one
    resume.write_record(workdir, record)
    if changes:
      resume.record_changes(workdir, start, changes)
      say(f"config changed at step {start} (allowed): " + "; ".join(
          f"{f}: {a!r} -> {b!r}" for f, a, b in changes), flush=True)

  # ---- Steps ----------------------------------------------------------------------------------
  train_step = setup_lib.jit_train_step(setup)
  eval_bs = input_lib.eval_batch_size(config)
  eval_step = setup_lib.jit_eval_step(setup, eval_bs)
  n_eval = input_lib.num_eval_batches(config)
  to_global = lambda b: setup_lib.global_batch(setup, b)  # noqa: E731

  def run_eval(params):
    batches = evaluation.eval_batches(config, n_eval, setup.tokenizer)
    return evaluation.run_eval(eval_step, params, rest, batches, to_global, setup.task.name)

  writer = metrics_lib.MetricWriter(workdir, enabled=is_main, tensorboard=cfg_t.tensorboard)
  bar = metrics_lib.ProgressBar(num_steps, start, enabled=is_main and cfg_t.progress_bar)
  tokens_per_batch = _tokens_per_example(config) * int(cfg_t.global_batch_size)

  pending: list = []  # device metrics not yet fetched: fetching every step would stall dispatch
  fetched: list = []  # host metrics since the last log line
  clock = {"t": time.perf_counter(), "step": start, "paused": 0.0}

  def check(step: int):
    """Fetches pending metrics; stops on a non-finite loss or gradient norm."""
    if not pending:
      return
    new = jax.device_get(pending)
    pending.clear()
    for i, m in enumerate(new):
      if not bool(m["finite"]):
        bad_step = step - len(new) + i + 1
        raise NonFiniteLossError(
            f"non-finite loss or gradient at step {bad_step} (loss={float(m['loss'])}, "
            f"grad_norm={float(m['grad_norm'])}); stopped without checkpointing it. "
            f"Last good checkpoint: step {_complete_latest(ckpt)} in {ckpt.directory}")
    fetched.extend(new)

  def log(step: int):
    check(step)
    if not fetched:
      return
    now = time.perf_counter()
    steps = step - clock["step"]
    # Throughput of training alone: time spent in eval / checkpoint calls is left out.
    rate = steps * tokens_per_batch / max(now - clock["t"] - clock["paused"], 1e-9)
    clock.update(t=now, step=step, paused=0.0)
    mean = {k: float(np.mean([m[k] for m in fetched]))
            for k in ("loss", "grad_norm", "learning_rate", "accuracy")}
    fetched.clear()
    unit = "tokens_per_s" if input_lib.is_text(config) else "examples_per_s"
    mean[unit] = rate
    writer.write(step, mean, prefix="train/")
    bar.update(step, steps, {"loss": mean["loss"], unit.replace("_per_s", "/s"): round(rate)})

  def paused(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    clock["paused"] += time.perf_counter() - t
    return out

  def report_checkpoints():
    for s in ckpt.completed_steps():  # only finished saves are reported as written
      bar.write(f"checkpoint at step {s} written to {ckpt.directory}")

  def save(step: int, force: bool = False):
    if force or ckpt.should_save(step):
      check(step)  # never checkpoint a state reached through a non-finite step
      paused(ckpt.save, step, state, train_iter)
    report_checkpoints()

  # ---- Loop -----------------------------------------------------------------------------------
  final = {}
  stopped_early = False
  try:
    with _Preemption() as preemption:
      step = start
      while step < num_steps:
        batch = to_global(next(train_iter))
        state, m = train_step(state, rest, batch)
        pending.append(m)
        step += 1
        if step % cfg_t.log_every == 0 or step == num_steps:
          log(step)
        if cfg_t.eval_every and step % cfg_t.eval_every == 0 and step < num_steps:
          check(step)
          ev = paused(run_eval, state["params"])
          writer.write(step, ev, prefix="eval/")
          bar.write(_eval_line(step, ev))
        if step < num_steps:
          save(step)
        # One process: our SIGTERM flag. Several: orbax's sync point, so all hosts stop together.
        if (ckpt.reached_preemption(step) if jax.process_count() > 1
            else preemption.requested):
          if ckpt.latest_step() != step:
            save(step, force=True)
          ckpt.wait()
          report_checkpoints()
          bar.write(f"preempted at step {step}: checkpoint saved, exiting")
          stopped_early = True
          break
      if not stopped_early:
        # ---- End: checkpoint, final evaluation ----------------------------------------------------
        log(step)
        if ckpt.latest_step() != step:
          save(step, force=True)
        final = run_eval(state["params"])
        writer.write(step, final, prefix="eval/")
        bar.write(_eval_line(step, final))
  finally:
    try:
      ckpt.wait()
      report_checkpoints()
    finally:
      bar.close()
      ckpt.close()
      writer.close()
    train_iter.close()
    del train_iter
  return final


def _complete_latest(ckpt) -> int | None:
  """The newest checkpoint once any save in flight has finished (so it is complete)."""
  ckpt.wait()
  return ckpt.latest_step()


def _tokens_per_example(config) -> int:
  return int(config.data.seq_len) if input_lib.is_text(config) else 1


def _eval_line(step: int, ev: dict) -> str:
  parts = [f"eval @ step {step}: loss {ev['loss']:.4f}"]
  if "perplexity" in ev:
    parts.append(f"perplexity {ev['perplexity']:.3f}")
  parts.append(f"mae {ev['mae']:.4f}" if "mae" in ev else f"accuracy {ev['accuracy']:.4f}")
  return ", ".join(parts)
