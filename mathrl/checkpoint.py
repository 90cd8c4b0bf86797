"""Orbax checkpoints of the training state: save, find the latest, restore.

  ckpt = checkpoint.Checkpointer(workdir + "/checkpoints", max_to_keep=3)
  ckpt.save(step, state, metadata={"data_iterator": it.get_state()})
  step = ckpt.latest_step()                      # None for a fresh run
  state, metadata = ckpt.restore(step, abstract_state=jax.eval_shape(...))
  ckpt.close()

`state` is any pytree of arrays (parameters, optimizer state, advantage-
transform state, RNG key data, step). `metadata` is a JSON-serialisable dict
(data-iterator state, config). Saves are asynchronous: `save` returns once the
arrays are copied off the devices and the write continues in the background.

Orbax writes each step into a temporary folder and renames it only when the
whole checkpoint is on disk, so a run killed mid-save (kill -9) leaves no
folder that `latest_step` would pick: the next run resumes from the last
complete checkpoint. Restoring into `abstract_state` (a pytree of
`jax.ShapeDtypeStruct` carrying shardings) places every array straight into
its sharding.
"""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """A thin wrapper of `orbax.checkpoint.CheckpointManager`."""

  def __init__(
      self,
      directory: str,
      *,
      max_to_keep: Optional[int] = 3,
      async_save: bool = True,
  ):
    """Opens (or creates) a checkpoint folder.

    Args:
      directory: folder holding one sub-folder per saved step.
      max_to_keep: keep the newest N checkpoints (None keeps all).
      async_save: write in a background thread.
    """
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep,
        enable_async_checkpointing=async_save,
        create=True,
        cleanup_tmp_directories=True,
    )
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> Optional[int]:
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(
      self,
      step: int,
      state: Any,
      *,
      metadata: Optional[dict[str, Any]] = None,
      force: bool = False,
  ) -> bool:
    """Starts saving `state` (a pytree of arrays) and `metadata` at `step`."""
    args = ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        metadata=ocp.args.JsonSave(metadata or {}),
    )
    return self._manager.save(int(step), args=args, force=force)

  def restore(
      self, step: Optional[int] = None, *, abstract_state: Any
  ) -> tuple[Any, dict[str, Any]]:
    """Restores `(state, metadata)` of `step` (default: the latest).

    Args:
      step: which checkpoint; None for the latest.
      abstract_state: pytree of `jax.ShapeDtypeStruct` (with `.sharding`) or
        arrays giving the structure, dtypes and shardings to restore into.

    Returns:
      The state pytree and the metadata dict.
    """
    if step is None:
      step = self.latest_step()
    if step is None:
      raise FileNotFoundError(
          f"no complete checkpoint in {self.directory}: start a fresh run or"
          " point the workdir at a run that saved one."
      )
    abstract_state = jax.tree.map(
        ocp.utils.to_shape_dtype_struct, abstract_state
    )
    args = ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        metadata=ocp.args.JsonRestore(),
    )
    try:
      restored = self._manager.restore(int(step), args=args)
    except ValueError as e:
      first = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)
      raise ValueError(
          f"checkpoint {step} in {self.directory} does not match the state"
          " this run builds (another config: model shape, optimizer,"
          " advantage or loss; or a checkpoint written by another mathrl"
          f" version): {first} Resume with the config that wrote it (the"
          " workdir's config.json), or start a fresh workdir; the"
          " checkpoint is left as it is."
      ) from e
    return restored.state, dict(restored.metadata or {})

  def wait(self):
    """Blocks until any background save has finished."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()
