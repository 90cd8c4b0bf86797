"""A persistent XLA compilation cache for mathrl's command line.

Compiling the train step, the sampler and the evaluation programs takes
seconds on a CPU and minutes for a large model on TPU, and a run pays it
again at every start: a resumed run (after a preemption, exit 75) or the
next point of a sweep compiles the same programs. JAX's persistent cache
(`jax_compilation_cache_dir`) stores each compiled executable on disk,
keyed by the program, the devices and the compiler options, and loads it
instead of compiling. It also keeps the compiler out of the process on a
warm start, whose freed memory otherwise stays resident (the SmolLM2 GRPO
update peaks at 3.46 GiB loaded from the cache against 3.71 GiB compiled,
benchmarks/RESULTS.md).

`python -m mathrl.main` turns it on from `config.compile_cache_dir`
(default `~/.cache/mathrl/xla`; "" = off). A cache directory chosen
outside the config wins: the environment variable
JAX_COMPILATION_CACHE_DIR, or `jax.config.update(
"jax_compilation_cache_dir", ...)` before the run starts.
"""

import os
from typing import Optional

import jax


def enable(cache_dir: str) -> Optional[str]:
  """Points JAX's persistent compilation cache at `cache_dir`.

  Call before the first compile. Leaves a cache directory set elsewhere
  (environment or jax.config) as it is.

  Args:
    cache_dir: a directory ("~" expanded, created if missing); "" = off.

  Returns:
    The cache directory in use afterwards, or None when there is none.
  """
  current = jax.config.jax_compilation_cache_dir
  if current:
    return current
  if not cache_dir:
    return None
  path = os.path.abspath(os.path.expanduser(cache_dir))
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise ValueError(
        f"compile_cache_dir={cache_dir!r}: cannot create {path} ({e}); set"
        " --config.compile_cache_dir to a writable directory, or '' to"
        " compile at every start") from None
  jax.config.update("jax_compilation_cache_dir", path)
  return path
