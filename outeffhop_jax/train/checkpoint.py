"""orbax checkpoints of the train state plus each host's data-iterator position.

Layout: WORKDIR/checkpoints/<step>/{state, data}. "state" holds params, optimizer state, step and
the base RNG key (sharded arrays, written asynchronously by every host); "data" holds one JSON file
per host with its grain iterator state. orbax writes each step into a temporary folder and renames
it when complete, so a process killed mid-write leaves the previous checkpoint as the latest one.

A checkpoint that is there but cannot be restored (a truncated file, a missing _METADATA, ...) is
skipped with a warning naming its step and the cause: the newest one that restores is used (the
training loop moves the unrestorable newer ones to WORKDIR/unrestorable_checkpoints/ so that the
resumed run can write those steps again). When none restores, `CheckpointRestoreError` names the
folder and each step's cause in its first lines.
"""
from __future__ import annotations

import json
import logging
import os
import time

import grain
import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils


# Files every complete checkpoint of this layout has (orbax's tree metadata and OCDBT manifest).
_EXPECTED_FILES = ("state/_METADATA", "state/manifest.ocdbt")


class CheckpointRestoreError(RuntimeError):
  """No checkpoint of a folder could be restored; the message names the folder and the causes."""


def _cause(e: BaseException) -> str:
  """'Type: first line' of the innermost exception of e's chain (orbax wraps the real cause)."""
  inner, seen = e, set()
  while True:
    nxt = inner.__cause__ or inner.__context__
    if nxt is None or id(nxt) in seen:
      break
    seen.add(id(inner))
    inner = nxt
  lines = [l for l in str(inner).splitlines() if l.strip()] or [repr(inner)]
  text = lines[0] if len(lines[0]) <= 300 else lines[0][:300] + " ..."
  return f"{type(inner).__name__}: {text}"


class _IteratorSnapshot:
  """The iterator's state taken *now*: the async write happens later, while training goes on."""

  def __init__(self, iterator):
    self._state = json.dumps(iterator.get_state(), indent=1).encode()

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:
  """Thin wrapper over `ocp.CheckpointManager` for (train state, data iterator)."""

  def __init__(self, directory: str, *, save_every: int, keep: int, async_save: bool = True):
    self.directory = os.path.abspath(directory)
    self._every = max(int(save_every), 1)
    self._options = ocp.CheckpointManagerOptions(
        save_interval_steps=max(int(save_every), 1),
        max_to_keep=int(keep) if keep else None,
        enable_async_checkpointing=async_save,
        create=True,
    )
    self._manager = self._new_manager()
    self._unreported: list[int] = []  # saves started, not yet reported complete

  def _new_manager(self):
    return ocp.CheckpointManager(
        self.directory, options=self._options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> int | None:
    """The newest step saved or being saved (see `completed_steps` for the finished ones)."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    """Every `save_every` steps (orbax's own policy would also save the very first step)."""
    return step % self._every == 0 and step != self.latest_step()

  def save(self, step: int, state, data_iterator=None) -> bool:
    """Starts writing checkpoint `step` (asynchronously unless async_save=False)."""
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator))
    # The cadence is decided by should_save(); orbax is told to save whenever asked.
    saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    if saved:
      logging.info("checkpoint %d: writing to %s", step, self.directory)
      self._unreported.append(int(step))
    return saved

  def completed_steps(self) -> list[int]:
    """Steps whose save has finished since the last call (never one still being written)."""
    if not self._unreported or self._manager.is_saving_in_progress():
      return []
    self._manager.check_for_errors()  # a failed async save raises here, not reported as written
    done, self._unreported = self._unreported, []
    return done

  def restore(self, abstract_state, data_iterator=None, step: int | None = None):
    """Restores into `abstract_state` (ShapeDtypeStructs with shardings); sets the iterator."""
    return self.restore_step(abstract_state, data_iterator, step)[0]

  def restore_step(self, abstract_state, data_iterator=None, step: int | None = None, *,
                   set_aside: bool = False):
    """(state, step): checkpoint `step`, or (None) the newest one that restores.

    A newer checkpoint that fails to restore is skipped with a warning naming its step and cause;
    set_aside=True moves it to ../unrestorable_checkpoints/<step> once an older one restored (so
    training can save that step again). Raises CheckpointRestoreError when none restores.
    """
    candidates = sorted(self.all_steps(), reverse=True) if step is None else [int(step)]
    if not candidates:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    failed = []
    for s in candidates:
      items = {"state": ocp.args.StandardRestore(abstract_state)}
      if data_iterator is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
      try:
        restored = self._manager.restore(s, args=ocp.args.Composite(**items))
      except Exception as e:  # noqa: BLE001 (orbax / tensorstore raise many kinds)
        missing = [f for f in _EXPECTED_FILES if not os.path.exists(
            os.path.join(self.directory, str(s), f))]
        # A missing file makes orbax fail later on with an unrelated-looking tree error: name it.
        failed.append((s, f"missing {', '.join(missing)} ({_cause(e)})" if missing else _cause(e)))
        logging.warning("checkpoint at step %d (%s) cannot be restored: %s", s,
                        os.path.join(self.directory, str(s)), failed[-1][1])
        continue
      if failed:
        logging.warning("resuming from the older checkpoint at step %d instead of step(s) %s",
                        s, ", ".join(str(f) for f, _ in failed))
        if set_aside:
          self._set_aside([f for f, _ in failed])
      return restored["state"], s
    causes = "\n".join(f"  step {s} ({os.path.join(self.directory, str(s))}): {c}"
                        for s, c in failed)
    raise CheckpointRestoreError(
        f"cannot restore {'any checkpoint' if step is None else f'checkpoint {step}'} in "
        f"{self.directory}:\n{causes}") from None

  def _set_aside(self, steps: list[int]):
    """Moves unrestorable step folders out of orbax's folder; every host reloads the manager."""
    aside = os.path.join(os.path.dirname(self.directory), "unrestorable_checkpoints")
    if jax.process_index() == 0:
      os.makedirs(aside, exist_ok=True)
      for s in steps:
        dest = os.path.join(aside, str(s))
        if os.path.exists(dest):
          dest += f".{int(time.time())}"
        os.rename(os.path.join(self.directory, str(s)), dest)
        logging.warning("moved the unrestorable checkpoint at step %d to %s", s, dest)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices("outeffhop_checkpoint_set_aside")
    self._manager.close()
    self._manager = self._new_manager()

  def reached_preemption(self, step: int) -> bool:
    """True on every host once any host got a preemption notice (multi-host sync point)."""
    return self._manager.reached_preemption(step)

  def wait(self):
    """Blocks until every started save is complete."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
