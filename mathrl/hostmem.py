"""Handing memory the process has freed back to the operating system.

glibc's malloc keeps freed small and medium blocks in its heaps for reuse
instead of returning them, so a process's resident set stays at its high
mark after a burst of small allocations. XLA's compiler is such a burst:
compiling the SmolLM2-135M GRPO step leaves about 0.2 GiB of freed memory
resident (benchmarks/RESULTS.md), which the step's own buffers (large
blocks, mapped and unmapped by themselves) never reuse.
`malloc_trim(0)` (glibc >= 2.8, `man 3 malloc_trim`) returns the free
pages of every heap, holes included; the environment settings
(MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_, MALLOC_ARENA_MAX) only
trim the top of a heap and did not lower it. A warm JAX persistent
compilation cache (`jax_compilation_cache_dir`) keeps the compiler out of
the process altogether.

  compiled = jax.jit(step).lower(*args).compile()
  hostmem.release_free_memory()
"""

import ctypes
import ctypes.util
import functools
import gc
from typing import Optional


@functools.cache
def _libc() -> Optional[ctypes.CDLL]:
  """glibc, when this process runs on it (None elsewhere, e.g. musl, macOS)."""
  name = ctypes.util.find_library("c")
  if name is None:
    return None
  try:
    libc = ctypes.CDLL(name)
  except OSError:
    return None
  return libc if hasattr(libc, "malloc_trim") else None


def release_free_memory() -> bool:
  """Collects Python garbage, then returns malloc's free pages to the OS.

  Returns:
    True if glibc released some memory; False if there was none to release
    or the C library is not glibc (nothing is done then).
  """
  gc.collect()
  libc = _libc()
  if libc is None:
    return False
  return bool(libc.malloc_trim(0))
