"""orbax checkpoints of the train state plus each host's data-iterator position.

Layout: WORKDIR/checkpoints/<step>/{state, data}. "state" holds params, optimizer state, step and
the base RNG key (sharded arrays, written asynchronously by every host); "data" holds one JSON file
per host with its grain iterator state. orbax writes each step into a temporary folder and renames
it when complete, so a process killed mid-write leaves the previous checkpoint as the latest one.
"""
from __future__ import annotations

import json
import logging
import os

import grain
import orbax.checkpoint as ocp


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
    options = ocp.CheckpointManagerOptions(
        save_interval_steps=max(int(save_every), 1),
        max_to_keep=int(keep) if keep else None,
        enable_async_checkpointing=async_save,
        create=True,
    )
    self._manager = ocp.CheckpointManager(
        self.directory, options=options,
        item_handlers={"state": ocp.StandardCheckpointHandler(),
                       "data": grain.checkpoint.CheckpointHandler()})

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def should_save(self, step: int) -> bool:
    """Every `save_every` steps (orbax's own policy would also save the very first step)."""
    return step % self._every == 0 and step != self.latest_step()

  def save(self, step: int, state, data_iterator=None) -> bool:
    items = {"state": ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_iterator))
    # The cadence is decided by should_save(); orbax is told to save whenever asked.
    saved = self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    if saved:
      logging.info("checkpoint %d: writing to %s", step, self.directory)
    return saved

  def restore(self, abstract_state, data_iterator=None, step: int | None = None):
    """Restores into `abstract_state` (ShapeDtypeStructs with shardings); sets the iterator."""
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    items = {"state": ocp.args.StandardRestore(abstract_state)}
    if data_iterator is not None:
      items["data"] = grain.checkpoint.CheckpointRestore(data_iterator)
    restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    return restored["state"]

  def reached_preemption(self, step: int) -> bool:
    """True on every host once any host got a preemption notice (multi-host sync point)."""
    return self._manager.reached_preemption(step)

  def wait(self):
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
