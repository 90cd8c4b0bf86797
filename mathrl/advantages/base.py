"""The advantage-transform protocol, in the style of optax.

An advantage transform is a pair of pure functions, exactly like
`optax.GradientTransformation`:

  tx = mathrl.advantages.grpo(eps=1e-6)
  state = tx.init(rewards_PG)            # an array or a jax.ShapeDtypeStruct
  adv_PG, state = tx.update(rewards_PG, state, mask=mask_PG, **extra)

`update` takes the values flowing through the chain (rewards at the start,
advantages at the end), the transform's state, a keyword-only validity `mask`
([P, G] float 0/1, or None for all valid) and arbitrary keyword extras
(`lengths`, `token_mask`, `tokens`, `entropy`, `progress`, ...). Every update
accepts and ignores extras it does not use, so `chain` can broadcast them.

Shapes are static: [P, G] (or multi-reward [P, G, K]) in; [P, G] (sequence
level) or [P, G, T] (token level) out. Transforms never drop or reorder
samples: invalid or degenerate samples simply get advantage 0.
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from mathrl.types import Needs

AdvState = Any
InitFn = Callable[[Any], AdvState]
UpdateFn = Callable[..., tuple[jax.Array, AdvState]]


class AdvantageTransform(NamedTuple):
  """A pair of pure functions `(init, update)`; see the module docstring.

  `needs` declares what the transform needs from the train step (the
  behaviour policy's entropy, multi-reward rewards, rollout extras, a loss
  sample mask) and whether it is reward shaping only; see `types.Needs`.
  """

  init: InitFn
  update: UpdateFn
  needs: Needs = Needs()


def declare(tx: AdvantageTransform, **needs: Any) -> AdvantageTransform:
  """`tx` with `Needs(**needs)` added to its declaration."""
  merged = tx.needs.merge(Needs(**needs))
  if "shaping" in needs:
    merged = dataclasses.replace(merged, shaping=needs["shaping"])
  return tx._replace(needs=merged)


class EmptyState(NamedTuple):
  """State of a stateless transform."""


def init_empty_state(rewards: Any) -> EmptyState:
  """`init` for stateless transforms; accepts arrays or ShapeDtypeStructs."""
  del rewards
  return EmptyState()


def stateless(
    fn: Callable[..., jax.Array],
) -> AdvantageTransform:
  """Wraps `fn(values, *, mask, **extra) -> values` as a stateless transform.

  Args:
    fn: a pure function of the incoming values, the [P, G] mask (never None:
      `stateless` fills in ones) and keyword extras.

  Returns:
    An AdvantageTransform with an empty state.
  """

  def update_fn(values, state, *, mask=None, **extra):
    return fn(values, mask=default_mask(values, mask), **extra), state

  return AdvantageTransform(init_empty_state, update_fn)


def default_mask(values: jax.Array, mask: Optional[jax.Array]) -> jax.Array:
  """The [P, G] float mask; all ones when `mask` is None."""
  if mask is None:
    return jnp.ones(values.shape[:2], jnp.float32)
  mask = jnp.asarray(mask)
  if mask.shape != values.shape[:2]:
    raise ValueError(
        f"mask has shape {mask.shape}, expected {values.shape[:2]} (the [P, G]"
        " leading dimensions of the rewards)."
    )
  return mask.astype(jnp.float32)


def chain(*txs: AdvantageTransform) -> AdvantageTransform:
  """Applies transforms in sequence: `chain(a, b)` is `b` after `a`.

  The state is the tuple of the members' states. Extras (`mask`, `lengths`,
  ...) are passed to every member.
  """

  def init_fn(rewards):
    return tuple(tx.init(rewards) for tx in txs)

  def update_fn(values, state, *, mask=None, **extra):
    if len(state) != len(txs):
      raise ValueError(
          f"chain of {len(txs)} transforms got a state with {len(state)}"
          " entries; was the state made by this chain's init?"
      )
    new_state = []
    for tx, s in zip(txs, state):
      values, s = tx.update(values, s, mask=mask, **extra)
      new_state.append(s)
    return values, tuple(new_state)

  return AdvantageTransform(init_fn, update_fn, _chain_needs(txs))


def _chain_needs(txs) -> Needs:
  """A chain needs what its members need; it is shaping only if all are."""
  needs = txs[0].needs if txs else Needs()
  for tx in txs[1:]:
    needs = needs.merge(tx.needs)
  return needs


def named_chain(*named: tuple[str, AdvantageTransform]) -> AdvantageTransform:
  """Like `chain`, with the state a dict keyed by each member's name."""
  names = [n for n, _ in named]
  if len(set(names)) != len(names):
    raise ValueError(f"named_chain names must be unique, got {names}")

  def init_fn(rewards):
    return {n: tx.init(rewards) for n, tx in named}

  def update_fn(values, state, *, mask=None, **extra):
    new_state = {}
    for n, tx in named:
      values, new_state[n] = tx.update(values, state[n], mask=mask, **extra)
    return values, new_state

  return AdvantageTransform(init_fn, update_fn,
                            _chain_needs([tx for _, tx in named]))
