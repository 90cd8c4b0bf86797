"""Host-memory tools: XLA's buffers at the peak, glibc's freed memory."""

import json
import os
import subprocess
import sys

import numpy as np

from mathrl import hlo
from mathrl import hostmem

# f(w) = tanh(w·w)·w on a 256 × 256 float32 w (256 KiB per array): at the
# peak, while the second product is written, w, tanh(w·w) and the product
# are live, 3 × 262,144 bytes.
_DUMP_SCRIPT = """
import glob, json, os, sys
import jax, jax.numpy as jnp
def f(w_in):
  return jnp.tanh(w_in @ w_in) @ w_in
jax.jit(f).lower(jax.ShapeDtypeStruct((256, 256), jnp.float32)).compile()
path, = glob.glob(os.path.join(sys.argv[1], "*jit_f*-live-range.txt"))
print(json.dumps(open(path).read()))
"""


def test_peak_live_buffers_of_a_real_dump(tmp_path):
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_dump_to={tmp_path} --xla_dump_hlo_as_text")
  out = subprocess.run([sys.executable, "-c", _DUMP_SCRIPT, str(tmp_path)],
                       env=env, check=True, capture_output=True, text=True)
  peak = hlo.peak_live_buffers(json.loads(out.stdout.splitlines()[-1]))
  assert [b for _, b in peak] == [262_144] * 3
  assert "w_in.1" in [name for name, _ in peak]  # the argument, by name


def test_peak_live_buffers_reads_only_the_peak_section():
  text = """HloLiveRange (max 5):
  BufferLiveRange:
    a{}:0-3
  Live ranges at 2 (peak):
    a{}: 100 bytes (cumulative: 100 bytes)
    loop.1{3}: 300 bytes (cumulative: 400 bytes)
  Stack trace breakdown for peak usage: 400 bytes
    main (100.0%, total: 400 bytes)
"""
  assert hlo.peak_live_buffers(text) == [("loop.1{3}", 300), ("a", 100)]


def test_release_free_memory_returns_a_bool_and_keeps_arrays():
  kept = np.arange(1000.0)
  blocks = [bytearray(64 * 1024) for _ in range(256)]  # 16 MiB, then freed
  del blocks
  assert isinstance(hostmem.release_free_memory(), bool)
  np.testing.assert_array_equal(kept, np.arange(1000.0))
