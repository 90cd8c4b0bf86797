"""mathrl: reinforcement learning with verifiable rewards for math, in JAX.

Subpackages are imported on first use so that `import mathrl` stays cheap:
`mathrl.models`, `mathrl.sampling`, `mathrl.advantages`, `mathrl.losses`,
`mathrl.rewards`, `mathrl.data`, `mathrl.sharding`.
"""

from mathrl import lazy_modules
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

__getattr__, __dir__ = lazy_modules.attributes(
    __name__, _SUBMODULES, globals())
