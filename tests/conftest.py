"""Test set-up: 8 fake CPU devices, strict numerics, a persistent XLA cache.

This runs before any test module imports jax, so the flags below take effect.
"""

import os
import pathlib

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# XLA:CPU's fusion emitters cost half of a tiny train step's compile time
# when the backend optimisations are off (below): the grpo recipe's step
# compiled in 5.6 s with them and 2.6 s without; the real model's decoding
# and updates ran at the same speed. Subprocesses get these flags through
# `SUITE_XLA_FLAGS` (their own device count added where they need one).
SUITE_XLA_FLAGS = "--xla_cpu_use_fusion_emitters=false"
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_cpu_use_fusion_emitters" not in _flags:
  _flags = f"{_flags} {SUITE_XLA_FLAGS}"
if "xla_force_host_platform_device_count" not in _flags:
  _flags = f"{_flags} --xla_force_host_platform_device_count=8"
os.environ["XLA_FLAGS"] = _flags.strip()

# The suite compiles far more than it computes: with XLA's backend
# optimisations off (jax_disable_most_optimizations) a cold-cache run of
# compile-bound tests (four recipe tests) took a third less CPU time, and
# the real-model tests that decode (SmolLM2 greedy decode, a bf16 GRPO
# step) were not slower. Set in the environment, so the tests' subprocesses
# (notebook, `python -m mathrl.main`, the multi-process run) inherit it.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")

import jax  # noqa: E402  (must follow the XLA_FLAGS set-up)

# Compiling dominates CPU test time; a persistent cache makes reruns cheap.
_CACHE_DIR = os.environ.get(
    "MATHRL_TEST_JAX_CACHE",
    str(pathlib.Path.home() / ".cache" / "mathrl_jax_test_cache"),
)
jax.config.update("jax_compilation_cache_dir", _CACHE_DIR)
# Converted GGUF checkpoints (`mathrl.models.checkpoints.gguf_folder`) next
# to it; subprocesses inherit the variable and share the folders.
os.environ.setdefault("MATHRL_CACHE_DIR", _CACHE_DIR + "_mathrl")
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
jax.config.update("jax_threefry_partitionable", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import pytest  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def optimised_xla():
  """XLA's backend optimisations on for this test's compiles, as users run.

  For tests whose programs run long rather than compile long: a bf16 update
  of the real model ran 3x slower unoptimised (XLA:CPU's bf16 dots).
  """
  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  yield
  jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture(scope="session")
def shared_dir() -> pathlib.Path:
  """The folder beside the checkout whose data/ holds the benchmark files."""
  if not SHARED.is_dir():
    pytest.skip(f"{SHARED} not found: tests that read the benchmark files need it")
  return SHARED


def pytest_collection_modifyitems(config, items):
  del config
  if any(d.platform == "gpu" for d in jax.devices()):
    return
  skip_gpu = pytest.mark.skip(reason="needs a GPU")
  for item in items:
    if "gpu" in item.keywords:
      item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, pathlib.Path]:
  """One tiny random HF checkpoint per family, written once per session.

  Keys: 'qwen2' (tied embeddings, q/k/v bias), 'qwen3' (q/k norm, head_dim
  32 != 64/4, untied), 'llama' (llama3 RoPE scaling, untied, saved as
  several shards with model.safetensors.index.json). See hf_checkpoints.py.
  """
  import hf_checkpoints  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("tiny_checkpoints")
  return {
      family: hf_checkpoints.write_tiny_checkpoint(
          family, root / family,
          max_shard_size="100KB" if family == "llama" else None)
      for family in hf_checkpoints.FAMILIES
  }
