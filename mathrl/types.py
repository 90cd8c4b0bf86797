"""Shared types and the dimension key used for array names everywhere.

Dimension key (array names carry these as suffixes, e.g. `rewards_PG`,
`logits_BSV`; einsum strings use the same letters):

  P  prompts in a batch
  G  generations (samples) per prompt
  B  sequences, B = P * G
  R  rows of the sampler's current batch bucket (R ≤ B, see sampling.py)
  L  prompt length (left-padded bucket)
  T  completion (generated) length
  S  full sequence length, or KV-cache length
  M  KV-cache slots (maximum cache length)
  D  model (embedding) dimension
  F  MLP hidden dimension
  N  query heads
  K  key/value heads; in reward arrays, the number of reward components
  H  head dimension
  V  vocabulary
"""

from typing import Any

import jax

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PRNGKey = jax.Array
PyTree = Any
