"""mathrl: reinforcement learning with verifiable rewards for math, in JAX.

Subpackages are imported on first use so that `import mathrl` stays cheap:
`mathrl.models`, `mathrl.sampling`, `mathrl.advantages`, `mathrl.losses`,
`mathrl.rewards`, `mathrl.data`, `mathrl.sharding`.
"""

import importlib

from mathrl import tpu_env

# Before any backend loads: no TPU runtime start-up or metadata queries on
# machines without a TPU (see tpu_env).
tpu_env.configure()

__version__ = "0.1.0"

_SUBMODULES = (
    "advantages",
    "data",
    "losses",
    "models",
    "rewards",
    "sampling",
    "sharding",
    "tpu_env",
    "types",
)


def __getattr__(name):
  if name in _SUBMODULES:
    return importlib.import_module(f"mathrl.{name}")
  raise AttributeError(f"module 'mathrl' has no attribute {name!r}")


def __dir__():
  return sorted(list(globals()) + list(_SUBMODULES))
