"""Cost of resharding the policy for sampling, once per rollout phase (CPU).

The trainer keeps weights in the training shardings (`sharding.TRAIN_RULES`:
FSDP over 'fsdp', tensor-parallel over 'tensor') and, before each rollout or
evaluation, reshards them once to `sharding.SAMPLE_RULES` (no FSDP on
weights) with one jitted identity (`trainer.Run.sampling_model`). Printed per
model shape, on 8 fake CPU devices and the (fsdp 8) mesh that `mesh.fsdp=-1`
gives, median of `repeats` timed runs after a warm-up:

  reshard_s        the jitted reshard of every weight
  generate_s       one `sampling.generate` call of `rows` rows × `new` tokens
                   on the resharded weights under the sampling rules (the
                   peer: what the reshard is amortised over)
  fsdp_generate_s  the same call on the FSDP-sharded weights, no rules
                   (what the reshard avoids: XLA gathers weights per step)

  python benchmarks/reshard.py --repeats 3
"""

import argparse
import os
import statistics
import time

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                           + " --xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top
import numpy as np
from flax import nnx

from mathrl import models
from mathrl import sampling
from mathrl import sharding

SHAPES = {
    # The tiny config's policy (configs/tiny.py; ~500-token BPE).
    "tiny": models.ModelConfig(
        vocab_size=512, hidden_size=64, intermediate_size=128, num_layers=1,
        num_heads=2, num_kv_heads=1, head_dim=32, family="qwen3",
        qk_norm=True),
    # A 4-layer 512-wide model with a 32k vocabulary.
    "d512_l4_v32k": models.ModelConfig(
        vocab_size=32768, hidden_size=512, intermediate_size=2048,
        num_layers=4, num_heads=8, num_kv_heads=2, head_dim=64,
        family="qwen3", qk_norm=True),
}


def _median_s(fn, repeats):
  jax.block_until_ready(fn())  # warm-up (compiles)
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


def measure(config, mesh, *, rows, new, repeats):
  """(parameter count, reshard_s, generate_s, fsdp_generate_s)."""
  model = sharding.init_sharded(
      lambda: models.Transformer(config, rngs=nnx.Rngs(0)), mesh,
      sharding.TRAIN_RULES)
  graphdef, params = nnx.split(model)
  to_sampling = jax.jit(lambda p: p, out_shardings=sharding.logical_to_sharding(
      params, mesh, sharding.SAMPLE_RULES))
  tokens = np.random.default_rng(0).integers(3, 200, (rows, 8))
  mask = np.ones_like(tokens)
  kw = dict(rng=jax.random.PRNGKey(0), max_new_tokens=new, eos_ids=(1,),
            method=sampling.Temperature(1.0))
  sample_model = nnx.merge(graphdef, to_sampling(params))
  reshard_s = _median_s(lambda: to_sampling(params), repeats)
  generate_s = _median_s(lambda: sampling.generate(
      sample_model, tokens, mask, mesh=mesh, **kw).tokens_BT, repeats)
  fsdp_s = _median_s(lambda: sampling.generate(
      model, tokens, mask, **kw).tokens_BT, repeats)
  count = sum(x.size for x in jax.tree.leaves(params))
  return count, reshard_s, generate_s, fsdp_s


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--rows", type=int, default=16)
  parser.add_argument("--new", type=int, default=16)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  mesh = sharding.make_mesh(fsdp=8)
  print("shape,params,reshard_s,generate_s,fsdp_generate_s")
  for name, config in SHAPES.items():
    count, reshard_s, gen_s, fsdp_s = measure(
        config, mesh, rows=args.rows, new=args.new, repeats=args.repeats)
    print(f"{name},{count},{reshard_s:.4f},{gen_s:.4f},{fsdp_s:.4f}",
          flush=True)


if __name__ == "__main__":
  main()
